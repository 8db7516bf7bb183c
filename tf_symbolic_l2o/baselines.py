"""Hand-designed optimizers as functional coordinate-wise update rules (the baselines and SR teachers).

Each follows the :class:`~tf_symbolic_l2o.learned.base.CoordinateOptimizer` protocol and reproduces the update of
the Keras optimizer of the same name (default ε = 1e-7), so a learning rate tuned here transfers to
``keras.optimizers``:

* ``sgd``:      Δθ = −lr·g
* ``momentum``: b = μ·b − lr·g;  Δθ = b                           (Keras SGD(momentum=μ), heavy ball)
* ``adam``:     m, v EMAs; Δθ = −lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)   (Keras Adam)
* ``rmsprop``:  v = ρ·v + (1−ρ)·g²;  Δθ = −lr·g / (√v + ε)         (Keras RMSprop, no momentum)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

BASELINES = ("sgd", "momentum", "adam", "rmsprop")


@dataclasses.dataclass
class Baseline:
    """A hand-designed optimizer.

    Args:
        kind: one of :data:`BASELINES`.
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable`` (to sweep it without retracing).
        momentum: μ for ``momentum``.
        beta1, beta2: Adam decays.
        rho: RMSprop decay.
        epsilon: ε added to the root of the second moment.
    """

    kind: str
    learning_rate: Any = 1e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    rho: float = 0.9
    epsilon: float = 1e-7

    def __post_init__(self):
        if self.kind not in BASELINES:
            raise ValueError(f"unknown baseline {self.kind!r}; use one of {', '.join(BASELINES)}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be positive, got {float(self.learning_rate)}")

    @property
    def name(self) -> str:
        return f"{self.kind}(lr={float(self.learning_rate):g})"

    def init_state(self, num_coords: int):
        z = tf.zeros([num_coords])
        return {"sgd": (), "momentum": (z,), "adam": (z, z), "rmsprop": (z,)}[self.kind]

    def update(self, grad, state, step):
        lr = tf.cast(self.learning_rate, grad.dtype)
        if self.kind == "sgd":
            return -lr * grad, ()
        if self.kind == "momentum":
            (b,) = state
            b = self.momentum * b - lr * grad
            return b, (b,)
        if self.kind == "rmsprop":
            (v,) = state
            v = self.rho * v + (1.0 - self.rho) * tf.square(grad)
            return -lr * grad / (tf.sqrt(v) + self.epsilon), (v,)
        m, v = state
        t = tf.cast(step, grad.dtype)
        m = self.beta1 * m + (1.0 - self.beta1) * grad
        v = self.beta2 * v + (1.0 - self.beta2) * tf.square(grad)
        alpha = lr * tf.sqrt(1.0 - tf.pow(self.beta2, t)) / (1.0 - tf.pow(self.beta1, t))
        return -alpha * m / (tf.sqrt(v) + self.epsilon), (m, v)

    def config(self) -> dict:
        return {**dataclasses.asdict(self), "learning_rate": float(self.learning_rate)}
