"""Small convolutional optimizee (the paper's ``SMALL_CNN``).

Architecture (NHWC, stride-1 3x3 convolutions, 2x2/stride-2 max pooling)::

    conv3x3(C -> 6) + ReLU + maxpool2  ->  conv3x3(6 -> 12) + ReLU + maxpool2  ->  flatten  ->  dense(num_classes)

On CIFAR-10-shaped inputs (32, 32, 3) with ``padding="VALID"`` the spatial size goes 32 -> 30 -> 15 -> 13 -> 6, so
the classifier sees 6 * 6 * 12 = 432 features; with 5 classes the network has 2,993 parameters.

The network is functional: :meth:`SmallCNN.apply` is a pure function of a list of parameter tensors (see
:mod:`tf_symbolic_l2o.tasks.base`), and works in graph mode and under XLA (``jit_compile=True``).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tf_symbolic_l2o.tasks.base import Network, ParamSpec

PADDINGS = ("VALID", "SAME")
KERNEL_SIZE = 3
POOL_SIZE = 2


class SmallCNN(Network):
    """A stack of conv(3x3) + ReLU + maxpool(2x2) blocks followed by one dense layer.

    Args:
        input_shape: ``(H, W, C)`` of one example, e.g. ``(32, 32, 3)`` (CIFAR) or ``(28, 28, 1)`` (MNIST).
            Inputs to :meth:`apply` may be images ``[N, H, W, C]`` or flat vectors ``[N, H*W*C]``; both are reshaped
            to NHWC.
        num_classes: width of the output logits.
        channels: output channels of each conv block; the paper uses ``(6, 12)``.
        padding: ``"VALID"`` (the paper's default: each conv shrinks the map by 2) or ``"SAME"``. Pooling is always
            2x2 with stride 2 and ``"VALID"`` padding (odd sizes are floored).

    Parameters (in :meth:`param_specs` order): for each conv block a kernel ``[3, 3, c_in, c_out]`` (Glorot fans
    ``fan_in = 9 * c_in``, ``fan_out = 9 * c_out``) and a bias ``[c_out]``; then the dense kernel
    ``[features, num_classes]`` and bias ``[num_classes]``.
    """

    def __init__(self, input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10,
                 channels: Sequence[int] = (6, 12), padding: str = "VALID"):
        padding = str(padding).upper()
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; use one of {PADDINGS}")
        if len(input_shape) != 3 or any(int(d) <= 0 for d in input_shape):
            raise ValueError(f"input_shape must be three positive ints (H, W, C), got {tuple(input_shape)}")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if len(channels) == 0 or any(int(c) <= 0 for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of positive ints, got {list(channels)}")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.channels = tuple(int(c) for c in channels)
        self.padding = padding

        h, w, _ = self.input_shape
        for i, _c in enumerate(self.channels):
            if padding == "VALID":
                h, w = h - KERNEL_SIZE + 1, w - KERNEL_SIZE + 1
            h, w = h // POOL_SIZE, w // POOL_SIZE
            if h <= 0 or w <= 0:
                raise ValueError(f"input_shape {self.input_shape} is too small for {len(self.channels)} conv blocks "
                                 f"with padding={padding} (feature map vanishes after block {i})")
        self.feature_shape = (h, w, self.channels[-1])
        self.num_features = h * w * self.channels[-1]

    def param_specs(self) -> list[ParamSpec]:
        specs = []
        c_in = self.input_shape[-1]
        k2 = KERNEL_SIZE * KERNEL_SIZE
        for i, c_out in enumerate(self.channels):
            specs.append(ParamSpec(f"conv_{i}/kernel", (KERNEL_SIZE, KERNEL_SIZE, c_in, c_out), "kernel",
                                   k2 * c_in, k2 * c_out))
            specs.append(ParamSpec(f"conv_{i}/bias", (c_out,), "bias"))
            c_in = c_out
        specs.append(ParamSpec("dense/kernel", (self.num_features, self.num_classes), "kernel",
                               self.num_features, self.num_classes))
        specs.append(ParamSpec("dense/bias", (self.num_classes,), "bias"))
        return specs

    def apply(self, params, x, training: bool = True):
        n_conv = len(self.channels)
        if len(params) != 2 * n_conv + 2:
            raise ValueError(f"SmallCNN expects {2 * n_conv + 2} parameter tensors, got {len(params)}")
        h = tf.reshape(tf.cast(x, tf.float32), [-1, *self.input_shape])
        for i in range(n_conv):
            h = tf.nn.conv2d(h, params[2 * i], strides=1, padding=self.padding) + params[2 * i + 1]
            h = tf.nn.relu(h)
            h = tf.nn.max_pool2d(h, ksize=POOL_SIZE, strides=POOL_SIZE, padding="VALID")
        h = tf.reshape(h, [-1, self.num_features])
        return tf.matmul(h, params[-2]) + params[-1]

    def config(self) -> dict:
        return {"type": "cnn", "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "channels": list(self.channels), "padding": self.padding}
