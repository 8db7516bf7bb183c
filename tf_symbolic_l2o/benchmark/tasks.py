"""The functional task the benchmark adds to :mod:`tf_symbolic_l2o.tasks`: the 2-D Rosenbrock function (a sanity
problem, never meta-trained on). It follows the :class:`~tf_symbolic_l2o.tasks.base.Task` protocol (parameters are
plain tensors, stateless seeds), so every optimizer and rollout of the library drives it. The autoencoder lives in
:mod:`tf_symbolic_l2o.tasks.autoencoder` (a registry task, also in the meta-training families).
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from tf_symbolic_l2o.seeds import step_seed
from tf_symbolic_l2o.tasks.autoencoder import AutoencoderTask  # its former home: kept importable from here
from tf_symbolic_l2o.tasks.base import ParamSpec, Task

__all__ = ["AutoencoderTask", "RosenbrockTask"]


class RosenbrockTask(Task):
    """``f(x, y) = (a − x)² + b·(y − x²)²`` (minimum 0 at ``(a, a²)``), deterministic.

    Args:
        a, b: the usual constants (1 and 100).
        start: the classic starting point ``(-1.5, 2)``; each seed adds ``N(0, init_std²)`` to it.
        init_std: spread of the starting points across seeds.
    """

    has_accuracy = False

    def __init__(self, a: float = 1.0, b: float = 100.0, start: Sequence[float] = (-1.5, 2.0),
                 init_std: float = 0.1, name: str = "rosenbrock"):
        if len(start) != 2:
            raise ValueError(f"start must be a 2-D point, got {list(start)}")
        if init_std < 0:
            raise ValueError(f"init_std must be non-negative, got {init_std}")
        self.a, self.b, self.start, self.init_std, self.name = float(a), float(b), tuple(map(float, start)), \
            float(init_std), name
        self._specs = [ParamSpec("xy", (2,), "kernel", 2, 2)]

    def param_specs(self) -> list[ParamSpec]:
        return self._specs

    def init_params(self, seed: Any) -> list[tf.Tensor]:
        noise = self.init_std * tf.random.stateless_normal([2], step_seed(seed))
        return [tf.constant(self.start, tf.float32) + noise]

    def sample_batch(self, seed: tf.Tensor) -> tf.Tensor:
        return tf.zeros([])  # deterministic: a placeholder so the rollout stays inside tf.function

    def loss(self, params, batch=None) -> tf.Tensor:
        x, y = params[0][0], params[0][1]
        return tf.square(self.a - x) + self.b * tf.square(y - tf.square(x))

    def evaluate(self, params) -> dict[str, float]:
        return {"test_loss": float(self.loss(params))}

    def config(self) -> dict:
        return {"name": self.name, "type": "rosenbrock", "a": self.a, "b": self.b, "start": list(self.start),
                "init_std": self.init_std}
