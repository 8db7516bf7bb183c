"""The functional optimizer protocol every optimizer of the library follows, and the base of the hand-designed ones.

An optimizer is a *functional* update rule over a flat vector of coordinates (all parameters of the optimizee
concatenated), in the style of optax's ``GradientTransformation``:

    state = opt.init_state(num_coords)                        # optax's init
    delta, state = opt.update(grad, state, step, params=θ)    # step is 1-based
    θ = θ + delta

``state`` is any nest of tensors with a fixed structure (so it can be carried through ``tf.while_loop``). ``params``
is the current θ (the flat vector the step is added to); rules that do not need it (most) ignore it, decoupled
weight decay (:class:`~tf_symbolic_l2o.functional.adamw.AdamW`, :class:`~tf_symbolic_l2o.functional.lion.Lion`)
reads it. The learned LSTM optimizers, the symbolic rules and the hand-designed optimizers of this package are
peers under this protocol: the meta-training engine, the evaluation harness and the recorder drive them alike.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import tensorflow as tf


@runtime_checkable
class CoordinateOptimizer(Protocol):
    """What the engine needs from an optimizer.

    ``init_state(num_coords)`` plays optax's ``init``: the state of ``num_coords`` coordinates.
    ``update(grad, state, step, params=None)`` returns the step Δθ and the new state; ``params`` is θ.
    """

    name: str

    def init_state(self, num_coords: int) -> Any:
        ...

    def update(self, grad: tf.Tensor, state: Any, step, params: tf.Tensor | None = None) -> tuple[tf.Tensor, Any]:
        ...


class HandDesigned:
    """Base class of the hand-designed optimizers: a learning rate, a name, a config.

    Subclasses set ``kind`` (the registry name), implement ``init_state`` and ``update`` and list their
    hyperparameters in ``hyperparameters()``. Each reproduces the update of the Keras optimizer of the same name, so
    a learning rate tuned here transfers to ``keras.optimizers``.

    Args:
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable`` (to sweep it without retracing).
    """

    kind: str = ""

    def __init__(self, learning_rate: Any):
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be positive, got {float(learning_rate)}")
        self.learning_rate = learning_rate

    @property
    def name(self) -> str:
        return f"{self.kind}(lr={float(self.learning_rate):g})"

    def lr(self, dtype) -> tf.Tensor:
        """The learning rate as a tensor of ``dtype`` (read at every step: a ``tf.Variable`` may change)."""
        return tf.cast(self.learning_rate, dtype)

    def hyperparameters(self) -> dict:
        """The hyperparameters other than the learning rate."""
        return {}

    def config(self) -> dict:
        return {"kind": self.kind, "learning_rate": float(self.learning_rate), **self.hyperparameters()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "kind")
        return f"{type(self).__name__}({args})"


def weight_decay_step(params, weight_decay: float, lr) -> tf.Tensor:
    """``lr·wd·θ``, the decoupled weight decay subtracted from a step (AdamW, Lion); ``params`` is θ."""
    if params is None:
        raise ValueError("decoupled weight decay needs the parameters: call update(grad, state, step, params=θ)")
    return params * (weight_decay * lr)


def state_bytes_per_param(optimizer, num_coords: int) -> float:
    """Bytes of optimizer state per optimized parameter (``init_state(num_coords)``'s tensors ÷ ``num_coords``)."""
    total = 0
    for t in tf.nest.flatten(optimizer.init_state(num_coords)):
        t = tf.convert_to_tensor(t)
        total += int(tf.size(t)) * t.dtype.size
    return total / float(num_coords)
