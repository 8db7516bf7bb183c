"""Evaluation of optimizers on held-out optimizee runs, against learning-rate-tuned baselines.

Protocol (the paper's, made fair):

1. Each baseline (Adam, RMSprop, SGD+momentum by default) gets its learning rate tuned on a log grid, on the
   *meta-training* split, over ``tune_runs`` runs of the same horizon; the grid point with the lowest mean final
   loss wins (diverged runs count as +∞).
2. Every optimizer — the learned one untuned — then runs ``n_runs`` fresh initialisations on the *evaluation* split;
   run i uses the same initial parameters and the same minibatch sequence for every optimizer.
3. Reported per optimizer: the loss curve (mean ± std over runs), the final loss (mean of the last 10 % of steps of
   each run, then mean ± std over runs) and, where the task has one, test accuracy after the last step (NaN for a
   run whose parameters are no longer finite).

Runs and the grid search are those of :mod:`tf_symbolic_l2o.harness`.

Outputs (``write_report``): ``curves.csv`` (step, optimizer, mean, std), ``final.csv`` (one row per optimizer and
run), ``summary.csv`` / ``summary.md`` (the table), ``tuning.csv`` (the grid) and ``loss_curves.png``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tf_symbolic_l2o.baselines import BASELINES
from tf_symbolic_l2o.functional.registry import make_optimizer
from tf_symbolic_l2o.harness import Harness, grid_search
from tf_symbolic_l2o.io import atomic_directory, atomic_write_bytes, figure_png
from tf_symbolic_l2o.seeds import EVALUATION, LR_TUNING, step_seed
from tf_symbolic_l2o.tasks.base import Task

DEFAULT_LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DEFAULT_BASELINES = ("adam", "rmsprop", "momentum")


def final_loss(losses: np.ndarray) -> float:
    """Mean of the last 10 % of a loss curve (at least one step); +∞ if the run diverged."""
    losses = np.asarray(losses, dtype=np.float64)
    if not np.all(np.isfinite(losses)):
        return float("inf")
    tail = max(1, len(losses) // 10)
    return float(np.mean(losses[-tail:]))


@dataclasses.dataclass
class RunResult:
    optimizer: str
    losses: np.ndarray          # [n_runs, steps]
    test_accuracy: np.ndarray   # [n_runs] (NaN where the task has none)
    test_loss: np.ndarray       # [n_runs]
    learning_rate: float | None = None

    @property
    def finals(self) -> np.ndarray:
        return np.array([final_loss(r) for r in self.losses])


class Evaluator:
    """Runs optimizers on a task from shared initialisations.

    Args:
        task: the optimizee on the split to run on.
        steps: steps per run.
        seed: base seed; run i uses ``(seed, stream, i)``.
        stream: a seed stream id so that tuning and evaluation runs never share initialisations.
    """

    def __init__(self, task: Task, steps: int, seed: int = 0, stream: int = EVALUATION):
        if steps <= 0:
            raise ValueError(f"steps must be positive, got {steps}")
        self.task, self.steps, self.seed, self.stream = task, int(steps), int(seed), stream
        self.num_coords = task.num_params
        self._harnesses: dict[int, Harness] = {}

    def harness(self, optimizer) -> Harness:
        """The (cached) harness of ``optimizer`` on this evaluator's task."""
        key = id(optimizer)
        if key not in self._harnesses:
            self._harnesses[key] = Harness(self.task, optimizer)
        return self._harnesses[key]

    def run(self, optimizer, n_runs: int, label: str | None = None, metrics: bool = True) -> RunResult:
        """``n_runs`` runs of ``optimizer`` (any CoordinateOptimizer); run i from ``step_seed(seed, stream, i)``."""
        if n_runs <= 0:
            raise ValueError(f"the number of runs must be positive, got {n_runs}")
        harness = self.harness(optimizer)
        losses, accs, tlosses = [], [], []
        for i in range(n_runs):
            run = harness.run(step_seed(self.seed, self.stream, i), self.steps, test=metrics)
            losses.append(run.losses)
            accs.append(run.test.get("test_accuracy", np.nan))
            tlosses.append(run.test.get("test_loss", np.nan))
        return RunResult(label or getattr(optimizer, "name", "optimizer"), np.stack(losses), np.array(accs),
                         np.array(tlosses))


def tune_learning_rate(task: Task, kind: str, steps: int, grid: Sequence[float] = DEFAULT_LR_GRID,
                       runs: int = 2, seed: int = 0) -> tuple[float, pd.DataFrame]:
    """Pick the grid learning rate of baseline ``kind`` with the lowest mean final loss on ``task`` (ties: the
    first grid point); raises ``ValueError`` when every grid point diverged. Returns it and the grid's table."""
    lr_var = tf.Variable(1e-3, trainable=False, dtype=tf.float32)  # set to each grid point by score()
    opt = make_optimizer(kind, lr_var)
    ev = Evaluator(task, steps, seed, stream=LR_TUNING)
    rows = []

    def score(lr: float) -> float:
        lr_var.assign(lr)
        mean_final = float(np.mean(ev.run(opt, runs, metrics=False).finals))
        rows.append({"optimizer": kind, "learning_rate": lr, "mean_final_loss": mean_final})
        return mean_final

    search = grid_search(grid, score, if_all_diverged="raise",
                         error=f"every learning rate of the grid diverged for {kind}; pass a grid with smaller values")
    return search.learning_rate, pd.DataFrame(rows)


