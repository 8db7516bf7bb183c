"""Numerical checks that an update rule behaves like an optimizer: rest, sign symmetry, descent.

Every coordinate-wise optimizer of the library — a symbolic :class:`~tf_symbolic_l2o.rules.Rule`, an LSTM
(:class:`~tf_symbolic_l2o.learned.lstm.CoordinatewiseLSTM`) or anything with ``init_state(n)`` /
``update(grad, state, step) -> (delta, state)`` — is driven on gradient sequences, and its steps are compared:

``rest``
    From the zero state, a zero gradient at every step gives a zero step: at step 1 and at every step up to
    ``steps``. (A rule with a free intercept, or an LSTM whose output drifts at rest, fails here.)
``sign``
    Negating the whole gradient sequence negates every step. Checked on three kinds of sequences: constant
    gradients on a log grid of magnitudes (1e-8 … 1e2, both signs), random sequences whose coordinates have
    log-uniform scales and random sign changes, and the gradients recorded while the optimizer runs on the descent
    quadratics below (its own trajectories, fed open loop).
``descent``
    Closed loop on sanity quadratics ``½ Σ aᵢ θᵢ²`` (curvatures log-uniform in [0.1, 10]) and a rotated one
    ``½ θᵀ A θ`` (eigenvalues in [0.1, 10]) from random starts: the loss after ``steps`` steps is below its start
    for every start. And for a constant gradient of any magnitude on the grid, the parameter moves against it
    (the cumulative step has the opposite sign of g).

Tolerances are absolute on the step ``Δθ`` (native scale, ``output_scale`` included): ``atol`` (1e-7) for
``rest`` and ``sign_atol`` (1e-6) for ``sign``, the figures the Keras-level tests use. All checks run in
float32,
as the optimizers do in training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["InvariantResult", "InvariantReport", "check_invariants", "as_coordinate_optimizer",
           "INVARIANTS"]

INVARIANTS = ("rest", "sign", "descent")
_GRID = np.array([1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0], np.float32)


@dataclasses.dataclass(frozen=True)
class InvariantResult:
    """One invariant: whether it holds, the measured figure, the bound it was held to and how it was measured."""

    name: str
    passed: bool
    value: float
    bound: float
    detail: str

    def line(self) -> str:
        verdict = "holds" if self.passed else "FAILS"
        return f"{self.name}: {verdict} ({self.detail})"


@dataclasses.dataclass(frozen=True)
class InvariantReport:
    """The three invariants of one optimizer; ``passed`` when all hold."""

    results: tuple[InvariantResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]

    def __getitem__(self, name: str) -> InvariantResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {r.name: {"passed": r.passed, "value": r.value, "bound": r.bound, "detail": r.detail}
                for r in self.results}

    def __str__(self) -> str:
        return "\n".join(r.line() for r in self.results)


def as_coordinate_optimizer(opt: Any):
    """A functional coordinate-wise optimizer from a ``Rule`` (wrapped in a ``RuleOptimizer``), a rule dict or
    ``rule.json`` path, or anything already following the ``init_state``/``update`` protocol."""
    from tf_symbolic_l2o.rules import Rule
    from tf_symbolic_l2o.rules.coordinate import RuleOptimizer

    if isinstance(opt, Rule):
        return RuleOptimizer(opt)
    if hasattr(opt, "init_state") and hasattr(opt, "update"):
        return opt
    from tf_symbolic_l2o.rules.rule import as_rule

    return RuleOptimizer(as_rule(opt))


def _open_loop_runner(opt):
    """``run(grads [T, n]) -> steps [T, n]``: ``opt`` fed the gradient rows from its zero state (one trace for
    every shape)."""

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def run(g_seq):
        steps_total, n = tf.shape(g_seq)[0], tf.shape(g_seq)[1]
        state = opt.init_state(n)
        out = tf.TensorArray(tf.float32, size=steps_total)
        for t in tf.range(steps_total):
            delta, state = opt.update(g_seq[t], state, t + 1)
            out = out.write(t, delta)
        return out.stack()

    return lambda grads: run(tf.constant(grads, tf.float32)).numpy()


def _quadratics(seed: int, dim: int, starts: int):
    """``(A [k, dim, dim], θ0 [k, starts, dim])``: diagonal and rotated quadratics with eigenvalues in [0.1, 10]."""
    rng = np.random.default_rng([seed, 1729])
    mats = []
    for rotated in (False, True):
        eig = np.exp(rng.uniform(np.log(0.1), np.log(10.0), dim))
        q = np.linalg.qr(rng.normal(size=(dim, dim)))[0] if rotated else np.eye(dim)
        mats.append((q * eig) @ q.T)
    theta0 = rng.normal(size=(len(mats), starts, dim))
    return np.asarray(mats, np.float32), theta0.astype(np.float32)


def _descent_runs(opt, seed: int, dim: int, starts: int, steps: int):
    """Closed loop on the quadratics: ``(initial loss [q, s], final loss [q, s], gradients [steps, q·s·dim])``."""
    mats, theta0 = _quadratics(seed, dim, starts)
    a = tf.constant(mats)  # [q, d, d]
    q, s = theta0.shape[:2]

    def loss_grad(theta):  # theta [q, s, d]
        at = tf.einsum("qij,qsj->qsi", a, theta)
        return 0.5 * tf.reduce_sum(theta * at, axis=-1), at

    @tf.function(reduce_retracing=True)
    def run(theta):
        state = opt.init_state(q * s * dim)
        grads = tf.TensorArray(tf.float32, size=steps)
        loss0, _ = loss_grad(theta)
        for t in tf.range(steps):
            _, g = loss_grad(theta)
            flat = tf.reshape(g, [-1])
            grads = grads.write(t, flat)
            delta, state = opt.update(flat, state, t + 1)
            theta = theta + tf.reshape(delta, tf.shape(theta))
        loss1, _ = loss_grad(theta)
        return loss0, loss1, grads.stack()

    loss0, loss1, grads = run(tf.constant(theta0))
    return loss0.numpy(), loss1.numpy(), grads.numpy()


def check_invariants(optimizer, **kwargs) -> InvariantReport:
    """Check ``rest``, ``sign`` and ``descent`` (module docstring) for ``optimizer``; see :func:`_check` for the
    arguments. TensorFlow's retracing warnings are muted meanwhile (each check traces its own functions)."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        return _check(optimizer, **kwargs)
    finally:
        logger.setLevel(level)


