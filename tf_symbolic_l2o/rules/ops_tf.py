"""The TensorFlow implementations of the whitelisted operators (:mod:`tf_symbolic_l2o.rules.ops`).

``tf.math``/``tf.nn`` only, so they run in ``tf.function`` and under XLA, in float16, bfloat16, float32 and float64;
constants are cast to the input dtype. Protected branches use the "double ``tf.where``" pattern, so gradients stay
finite at the protected points (needed when a rule's constants are trained). This module is imported the first
time an operator's ``tf`` implementation is asked for, so reading and parsing rules does not import TensorFlow.
"""

from __future__ import annotations

import tensorflow as tf

from tf_symbolic_l2o.rules.ops import DIV_EPS, EXP_CLIP, LOGM_EPS


def _tensors(*args):
    """Convert arguments to tensors of one floating dtype (that of the first tensor argument)."""
    dtype = next((a.dtype for a in args if tf.is_tensor(a) or isinstance(a, tf.Variable)), None)
    if dtype is None:
        out = [tf.convert_to_tensor(a) for a in args]
        dtype = out[0].dtype if out[0].dtype.is_floating else tf.float32
    return [tf.cast(a, dtype) if (tf.is_tensor(a) or isinstance(a, tf.Variable)) else
            tf.convert_to_tensor(a, dtype=dtype) for a in args]


def _c(value: float, dtype) -> tf.Tensor:
    return tf.constant(value, dtype=dtype)


def _unary_tf(fn):
    @tf.autograph.experimental.do_not_convert
    def wrapped(x):
        (x,) = _tensors(x)
        return fn(x)

    wrapped.__name__ = getattr(fn, "__name__", "op")
    return wrapped


def _binary_tf(fn):
    @tf.autograph.experimental.do_not_convert
    def wrapped(x, y):
        x, y = _tensors(x, y)
        return fn(x, y)

    wrapped.__name__ = getattr(fn, "__name__", "op")
    return wrapped


_HALF = (tf.float16, tf.bfloat16)


def _tf_div(x, y):
    ok = tf.abs(y) > _c(DIV_EPS, y.dtype)
    q = x / tf.where(ok, y, tf.ones_like(y))
    return tf.where(ok, q, _c(1.0, q.dtype))


def _tf_inv(x):
    ok = tf.abs(x) > _c(DIV_EPS, x.dtype)
    return tf.where(ok, _c(1.0, x.dtype) / tf.where(ok, x, tf.ones_like(x)), _c(0.0, x.dtype))


def _tf_log(x):
    ax = tf.abs(x)
    ok = ax > _c(DIV_EPS, x.dtype)
    return tf.where(ok, tf.math.log(tf.where(ok, ax, tf.ones_like(ax))), _c(0.0, x.dtype))


def _tf_sqrt(x):
    ax = tf.abs(x)
    pos = ax > _c(0.0, x.dtype)
    return tf.where(pos, tf.sqrt(tf.where(pos, ax, tf.ones_like(ax))), _c(0.0, x.dtype))


def _tf_logm(x):
    if x.dtype in _HALF:
        return tf.cast(_tf_logm(tf.cast(x, tf.float32)), x.dtype)
    return tf.math.log(tf.abs(x) + _c(LOGM_EPS, x.dtype))


def _tf_exp(x):
    return tf.exp(tf.clip_by_value(x, _c(-EXP_CLIP, x.dtype), _c(EXP_CLIP, x.dtype)))


def _tf_sinh(x):
    """sinh(clip(x, ±50)). In float32 (and float16/bfloat16, computed in float32) it is evaluated as ½(e − 1/e),
    e = exp(x) (XLA's simplifier turns 1/e into exp(−x)), and below |x| = ½ from its Taylor series to x⁷ (relative
    truncation error < 1e-8 there, which also avoids the cancellation of e − 1/e): within 3.1e-7 relative of the
    exact value. This form replaces XLA's own lowering of ``tf.sinh``, which is slower in the fused update (see
    benchmarks/README.md, "Design measurements behind the code"). float64 keeps ``tf.sinh``."""
    if x.dtype in _HALF:
        return tf.cast(_tf_sinh(tf.cast(x, tf.float32)), x.dtype)
    x = tf.clip_by_value(x, _c(-EXP_CLIP, x.dtype), _c(EXP_CLIP, x.dtype))
    if x.dtype != tf.float32:
        return tf.sinh(x)
    e = tf.exp(x)
    x2 = x * x
    taylor = x * (1.0 + x2 * (1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (1.0 / 5040.0))))
    return tf.where(tf.abs(x) < 0.5, taylor, 0.5 * (e - 1.0 / e))


def _tf_pow(x, y):
    ax = tf.abs(x)
    pos = ax > _c(0.0, x.dtype)
    r = tf.sign(x) * tf.pow(tf.where(pos, ax, tf.ones_like(ax)), y)
    return tf.where(pos, r, _c(0.0, r.dtype))


def _tf_cube(x):
    return x * x * x


def _tf_greater(x, y):
    return tf.cast(tf.greater(x, y), x.dtype)




def table() -> dict:
    """``{operator name: TensorFlow implementation}``."""
    return {
        "add": _binary_tf(tf.add),
        "sub": _binary_tf(tf.subtract),
        "mul": _binary_tf(tf.multiply),
        "div": _binary_tf(_tf_div),
        "pow": _binary_tf(_tf_pow),
        "max": _binary_tf(tf.maximum),
        "min": _binary_tf(tf.minimum),
        "greater": _binary_tf(_tf_greater),
        "neg": _unary_tf(tf.negative),
        "inv": _unary_tf(_tf_inv),
        "abs": _unary_tf(tf.abs),
        "sign": _unary_tf(tf.sign),
        "square": _unary_tf(tf.square),
        "cube": _unary_tf(_tf_cube),
        "sqrt": _unary_tf(_tf_sqrt),
        "sqrtm": _unary_tf(_tf_sqrt),
        "log": _unary_tf(_tf_log),
        "logm": _unary_tf(_tf_logm),
        "exp": _unary_tf(_tf_exp),
        "tanh": _unary_tf(tf.tanh),
        "sinh": _unary_tf(_tf_sinh),
        "asinh": _unary_tf(tf.math.asinh),
        "relu": _unary_tf(tf.nn.relu),
        "erfc": _unary_tf(tf.math.erfc),
        "sin": _unary_tf(tf.sin),
        "cos": _unary_tf(tf.cos),
        "tan": _unary_tf(tf.tan),
    }
