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

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tf_symbolic_l2o.benchmark.metrics import final_loss, is_diverged, selection_score
from tf_symbolic_l2o.benchmark.suite import BenchmarkTask, Suite
from tf_symbolic_l2o.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

INDEX = "index.json"
PHASES = ("selection", "final")
_PACKAGE = Path(__file__).resolve().parents[1]
#: Library sources whose changes invalidate cached runs (metrics and report code do not: they never change a curve).
FINGERPRINT_SOURCES = ("baselines.py", "features.py", "data.py", "tasks", "meta/unroll.py", "rules", "learned",
                       "benchmark/tasks.py", "benchmark/suite.py", "benchmark/optimizers.py", "benchmark/runner.py")


@dataclasses.dataclass
class RunRecord:
    """One saved run (the manifest's fields plus the loss curve)."""

    task: str
    tier: str
    optimizer: str
    phase: str
    learning_rate: float | None
    seed: int
    steps: int
    split: str
    losses: np.ndarray
    test: dict
    test_metric_name: str
    seconds: float
    seconds_per_step: float
    state_bytes_per_param: float
    num_params: int
    fingerprint: str
    path: str = ""

    @property
    def final_loss(self) -> float:
        return final_loss(self.losses)

    @property
    def diverged(self) -> bool:
        return is_diverged(self.losses)

    def manifest(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("losses")
        d.pop("path")
        d.update(final_loss=self.final_loss, diverged=self.diverged)
        return d


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


def _lr_dir(lr: float | None) -> str:
    return "lr=untuned" if lr is None else f"lr={lr:.3g}"


def run_path(out_dir: str | Path, task: str, optimizer: str, phase: str, lr: float | None, seed: int) -> Path:
    """Where a run's curve (``.npz``) and manifest (``.json``, same stem) live."""
    return Path(out_dir) / "runs" / task / optimizer / phase / _lr_dir(lr) / f"seed={int(seed)}"


def load_record(stem: str | Path) -> RunRecord:
    """A saved run from its path stem (without extension)."""
    stem = Path(stem)
    m = read_json(stem.with_suffix(".json"), "run manifest")
    try:
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
            losses = np.asarray(z["losses"])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read run curve {stem.with_suffix('.npz')} ({e}); delete it to re-run") from None
    fields = {f.name for f in dataclasses.fields(RunRecord)} - {"losses", "path"}
    missing = fields - set(m)
    if missing:
        raise ValueError(f"run manifest {stem.with_suffix('.json')} lacks {sorted(missing)}; delete it to re-run")
    return RunRecord(losses=losses, path=str(stem), **{k: m[k] for k in fields})


def load_records(out_dir: str | Path) -> tuple[list[RunRecord], dict]:
    """The runs listed in ``out_dir/index.json`` (relative stems) and the suite configuration stored there."""
    out_dir = Path(out_dir)
    index = read_json(out_dir / INDEX, "benchmark index (run the benchmark first)")
    try:
        stems, suite = index["runs"], index["suite"]
    except (KeyError, TypeError):
        raise ValueError(f"{out_dir / INDEX} is not a benchmark index; delete it and re-run") from None
    return [load_record(out_dir / s) for s in stems], suite


class _Executor:
    """Builds, lazily, the optimizer and the compiled rollout for one (task instance, optimizer name); a tuned
    optimizer's learning rate is a ``tf.Variable`` so that the grid is swept without retracing."""

    def __init__(self, task, name: str, tunable: bool):
        self.task, self.name, self.tunable = task, name, tunable
        self._built = None

    def _build(self):
        import tensorflow as tf

        from tf_symbolic_l2o.benchmark.optimizers import init_state, make_optimizer, state_bytes_per_param
        from tf_symbolic_l2o.meta.unroll import make_rollout
        from tf_symbolic_l2o.seeds import BATCHES, INIT, step_seed

        lr_var = tf.Variable(1e-3, trainable=False, dtype=tf.float32) if self.tunable else None
        opt = make_optimizer(self.name, lr_var)
        fn = make_rollout(self.task, opt, jit_compile=False)
        n = self.task.num_params
        theta = self.task.flatten(self.task.init_params(step_seed(0, INIT)))
        fn(theta, init_state(opt, n, theta), step_seed(0, BATCHES), tf.ones([n]), tf.constant(0), tf.constant(1))  # trace
        self._built = (lr_var, opt, fn, state_bytes_per_param(opt, n))
        return self._built

    def run(self, lr: float | None, seed: int, steps: int, with_test: bool):
        import tensorflow as tf

        from tf_symbolic_l2o.benchmark.optimizers import init_state
        from tf_symbolic_l2o.seeds import BATCHES, INIT, step_seed

        lr_var, opt, fn, state_bytes = self._built or self._build()
        if lr_var is not None:
            lr_var.assign(float(lr))
        task, n = self.task, self.task.num_params
        base = step_seed(int(seed))
        theta = task.flatten(task.init_params(step_seed(base, INIT)))
        state = init_state(opt, n, theta)
        t0 = time.perf_counter()
        theta, _, curve = fn(theta, state, step_seed(base, BATCHES), tf.ones([n]), tf.constant(0), tf.constant(int(steps)))
        losses = curve.numpy()
        seconds = time.perf_counter() - t0
        test = {}
        if with_test:
            if bool(tf.reduce_all(tf.math.is_finite(theta))):
                test = {k: float(v) for k, v in task.evaluate(task.unflatten(theta)).items()}
            else:
                test = {"test_loss": float("nan")} | ({"test_accuracy": float("nan")} if task.has_accuracy else {})
        return losses, test, seconds, state_bytes


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
        from tf_symbolic_l2o.benchmark.optimizers import artifact_digest

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
        import io

        buf = io.BytesIO()
        np.savez(buf, losses=rec.losses)
        atomic_write_bytes(stem.with_suffix(".npz"), buf.getvalue())
        atomic_write_json(stem.with_suffix(".json"), rec.manifest())
        self.executed += 1
        return rec

    # -- protocol -------------------------------------------------------------------------------------------------
    def run(self) -> list[RunRecord]:
        """Tune, run, save; returns every record (selection and final) and writes ``index.json``/``tuning.csv``."""
        import pandas as pd

        from tf_symbolic_l2o.benchmark.optimizers import is_tunable

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
                lr = None
                if tunable:
                    scores = []
                    for grid_lr in s.lr_grids[name]:
                        recs = [self._run_one(bt, tune_task, ex_tune, "selection", float(grid_lr), seed,
                                              s.tune_split if bt.has_split else "-")
                                for seed in s.selection_seeds]
                        records += recs
                        score = float(np.mean([selection_score(r.losses) for r in recs]))
                        scores.append(score)
                        tuning_rows.append({"task": bt.name, "optimizer": name, "learning_rate": float(grid_lr),
                                            "mean_final_loss": score, "selection_seeds": len(recs)})
                    finite = [i for i, sc in enumerate(scores) if np.isfinite(sc)]
                    # every grid point diverged: keep the smallest learning rate (its final runs will show it)
                    best = min(finite, key=lambda i: scores[i]) if finite else \
                        int(np.argmin(s.lr_grids[name]))
                    lr = float(s.lr_grids[name][best])
                    edge = " (at the edge of the grid)" if finite and best in (0, len(scores) - 1) else ""
                    self.log(f"{bt.name}: {name} tuned learning rate {lr:g}{edge}")
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
        from tf_symbolic_l2o.benchmark.report import build_report

        build_report(out_dir, records=records, suite_config=suite.config())
    return runner


def final_records(records: Sequence[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.phase == "final"]
