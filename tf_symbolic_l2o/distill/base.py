"""What every symbolic-regression backend shares: the candidate record, the backend interface, input checks,
subsampling and the Pareto front."""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Sequence

import numpy as np

from tf_symbolic_l2o.rules import Node, Var


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One expression found by a backend, in standardised space.

    Attributes:
        node: the expression over the feature names given to :meth:`SRBackend.fit`.
        complexity: number of nodes of ``node``.
        loss: the backend's training loss (MSE on standardised y; NaN when unknown).
        origin: where it came from (``"best"``, ``"pareto"``).
    """

    node: Node
    complexity: int
    loss: float = float("nan")
    origin: str = ""


def pareto_indices(complexity: Sequence[float], score: Sequence[float], higher_is_better: bool = True) -> list[int]:
    """Indices of the non-dominated points (lower complexity and better score), sorted by complexity.

    A point is dominated when another one is at most as complex and at least as good, and strictly better in one
    of the two. Equal points: the first one is kept. Points with a non-finite score are never on the front.
    """
    pts = [(float(c), float(s) if higher_is_better else -float(s), i)
           for i, (c, s) in enumerate(zip(complexity, score)) if math.isfinite(float(s))]
    pts.sort(key=lambda p: (p[0], -p[1], p[2]))
    front, best = [], -math.inf
    for c, s, i in pts:
        if s > best:
            front.append(i)
            best = s
    return front


def check_fit_inputs(X, y, feature_names) -> tuple[np.ndarray, np.ndarray, list[str]]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    names = list(feature_names)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"expected X [rows, columns] and y [rows], got {X.shape} and {y.shape}")
    if X.shape[1] != len(names):
        raise ValueError(f"X has {X.shape[1]} column(s) but {len(names)} feature name(s) were given")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must be finite")
    for n in names:
        Var(n)
    return X, y, names


def subsample(X, y, max_rows: int | None, seed: int):
    if max_rows is None or X.shape[0] <= max_rows:
        return X, y
    idx = np.sort(np.random.default_rng([seed, 7]).choice(X.shape[0], int(max_rows), replace=False))
    return X[idx], y[idx]


class SRBackend(abc.ABC):
    """The interface every symbolic-regression backend implements."""

    name: str = ""

    @abc.abstractmethod
    def fit(self, X, y, feature_names: Sequence[str], seed: int = 0) -> list[Candidate]:
        """Fit standardised ``y`` on standardised ``X`` (columns named ``feature_names``); return candidates."""

    @abc.abstractmethod
    def settings(self) -> dict:
        """The JSON-able settings, recorded in reports and rule metadata."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------------------------- gplearn
