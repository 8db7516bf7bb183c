"""Standardisation for symbolic regression, and folding it back into the expression.

Symbolic regression runs on standardised data (on raw L2O targets of scale 1e-2 with inputs of scale 1e-4,
gplearn collapses to a linear rule). For every input column ``x_i`` and the target ``y``::

    z_i = (x_i − μ_i) / σ_i,        y_s = (y − μ_y) / σ_y

with the mean and (population) standard deviation of the *training* rows; a column with σ = 0 (constant) keeps
σ = 1. A fitted expression ``f`` over the standardised variables is turned into the rule over the raw columns by
substitution (:meth:`Standardizer.fold`)::

    g(x) = μ_y + σ_y · f((x − μ) · (1/σ))

The fold is exact up to floating-point rounding: the scale is a multiplication by the constant 1/σ, **never** the
protected ``div`` (which returns 1 when |σ| ≤ 0.001 — raw gradients have σ ≈ 1e-4). The only simplifications are
skipping ``− μ`` when μ = 0 (and writing ``x + |μ|`` for μ < 0, which is the same number), ``· 1/σ`` when
σ = 1, ``μ_y +`` when μ_y = 0 and ``σ_y ·`` when σ_y = 1; ``merge_affine=True`` also merges an outer offset and
factor of f into μ_y and σ_y (rounding-level change).

:func:`fold_constants` optionally evaluates sub-trees made only of constants (e.g. gplearn's ``div(0.3, 0.7)``,
which it never simplifies itself) with the same NumPy float64 implementations the rule uses, so the value of the
expression does not change.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from tf_symbolic_l2o.rules import Const, Node, Op, Var, substitute, variables
from tf_symbolic_l2o.rules.ops import OPS

__all__ = ["Standardizer", "check_matrix", "check_vector", "fold_constants"]

_TINY = np.finfo(np.float64).tiny


def _check_array(a, ndim: int, name: str) -> np.ndarray:
    """``a`` as a finite float64 array with ``ndim`` dimensions, or a one-line ValueError."""
    a = np.asarray(a)
    if a.ndim != ndim:
        want = "a 2-D array [rows, columns]" if ndim == 2 else "a 1-D array"
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a)
    if bad.any():
        rows = f" in {int(bad.any(axis=1).sum())} row(s)" if ndim == 2 else ""
        raise ValueError(f"{name} has {int(bad.sum())} NaN/inf value(s){rows}; clean the dataset first")
    return a


def check_matrix(X, name: str = "X") -> np.ndarray:
    """``X`` as a finite float64 ``[rows, columns]`` array, or a one-line ValueError."""
    return _check_array(X, 2, name)


def check_vector(y, name: str = "y") -> np.ndarray:
    """``y`` as a finite float64 1-D array, or a one-line ValueError."""
    return _check_array(y, 1, name)


@dataclasses.dataclass(frozen=True)
class Standardizer:
    """Per-column mean/std of X and of y (fitted on training rows) and the fold back into raw variables.

    Attributes:
        feature_names: the variable name of each column of X (``mt_0``, ``gt_0``, …).
        x_mean, x_std: per-column mean and standard deviation (σ = 0 replaced by 1).
        y_mean, y_std: mean and standard deviation of the target (must be > 0).
    """

    feature_names: tuple[str, ...]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float

    @classmethod
    def fit(cls, X, y, feature_names: Sequence[str]) -> "Standardizer":
        """Fit on (X, y). ``ValueError`` on NaN/inf, shape mismatches or a constant target."""
        X = check_matrix(X)
        y = check_vector(y)
        names = tuple(feature_names)
        if X.shape[1] != len(names):
            raise ValueError(f"X has {X.shape[1]} column(s) but {len(names)} feature name(s) were given")
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        if X.shape[0] < 2:
            raise ValueError(f"need at least 2 rows to standardise, got {X.shape[0]}")
        for n in names:
            Var(n)  # validates the name
        mu = X.mean(axis=0)
        sd = X.std(axis=0)
        sd = np.where((sd > _TINY) & np.isfinite(sd), sd, 1.0)
        y_mean, y_std = float(y.mean()), float(y.std())
        if not (y_std > _TINY and math.isfinite(y_std)) or y_std <= 1e-12 * max(abs(y_mean), _TINY):
            raise ValueError(f"target y is constant (every row is {y_mean:g}): there is nothing to distill; "
                             f"check that the recorded optimizer actually moved")
        return cls(names, mu.astype(np.float64), sd.astype(np.float64), y_mean, y_std)

    # ------------------------------------------------------------------------------------------- arrays

    def transform_X(self, X) -> np.ndarray:
        X = check_matrix(X)
        if X.shape[1] != len(self.feature_names):
            raise ValueError(f"X has {X.shape[1]} column(s), expected {len(self.feature_names)}")
        return (X - self.x_mean) * (1.0 / self.x_std)

    def transform_y(self, y) -> np.ndarray:
        return (check_vector(y) - self.y_mean) * (1.0 / self.y_std)

    def inverse_y(self, y_std_space) -> np.ndarray:
        return self.y_mean + self.y_std * np.asarray(y_std_space, dtype=np.float64)

    # ------------------------------------------------------------------------------------------ folding

    def input_node(self, name: str) -> Node:
        """The standardised variable ``(x − μ) · (1/σ)`` as a node over the raw variable ``name``."""
        i = self.feature_names.index(name)
        mu, sd = float(self.x_mean[i]), float(self.x_std[i])
        node: Node = Var(name)
        if mu > 0.0:
            node = Op("sub", (node, Const(mu)))
        elif mu < 0.0:  # x − (−c) is exactly x + c
            node = Op("add", (node, Const(-mu)))
        if sd != 1.0:
            node = Op("mul", (node, Const(1.0 / sd)))
        return node

    def fold(self, node: Node, merge_affine: bool = False) -> Node:
        """``f`` over standardised variables → ``μ_y + σ_y · f((x − μ)/σ)`` over the raw variables.

        With ``merge_affine=True``, an outer offset and factor of ``f`` (``f = c + k·g``, the shape linear scaling
        gives) are merged with μ_y and σ_y: ``(μ_y + σ_y·c) + (σ_y·k)·g`` — the same value up to rounding, two
        constants fewer. The input standardisation is never distributed (see the module docstring).
        """
        unknown = [v for v in variables(node) if v not in self.feature_names]
        if unknown:
            raise ValueError(f"expression uses {unknown}, which are not columns of the dataset")
        out = substitute(node, {v: self.input_node(v) for v in variables(node)})
        offset, factor = self.y_mean, self.y_std
        if merge_affine:
            if isinstance(out, Op) and out.name == "add" and isinstance(out.args[0], Const):
                offset, out = self.y_mean + self.y_std * out.args[0].value, out.args[1]
            if isinstance(out, Op) and out.name == "mul" and isinstance(out.args[0], Const):
                factor, out = self.y_std * out.args[0].value, out.args[1]
            if isinstance(out, Const):
                return Const(offset + factor * out.value)
        if factor != 1.0:
            out = Op("mul", (Const(factor), out))
        if offset != 0.0:
            out = Op("add", (Const(offset), out))
        return out

    def to_dict(self) -> dict:
        """JSON-able summary (for reports and rule metadata)."""
        return {"columns": list(self.feature_names), "x_mean": [float(v) for v in self.x_mean],
                "x_std": [float(v) for v in self.x_std], "y_mean": self.y_mean, "y_std": self.y_std}


def fold_constants(node: Node) -> Node:
    """Replace every sub-tree without variables by its value (NumPy float64, the rule's own implementations).

    A sub-tree whose value is not finite is left as it is.
    """

    def rec(n: Node) -> Node:
        if not isinstance(n, Op):
            return n
        args = tuple(rec(a) for a in n.args)
        if all(isinstance(a, Const) for a in args):
            with np.errstate(all="ignore"):
                value = OPS[n.name].numpy(*[np.float64(a.value) for a in args])
            value = float(np.asarray(value, dtype=np.float64))
            if math.isfinite(value):
                return Const(value)
        return Op(n.name, args)

    return rec(node)
