"""The coordinate-wise optimizer protocol shared by learned, hand-designed and symbolic update rules.

Every optimizer the meta-training engine, the evaluator and the recorder drive is a *functional* update rule over a
flat vector of coordinates (all parameters of the optimizee concatenated):

    state = opt.init_state(num_coords)
    delta, state = opt.update(grad, state, step)      # step is 1-based
    theta = theta + delta

``state`` is any nest of tensors with a fixed structure (so it can be carried through ``tf.while_loop``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import tensorflow as tf


@runtime_checkable
class CoordinateOptimizer(Protocol):
    """What the engine needs from an optimizer."""

    name: str

    def init_state(self, num_coords: int) -> Any:
        ...

    def update(self, grad: tf.Tensor, state: Any, step) -> tuple[tf.Tensor, Any]:
        ...
