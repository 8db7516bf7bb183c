"""Choosing a rule's step gain on a task family (``tfl2o tune-gain``).

The step gain (:class:`~tf_symbolic_l2o.features.StepGain`) has four constants and a start; the optimizee's loss is
not differentiable in the discrete growth and shrink decisions, so they are chosen by a grid search instead of
meta-gradients. Every candidate runs the rule, unchanged but for the gain, on every member of a task family (the
``meta_train`` split, selection seeds) at one or more horizons: fixed step counts, or ``"max"``, each member's
longest declared horizon (a rule must not fall apart after the steps it was chosen on). Its score on a member and
horizon is its final loss (mean of the last 10 % of steps, averaged over the seeds) divided by learning-rate-tuned
Adam's on the same runs, floored at ``ratio_floor`` (beating tuned Adam by more than 1/floor on one member cannot
buy a loss on another: members whose loss goes to zero would otherwise dominate); its family score is the weighted
geometric mean of those ratios (a member's weight split over its horizons), so no member dominates by the scale of
its loss, as the family's ``adam`` normaliser does for meta-training. The lowest family score wins. The rule without
a gain runs on the same members, horizons and seeds as a reference (candidate −1 in the tables): its score says
what the gain buys, and it is never chosen.

A candidate is ``{"up": …, "down": …, "low": …, "high": …, "start": …}``: ``start`` (default 1) scales the rule's
``output_scale``, and ``low`` and ``high`` are relative to the rule's native step, so the candidates share one range.

The written rule also gets a ``size_scale`` (:class:`~tf_symbolic_l2o.rules.Rule`): its reference is the parameter
count of the family's largest member, so the rule keeps the chosen step on models up to the sizes it was chosen on,
and on larger ones takes a step smaller by ``(reference / n) ** size_power`` (μP's 1/width: ``size_power`` 0.5).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from tf_symbolic_l2o.features import StepGain
from tf_symbolic_l2o.rules.rule import MAX_SIZE_POWER, Rule

#: The default candidates (growth/shrink factors at the native start, balanced to shrink-biased), each at every
#: default lower bound.
DEFAULT_CANDIDATES = "1.05/0.95,1.05/0.94,1.05/0.93"
DEFAULT_LOWS = (0.01, 1e-4)
#: Adam's learning rates for the normaliser (best mean final loss on the same seeds).
ADAM_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
#: The default horizons: the training horizon and each member's longest.
DEFAULT_HORIZONS = (200, "max")
#: The default floor of a member's ratio to tuned Adam (more than 10× better counts as 10×).
DEFAULT_RATIO_FLOOR = 0.1
#: The candidate number of the reference, the rule without a gain, in ``ratios.csv`` and ``scores.csv``.
REFERENCE = -1
#: The default exponent of the written rule's size scale (0: none).
DEFAULT_SIZE_POWER = 0.5


def with_gain(rule: Rule, candidate: dict[str, Any] | None) -> Rule:
    """``rule`` with the candidate's gain (``None``: without a gain); ``start`` scales ``output_scale`` and the
    range [low, high] stays relative to the rule's native step."""
    features = {k: v for k, v in rule.features.items() if k != "gain"}
    if candidate is None:
        return rule.replace(features=features)
    gain = dict(candidate)
    start = float(gain.pop("start", 1.0))
    if not (math.isfinite(start) and start > 0):
        raise ValueError(f"a step gain's start must be a positive number, got {start}")
    gain["low"], gain["high"] = gain.get("low", 0.01) / start, gain.get("high", 30.0) / start
    return rule.replace(features={**features, "gain": StepGain.from_config(gain).config()},
                        output_scale=rule.output_scale * start)


@dataclasses.dataclass
class GainSelection:
    """The outcome of :func:`select_step_gain`: ``ratios`` (one row per candidate and member: final loss, Adam's,
    their ratio), ``scores`` (per candidate: family score and worst ratio, best first; the reference, the rule
    without a gain, is candidate −1 without gain constants), the winning candidate's number and constants, the
    rule with its gain, and each member's parameter count."""

    ratios: pd.DataFrame
    scores: pd.DataFrame
    winner: int
    best: dict[str, Any]
    rule: Rule
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)

    def score_of(self, candidate: int) -> pd.Series | None:
        """The ``scores`` row of ``candidate`` (:data:`REFERENCE`: the rule without a gain); ``None`` if it did not
        run."""
        rows = self.scores[self.scores["candidate"] == candidate]
        return rows.iloc[0] if len(rows) else None


def _final_loss(harness, seeds: Sequence[int], steps: int) -> float:
    """The mean over ``seeds`` of each run's final loss (:func:`~tf_symbolic_l2o.meta.evaluate.final_loss`)."""
    from tf_symbolic_l2o.meta.evaluate import final_loss
    from tf_symbolic_l2o.seeds import step_seed

    return float(np.mean([final_loss(harness.run(step_seed(int(seed)), steps).losses) for seed in seeds]))


