"""AdamW (Keras ``AdamW``, Loshchilov & Hutter 2019): the Adam step plus decoupled weight decay,

    Δθ = Adam's step − lr·wd·θ

which is Keras's order (θ ← θ − lr·wd·θ, then the Adam step), written as one step from the same θ.
"""

from __future__ import annotations

from typing import Any

from tf_symbolic_l2o.functional.adam import Adam
from tf_symbolic_l2o.functional.base import weight_decay_step


class AdamW(Adam):
    """Adam with decoupled weight decay; the state is Adam's ``(m, v)``. The decay reads θ from ``update``'s
    ``params``, which must then be given.

    Args:
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable``.
        weight_decay: wd (≥ 0; 0 = Adam).
        beta1, beta2, epsilon: as :class:`~tf_symbolic_l2o.functional.adam.Adam`.
    """

    kind = "adamw"

    def __init__(self, learning_rate: Any = 1e-3, weight_decay: float = 0.004, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-7):
        super().__init__(learning_rate, float(beta1), float(beta2), float(epsilon))
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
        self.weight_decay = float(weight_decay)

    def update(self, grad, state, step, params=None):
        delta, state = super().update(grad, state, step)
        if self.weight_decay:
            delta = delta - weight_decay_step(params, self.weight_decay, self.lr(grad.dtype))
        return delta, state

    def hyperparameters(self) -> dict:
        return {"weight_decay": self.weight_decay, **super().hyperparameters()}

