"""Benchmark metrics, computed from saved run records only (never by re-running).

Per task and optimizer, over the final seeds:

* ``final_loss_mean/std`` — final training loss: mean of the last 10 % of steps of each run
  (:func:`tf_symbolic_l2o.meta.evaluate.final_loss`), then mean ± std over seeds;
* ``test_metric_mean/std`` — test accuracy (classification) or test loss (other tasks) after the last step;
* ``steps_to_adam50`` / ``steps_to_adam100`` (``_std``, ``_reached``) — per seed, the first step at which the run's
  smoothed curve reaches tuned Adam's targets: the smoothed mean-over-seeds Adam loss at 50 % / 100 % of the budget
  (the smoothed curve at step t is the mean loss over the trailing window of 10 % of the budget, so Adam's value at
  100 % is its final loss); mean ± std over the seeds that reach it, and how many do;
* ``speedup_vs_adam`` (``_std``, ``_reached``) — per seed, the steps Adam's mean curve needs to reach its own final
  loss divided by the run's steps to it (> 1: faster); mean ± std over the seeds that reach it;
* ``divergence_rate`` — fraction of final runs that diverged (:func:`is_diverged`);
* ``ms_per_step`` (``_std``) — wall time per step (compiled rollout, tracing excluded), mean ± std over runs;
* ``state_bytes_per_param`` — optimizer-state bytes per optimized parameter.

Across tasks, :func:`performance_profile` gives the Dolan–Moré profile ρ_s(τ) = fraction of tasks on which solver s
is within a factor τ of the best solver's final loss (diverged = never).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from tf_symbolic_l2o.meta.evaluate import final_loss

#: A run counts as diverged when its curve is not finite or its final loss exceeds this multiple of the first loss.
DIVERGENCE_FACTOR = 10.0

__all__ = ["DIVERGENCE_FACTOR", "check_comparable", "final_loss", "is_diverged", "performance_profile",
           "selection_score", "smoothed", "task_metrics"]


def is_diverged(losses: np.ndarray) -> bool:
    losses = np.asarray(losses, dtype=np.float64)
    if losses.size == 0 or not np.all(np.isfinite(losses)):
        return True
    return bool(final_loss(losses) > DIVERGENCE_FACTOR * max(abs(losses[0]), 1e-12))


def selection_score(losses: np.ndarray) -> float:
    """What LR tuning minimises: the final loss, +∞ for a diverged run."""
    return float("inf") if is_diverged(losses) else final_loss(losses)


def smoothed(curve: np.ndarray) -> np.ndarray:
    """Trailing mean over a window of 10 % of the curve (at least 1 step); position t averages steps ≤ t."""
    curve = np.asarray(curve, dtype=np.float64)
    w = max(1, len(curve) // 10)
    c = np.cumsum(np.insert(curve, 0, 0.0))
    out = np.empty_like(curve)
    for t in range(len(curve)):
        lo = max(0, t + 1 - w)
        out[t] = (c[t + 1] - c[lo]) / (t + 1 - lo)
    return out


def _first_reach(curve: np.ndarray, target: float) -> float:
    if not np.isfinite(target):
        return float("nan")
    hit = np.nonzero(np.isfinite(curve) & (curve <= target))[0]
    return float(hit[0] + 1) if hit.size else float("nan")  # steps taken = index + 1


def check_comparable(records: Sequence) -> None:
    """Raise a one-line ``ValueError`` unless, per task, every optimizer's final runs share one step budget and
    one set of seeds (otherwise curves and means are not comparable)."""
    by_task: dict[str, dict[str, list]] = {}
    for r in records:
        if r.phase == "final":
            by_task.setdefault(r.task, {}).setdefault(r.optimizer, []).append(r)
    for task, per_opt in by_task.items():
        budgets = {o: sorted({int(r.steps) for r in rs}) for o, rs in per_opt.items()}
        if len({tuple(b) for b in budgets.values()}) > 1 or any(len(b) > 1 for b in budgets.values()):
            desc = ", ".join(f"{o}: {'/'.join(map(str, b))}" for o, b in sorted(budgets.items()))
            raise ValueError(f"cannot compare runs on task {task!r}: step budgets differ ({desc}); re-run with one "
                             f"budget")
        seeds = {o: tuple(sorted(int(r.seed) for r in rs)) for o, rs in per_opt.items()}
        if len(set(seeds.values())) > 1 or any(len(set(s)) != len(s) for s in seeds.values()):
            desc = ", ".join(f"{o}: {list(s)}" for o, s in sorted(seeds.items()))
            raise ValueError(f"cannot compare runs on task {task!r}: final seeds differ ({desc}); re-run with one "
                             f"set of seeds")


def _curves(records) -> np.ndarray:
    return np.stack([np.asarray(r.losses, dtype=np.float64) for r in sorted(records, key=lambda r: r.seed)])


def task_metrics(records: Sequence, reference: str = "adam") -> pd.DataFrame:
    """One row per (task, optimizer) from the final-run records (see the module docstring for the columns)."""
    check_comparable(records)
    final = [r for r in records if r.phase == "final"]
    groups: dict[tuple[str, str], list] = {}
    for r in final:
        groups.setdefault((r.task, r.optimizer), []).append(r)
    targets = {}
    for (task, opt), rs in groups.items():
        if opt == reference:
            mean_curve = smoothed(np.mean(_curves(rs), axis=0))
            steps = len(mean_curve)
            t100 = mean_curve[-1]
            targets[task] = (mean_curve[max(0, steps // 2 - 1)], t100, _first_reach(mean_curve, t100))
    rows = []
    for (task, opt), rs in groups.items():
        curves = _curves(rs)
        finals = np.array([final_loss(c) for c in curves])
        diverged = np.array([is_diverged(c) for c in curves])
        test_name = rs[0].test_metric_name
        tests = np.array([r.test.get(test_name, np.nan) for r in rs], dtype=np.float64)
        row = {"task": task, "tier": rs[0].tier, "optimizer": opt, "learning_rate": rs[0].learning_rate,
               "seeds": len(rs), "steps": int(rs[0].steps),
               "final_loss_mean": float(np.mean(finals)), "final_loss_std": float(np.std(finals)),
               "final_loss_by_seed": [float(v) for v in finals],  # in seed order (paired across optimizers)
               "test_metric": test_name,
               "test_metric_mean": float(np.nanmean(tests)) if np.any(np.isfinite(tests)) else float("nan"),
               "test_metric_std": float(np.nanstd(tests)) if np.any(np.isfinite(tests)) else float("nan"),
               "divergence_rate": float(np.mean(diverged)),
               "ms_per_step": 1000.0 * float(np.mean([r.seconds_per_step for r in rs])),
               "state_bytes_per_param": float(rs[0].state_bytes_per_param),
               "num_params": int(rs[0].num_params)}
        row["ms_per_step_std"] = 1000.0 * float(np.std([r.seconds_per_step for r in rs]))
        # per seed: each run's smoothed curve against tuned Adam's targets, then mean ± std over the seeds that
        # reach them (``*_reached`` counts those)
        smooth = [smoothed(c) if np.all(np.isfinite(c)) else None for c in curves]
        if task in targets:
            t50, t100, adam_steps = targets[task]
            s50 = np.array([_first_reach(c, t50) if c is not None else np.nan for c in smooth])
            s100 = np.array([_first_reach(c, t100) if c is not None else np.nan for c in smooth])
            speed = adam_steps / s100
        else:
            s50 = s100 = speed = np.full(len(rs), np.nan)
        for name, values in (("steps_to_adam50", s50), ("steps_to_adam100", s100), ("speedup_vs_adam", speed)):
            ok = np.isfinite(values)
            row[name] = float(np.mean(values[ok])) if ok.any() else float("nan")
            row[f"{name}_std"] = float(np.std(values[ok])) if ok.any() else float("nan")
            row[f"{name}_reached"] = int(ok.sum())
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:  # tiers in protocol order, tasks in suite order, then best final loss first
        from tf_symbolic_l2o.benchmark.suite import TIERS

        task_order = {t: i for i, t in enumerate(dict.fromkeys(r.task for r in final))}
        df["_tier"] = df["tier"].map(lambda t: TIERS.index(t) if t in TIERS else len(TIERS))
        df["_task"] = df["task"].map(task_order)
        df = df.sort_values(["_tier", "_task", "final_loss_mean"], kind="stable").drop(columns=["_tier", "_task"])
        df = df.reset_index(drop=True)
    return df


def performance_profile(metrics: pd.DataFrame, measure: str = "final_loss_mean",
                        taus: Sequence[float] | None = None, floor: float = 1e-12) -> pd.DataFrame:
    """Dolan–Moré performance profile: a frame with column ``tau`` and one column per optimizer holding ρ_s(τ).

    The cost of solver s on task p is ``metrics[measure]`` (lower is better; a run set with any divergence, or a
    non-finite cost, never solves the task), floored at ``floor`` so that exact zeros stay comparable;
    r_{p,s} = cost / min_s cost and ρ_s(τ) = |{p : r_{p,s} ≤ τ}| / |tasks|.
    """
    if metrics.empty:
        raise ValueError("no metrics to build a performance profile from")
    cost = metrics.pivot(index="task", columns="optimizer", values=measure).astype(float)
    if "divergence_rate" in metrics:
        div = metrics.pivot(index="task", columns="optimizer", values="divergence_rate")
        cost = cost.where(div.reindex_like(cost).fillna(1.0) <= 0.0)
    cost = cost.where(np.isfinite(cost)).clip(lower=floor)
    best = cost.min(axis=1, skipna=True)
    ratio = cost.div(best, axis=0).fillna(np.inf)
    if taus is None:
        finite = ratio.to_numpy()[np.isfinite(ratio.to_numpy())]
        hi = max(2.0, float(finite.max()) * 1.05) if finite.size else 2.0
        taus = np.unique(np.concatenate([[1.0], np.logspace(0, np.log10(hi), 200)]))
    taus = np.asarray(taus, dtype=np.float64)
    prof = {"tau": taus}
    for opt in ratio.columns:
        r = ratio[opt].to_numpy()
        prof[opt] = [(r <= t).mean() for t in taus]
    return pd.DataFrame(prof)


def profile_by_seed(metrics: pd.DataFrame, taus: Sequence[float]) -> pd.DataFrame:
    """ρ_s(τ) at the given τ computed separately for each final seed (each seed's final losses; the seeds are
    paired across optimizers), then mean and std over the seeds: columns ``optimizer``, ``tau``, ``mean``, ``std``."""
    n = int(metrics["seeds"].min())
    per_seed = [performance_profile(metrics.assign(_seed=[losses[k] for losses in metrics["final_loss_by_seed"]]),
                                    measure="_seed", taus=taus).drop(columns="tau") for k in range(n)]
    optimizers = list(per_seed[0].columns)  # the same pivot, so the same column order for every seed
    stack = np.stack([p.to_numpy() for p in per_seed])  # [seed, tau, optimizer]
    rows = [{"optimizer": opt, "tau": float(t), "mean": float(stack[:, i, j].mean()), "std": float(stack[:, i, j].std())}
            for j, opt in enumerate(optimizers) for i, t in enumerate(taus)]
    return pd.DataFrame(rows)
