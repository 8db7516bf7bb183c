"""Evaluation of optimizers on held-out optimizee runs, against learning-rate-tuned baselines.

Protocol (the paper's, made fair):

1. Each baseline (Adam, RMSprop, SGD+momentum by default) gets its learning rate tuned on a log grid, on the
   *meta-training* split, over ``tune_runs`` runs of the same horizon; the grid point with the lowest mean final
   loss wins (diverged runs count as +∞).
2. Every optimizer — the learned one untuned — then runs ``n_runs`` fresh initialisations on the *evaluation* split;
   run i uses the same initial parameters and the same minibatch sequence for every optimizer.
3. Reported per optimizer: the loss curve (mean ± std over runs), the final loss (mean of the last 10 % of steps of
   each run, then mean ± std over runs) and, where the task has one, test accuracy after the last step.

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

from tf_symbolic_l2o.baselines import BASELINES, Baseline
from tf_symbolic_l2o.io import atomic_directory
from tf_symbolic_l2o.meta.unroll import make_rollout
from tf_symbolic_l2o.seeds import BATCHES, EVALUATION, INIT, LR_TUNING, step_seed
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
        self._rollouts: dict[int, Any] = {}

    def _rollout_fn(self, optimizer):
        key = id(optimizer)
        if key not in self._rollouts:
            self._rollouts[key] = (optimizer, make_rollout(self.task, optimizer, jit_compile=False))
        return self._rollouts[key][1]

    def run(self, optimizer, n_runs: int, label: str | None = None, metrics: bool = True) -> RunResult:
        """``n_runs`` runs of ``optimizer`` (any CoordinateOptimizer)."""
        if n_runs <= 0:
            raise ValueError(f"the number of runs must be positive, got {n_runs}")
        fn = self._rollout_fn(optimizer)
        losses, accs, tlosses = [], [], []
        for i in range(n_runs):
            seed = step_seed(self.seed, self.stream, i)
            theta = self.task.flatten(self.task.init_params(step_seed(seed, INIT)))
            theta, _, curve = fn(theta, optimizer.init_state(self.num_coords), step_seed(seed, BATCHES),
                                 tf.ones([self.num_coords]), tf.constant(0), tf.constant(self.steps))
            losses.append(curve.numpy())
            ev = self.task.evaluate(self.task.unflatten(theta)) if metrics else {}
            accs.append(ev.get("test_accuracy", np.nan))
            tlosses.append(ev.get("test_loss", np.nan))
        return RunResult(label or getattr(optimizer, "name", "optimizer"), np.stack(losses), np.array(accs),
                         np.array(tlosses))


def tune_learning_rate(task: Task, kind: str, steps: int, grid: Sequence[float] = DEFAULT_LR_GRID,
                       runs: int = 2, seed: int = 0) -> tuple[float, pd.DataFrame]:
    """Pick the grid learning rate of baseline ``kind`` with the lowest mean final loss on ``task``."""
    if not grid:
        raise ValueError("the learning-rate grid is empty")
    lr_var = tf.Variable(float(grid[0]), trainable=False, dtype=tf.float32)
    opt = Baseline(kind, lr_var)
    ev = Evaluator(task, steps, seed, stream=LR_TUNING)
    rows = []
    for lr in grid:
        lr_var.assign(float(lr))
        res = ev.run(opt, runs, metrics=False)
        rows.append({"optimizer": kind, "learning_rate": float(lr), "mean_final_loss": float(np.mean(res.finals))})
    table = pd.DataFrame(rows)
    finite = table[np.isfinite(table["mean_final_loss"])]
    if finite.empty:
        raise ValueError(f"every learning rate of the grid diverged for {kind}; pass a grid with smaller values")
    best = float(finite.loc[finite["mean_final_loss"].idxmin(), "learning_rate"])
    return best, table


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
        res = evaluator.run(Baseline(kind, lr), n_runs, f"{kind}(lr={lr:g})")
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
        fig.savefig(tmp / "loss_curves.png", dpi=120)
        plt.close(fig)
    return summary
