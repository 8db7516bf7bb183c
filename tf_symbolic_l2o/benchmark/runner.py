"""Runs a suite: learning-rate tuning on selection seeds, final runs on final seeds, with an on-disk run cache.

Protocol, per task:

1. every tuned optimizer runs each point of its learning-rate grid on the suite's *selection* seeds (on the
   ``tune_split`` of the data); the learning rate with the lowest mean final loss wins (a diverged run scores +∞);
2. it then runs the winning learning rate on the *final* seeds (on the ``final_split``); learned and symbolic
   optimizers run untuned, on the same final seeds;
3. seed s gives every optimizer the same initial parameters (``step_seed(s, INIT)``) and the same minibatch stream
   (``step_seed(s, BATCHES)``; :mod:`tf_symbolic_l2o.seeds`).

Every run is saved as ``runs/<task>/<optimizer>/<phase>/lr=<lr>/seed=<s>.npz`` (the loss curve) beside a JSON
manifest (task, optimizer, learning rate, seed, steps, split, test metrics, wall time, state size and a
*fingerprint*: a SHA-256 of the numerically relevant library sources, the task and optimizer configuration, the
shipped optimizer's weights or rule, the seed and the budget). A run whose manifest carries the same fingerprint is
loaded instead of re-run, so a second call costs nothing unless the code or the configuration changed.
``index.json`` lists the runs of the last call (and the suite), which is what the report is rebuilt from.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import tensorflow as tf

from tf_symbolic_l2o.benchmark.metrics import selection_score
from tf_symbolic_l2o.benchmark.optimizers import artifact_digest, is_tunable, make_optimizer, state_bytes_per_param
from tf_symbolic_l2o.benchmark.records import INDEX, RunRecord, load_record, run_path
from tf_symbolic_l2o.benchmark.report import build_report
from tf_symbolic_l2o.benchmark.suite import BenchmarkTask, Suite
from tf_symbolic_l2o.harness import Harness, grid_search
from tf_symbolic_l2o.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from tf_symbolic_l2o.seeds import step_seed

_PACKAGE = Path(__file__).resolve().parents[1]
#: Library sources whose changes invalidate cached runs (metrics and report code do not: they never change a curve).
FINGERPRINT_SOURCES = ("baselines.py", "features.py", "data.py", "seeds.py", "harness.py", "functional", "tasks",
                       "meta/unroll.py", "rules", "learned", "benchmark/tasks.py", "benchmark/suite.py",
                       "benchmark/optimizers.py", "benchmark/runner.py")


def code_fingerprint() -> str:
    """SHA-256 over the library sources listed in :data:`FINGERPRINT_SOURCES` (path and content)."""
    h = hashlib.sha256()
    for rel in FINGERPRINT_SOURCES:
        p = _PACKAGE / rel
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                h.update(str(f.relative_to(_PACKAGE)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


class _Executor:
    """Builds, lazily, the optimizer and its :class:`~tf_symbolic_l2o.harness.Harness` for one (task instance,
    optimizer name), traced before the first timed run; a tuned optimizer's learning rate is a ``tf.Variable`` so
    that the grid is swept without retracing."""

    def __init__(self, task, name: str, tunable: bool):
        self.task, self.name, self.tunable = task, name, tunable
        self._built = None

    def _build(self):
        lr_var = tf.Variable(1e-3, trainable=False, dtype=tf.float32) if self.tunable else None
        opt = make_optimizer(self.name, lr_var)
        harness = Harness(self.task, opt)
        harness.warm_up()
        self._built = (lr_var, harness, state_bytes_per_param(opt, self.task.num_params))
        return self._built

    def run(self, lr: float | None, seed: int, steps: int, with_test: bool):
        """``(losses, test metrics, seconds, state bytes per parameter)`` of one run from ``step_seed(seed)``."""
        lr_var, harness, state_bytes = self._built or self._build()
        if lr_var is not None:
            lr_var.assign(float(lr))
        run = harness.run(step_seed(int(seed)), steps, test=with_test)
        return run.losses, run.test, run.seconds, state_bytes


class BenchmarkRunner:
    """Runs ``suite`` into ``out_dir`` (see the module docstring).

    Args:
        suite: the suite.
        out_dir: the output folder (runs/, index.json, tuning.csv; the report goes beside them).
        log: a callable taking one progress line (``None``: silent).

    Attributes:
        executed, reused: how many runs were computed and how many were loaded from the cache by :meth:`run`.
    """

    def __init__(self, suite: Suite, out_dir: str | Path, log: Callable[[str], Any] | None = None):
        self.suite, self.out_dir = suite, Path(out_dir)
        self.log = log or (lambda msg: None)
        self.executed = 0
        self.reused = 0
        self.records: list[RunRecord] = []
        self._code = code_fingerprint()
        self._digests: dict[str, str] = {}

    # -- cache ----------------------------------------------------------------------------------------------------
    def fingerprint(self, bt: BenchmarkTask, task_config: dict, optimizer: str, lr: float | None, seed: int,
                    split: str) -> str:
        if optimizer not in self._digests:
            self._digests[optimizer] = artifact_digest(optimizer)
        key = {"code": self._code, "benchmark_task": bt.config(), "task": task_config, "optimizer": optimizer,
               "artifact": self._digests[optimizer], "learning_rate": None if lr is None else float(lr),
               "seed": int(seed), "steps": int(bt.steps), "split": split}
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def _cached(self, stem: Path, fingerprint: str) -> RunRecord | None:
        if not (stem.with_suffix(".json").is_file() and stem.with_suffix(".npz").is_file()):
            return None
        try:
            rec = load_record(stem)
        except (ValueError, FileNotFoundError):
            return None
        return rec if rec.fingerprint == fingerprint else None

    def _run_one(self, bt: BenchmarkTask, task, executor: _Executor, phase: str, lr: float | None, seed: int,
                 split: str) -> RunRecord:
        stem = run_path(self.out_dir, bt.name, executor.name, phase, lr, seed)
        fp = self.fingerprint(bt, task.config(), executor.name, lr, seed, split)
        rec = self._cached(stem, fp)
        if rec is not None:
            self.reused += 1
            return rec
        losses, test, seconds, state_bytes = executor.run(lr, seed, bt.steps, with_test=phase == "final")
        rec = RunRecord(task=bt.name, tier=bt.tier, optimizer=executor.name, phase=phase,
                        learning_rate=None if lr is None else float(lr), seed=int(seed), steps=int(bt.steps),
                        split=split, losses=np.asarray(losses, np.float32), test=test,
                        test_metric_name="test_accuracy" if task.has_accuracy else "test_loss",
                        seconds=float(seconds), seconds_per_step=float(seconds) / bt.steps,
                        state_bytes_per_param=float(state_bytes), num_params=int(task.num_params), fingerprint=fp,
                        path=str(stem))
        buf = io.BytesIO()
        np.savez(buf, losses=rec.losses)
        atomic_write_bytes(stem.with_suffix(".npz"), buf.getvalue())
        atomic_write_json(stem.with_suffix(".json"), rec.manifest())
        self.executed += 1
        return rec

    # -- protocol -------------------------------------------------------------------------------------------------
    def _tune(self, bt: BenchmarkTask, task, executor: _Executor, records: list, tuning_rows: list) -> float:
        """The learning rate of ``executor``'s optimizer chosen on the selection seeds (:func:`grid_search`: the
        lowest mean final loss; when every grid point diverged, the smallest learning rate, whose final runs will
        show it); its runs go to ``records``, the grid to ``tuning_rows``."""
        s = self.suite

        def score(lr: float) -> float:
            recs = [self._run_one(bt, task, executor, "selection", lr, seed, s.tune_split if bt.has_split else "-")
                    for seed in s.selection_seeds]
            records.extend(recs)
            mean = float(np.mean([selection_score(r.losses) for r in recs]))
            tuning_rows.append({"task": bt.name, "optimizer": executor.name, "learning_rate": lr,
                                "mean_final_loss": mean, "selection_seeds": len(recs)})
            return mean

        search = grid_search(s.lr_grids[executor.name], score, if_all_diverged="smallest")
        edge = " (at the edge of the grid)" if search.at_edge else ""
        self.log(f"{bt.name}: {executor.name} tuned learning rate {search.learning_rate:g}{edge}")
        return search.learning_rate

    def run(self) -> list[RunRecord]:
        """Tune, run, save; returns every record (selection and final) and writes ``index.json``/``tuning.csv``."""
        s = self.suite
        self.out_dir.mkdir(parents=True, exist_ok=True)
        records: list[RunRecord] = []
        tuning_rows = []
        for bt in s.tasks:
            t0 = time.perf_counter()
            tune_task = bt.build(s.tune_split)
            final_task = bt.build(s.final_split) if bt.has_split else tune_task
            for name in s.optimizers:
                tunable = is_tunable(name)
                ex_tune = _Executor(tune_task, name, tunable)
                ex_final = _Executor(final_task, name, tunable) if final_task is not tune_task else ex_tune
                lr = self._tune(bt, tune_task, ex_tune, records, tuning_rows) if tunable else None
                finals = [self._run_one(bt, final_task, ex_final, "final", lr, seed,
                                        s.final_split if bt.has_split else "-") for seed in s.final_seeds]
                records += finals
                fl = [r.final_loss for r in finals]
                n_div = sum(r.diverged for r in finals)
                self.log(f"{bt.name}: {name} final loss {np.mean(fl):.4g}"
                         f"{' ± %.2g' % np.std(fl) if len(fl) > 1 else ''}{' (%d diverged)' % n_div if n_div else ''}")
            self.log(f"{bt.name}: done in {time.perf_counter() - t0:.1f} s")
        stems = [str(Path(r.path).relative_to(self.out_dir)) for r in records]
        tuning = pd.DataFrame(tuning_rows, columns=["task", "optimizer", "learning_rate", "mean_final_loss",
                                                    "selection_seeds"])
        atomic_write_text(self.out_dir / "tuning.csv", tuning.to_csv(index=False))
        atomic_write_json(self.out_dir / INDEX, {"suite": s.config(), "runs": stems,
                                                 "executed": self.executed, "reused": self.reused})
        self.records = records
        return records


def run_benchmark(suite: Suite, out_dir: str | Path, log: Callable[[str], Any] | None = None,
                  report: bool = True) -> BenchmarkRunner:
    """Run (or load from the cache) every run of ``suite`` into ``out_dir``; with ``report`` also write the report
    (:func:`tf_symbolic_l2o.benchmark.report.build_report`). Returns the runner: ``.records`` (every run),
    ``.executed`` and ``.reused`` (runs computed / loaded from the cache)."""
    runner = BenchmarkRunner(suite, out_dir, log)
    records = runner.run()
    if log:
        log(f"{runner.executed} runs computed, {runner.reused} loaded from the cache")
    if report:
        build_report(out_dir, records=records, suite_config=suite.config())
    return runner

