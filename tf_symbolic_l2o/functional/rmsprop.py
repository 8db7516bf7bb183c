"""RMSprop without momentum (Keras ``RMSprop``):

    v ← ρ·v + (1−ρ)·g²;   Δθ = −lr·g / (√v + ε)
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_symbolic_l2o.functional.base import HandDesigned


class RMSprop(HandDesigned):
    """RMSprop; the state is the second-moment EMA ``v``.

    Args:
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable``.
        rho: decay of the second moment.
        epsilon: ε added to its root.
    """

    kind = "rmsprop"

    def __init__(self, learning_rate: Any = 1e-3, rho: float = 0.9, epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.rho, self.epsilon = rho, epsilon

    def init_state(self, num_coords: int):
        return (tf.zeros([num_coords]),)

    def update(self, grad, state, step, params=None):
        del params
        (v,) = state
        v = self.rho * v + (1.0 - self.rho) * tf.square(grad)
        return -self.lr(grad.dtype) * grad / (tf.sqrt(v) + self.epsilon), (v,)

    def hyperparameters(self) -> dict:
        return {"rho": self.rho, "epsilon": self.epsilon}