def member_steps(member: dict, horizons: Sequence[int | str]) -> list[int]:
    """The step counts ``member`` runs at: ``horizons`` with ``"max"`` replaced by the member's longest declared
    horizon (the largest number given when it declares none), without repeats, ascending."""
    from tf_symbolic_l2o.tasks.family import member_horizons

    numbers = [int(h) for h in horizons if h != "max"]
    longest = max(member_horizons(member, numbers or [200]))
    return sorted({longest if h == "max" else int(h) for h in horizons})


def parse_horizons(text: str) -> list[int | str]:
    """``"200,max"`` → ``[200, "max"]``: positive step counts or ``max``; anything else is a one-line error."""
    out: list[int | str] = []
    for item in (p.strip() for p in str(text).split(",")):
        if item == "max":
            out.append(item)
            continue
        try:
            value = int(item)
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(f"horizon {item!r}: write positive step counts or 'max', e.g. 200,max")
        out.append(value)
    return out


def select_step_gain(rule: Rule, family: dict, candidates: Sequence[dict],
                     horizons: Sequence[int | str] = DEFAULT_HORIZONS, seeds: Sequence[int] = (1000, 1001),
                     ratio_floor: float = DEFAULT_RATIO_FLOOR, adam_losses: dict[tuple[str, int], float] | None = None,
                     log: Callable[[str], Any] | None = None, reference: bool = True) -> GainSelection:
    """Grid-search the step gain of ``rule`` on ``family`` (a normalised family spec, see the module docstring).
    ``adam_losses`` (``{(member label, steps): tuned Adam's final loss}``, e.g. :func:`load_adam_losses` of an
    earlier run on the same family, horizons and seeds) skips tuning Adam where it has the value. ``reference``:
    also score the rule without a gain (candidate −1)."""
    import tensorflow as tf

    from tf_symbolic_l2o.functional.registry import make_optimizer
    from tf_symbolic_l2o.harness import Harness, grid_search
    from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
    from tf_symbolic_l2o.tasks.registry import make_task

    log = log or (lambda msg: None)
    if not candidates:
        raise ValueError("give at least one step-gain candidate")
    horizons = parse_horizons(",".join(str(h) for h in horizons)) if horizons else []
    if not horizons or not seeds:
        raise ValueError(f"horizons and seeds must be non-empty, got horizons={list(horizons)}, seeds={list(seeds)}")
    if not (math.isfinite(ratio_floor) and 0 <= ratio_floor < 1):
        raise ValueError(f"the ratio floor must be a number in [0, 1), got {ratio_floor}")
    rules = [with_gain(rule, c) for c in candidates]  # validates every candidate before anything runs
    labelled = list(enumerate(rules)) + ([(REFERENCE, with_gain(rule, None))] if reference else [])
    adam_losses = dict(adam_losses or {})
    missing = [f"{m['label']}@{s}" for m in family["members"] for s in member_steps(m, horizons)
               if (m["label"], s) not in adam_losses]
    if adam_losses and missing:
        raise ValueError(f"the reused Adam losses lack {', '.join(missing)}: reuse a run on the same family and "
                         f"horizons, or tune Adam again (leave out the reuse)")
    rows, sizes = [], {}
    for member in family["members"]:
        task = make_task(member["task"], split="meta_train")
        sizes[member["label"]] = int(task.num_params)
        lr = tf.Variable(1e-3, trainable=False, dtype=tf.float32)
        adam = Harness(task, make_optimizer("adam", lr))
        runs = [(i, Harness(task, RuleOptimizer(r))) for i, r in labelled]
        all_steps = member_steps(member, horizons)
        for steps in all_steps:
            def adam_score(value: float) -> float:
                lr.assign(value)
                return _final_loss(adam, seeds, steps)

            best_adam = adam_losses.get((member["label"], steps))
            if best_adam is None:
                search = grid_search(ADAM_GRID, adam_score, error=f"family member {member['label']!r}: Adam diverged "
                                     f"at every learning rate of {list(ADAM_GRID)}; it cannot normalise it")
                best_adam = search.scores[search.index]
            log(f"{member['label']} ({steps} steps): tuned Adam {best_adam:.4g}")
            for i, harness in runs:
                loss = _final_loss(harness, seeds, steps)
                rows.append({"candidate": i, "member": member["label"], "steps": steps,
                             "weight": float(member.get("weight", 1.0)) / len(all_steps), "final_loss": loss,
                             "adam_final_loss": best_adam, "ratio": loss / best_adam})
                name = "without a gain" if i == REFERENCE else f"candidate {i} {candidates[i]}"
                log(f"{member['label']} ({steps} steps): {name}: {loss:.4g} ({loss / best_adam:.3g}× Adam)")
    ratios = pd.DataFrame(rows)
    scores = []
    for i, g in ratios.groupby("candidate"):
        log_ratio = np.log(np.maximum(g["ratio"].to_numpy(), ratio_floor))
        score = float(np.exp(np.sum(g["weight"] * log_ratio) / g["weight"].sum()))
        constants = {} if i == REFERENCE else candidates[int(i)]
        scores.append({"candidate": int(i), **constants, "family_score": score, "worst_ratio": float(g["ratio"].max())})
    table = pd.DataFrame(scores).sort_values("family_score", kind="stable").reset_index(drop=True)
    table = table[["candidate", *(c for c in table.columns if c not in ("candidate", "family_score", "worst_ratio")),
                   "family_score", "worst_ratio"]]  # the gain constants first (the reference row has none)
    winner = int(table.loc[table["candidate"] != REFERENCE, "candidate"].iloc[0])
    return GainSelection(ratios, table, winner, dict(candidates[winner]), rules[winner], sizes)


