"""Choosing a rule's step gain on a task family (``tfl2o tune-gain``).

The step gain (:class:`~tf_symbolic_l2o.features.StepGain`) has four constants and a start; the optimizee's loss is
not differentiable in the discrete growth and shrink decisions, so they are chosen by a grid search instead of
meta-gradients. Every candidate runs the rule, unchanged but for the gain, on every member of a task family (the
``meta_train`` split, selection seeds, a fixed step budget); its score on a member is its final loss (mean of the
last 10 % of steps, averaged over the seeds) divided by learning-rate-tuned Adam's on the same member, and its
family score is the weighted geometric mean of those ratios (so no member dominates by the scale of its loss, as
the family's ``adam`` normaliser does for meta-training). The candidate with the lowest family score wins.

A candidate is ``{"up": …, "down": …, "low": …, "high": …, "start": …}``: ``start`` (default 1) scales the rule's
``output_scale``, and ``low`` and ``high`` are relative to the rule's native step, so the candidates share one range.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from tf_symbolic_l2o.features import StepGain
from tf_symbolic_l2o.rules.rule import Rule

#: The default candidates: balanced and shrink-biased growth/shrink factors at the native start.
DEFAULT_CANDIDATES = (
    {"up": 1.03, "down": 0.97, "low": 0.01, "high": 30.0},
    {"up": 1.05, "down": 0.95, "low": 0.01, "high": 30.0},
    {"up": 1.05, "down": 0.94, "low": 0.01, "high": 30.0},
    {"up": 1.05, "down": 0.93, "low": 0.01, "high": 30.0},
    {"up": 1.07, "down": 0.93, "low": 0.01, "high": 30.0},
)
#: Adam's learning rates for the normaliser (best mean final loss on the same seeds).
ADAM_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


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
    their ratio), ``scores`` (per candidate: family score and worst ratio, best first), the winning candidate and
    the rule with its gain."""

    ratios: pd.DataFrame
    scores: pd.DataFrame
    best: dict[str, Any]
    rule: Rule


def _final_loss(harness, seeds: Sequence[int], steps: int) -> float:
    """The mean over ``seeds`` of each run's final loss (:func:`~tf_symbolic_l2o.meta.evaluate.final_loss`)."""
    from tf_symbolic_l2o.meta.evaluate import final_loss
    from tf_symbolic_l2o.seeds import step_seed

    return float(np.mean([final_loss(harness.run(step_seed(int(seed)), steps).losses) for seed in seeds]))


def select_step_gain(rule: Rule, family: dict, candidates: Sequence[dict] = DEFAULT_CANDIDATES, steps: int = 200,
                     seeds: Sequence[int] = (1000, 1001), log: Callable[[str], Any] | None = None) -> GainSelection:
    """Grid-search the step gain of ``rule`` on ``family`` (a normalised family spec, see the module docstring)."""
    import tensorflow as tf

    from tf_symbolic_l2o.functional.registry import make_optimizer
    from tf_symbolic_l2o.harness import Harness, grid_search
    from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
    from tf_symbolic_l2o.tasks.registry import make_task

    log = log or (lambda msg: None)
    if not candidates:
        raise ValueError("give at least one step-gain candidate")
    if int(steps) <= 0 or not seeds:
        raise ValueError(f"steps must be positive and seeds non-empty, got steps={steps}, seeds={list(seeds)}")
    rules = [with_gain(rule, c) for c in candidates]  # validates every candidate before anything runs
    rows = []
    for member in family["members"]:
        task = make_task(member["task"], split="meta_train")
        lr = tf.Variable(1e-3, trainable=False, dtype=tf.float32)
        adam = Harness(task, make_optimizer("adam", lr))

        def adam_score(value: float) -> float:
            lr.assign(value)
            return _final_loss(adam, seeds, steps)

        search = grid_search(ADAM_GRID, adam_score, error=f"family member {member['label']!r}: Adam diverged at every "
                                                          f"learning rate of {list(ADAM_GRID)}; it cannot normalise it")
        best_adam = search.scores[search.index]
        log(f"{member['label']}: tuned Adam {best_adam:.4g}")
        for i, r in enumerate(rules):
            loss = _final_loss(Harness(task, RuleOptimizer(r)), seeds, steps)
            rows.append({"candidate": i, "member": member["label"], "weight": float(member.get("weight", 1.0)),
                         "final_loss": loss, "adam_final_loss": best_adam, "ratio": loss / best_adam})
            log(f"{member['label']}: candidate {i} {candidates[i]}: {loss:.4g} ({loss / best_adam:.3g}× Adam)")
    ratios = pd.DataFrame(rows)
    scores = []
    for i, g in ratios.groupby("candidate"):
        log_ratio = np.log(g["ratio"].to_numpy())
        score = float(np.exp(np.sum(g["weight"] * log_ratio) / g["weight"].sum()))
        scores.append({"candidate": int(i), **candidates[int(i)], "family_score": score,
                       "worst_ratio": float(g["ratio"].max())})
    table = pd.DataFrame(scores).sort_values("family_score", kind="stable").reset_index(drop=True)
    best = dict(candidates[int(table.loc[0, "candidate"])])
    return GainSelection(ratios, table, best, rules[int(table.loc[0, "candidate"])])


