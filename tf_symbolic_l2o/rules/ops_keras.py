"""The ``keras.ops`` implementations of the whitelisted operators (:mod:`tf_symbolic_l2o.rules.ops`), for every Keras
backend (JAX, PyTorch, TensorFlow), and the same functions on ``jax.numpy`` (for the rules as optax
transformations, :mod:`tf_symbolic_l2o.optax_rules`).

Same values as the NumPy and TensorFlow implementations, protected regions included (see the table in
:mod:`~tf_symbolic_l2o.rules.ops`); protected branches use the double ``where`` pattern, so gradients stay finite
at the protected points. Arguments are converted to the floating dtype of the first tensor argument (float32 when
there is none); ``logm`` and ``sinh`` of float16/bfloat16 inputs are computed in float32. ``erfc`` is ``1 − erf``.
Both tables are built by :func:`make_table` from the backend's array namespace
(:func:`~tf_symbolic_l2o.features.array_ops`, ``keras.ops``' names).
"""

from __future__ import annotations

import types

from tf_symbolic_l2o.features import array_ops
from tf_symbolic_l2o.rules.ops import DIV_EPS, EXP_CLIP, LOGM_EPS

_HALF = ("float16", "bfloat16")


def make_table(o: types.SimpleNamespace) -> dict:
    """``{operator name: implementation}`` on the array namespace ``o``, which has ``keras.ops``' functions
    (``abs``, ``where``, ``power``, …, ``cast``, ``convert_to_tensor``) and ``dtype(x)``, a dtype name."""

    def tensors(*args):
        dtype = next((o.dtype(a) for a in args if hasattr(a, "dtype") and hasattr(a, "shape")), None)
        if dtype is None or not dtype.startswith(("float", "bfloat")):
            dtype = "float32"
        return [o.cast(a, dtype) if hasattr(a, "dtype") else o.convert_to_tensor(a, dtype=dtype) for a in args]

    def unary(fn):
        return lambda x: fn(*tensors(x))

    def binary(fn):
        return lambda x, y: fn(*tensors(x, y))

    def c(value, like):
        return o.convert_to_tensor(value, dtype=o.dtype(like))

    def in_float32(fn):
        def wrapped(x):
            if o.dtype(x) in _HALF:
                return o.cast(fn(o.cast(x, "float32")), o.dtype(x))
            return fn(x)

        return wrapped

    def div(x, y):
        ok = o.abs(y) > c(DIV_EPS, y)
        q = x / o.where(ok, y, o.ones_like(y))
        return o.where(ok, q, c(1.0, q))

    def inv(x):
        ok = o.abs(x) > c(DIV_EPS, x)
        return o.where(ok, c(1.0, x) / o.where(ok, x, o.ones_like(x)), c(0.0, x))

    def log(x):
        ax = o.abs(x)
        ok = ax > c(DIV_EPS, x)
        return o.where(ok, o.log(o.where(ok, ax, o.ones_like(ax))), c(0.0, x))

    def sqrt(x):
        ax = o.abs(x)
        pos = ax > c(0.0, x)
        return o.where(pos, o.sqrt(o.where(pos, ax, o.ones_like(ax))), c(0.0, x))

    def pow_(x, y):
        ax = o.abs(x)
        pos = ax > c(0.0, x)
        r = o.sign(x) * o.power(o.where(pos, ax, o.ones_like(ax)), y)
        return o.where(pos, r, c(0.0, r))

    return {
        "add": binary(o.add), "sub": binary(o.subtract), "mul": binary(o.multiply), "div": binary(div),
        "pow": binary(pow_), "max": binary(o.maximum), "min": binary(o.minimum),
        "greater": binary(lambda x, y: o.cast(o.greater(x, y), o.dtype(x))), "neg": unary(o.negative),
        "inv": unary(inv), "abs": unary(o.abs), "sign": unary(o.sign), "square": unary(o.square),
        "cube": unary(lambda x: x * x * x), "sqrt": unary(sqrt), "sqrtm": unary(sqrt), "log": unary(log),
        "logm": unary(in_float32(lambda x: o.log(o.abs(x) + c(LOGM_EPS, x)))),
        "exp": unary(lambda x: o.exp(o.clip(x, -EXP_CLIP, EXP_CLIP))), "tanh": unary(o.tanh),
        "sinh": unary(in_float32(lambda x: o.sinh(o.clip(x, -EXP_CLIP, EXP_CLIP)))), "asinh": unary(o.arcsinh),
        "relu": unary(o.relu), "erfc": unary(lambda x: c(1.0, x) - o.erf(x)), "sin": unary(o.sin),
        "cos": unary(o.cos), "tan": unary(o.tan),
    }


def table() -> dict:
    """``{operator name: keras.ops implementation}``."""
    return make_table(array_ops("keras"))


def jax_table() -> dict:
    """``{operator name: jax.numpy implementation}``."""
    return make_table(array_ops("jax"))
