"""The optimizee protocol: functional tasks whose parameters are plain tensors.

A learned optimizer is meta-trained by differentiating the optimizee's loss *through* its own updates, so the
optimizee cannot own `tf.Variable`s: every task here is a pure function of a list of parameter tensors.

* :class:`Network` — a functional model: ``param_specs()`` and ``apply(params, x) -> logits``.
* :class:`Task` — what an optimizer sees: ``init_params(seed)``, ``loss(params, batch)``, ``sample_batch(seed)``
  and ``evaluate(params)``. :class:`ClassificationTask` pairs a network with a :class:`~tf_symbolic_l2o.data.Dataset`.

Randomness is *stateless*: a seed is a ``[2]`` int tensor (see :func:`step_seed`), so a run is reproducible and
resumable from the step counter alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import tensorflow as tf

from tf_symbolic_l2o.seeds import step_seed  # noqa: F401  (re-exported: tasks draw their seeds with it)

INIT_SCHEMES = ("paper", "keras")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor of a network.

    Args:
        name: a readable name (``"dense_0/kernel"``).
        shape: the tensor's shape.
        kind: ``"kernel"``, ``"bias"``, ``"gamma"`` or ``"beta"``; chooses the Keras-default initialiser.
        fan_in, fan_out: for ``glorot_uniform`` / ``he_normal`` kernels.
    """

    name: str
    shape: tuple[int, ...]
    kind: str = "kernel"
    fan_in: int = 1
    fan_out: int = 1

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


def init_param(spec: ParamSpec, seed: tf.Tensor, scheme: str = "paper") -> tf.Tensor:
    """Initialise one parameter.

    ``"paper"``: every entry (weights, biases, BN scales alike) ~ N(0, 0.01²), as in the original code.
    ``"keras"``: Glorot-uniform kernels, zero biases and BN shifts, unit BN scales.
    """
    if scheme == "paper":
        return 0.01 * tf.random.stateless_normal(spec.shape, seed)
    if scheme == "keras":
        if spec.kind == "kernel":
            limit = math.sqrt(6.0 / (spec.fan_in + spec.fan_out))
            return tf.random.stateless_uniform(spec.shape, seed, -limit, limit)
        if spec.kind == "gamma":
            return tf.ones(spec.shape)
        return tf.zeros(spec.shape)
    raise ValueError(f"unknown init scheme {scheme!r}; use one of {INIT_SCHEMES}")


class Network:
    """A functional model. Subclasses define :meth:`param_specs` and :meth:`apply`."""

    def param_specs(self) -> list[ParamSpec]:
        raise NotImplementedError

    def apply(self, params: Sequence[tf.Tensor], x: tf.Tensor, training: bool = True) -> tf.Tensor:
        """Logits for inputs ``x``; ``params`` in the order of :meth:`param_specs`."""
        raise NotImplementedError

    def config(self) -> dict:
        return {}


class Task:
    """An optimization problem over a list of parameter tensors.

    Attributes:
        name: registry name of the task.
        has_accuracy: whether :meth:`evaluate` reports an accuracy.
    """

    name: str = "task"
    has_accuracy: bool = False

    def param_specs(self) -> list[ParamSpec]:
        raise NotImplementedError

    def init_params(self, seed: Any) -> list[tf.Tensor]:
        """Fresh parameters from a ``[2]`` seed (or an int)."""
        raise NotImplementedError

    def sample_batch(self, seed: tf.Tensor) -> Any:
        """A minibatch (nested tensors) drawn with a stateless ``[2]`` seed."""
        raise NotImplementedError

    def loss(self, params: Sequence[tf.Tensor], batch: Any) -> tf.Tensor:
        """Scalar float32 training loss."""
        raise NotImplementedError

    def evaluate(self, params: Sequence[tf.Tensor]) -> dict[str, float]:
        """Held-out metrics (``test_loss`` and, where it applies, ``test_accuracy``)."""
        return {}

    def config(self) -> dict:
        return {"name": self.name}

    # -- helpers shared by all tasks ---------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        return sum(s.size for s in self.param_specs())

    def flatten(self, params: Sequence[tf.Tensor]) -> tf.Tensor:
        return tf.concat([tf.reshape(p, [-1]) for p in params], axis=0)

    def unflatten(self, flat: tf.Tensor) -> list[tf.Tensor]:
        specs = self.param_specs()
        parts = tf.split(flat, [s.size for s in specs])
        return [tf.reshape(p, s.shape) for p, s in zip(parts, specs)]


class ClassificationTask(Task):
    """A network trained with softmax cross-entropy on minibatches of a dataset split.

    Args:
        network: the functional model.
        dataset: a :class:`~tf_symbolic_l2o.data.Dataset`.
        split: the training split the optimizer sees: ``"meta_train"`` (first half of the train set, used for
            meta-training and tuning baselines) or ``"eval"`` (second half: held-out evaluation runs) or
            ``"train"`` (all of it).
        batch_size: minibatch size (a fresh minibatch each step, sampled with replacement).
        init: ``"paper"`` (N(0, 0.01²)) or ``"keras"``.
        name: registry name.
    """

    has_accuracy = True

    def __init__(self, network: Network, dataset, split: str = "meta_train", batch_size: int = 128,
                 init: str = "paper", name: str = "classification"):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if init not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {init!r}; use one of {INIT_SCHEMES}")
        self.network = network
        self.dataset = dataset
        self.split = split
        self.batch_size = int(batch_size)
        self.init = init
        self.name = name
        x, y = dataset.split(split)
        self._x = tf.constant(x, tf.float32)
        self._y = tf.constant(y, tf.int32)
        self._x_test = tf.constant(dataset.x_test, tf.float32)
        self._y_test = tf.constant(dataset.y_test, tf.int32)
        self._specs = network.param_specs()

    def param_specs(self) -> list[ParamSpec]:
        return self._specs

    def init_params(self, seed: Any) -> list[tf.Tensor]:
        base = step_seed(seed)
        return [init_param(s, step_seed(base, i), self.init) for i, s in enumerate(self._specs)]

    def sample_batch(self, seed: tf.Tensor):
        n = tf.shape(self._x, out_type=tf.int32)[0]
        idx = tf.random.stateless_uniform([self.batch_size], seed, 0, n, dtype=tf.int32)
        return tf.gather(self._x, idx), tf.gather(self._y, idx)

    def loss(self, params, batch) -> tf.Tensor:
        x, y = batch
        logits = self.network.apply(params, x, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))

    def evaluate(self, params, batch_size: int = 1000) -> dict[str, float]:
        total_loss, correct, n = 0.0, 0, int(self._x_test.shape[0])
        for start in range(0, n, batch_size):
            x = self._x_test[start:start + batch_size]
            y = self._y_test[start:start + batch_size]
            logits = self.network.apply(params, x, training=False)
            total_loss += float(tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))
            correct += int(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                                 tf.int32)))
        return {"test_loss": total_loss / n, "test_accuracy": correct / n}

    def config(self) -> dict:
        return {"name": self.name, "network": self.network.config(), "dataset": self.dataset.name,
                "split": self.split, "batch_size": self.batch_size, "init": self.init}
