"""What :func:`~tf_symbolic_l2o.distill.distill.distill` returns: one scored candidate rule
(:class:`CandidateResult`) and the whole outcome (:class:`DistillResult`)."""

from __future__ import annotations

import dataclasses
import math

from tf_symbolic_l2o.distill.standardize import Standardizer
from tf_symbolic_l2o.rules import Node, Rule

__all__ = ["CandidateResult", "DistillResult", "json_number"]


def json_number(x) -> float | None:
    """A JSON-safe number: ``x`` as a float, or ``None`` when it is ``None`` or not finite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclasses.dataclass(frozen=True)
class CandidateResult:
    """One candidate rule and its scores.

    Attributes:
        rule: the rule over the raw dataset columns.
        standardized: the expression the backend found, over standardised variables.
        complexity: nodes of ``standardized``.
        r2_train, r2_test, mse_train, mse_test: scores on the raw rows (NaN if the rule is not finite there).
        origin: ``"best"`` / ``"pareto"`` (backend) or ``"refit"``.
        pareto: on the complexity–test-R² Pareto front.
    """

    rule: Rule
    standardized: Node
    complexity: int
    r2_train: float
    r2_test: float
    mse_train: float
    mse_test: float
    origin: str = ""
    pareto: bool = False

    @property
    def infix(self) -> str:
        return self.rule.infix

    def metrics(self) -> dict:
        """The four scores (non-finite ones as ``None``) and the complexity, JSON-safe."""
        return {"r2_train": json_number(self.r2_train), "r2_test": json_number(self.r2_test),
                "mse_train": json_number(self.mse_train), "mse_test": json_number(self.mse_test),
                "complexity": self.complexity}


@dataclasses.dataclass
class DistillResult:
    """What :func:`~tf_symbolic_l2o.distill.distill.distill` returns.

    Attributes:
        rule: the chosen rule (refitted if asked), with the scores and settings in ``rule.metadata``.
        chosen: its :class:`CandidateResult`.
        candidates: every candidate, in the backend's order (plus the refitted one, if any).
        pareto: the Pareto front (complexity vs test R²), by increasing complexity.
        standardizer: the standardisation fitted on the training rows.
        settings: backend name and settings, seed, split and selection settings.
        timings: seconds per phase and in total.
        dataset: path, SHA-256, source and task from the manifest.
        refit_history: the MSE history of the refit (standardised space), or ``None``.
        before_refit: the chosen candidate before the refit, or ``None``.
    """

    rule: Rule
    chosen: CandidateResult
    candidates: list
    pareto: list
    standardizer: Standardizer
    settings: dict
    timings: dict
    dataset: dict
    refit_history: list | None = None
    before_refit: CandidateResult | None = None

    @property
    def metrics(self) -> dict:
        return self.chosen.metrics()

    @property
    def r2_test(self) -> float:
        return self.chosen.r2_test

    def summary(self) -> str:
        """One line: the rule, its complexity, train and test R² and the total time."""
        m = self.chosen
        return (f"{self.rule}  [complexity {m.complexity}, R² train {m.r2_train:.4f}, test {m.r2_test:.4f}, "
                f"{self.timings.get('total_s', float('nan')):.1f} s]")