def _check(optimizer, *, steps: int = 200, seed: int = 0, atol: float = 1e-7,
                     sign_atol: float = 1e-6, num_random: int = 64, dim: int = 10,
                     starts: int = 4) -> InvariantReport:
    """The checks of :func:`check_invariants`.

    Args:
        optimizer: a :class:`~tf_symbolic_l2o.rules.Rule` (or its dict / ``rule.json`` path), a learned optimizer
            or any object with ``init_state(n)`` and ``update(grad, state, step)``.
        steps: length of every gradient sequence and of the descent runs.
        seed: seeds the random sequences, quadratics and starts.
        atol: bound on |Δθ| at rest.
        sign_atol: bound on |Δθ(g) + Δθ(−g)|.
        num_random: number of random gradient sequences (coordinates).
        dim: dimension of each descent quadratic; ``starts``: random starts per quadratic.
    """
    for label, v in (("steps", steps), ("num_random", num_random), ("dim", dim), ("starts", starts)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")
    for label, v in (("atol", atol), ("sign_atol", sign_atol)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{label} must be a finite number >= 0, got {v!r}")
    opt = as_coordinate_optimizer(optimizer)
    _run_open_loop = _open_loop_runner(opt)
    steps = int(steps)
    results = []

    # the closed-loop descent runs first: their gradients also feed the sign check
    loss0, loss1, traj = _descent_runs(opt, seed, int(dim), int(starts), steps)
    # every open-loop sequence as a column of one run (the optimizers are coordinate-wise): rest, the constant
    # grid, random sequences, the own trajectories, and the negations of the last three
    const = np.tile(np.concatenate([_GRID, -_GRID])[None], (steps, 1))
    rng = np.random.default_rng([seed, 31337])
    scale = np.exp(rng.uniform(np.log(1e-6), np.log(10.0), num_random))
    flips = np.where(rng.random((steps, num_random)) < 0.1, -1.0, 1.0).cumprod(axis=0)
    random = (scale * (rng.normal(size=(steps, num_random)) + 0.5 * flips)).astype(np.float32)
    parts = {"zero": np.zeros((steps, 8), np.float32), "constant grid": const, "random": random,
             "own trajectories": traj}
    blocks = list(parts.values()) + [-parts[k] for k in ("constant grid", "random", "own trajectories")]
    bounds = np.cumsum([0] + [b.shape[1] for b in blocks])
    out = _run_open_loop(np.concatenate(blocks, axis=1).astype(np.float32))
    cols = [out[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    # rest
    zero = cols[0]
    finite = bool(np.all(np.isfinite(zero)))
    first, worst = float(np.max(np.abs(zero[0]))), float(np.max(np.abs(zero)))
    results.append(InvariantResult(
        "rest", finite and worst <= atol, worst if finite else float("inf"), atol,
        f"zero gradients: max |Δθ| {first:.3g} at step 1, {worst:.3g} over {steps} steps (bound {atol:g})"))

    # descent
    ratio = loss1 / loss0
    moved = np.sum(cols[1], axis=0)
    against = bool(np.all(np.isfinite(moved)) and np.all(moved * const[0] < 0))
    worst_ratio = float(np.max(ratio)) if np.all(np.isfinite(ratio)) else float("inf")
    results.append(InvariantResult(
        "descent", worst_ratio < 1.0 and against, worst_ratio, 1.0,
        f"quadratics: final/initial loss {float(np.min(ratio)):.3g}–{worst_ratio:.3g} over {ratio.size} starts "
        f"× {steps} steps; constant g on 1e-8…1e2: moves against g {'everywhere' if against else 'NOT everywhere'}"))

    # sign symmetry
    worst, where = 0.0, ""
    for label, pos, neg in zip(("constant grid", "random", "own trajectories"), cols[1:4], cols[4:7]):
        gap = np.abs(pos + neg)
        err = float(np.max(gap)) if np.all(np.isfinite(gap)) else float("inf")
        if err >= worst:
            worst, where = err, label
    results.append(InvariantResult(
        "sign", worst <= sign_atol, worst, sign_atol,
        f"max |Δθ(g) + Δθ(−g)| {worst:.3g} (worst on {where}; bound {sign_atol:g})"))
    order = {name: i for i, name in enumerate(INVARIANTS)}
    return InvariantReport(tuple(sorted(results, key=lambda r: order[r.name])))