def evaluate_optimizers(learned: dict[str, Any], tune_task: Task, eval_task: Task, steps: int, n_runs: int = 5,
                        baselines: Sequence[str] = DEFAULT_BASELINES, lr_grid: Sequence[float] = DEFAULT_LR_GRID,
                        tune_runs: int = 2, seed: int = 0, log=None) -> tuple[list[RunResult], pd.DataFrame]:
    """Evaluate untuned ``learned`` optimizers ({label: optimizer}) and tuned ``baselines`` on ``eval_task``."""
    log = log or (lambda msg: None)
    for b in baselines:
        if b not in BASELINES:
            raise ValueError(f"unknown baseline {b!r}; use {', '.join(BASELINES)}")
    evaluator = Evaluator(eval_task, steps, seed)
    results, tuning = [], []
    for label, opt in learned.items():
        log(f"evaluating {label}")
        results.append(evaluator.run(opt, n_runs, label))
    for kind in baselines:
        lr, table = tune_learning_rate(tune_task, kind, steps, lr_grid, tune_runs, seed)
        tuning.append(table)
        log(f"{kind}: tuned learning rate {lr:g}")
        res = evaluator.run(make_optimizer(kind, lr), n_runs, f"{kind}(lr={lr:g})")
        res.learning_rate = lr
        results.append(res)
    return results, (pd.concat(tuning, ignore_index=True) if tuning else pd.DataFrame())


def summarize(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per optimizer: final loss and test accuracy, mean ± std over runs."""
    rows = []
    for r in results:
        finals = r.finals
        rows.append({"optimizer": r.optimizer, "runs": len(finals),
                     "final_loss_mean": float(np.mean(finals)), "final_loss_std": float(np.std(finals)),
                     "test_accuracy_mean": float(np.nanmean(r.test_accuracy)) if np.any(
                         np.isfinite(r.test_accuracy)) else float("nan"),
                     "test_accuracy_std": float(np.nanstd(r.test_accuracy)) if np.any(
                         np.isfinite(r.test_accuracy)) else float("nan"),
                     "diverged_runs": int(np.sum(~np.isfinite(finals)))})
    return pd.DataFrame(rows)


def _markdown(summary: pd.DataFrame) -> str:
    lines = ["| optimizer | final loss (mean ± std) | test accuracy (mean ± std) | runs |", "|---|---|---|---|"]
    for _, r in summary.iterrows():
        acc = "—" if np.isnan(r.test_accuracy_mean) else \
            f"{100 * r.test_accuracy_mean:.2f} % ± {100 * r.test_accuracy_std:.2f}"
        lines.append(f"| {r.optimizer} | {r.final_loss_mean:.4f} ± {r.final_loss_std:.4f} | {acc} | {r.runs} |")
    return "\n".join(lines) + "\n"


def write_report(results: Sequence[RunResult], tuning: pd.DataFrame, out_dir: str | Path,
                 title: str = "evaluation") -> pd.DataFrame:
    """Write curves, per-run finals, the summary table (CSV + markdown), the tuning grid and a PNG plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(results)
    with atomic_directory(out_dir) as tmp:
        curves = []
        for r in results:
            steps = np.arange(r.losses.shape[1])
            curves.append(pd.DataFrame({"step": steps, "optimizer": r.optimizer, "mean": r.losses.mean(0),
                                        "std": r.losses.std(0)}))
        pd.concat(curves).to_csv(tmp / "curves.csv", index=False)
        finals = [{"optimizer": r.optimizer, "run": i, "final_loss": f, "test_accuracy": a, "test_loss": tl}
                  for r in results for i, (f, a, tl) in enumerate(zip(r.finals, r.test_accuracy, r.test_loss))]
        pd.DataFrame(finals).to_csv(tmp / "final.csv", index=False)
        summary.to_csv(tmp / "summary.csv", index=False)
        (tmp / "summary.md").write_text(_markdown(summary), encoding="utf-8")
        tuning.to_csv(tmp / "tuning.csv", index=False)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in results:
            mean, std = r.losses.mean(0), r.losses.std(0)
            x = np.arange(len(mean))
            ax.plot(x, mean, label=r.optimizer)
            ax.fill_between(x, np.maximum(mean - std, 1e-8), mean + std, alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (minibatch)")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        atomic_write_bytes(tmp / "loss_curves.png", figure_png(fig, dpi=120))
    return summary
