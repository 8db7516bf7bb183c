"""Plain stochastic gradient descent: Δθ = −lr·g (Keras ``SGD``)."""

from __future__ import annotations

from typing import Any

from tf_symbolic_l2o.functional.base import HandDesigned


class SGD(HandDesigned):
    """Stochastic gradient descent without momentum; no state.

    Args:
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable``.
    """

    kind = "sgd"

    def __init__(self, learning_rate: Any = 1e-3):
        super().__init__(learning_rate)

    def init_state(self, num_coords: int):
        return ()

    def update(self, grad, state, step, params=None):
        del params
        return -self.lr(grad.dtype) * grad, ()