def load_adam_losses(path) -> dict[tuple[str, int], float]:
    """Tuned Adam's final losses from an earlier run's ``ratios.csv``: ``{(member, steps): loss}``."""
    try:
        table = pd.read_csv(path)
        pairs = zip(table["member"].astype(str), table["steps"].astype(int), table["adam_final_loss"].astype(float))
        losses = {(m, s): v for m, s, v in pairs}
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not a tune-gain ratios.csv (member, steps, adam_final_loss): {exc}") from None
    if not losses or not all(math.isfinite(v) and v > 0 for v in losses.values()):
        raise ValueError(f"{path}: Adam's final losses must be positive finite numbers")
    return losses


def parse_candidates(text: str, low: float | Sequence[float] = 0.01, high: float = 30.0) -> list[dict[str, float]]:
    """Candidates from ``"UP/DOWN[/START],…"`` (e.g. ``"1.05/0.95,1.05/0.93/0.3"``) with the upper bound ``high``,
    each once per lower bound in ``low`` (a number or a sequence: the grid's product)."""
    out = []
    lows = [float(v) for v in (low if isinstance(low, (list, tuple)) else [low])]
    for item in (p.strip() for p in str(text).split(",")):
        parts = item.split("/")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) not in (2, 3):
            raise ValueError(f"step-gain candidate {item!r}: write UP/DOWN or UP/DOWN/START, e.g. 1.05/0.95")
        for bound in lows:
            candidate = {"up": values[0], "down": values[1], "low": bound, "high": float(high)}
            if len(values) == 3:
                candidate["start"] = values[2]
            out.append(candidate)
    return out


def run_gain_selection(rule, family, out_dir, candidates: Sequence[dict],
                       horizons: Sequence[int | str] = DEFAULT_HORIZONS, seeds: Sequence[int] = (1000, 1001),
                       ratio_floor: float = DEFAULT_RATIO_FLOOR, adam_losses: dict | None = None,
                       log: Callable[[str], Any] | None = None, reference: bool = True,
                       size_power: float = DEFAULT_SIZE_POWER) -> dict:
    """:func:`select_step_gain` for a rule spec (a ``rule.json``, a shipped rule's name) and a family (a name or a
    JSON file), written to ``out_dir``: ``ratios.csv``, ``scores.csv``, ``rule.json`` (the rule with the winning
    gain and, unless ``size_power`` is 0, the size scale of the module docstring) and ``summary.json``, each
    atomically. Returns the summary."""
    from pathlib import Path

    from tf_symbolic_l2o.io import atomic_write_json, atomic_write_text
    from tf_symbolic_l2o.tasks.family import load_family
    from tf_symbolic_l2o.tasks.registry import normalize_task_spec
    from tf_symbolic_l2o.tune.tunable import resolve_rule

    if not (math.isfinite(size_power) and 0 <= size_power <= MAX_SIZE_POWER):  # before the runs, not after
        raise ValueError(f"the size power must be a number in [0, {MAX_SIZE_POWER:g}] (0: no size scale), got "
                         f"{size_power}")
    start = resolve_rule(rule)
    spec = normalize_task_spec(load_family(family))
    result = select_step_gain(start, spec, candidates, horizons, seeds, ratio_floor, adam_losses, log, reference)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ratios.csv", result.ratios.to_csv(index=False))
    atomic_write_text(out / "scores.csv", result.scores.to_csv(index=False))
    best = result.score_of(result.winner)
    size_scale = {"reference": max(result.sizes.values()), "power": float(size_power)} if size_power else None
    tuned = result.rule.replace(size_scale=size_scale, metadata={**start.metadata, "source": "tfl2o tune-gain",
                                          "step_gain_selection": {"family": spec["family"],
                                                                  "horizons": list(horizons),
                                                                  "seeds": [int(s) for s in seeds],
                                                                  "ratio_floor": float(ratio_floor),
                                                                  "family_score": float(best["family_score"])}})
    tuned.save(out / "rule.json")
    summary = {"best": result.best, "family_score": float(best["family_score"]),
               "worst_ratio": float(best["worst_ratio"]), "candidates": len(candidates),
               "members": int(result.ratios["member"].nunique()), "family": spec["family"],
               "horizons": ",".join(str(h) for h in horizons), "ratio_floor": float(ratio_floor),
               "size_scale": "none" if size_scale is None else f"reference {size_scale['reference']:,}, power "
                                                                 f"{size_scale['power']:g}"}
    without = result.score_of(REFERENCE)
    if without is not None:
        summary["without_gain"] = float(without["family_score"])
        summary["without_gain_worst_ratio"] = float(without["worst_ratio"])
    atomic_write_json(out / "summary.json", summary)
    return summary
