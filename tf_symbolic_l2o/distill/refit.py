"""The second phase of distillation: refit the constants of a fixed expression by gradient descent on the dataset.

The expression's structure is kept; its constants (pre-order, :attr:`Rule.constants`) become one trainable
``tf.Variable`` vector fed to ``rule.tf_fn()(X, constants=var)`` and are fitted with Adam on the mean squared
error, full-batch by default. The result is **never worse** than the input: the loss of the initial constants is
the first entry of the history and the constants with the lowest full-data loss seen are returned.

Parametrisation: ``"absolute"`` (default) steps the constants themselves; ``"relative"`` steps
``u`` in ``c = c0 + s·u`` with ``s = |c0|`` (1 for c0 = 0), so one learning rate suits constants of very different
magnitudes (a rule folded back to raw inputs mixes scales like 1e4 and 1e-5).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tf_symbolic_l2o.rules import Rule

__all__ = ["refit_constants", "RefitResult"]


class RefitResult(NamedTuple):
    """``(rule, history)``: the refitted rule and the full-data MSE before the first step and after each step."""

    rule: Rule
    history: list


def refit_constants(rule: Rule, X, y, steps: int = 500, learning_rate: float = 0.01, batch_size: int | None = None,
                    patience: int = 50, min_delta: float = 1e-12, parametrization: str = "absolute",
                    seed: int = 0, dtype=tf.float64) -> RefitResult:
    """Fit the constants of ``rule`` to ``(X, y)`` by Adam on the MSE.

    Args:
        rule: the rule; ``X`` has one column per :attr:`Rule.inputs` (dataset column order).
        X, y: the data, ``[N, len(rule.inputs)]`` and ``[N]``, finite.
        steps: maximum number of Adam steps.
        learning_rate: Adam's step size.
        batch_size: ``None`` for full-batch steps, else the minibatch size (the loss used to pick the best
            constants is always the full-data loss).
        patience: stop when the best loss has not improved by more than ``min_delta`` (relative) for this many
            steps.
        parametrization: ``"absolute"`` or ``"relative"`` (see the module docstring).
        seed: minibatch order.
        dtype: computation dtype (float64 by default, for precise constants).

    Returns:
        :class:`RefitResult` ``(rule, history)``; ``rule.metadata["refit"]`` records the initial and final MSE and
        the settings. A rule without constants is returned unchanged.
    """
    if not isinstance(rule, Rule):
        raise ValueError(f"expected a Rule, got {type(rule).__name__}")
    if parametrization not in ("absolute", "relative"):
        raise ValueError(f"parametrization must be 'absolute' or 'relative', got {parametrization!r}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_in = len(rule.inputs)
    if X.ndim != 2 or X.shape[1] != n_in or y.shape != (X.shape[0],):
        raise ValueError(f"expected X [N, {n_in}] ({', '.join(rule.inputs)}) and y [N], got {X.shape} and {y.shape}")
    if X.shape[0] == 0:
        raise ValueError("no rows to refit on")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must be finite")
    steps, patience = int(steps), int(patience)
    if steps < 0 or patience < 1:
        raise ValueError("steps must be >= 0 and patience >= 1")

    c0 = np.asarray(rule.constants, dtype=np.float64)
    fn = rule.tf_fn()
    Xt = tf.constant(X, dtype)
    yt = tf.constant(y, dtype)

    def mse(consts, xb, yb):
        return tf.reduce_mean(tf.square(fn(xb, constants=consts) - yb))

    if c0.size == 0:
        loss0 = float(mse(None, Xt, yt))
        meta = {**rule.metadata, "refit": {"initial_mse": loss0, "final_mse": loss0, "steps": 0,
                                           "note": "no constants to refit"}}
        return RefitResult(rule.replace(metadata=meta), [loss0])

    scale = np.where(c0 != 0.0, np.abs(c0), 1.0) if parametrization == "relative" else np.ones_like(c0)
    c0_t = tf.constant(c0, dtype)
    s_t = tf.constant(scale, dtype)
    u = tf.Variable(tf.zeros_like(c0_t))
    m = tf.Variable(tf.zeros_like(c0_t))
    v = tf.Variable(tf.zeros_like(c0_t))
    lr = tf.constant(learning_rate, dtype)
    b1, b2, eps = tf.constant(0.9, dtype), tf.constant(0.999, dtype), tf.constant(1e-12, dtype)

    @tf.function
    def full_loss():
        return mse(c0_t + s_t * u, Xt, yt)

    @tf.function
    def step(t, xb, yb):
        with tf.GradientTape() as tape:
            loss = mse(c0_t + s_t * u, xb, yb)
        g = tape.gradient(loss, u)
        g = tf.where(tf.math.is_finite(g), g, tf.zeros_like(g))
        m.assign(b1 * m + (1 - b1) * g)
        v.assign(b2 * v + (1 - b2) * tf.square(g))
        mhat = m / (1 - tf.pow(b1, t))
        vhat = v / (1 - tf.pow(b2, t))
        u.assign_sub(lr * mhat / (tf.sqrt(vhat) + eps))
        return loss

    n = X.shape[0]
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(n), 0
    loss0 = float(full_loss())
    history = [loss0]
    best_loss = loss0 if math.isfinite(loss0) else math.inf
    best_u = np.zeros_like(c0)
    since_best = 0
    for k in range(1, steps + 1):
        if batch_size is None or batch_size >= n:
            step(tf.constant(k, dtype), Xt, yt)
        else:
            if pos + batch_size > n:
                order, pos = rng.permutation(n), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            step(tf.constant(k, dtype), tf.gather(Xt, idx), tf.gather(yt, idx))
        loss = float(full_loss())
        history.append(loss)
        if not math.isfinite(loss):
            break  # diverged: the best constants so far are kept
        significant = not math.isfinite(best_loss) or loss < best_loss - min_delta * abs(best_loss)
        if loss < best_loss:
            best_loss, best_u = loss, u.numpy().copy()
        since_best = 0 if significant else since_best + 1
        if since_best >= patience:
            break
        if best_loss == 0.0:
            break
    best = c0 + scale * best_u
    try:
        out = rule.with_constants([float(c) for c in best])
    except ValueError:  # a non-finite constant: keep the original
        out, best_loss = rule, loss0
    meta = dict(out.metadata)
    meta["refit"] = {"initial_mse": loss0, "final_mse": best_loss, "steps": len(history) - 1,
                     "learning_rate": float(learning_rate), "batch_size": batch_size,
                     "parametrization": parametrization}
    return RefitResult(out.replace(metadata=meta), history)
