"""SGD with heavy-ball momentum (Keras ``SGD(momentum=μ)``):

    b ← μ·b − lr·g;   Δθ = b
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_symbolic_l2o.functional.base import HandDesigned


class Momentum(HandDesigned):
    """SGD with heavy-ball momentum; the state is the velocity ``b``.

    Args:
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable``.
        momentum: μ.
    """

    kind = "momentum"

    def __init__(self, learning_rate: Any = 1e-3, momentum: float = 0.9):
        super().__init__(learning_rate)
        self.momentum = momentum

    def init_state(self, num_coords: int):
        return (tf.zeros([num_coords]),)

    def update(self, grad, state, step, params=None):
        del params
        (b,) = state
        b = self.momentum * b - self.lr(grad.dtype) * grad
        return b, (b,)

    def hyperparameters(self) -> dict:
        return {"momentum": self.momentum}
