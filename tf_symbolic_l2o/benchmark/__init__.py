"""The benchmark harness (``tfl2o benchmark``): a task suite in tiers, tuned baselines against the shipped learned
and symbolic optimizers, cached raw curves, metrics and a results report.

One job per module:

* :mod:`.tasks`      — the small functional task the suite adds (2-D Rosenbrock);
* :mod:`.suite`      — the task suites (``smoke``, ``full``): tiers, step budgets, splits, seeds, LR grids;
* :mod:`.optimizers` — the optimizers compared, by name (Adam, AdamW, SGD+momentum, RMSprop, Lion from
  :mod:`tf_symbolic_l2o.functional`; the shipped L2O and rules);
* :mod:`.runner`     — LR tuning on selection seeds, final runs on final seeds (both through
  :mod:`tf_symbolic_l2o.harness`), the on-disk run cache;
* :mod:`.records`    — the saved runs (curve + manifest) and ``index.json``;
* :mod:`.metrics`    — per-task metrics and the Dolan–Moré performance profile;
* :mod:`.report`     — plots and the markdown table, rebuilt from the saved curves.

Typical use::

    from tf_symbolic_l2o.benchmark import get_suite, run_benchmark, build_report
    records = run_benchmark(get_suite("smoke"), "runs/benchmark")
    build_report("runs/benchmark")          # also works later, without re-running anything
"""

from tf_symbolic_l2o.benchmark.metrics import check_comparable, performance_profile, task_metrics
from tf_symbolic_l2o.benchmark.optimizers import AdamW, Lion, make_optimizer
from tf_symbolic_l2o.benchmark.records import RunRecord, load_records
from tf_symbolic_l2o.benchmark.report import build_report
from tf_symbolic_l2o.benchmark.runner import BenchmarkRunner, run_benchmark
from tf_symbolic_l2o.benchmark.suite import SUITES, BenchmarkTask, Suite, get_suite

__all__ = [
    "AdamW", "BenchmarkRunner", "BenchmarkTask", "Lion", "RunRecord", "SUITES", "Suite", "build_report",
    "check_comparable", "get_suite", "load_records", "make_optimizer", "performance_profile", "run_benchmark",
    "task_metrics",
]
