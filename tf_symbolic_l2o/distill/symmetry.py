"""Odd symmetry of a rule in the gradient: column parities, the odd-part projection, the numerical oddness test,
and what the report says of the teacher's own symmetry.

A rule ``h`` is odd when ``h(P·x) = −h(x)``, where ``P`` negates the odd columns (every feature but ``t`` and
``s``, at every lag); an odd rule gives a zero step from a zero gradient history and the negated steps for the
negated gradient sequence.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from tf_symbolic_l2o.features import FeatureSet
from tf_symbolic_l2o.rules import Const, Node, Op, Var, evaluate_numpy, substitute, variables

__all__ = ["is_odd", "odd_part", "parity_vector", "teacher_symmetry"]


def parity_vector(features: Mapping, memlen: int) -> np.ndarray:
    """Per dataset column (lag-major), −1 for odd features and +1 for even ones (``t``, ``s``)."""
    fs = FeatureSet(features["names"])
    return np.tile(np.asarray(fs.parity(), np.float64), int(memlen))


def odd_part(node: Node, columns: Sequence[str], parity: np.ndarray) -> Node:
    """``½·(h(x) − h(P·x))``: the odd part of ``h`` under the column parities ``parity`` (−1: the variable is
    negated)."""
    flip = {c: Op("neg", (Var(c),)) for c, p in zip(columns, parity) if p < 0 and c in variables(node)}
    if not flip:  # only even variables: the odd part is zero
        return Const(0.0)
    return Op("mul", (Const(0.5), Op("sub", (node, substitute(node, flip)))))


def is_odd(node: Node, columns: Sequence[str], parity: np.ndarray, X: np.ndarray) -> bool:
    """Whether ``h(P·x) = −h(x)`` (relative 1e-9) on the rows ``X`` and on the same rows with the odd columns
    zeroed (the rest condition)."""
    used = variables(node)
    index = {c: i for i, c in enumerate(columns)}
    rest = X * (parity > 0)
    for rows in (X, rest):
        with np.errstate(all="ignore"):
            a = evaluate_numpy(node, {v: rows[:, index[v]] for v in used}, dtype=np.float64)
            b = evaluate_numpy(node, {v: parity[index[v]] * rows[:, index[v]] for v in used}, dtype=np.float64)
        a, b = np.broadcast_to(a, rows.shape[:1]), np.broadcast_to(b, rows.shape[:1])
        if not (np.all(np.isfinite(a)) and np.all(np.abs(a + b) <= 1e-9 * (1.0 + np.abs(a)))):
            return False
    return True


def teacher_symmetry(y: np.ndarray, manifest: Mapping) -> dict:
    """What the report says of the teacher's own soundness: the mean and std of its recorded output (an odd teacher
    on a symmetric task averages near zero) and, when the recorder measured them (``manifest["teacher"]``), its
    raw output at rest (zero gradients from the zero state) at step 1, the largest and the mean over the steps."""
    out = {"y_mean": float(np.mean(y)), "y_std": float(np.std(y))}
    teacher = manifest.get("teacher") if isinstance(manifest.get("teacher"), Mapping) else {}
    for key in ("rest_raw_step1", "rest_raw_max", "rest_raw_mean"):
        if key in teacher:
            out[key] = teacher[key]
    return out
