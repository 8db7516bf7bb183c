"""A dense autoencoder on flat inputs (scikit-learn's digits by default), trained on mean squared reconstruction
error: the ``autoencoder`` task of :mod:`tf_symbolic_l2o.tasks.registry`, a different domain from the classifiers.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import tensorflow as tf

from tf_symbolic_l2o.seeds import step_seed
from tf_symbolic_l2o.tasks.base import ParamSpec, Task


class AutoencoderTask(Task):
    """A dense autoencoder ``D → hidden… → code → …hidden → D``, trained on mean squared reconstruction error.

    Args:
        dataset: a :class:`~tf_symbolic_l2o.data.Dataset` with flat inputs (``digits``: D = 64).
        split: training split (``meta_train``, ``eval`` or ``train``); the test metric is the test-set MSE.
        code: bottleneck width; ``hidden``: widths between input and code (mirrored in the decoder).
        batch_size: minibatch size.
        activation: ``tanh`` (default) or ``relu``; the code and output layers are linear.

    Kernels use Glorot-uniform initialisation and biases start at zero.
    """

    has_accuracy = False

    def __init__(self, dataset, split: str = "meta_train", code: int = 8, hidden: Sequence[int] = (32,),
                 batch_size: int = 64, activation: str = "tanh", name: str = "autoencoder"):
        if activation not in ("tanh", "relu"):
            raise ValueError(f"unknown activation {activation!r}; use tanh or relu")
        if batch_size <= 0 or code <= 0 or any(int(h) <= 0 for h in hidden):
            raise ValueError("batch_size, code and hidden widths must be positive")
        x, _ = dataset.split(split)
        if len(x.shape) != 2:
            raise ValueError(f"the autoencoder needs flat inputs, got shape {x.shape[1:]}")
        self.dataset, self.split, self.code, self.hidden = dataset, split, int(code), tuple(int(h) for h in hidden)
        self.batch_size, self.activation, self.name = int(batch_size), activation, name
        self.dim = int(x.shape[1])
        self._x = tf.constant(x, tf.float32)
        self._x_test = tf.constant(dataset.x_test, tf.float32)
        sizes = (self.dim, *self.hidden, self.code, *reversed(self.hidden), self.dim)
        self._linear_after = {len(self.hidden), len(sizes) - 2}  # the code layer and the output layer
        self._specs = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self._specs += [ParamSpec(f"dense_{i}/kernel", (a, b), "kernel", a, b), ParamSpec(f"dense_{i}/bias", (b,),
                                                                                               "bias")]

    def param_specs(self) -> list[ParamSpec]:
        return self._specs

    def init_params(self, seed: Any) -> list[tf.Tensor]:
        base = step_seed(seed)
        out = []
        for i, s in enumerate(self._specs):
            if s.kind == "kernel":
                limit = math.sqrt(6.0 / (s.fan_in + s.fan_out))
                out.append(tf.random.stateless_uniform(s.shape, step_seed(base, i), -limit, limit))
            else:
                out.append(tf.zeros(s.shape))
        return out

    def sample_batch(self, seed: tf.Tensor):
        n = tf.shape(self._x, out_type=tf.int32)[0]
        idx = tf.random.stateless_uniform([self.batch_size], seed, 0, n, dtype=tf.int32)
        return tf.gather(self._x, idx)

    def reconstruct(self, params, x) -> tf.Tensor:
        act = tf.nn.tanh if self.activation == "tanh" else tf.nn.relu
        h = x
        for i in range(len(params) // 2):
            h = tf.matmul(h, params[2 * i]) + params[2 * i + 1]
            if i not in self._linear_after:
                h = act(h)
        return h

    def loss(self, params, batch) -> tf.Tensor:
        return tf.reduce_mean(tf.square(self.reconstruct(params, batch) - batch))

    def evaluate(self, params) -> dict[str, float]:
        return {"test_loss": float(self.loss(params, self._x_test))}

    def config(self) -> dict:
        return {"name": self.name, "type": "autoencoder", "dataset": self.dataset.name, "split": self.split,
                "code": self.code, "hidden": list(self.hidden), "batch_size": self.batch_size,
                "activation": self.activation}
