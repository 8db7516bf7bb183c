"""The ``keras.ops`` implementations of the whitelisted operators (:mod:`tf_symbolic_l2o.rules.ops`), for every Keras
backend (JAX, PyTorch, TensorFlow).

Same values as the NumPy and TensorFlow implementations, protected regions included (see the table in
:mod:`~tf_symbolic_l2o.rules.ops`); protected branches use the double ``where`` pattern, so gradients stay finite
at the protected points. Arguments are converted to the floating dtype of the first tensor argument (float32 when
there is none); ``logm`` and ``sinh`` of float16/bfloat16 inputs are computed in float32. ``erfc`` is ``1 − erf``.
"""

from __future__ import annotations

from keras import ops

from tf_symbolic_l2o.rules.ops import DIV_EPS, EXP_CLIP, LOGM_EPS

_HALF = ("float16", "bfloat16")


def _dtype(x) -> str:
    import keras

    return keras.backend.standardize_dtype(x.dtype)


def _tensors(*args):
    """Arguments as tensors of one floating dtype (that of the first tensor argument, float32 if none)."""
    dtype = next((_dtype(a) for a in args if hasattr(a, "dtype") and hasattr(a, "shape")), None)
    if dtype is None or not dtype.startswith(("float", "bfloat")):
        dtype = "float32"
    return [ops.cast(a, dtype) if hasattr(a, "dtype") else ops.convert_to_tensor(a, dtype=dtype) for a in args]


def _unary(fn):
    def wrapped(x):
        (x,) = _tensors(x)
        return fn(x)

    wrapped.__name__ = getattr(fn, "__name__", "op")
    return wrapped


def _binary(fn):
    def wrapped(x, y):
        x, y = _tensors(x, y)
        return fn(x, y)

    wrapped.__name__ = getattr(fn, "__name__", "op")
    return wrapped


def _c(value: float, like):
    return ops.convert_to_tensor(value, dtype=_dtype(like))


def _div(x, y):
    ok = ops.abs(y) > _c(DIV_EPS, y)
    q = x / ops.where(ok, y, ops.ones_like(y))
    return ops.where(ok, q, _c(1.0, q))


def _inv(x):
    ok = ops.abs(x) > _c(DIV_EPS, x)
    return ops.where(ok, _c(1.0, x) / ops.where(ok, x, ops.ones_like(x)), _c(0.0, x))


def _log(x):
    ax = ops.abs(x)
    ok = ax > _c(DIV_EPS, x)
    return ops.where(ok, ops.log(ops.where(ok, ax, ops.ones_like(ax))), _c(0.0, x))


def _sqrt(x):
    ax = ops.abs(x)
    pos = ax > _c(0.0, x)
    return ops.where(pos, ops.sqrt(ops.where(pos, ax, ops.ones_like(ax))), _c(0.0, x))


def _in_float32(fn):
    def wrapped(x):
        if _dtype(x) in _HALF:
            return ops.cast(fn(ops.cast(x, "float32")), _dtype(x))
        return fn(x)

    return wrapped


@_in_float32
def _logm(x):
    return ops.log(ops.abs(x) + _c(LOGM_EPS, x))


def _exp(x):
    return ops.exp(ops.clip(x, -EXP_CLIP, EXP_CLIP))


@_in_float32
def _sinh(x):
    return ops.sinh(ops.clip(x, -EXP_CLIP, EXP_CLIP))


def _pow(x, y):
    ax = ops.abs(x)
    pos = ax > _c(0.0, x)
    r = ops.sign(x) * ops.power(ops.where(pos, ax, ops.ones_like(ax)), y)
    return ops.where(pos, r, _c(0.0, r))


def _cube(x):
    return x * x * x


def _greater(x, y):
    return ops.cast(ops.greater(x, y), _dtype(x))


def _erfc(x):
    return _c(1.0, x) - ops.erf(x)


def table() -> dict:
    """``{operator name: keras.ops implementation}``."""
    return {
        "add": _binary(ops.add), "sub": _binary(ops.subtract), "mul": _binary(ops.multiply), "div": _binary(_div),
        "pow": _binary(_pow), "max": _binary(ops.maximum), "min": _binary(ops.minimum),
        "greater": _binary(_greater), "neg": _unary(ops.negative), "inv": _unary(_inv), "abs": _unary(ops.abs),
        "sign": _unary(ops.sign), "square": _unary(ops.square), "cube": _unary(_cube), "sqrt": _unary(_sqrt),
        "sqrtm": _unary(_sqrt), "log": _unary(_log), "logm": _unary(_logm), "exp": _unary(_exp),
        "tanh": _unary(ops.tanh), "sinh": _unary(_sinh), "asinh": _unary(ops.arcsinh), "relu": _unary(ops.relu),
        "erfc": _unary(_erfc), "sin": _unary(ops.sin), "cos": _unary(ops.cos), "tan": _unary(ops.tan),
    }
