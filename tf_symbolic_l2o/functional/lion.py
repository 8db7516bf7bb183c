"""Lion (Keras ``Lion``, Chen et al. 2023), with optional decoupled weight decay:

    Δθ = −lr·sign(β1·m + (1−β1)·g) − lr·wd·θ;   m ← β2·m + (1−β2)·g
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_symbolic_l2o.functional.base import HandDesigned, weight_decay_step


class Lion(HandDesigned):
    """Lion; the state is the momentum ``m``. With weight decay, ``update`` needs θ as ``params``.

    Args:
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable``.
        beta1: interpolation of momentum and gradient inside the sign.
        beta2: decay of the momentum.
        weight_decay: wd (``None`` or 0 = none).
    """

    kind = "lion"

    def __init__(self, learning_rate: Any = 1e-4, beta1: float = 0.9, beta2: float = 0.99,
                 weight_decay: float | None = None):
        super().__init__(learning_rate)
        if not (0 <= beta1 <= 1 and 0 <= beta2 <= 1):
            raise ValueError(f"beta1 and beta2 must lie in [0, 1], got {beta1}, {beta2}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.weight_decay = float(weight_decay) if weight_decay else 0.0

    def init_state(self, num_coords: int):
        return (tf.zeros([num_coords]),)

    def update(self, grad, state, step, params=None):
        (m,) = state
        lr = self.lr(grad.dtype)
        delta = -lr * tf.sign(m * self.beta1 + grad * (1.0 - self.beta1))
        if self.weight_decay:
            delta = delta - weight_decay_step(params, self.weight_decay, lr)
        m = m * self.beta2 + grad * (1.0 - self.beta2)
        return delta, (m,)

    def hyperparameters(self) -> dict:
        return {"beta1": self.beta1, "beta2": self.beta2, "weight_decay": self.weight_decay}