def parse_candidates(text: str, low: float = 0.01, high: float = 30.0) -> list[dict[str, float]]:
    """Candidates from ``"UP/DOWN[/START],…"`` (e.g. ``"1.05/0.95,1.05/0.93/0.3"``) sharing the range [low, high]."""
    out = []
    for item in (p.strip() for p in str(text).split(",")):
        parts = item.split("/")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) not in (2, 3):
            raise ValueError(f"step-gain candidate {item!r}: write UP/DOWN or UP/DOWN/START, e.g. 1.05/0.95")
        candidate = {"up": values[0], "down": values[1], "low": float(low), "high": float(high)}
        if len(values) == 3:
            candidate["start"] = values[2]
        out.append(candidate)
    return out


def run_gain_selection(rule, family, out_dir, candidates: Sequence[dict] = DEFAULT_CANDIDATES, steps: int = 200,
                       seeds: Sequence[int] = (1000, 1001), log: Callable[[str], Any] | None = None) -> dict:
    """:func:`select_step_gain` for a rule spec (a ``rule.json``, a shipped rule's name) and a family (a name or a
    JSON file), written to ``out_dir``: ``ratios.csv``, ``scores.csv``, ``rule.json`` (the rule with the winning
    gain) and ``summary.json``, each atomically. Returns the summary."""
    from pathlib import Path

    from tf_symbolic_l2o.io import atomic_write_json, atomic_write_text
    from tf_symbolic_l2o.tasks.family import load_family
    from tf_symbolic_l2o.tasks.registry import normalize_task_spec
    from tf_symbolic_l2o.tune.tunable import resolve_rule

    start = resolve_rule(rule)
    spec = normalize_task_spec(load_family(family))
    result = select_step_gain(start, spec, candidates, steps, seeds, log)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ratios.csv", result.ratios.to_csv(index=False))
    atomic_write_text(out / "scores.csv", result.scores.to_csv(index=False))
    best = result.scores.iloc[0]
    tuned = result.rule.replace(metadata={**start.metadata, "source": "tfl2o tune-gain",
                                          "step_gain_selection": {"family": spec["family"], "steps": int(steps),
                                                                  "seeds": [int(s) for s in seeds],
                                                                  "family_score": float(best["family_score"])}})
    tuned.save(out / "rule.json")
    summary = {"best": result.best, "family_score": float(best["family_score"]),
               "worst_ratio": float(best["worst_ratio"]), "candidates": len(result.scores),
               "members": int(result.ratios["member"].nunique()), "family": spec["family"], "steps": int(steps)}
    atomic_write_json(out / "summary.json", summary)
    return summary
