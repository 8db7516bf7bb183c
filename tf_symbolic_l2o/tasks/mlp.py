"""Multi-layer perceptron optimizee (the paper's default: 784 → 30 → 20 → 10, ReLU)."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tf_symbolic_l2o.tasks.base import Network, ParamSpec

ACTIVATIONS = {"relu": tf.nn.relu, "sigmoid": tf.nn.sigmoid, "tanh": tf.nn.tanh, "elu": tf.nn.elu}


class MLP(Network):
    """Fully connected network on flattened inputs.

    Args:
        input_dim: number of input features (784 for MNIST).
        hidden: hidden layer widths, e.g. ``(30, 20)``.
        num_classes: output width.
        activation: ``"relu"`` (the paper's default), ``"sigmoid"`` (the original DM/RNNprop papers), ``"tanh"``
            or ``"elu"``.
    """

    def __init__(self, input_dim: int, hidden: Sequence[int] = (30, 20), num_classes: int = 10,
                 activation: str = "relu"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        if input_dim <= 0 or num_classes <= 0 or any(h <= 0 for h in hidden):
            raise ValueError(f"layer sizes must be positive, got input={input_dim} hidden={list(hidden)} "
                             f"classes={num_classes}")
        self.input_dim = int(input_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.num_classes = int(num_classes)
        self.activation = activation

    def param_specs(self) -> list[ParamSpec]:
        sizes = (self.input_dim, *self.hidden, self.num_classes)
        specs = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            specs.append(ParamSpec(f"dense_{i}/kernel", (a, b), "kernel", a, b))
            specs.append(ParamSpec(f"dense_{i}/bias", (b,), "bias"))
        return specs

    def apply(self, params, x, training: bool = True):
        h = tf.reshape(x, [tf.shape(x)[0], self.input_dim])
        act = ACTIVATIONS[self.activation]
        n_layers = len(params) // 2
        for i in range(n_layers):
            h = tf.matmul(h, params[2 * i]) + params[2 * i + 1]
            if i < n_layers - 1:
                h = act(h)
        return h

    def config(self) -> dict:
        return {"type": "mlp", "input_dim": self.input_dim, "hidden": list(self.hidden),
                "num_classes": self.num_classes, "activation": self.activation}
