"""Functional CIFAR-style residual networks (BasicBlock ResNets) as optimizees.

Two families share one implementation:

* ``depth=18`` (and ``34``): the "ImageNet ResNet adapted to CIFAR" of kuangliu/pytorch-cifar — a 3x3 stride-1
  stem (no max-pool), four stages of BasicBlocks (``[2, 2, 2, 2]`` for 18, ``[3, 4, 6, 3]`` for 34) with widths
  64/128/256/512 and strides 1/2/2/2, global average pooling and a dense classifier. With 10 classes ResNet-18 has
  11,173,962 parameters (BatchNorm scales and shifts included; there are no running statistics).
* ``depth = 6n + 2`` (8, 14, 20, 32, 44, 56, 110): He et al.'s CIFAR ResNets — a 3x3 stem with 16 channels, three
  stages of ``n`` BasicBlocks with widths 16/32/64 and strides 1/2/2, global average pooling, dense classifier.

Every convolution has no bias when followed by BatchNorm (``norm="batch"``) and a bias otherwise (``norm="none"``).
3x3 convolutions pad one pixel on every side (PyTorch's ``padding=1``, so stride-2 convolutions sample the same
pixels as the reference code); when a block changes the shape of its input the shortcut is a 1x1 stride-2
convolution followed by BatchNorm ("option B").

**BatchNorm is functional.** Parameters are plain tensors that a learned optimizer updates and differentiates
through, so there are no moving averages: every BatchNorm layer normalises with the statistics (mean and biased
variance over batch, height and width) of the batch it is given, in training *and* evaluation alike — ``training``
is accepted for protocol compatibility and ignored. Evaluation results therefore depend (mildly) on the evaluation
batch size; use large evaluation batches. Only the affine ``gamma`` (``kind="gamma"``) and ``beta``
(``kind="beta"``) are parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf

from tf_symbolic_l2o.tasks.base import Network, ParamSpec

NORMS = ("batch", "none")
BN_EPSILON = 1e-5  # PyTorch's default, as in the reference implementations.
#: BasicBlock ResNets with the ImageNet stage layout on CIFAR-sized inputs (kuangliu/pytorch-cifar).
IMAGENET_STYLE_LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
IMAGENET_STYLE_WIDTHS = (64, 128, 256, 512)
#: He et al. (2016) CIFAR ResNets: depth = 6n + 2.
CIFAR_DEPTHS = (8, 14, 20, 32, 44, 56, 110)
CIFAR_WIDTHS = (16, 32, 64)
VALID_DEPTHS = tuple(sorted((*IMAGENET_STYLE_LAYOUTS, *CIFAR_DEPTHS)))


@dataclasses.dataclass(frozen=True)
class _Block:
    """One BasicBlock: conv3x3(stride) - BN - ReLU - conv3x3 - BN, plus identity or 1x1-conv shortcut, ReLU."""

    c_in: int
    c_out: int
    stride: int

    @property
    def projection(self) -> bool:
        return self.stride != 1 or self.c_in != self.c_out


class ResNet(Network):
    """A BasicBlock residual network evaluated as a pure function of its parameter tensors.

    Args:
        depth: ``18`` or ``34`` (kuangliu CIFAR variants, widths 64..512) or ``6n + 2`` in
            ``(8, 14, 20, 32, 44, 56, 110)`` (He et al. CIFAR ResNets, widths 16/32/64).
        input_shape: ``(H, W, C)`` of one example; inputs to :meth:`apply` may be ``[N, H, W, C]`` or flat.
        num_classes: width of the output logits.
        width_multiplier: scales every stage width (and the stem), ``round(width * width_multiplier)``.
        norm: ``"batch"`` (functional BatchNorm with batch statistics, see the module docstring) or ``"none"``
            (convolutions get biases instead).

    Parameters (in :meth:`param_specs` order): stem conv (+ BN), then per block ``conv1`` (+ BN), ``conv2`` (+ BN)
    and, where the shape changes, the shortcut conv (+ BN); finally the dense kernel and bias. Each conv+BN unit
    contributes ``kernel`` then ``gamma``, ``beta`` (or ``kernel``, ``bias`` without BN). Conv kernels carry
    Kaiming/He fan information ``fan_in = kh * kw * c_in`` and ``fan_out = kh * kw * c_out``.
    """

    def __init__(self, depth: int = 20, input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10,
                 width_multiplier: float = 1, norm: str = "batch"):
        if depth not in VALID_DEPTHS:
            raise ValueError(f"unsupported ResNet depth {depth!r}; use one of {VALID_DEPTHS}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; use one of {NORMS}")
        if len(input_shape) != 3 or any(int(d) <= 0 for d in input_shape):
            raise ValueError(f"input_shape must be three positive ints (H, W, C), got {tuple(input_shape)}")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier must be positive, got {width_multiplier}")
        self.depth = int(depth)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.width_multiplier = width_multiplier
        self.norm = norm

        if self.depth in IMAGENET_STYLE_LAYOUTS:
            layout, widths = IMAGENET_STYLE_LAYOUTS[self.depth], IMAGENET_STYLE_WIDTHS
        else:
            n = (self.depth - 2) // 6
            layout, widths = (n,) * len(CIFAR_WIDTHS), CIFAR_WIDTHS
        widths = tuple(max(1, int(round(w * width_multiplier))) for w in widths)
        self.stage_blocks = layout
        self.widths = widths
        self.stem_width = widths[0]
        blocks, c_in = [], widths[0]
        for stage, (n_blocks, c_out) in enumerate(zip(layout, widths)):
            for b in range(n_blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                blocks.append(_Block(c_in, c_out, stride))
                c_in = c_out
        self.blocks = tuple(blocks)
        self.feature_width = c_in
        self._num_tensors = len(self.param_specs())

    # -- parameters -------------------------------------------------------------------------------------
    def _conv_specs(self, name: str, k: int, c_in: int, c_out: int) -> list[ParamSpec]:
        specs = [ParamSpec(f"{name}/kernel", (k, k, c_in, c_out), "kernel", k * k * c_in, k * k * c_out)]
        if self.norm == "batch":
            specs.append(ParamSpec(f"{name}/bn/gamma", (c_out,), "gamma"))
            specs.append(ParamSpec(f"{name}/bn/beta", (c_out,), "beta"))
        else:
            specs.append(ParamSpec(f"{name}/bias", (c_out,), "bias"))
        return specs

    def param_specs(self) -> list[ParamSpec]:
        specs = self._conv_specs("stem", 3, self.input_shape[-1], self.stem_width)
        for i, blk in enumerate(self.blocks):
            specs += self._conv_specs(f"block_{i}/conv1", 3, blk.c_in, blk.c_out)
            specs += self._conv_specs(f"block_{i}/conv2", 3, blk.c_out, blk.c_out)
            if blk.projection:
                specs += self._conv_specs(f"block_{i}/shortcut", 1, blk.c_in, blk.c_out)
        specs.append(ParamSpec("dense/kernel", (self.feature_width, self.num_classes), "kernel",
                               self.feature_width, self.num_classes))
        specs.append(ParamSpec("dense/bias", (self.num_classes,), "bias"))
        return specs

    # -- forward pass -----------------------------------------------------------------------------------
    def _conv_unit(self, h: tf.Tensor, params: Sequence[tf.Tensor], pos: int, k: int, stride: int):
        """conv (k x k, ``stride``) followed by BN or bias; returns the output and the next parameter index."""
        pad = (k - 1) // 2
        padding = "VALID" if pad == 0 else [[0, 0], [pad, pad], [pad, pad], [0, 0]]
        h = tf.nn.conv2d(h, params[pos], strides=stride, padding=padding)
        if self.norm == "batch":
            mean, var = tf.nn.moments(h, axes=[0, 1, 2])
            h = tf.nn.batch_normalization(h, mean, var, offset=params[pos + 2], scale=params[pos + 1],
                                          variance_epsilon=BN_EPSILON)
        else:
            h = h + params[pos + 1]
        return h, pos + 3 if self.norm == "batch" else pos + 2

    def apply(self, params, x, training: bool = True):
        """Logits ``[N, num_classes]``. ``training`` is ignored: BatchNorm always uses batch statistics."""
        if len(params) != self._num_tensors:
            raise ValueError(f"ResNet-{self.depth} expects {self._num_tensors} parameter tensors, got {len(params)}")
        h = tf.reshape(tf.cast(x, tf.float32), [-1, *self.input_shape])
        h, pos = self._conv_unit(h, params, 0, 3, 1)
        h = tf.nn.relu(h)
        for blk in self.blocks:
            out, pos = self._conv_unit(h, params, pos, 3, blk.stride)
            out = tf.nn.relu(out)
            out, pos = self._conv_unit(out, params, pos, 3, 1)
            if blk.projection:
                shortcut, pos = self._conv_unit(h, params, pos, 1, blk.stride)
            else:
                shortcut = h
            h = tf.nn.relu(out + shortcut)
        h = tf.reduce_mean(h, axis=[1, 2])
        return tf.matmul(h, params[pos]) + params[pos + 1]

    def config(self) -> dict:
        return {"type": "resnet", "depth": self.depth, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "width_multiplier": self.width_multiplier, "norm": self.norm}
