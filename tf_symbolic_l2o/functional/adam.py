"""Adam (Keras ``Adam``, Kingma & Ba 2015), with Keras's ε placement:

    m ← β1·m + (1−β1)·g;   v ← β2·v + (1−β2)·g²
    Δθ = −lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_symbolic_l2o.functional.base import HandDesigned


class Adam(HandDesigned):
    """Adam; the state is ``(m, v)``.

    Args:
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable``.
        beta1, beta2: decays of the first and second moment.
        epsilon: ε added to the root of the second moment.
    """

    kind = "adam"

    def __init__(self, learning_rate: Any = 1e-3, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def init_state(self, num_coords: int):
        z = tf.zeros([num_coords])
        return z, z

    def update(self, grad, state, step, params=None):
        del params
        m, v = state
        lr = self.lr(grad.dtype)
        t = tf.cast(step, grad.dtype)
        m = self.beta1 * m + (1.0 - self.beta1) * grad
        v = self.beta2 * v + (1.0 - self.beta2) * tf.square(grad)
        alpha = lr * tf.sqrt(1.0 - tf.pow(self.beta2, t)) / (1.0 - tf.pow(self.beta1, t))
        return -alpha * m / (tf.sqrt(v) + self.epsilon), (m, v)

    def hyperparameters(self) -> dict:
        return {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon}
