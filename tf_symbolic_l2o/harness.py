"""The evaluation harness: one way to run an optimizer on a task, and one learning-rate grid search.

Every number that compares optimizers (``tfl2o evaluate``, ``tfl2o benchmark``, the Keras learning-rate search)
comes through here.

A *run* starts from a run seed (a ``[2]`` stateless seed, e.g. ``step_seed(seed, EVALUATION, i)``) and draws
from its sub-streams (:mod:`tf_symbolic_l2o.seeds`): the initial parameters from ``step_seed(run, INIT)`` and the
minibatch of step k from ``step_seed(step_seed(run, BATCHES), k)``. So two optimizers given the same run seed
start from the same θ₀ and see the same minibatches. The run is :func:`~tf_symbolic_l2o.meta.unroll.make_rollout`
(compiled once per optimizer, without XLA): ``losses[k]`` is the minibatch loss at θ_k, before step k's update.

:func:`grid_search` scores every learning rate of a grid by a callable; the lowest finite score wins, ties going to
the first grid point. When every point diverged (no finite score) the ``if_all_diverged`` policy decides:
``"raise"`` a ``ValueError`` (the evaluator, the Keras search) or keep the ``"smallest"`` learning rate (the
benchmark, whose final runs then show the divergence).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from tf_symbolic_l2o.meta.unroll import make_rollout
from tf_symbolic_l2o.seeds import BATCHES, INIT, step_seed
from tf_symbolic_l2o.tasks.base import Task

ALL_DIVERGED_POLICIES = ("raise", "smallest")


@dataclasses.dataclass
class Run:
    """One run of an optimizer.

    Attributes:
        losses: ``[steps]`` minibatch losses, ``losses[k]`` at θ_k before step k's update.
        test: the task's test metrics at the last θ (``{}`` unless asked for; NaN when θ is not finite).
        seconds: wall time of the compiled rollout (initial parameters and state excluded).
        theta: the last θ (flat).
    """

    losses: np.ndarray
    test: dict
    seconds: float
    theta: tf.Tensor


class Harness:
    """Runs one optimizer (any :class:`~tf_symbolic_l2o.functional.base.CoordinateOptimizer`) on one task.

    Args:
        task: the optimizee.
        optimizer: the optimizer; a learning rate held in a ``tf.Variable`` may be changed between runs without
            retracing.
    """

    def __init__(self, task: Task, optimizer):
        self.task, self.optimizer = task, optimizer
        self.num_coords = task.num_params
        self._rollout = make_rollout(task, optimizer, jit_compile=False)

    def warm_up(self) -> None:
        """Trace the rollout (one step from run seed 0) so that the next :meth:`run`'s time excludes tracing."""
        self.run(step_seed(0), 1)

    def run(self, run_seed: Any, steps: int, test: bool = False) -> Run:
        """``steps`` steps from ``run_seed`` (a ``[2]`` stateless seed); ``test`` also evaluates the last θ."""
        task, n = self.task, self.num_coords
        theta = task.flatten(task.init_params(step_seed(run_seed, INIT)))
        state = self.optimizer.init_state(n)
        t0 = time.perf_counter()
        theta, _, curve = self._rollout(theta, state, step_seed(run_seed, BATCHES), None, tf.constant(0),
                                        tf.constant(int(steps)))
        losses = curve.numpy()
        seconds = time.perf_counter() - t0
        return Run(losses, held_out_metrics(task, theta) if test else {}, seconds, theta)


def held_out_metrics(task: Task, theta: tf.Tensor) -> dict[str, float]:
    """``task.evaluate`` at the flat θ; NaN for every metric when θ is not finite (a diverged run)."""
    if bool(tf.reduce_all(tf.math.is_finite(theta))):
        return {k: float(v) for k, v in task.evaluate(task.unflatten(theta)).items()}
    return {"test_loss": float("nan")} | ({"test_accuracy": float("nan")} if task.has_accuracy else {})



@dataclasses.dataclass
class GridSearch:
    """The outcome of :func:`grid_search`.

    Attributes:
        index: the chosen grid point.
        learning_rate: its learning rate.
        scores: every grid point's score, in grid order.
        diverged: whether every point diverged (then ``index`` comes from the ``"smallest"`` policy).
    """

    index: int
    learning_rate: float
    scores: list[float]
    diverged: bool

    @property
    def at_edge(self) -> bool:
        """The winner is the first or the last grid point (the grid may be too narrow)."""
        return not self.diverged and self.index in (0, len(self.scores) - 1)


def grid_search(grid: Sequence[float], score: Callable[[float], float], if_all_diverged: str = "raise",
                error: str | None = None) -> GridSearch:
    """Score every learning rate of ``grid`` in order with ``score(lr)`` (lower is better; a non-finite score is a
    diverged point) and pick the lowest finite score, ties going to the first point.

    Args:
        grid: the learning rates.
        score: the score of one learning rate (it may record its runs as a side effect).
        if_all_diverged: ``"raise"`` a ``ValueError`` (with ``error`` as its message) or keep the ``"smallest"``
            learning rate of the grid.
        error: the message when every point diverged under ``"raise"``.
    """
    if if_all_diverged not in ALL_DIVERGED_POLICIES:
        raise ValueError(f"unknown if_all_diverged {if_all_diverged!r}; use one of {ALL_DIVERGED_POLICIES}")
    if len(grid) == 0:
        raise ValueError("the learning-rate grid is empty")
    scores = [float(score(float(lr))) for lr in grid]
    finite = [i for i, s in enumerate(scores) if np.isfinite(s)]
    if finite:
        best = min(finite, key=lambda i: scores[i])
    elif if_all_diverged == "raise":
        raise ValueError(error or f"every learning rate of the grid {list(grid)} diverged")
    else:
        best = int(np.argmin(grid))
    return GridSearch(best, float(grid[best]), scores, not finite)
