"""The operator whitelist of symbolic update rules: one entry per operator, with three implementations.

Every expression a rule may contain is built from the operators below and nothing else; the parser, the JSON
loader and the importers all refuse any other name. Each :class:`OpSpec` carries

* ``numpy``: the reference implementation on NumPy arrays (what :meth:`Rule.numpy_fn` and R² use);
* ``tf``: the TensorFlow implementation (``tf.math``/``tf.nn`` only, so it runs in ``tf.function`` and under XLA,
  in float16, bfloat16, float32 and float64; constants are cast to the input dtype). Protected branches use the
  "double ``tf.where``" pattern, so gradients stay finite at the protected points (needed when a rule's
  constants are trained);
* ``sympy``: a builder of the *mathematical reading* (used for simplification and LaTeX).

Protected ("closed") semantics. Symbolic regression needs operators that are finite everywhere (gplearn calls
this *closure*), so some operators differ from the textbook function near a singularity. The NumPy and TF
implementations agree exactly on these rules; the sympy/LaTeX form is the plain mathematical function, so the
two readings differ only inside the protected regions listed here:

==========  =====  ===============================================  ========================================
op          arity  value (NumPy/TF)                                 sympy / LaTeX reading
==========  =====  ===============================================  ========================================
``div``     2      x/y if |y| > 0.001 else **1** (gplearn)          x/y
``inv``     1      1/x if |x| > 0.001 else **0** (gplearn)          1/x
``log``     1      log|x| if |x| > 0.001 else **0** (gplearn)       log|x|
``sqrt``    1      √|x| (gplearn)                                   √|x|
``sqrtm``   1      √|x| (PySR, same as ``sqrt``)                    √|x|
``logm``    1      log(|x| + 1e-8) (PySR)                           log|x|
``pow``     2      sign(x)·|x|^y, and 0 where x = 0 (PySR)          sign(x)·|x|^y
``exp``     1      exp(clip(x, −50, 50))                            exp(x)
``sinh``    1      sinh(clip(x, −50, 50))                           sinh(x)
``greater`` 2      1.0 if x > y else 0.0 (PySR)                     Piecewise((1, x > y), (0, True))
``relu``    1      max(x, 0)                                        Max(0, x)
==========  =====  ===============================================  ========================================

The clip of ``exp``/``sinh`` at ±50 (exp(50) ≈ 5.2e21) keeps float32/bfloat16 values finite where the plain
function would overflow; it never matters for values a sane update rule produces. The thresholds (0.001, 1e-8,
50) are cast to the input dtype; float16/bfloat16 inputs of ``logm`` are computed in float32 because 1e-8 is
not representable in float16. The other operators are the plain functions: ``add sub mul neg abs sign square
cube tanh asinh erfc sin cos tan max min``. gplearn's ``tan`` is the plain ``np.tan`` and is kept plain.
``pow`` is the *signed* power of the original Symbolic-L2O code (``sign(x)·|x|^y``), not the real power.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

DIV_EPS = 0.001
"""gplearn's protection threshold for ``div``, ``inv`` and ``log``."""
LOGM_EPS = 1e-8
"""PySR's ``logm`` offset: logm(x) = log(|x| + 1e-8)."""
EXP_CLIP = 50.0
"""``exp`` and ``sinh`` clip their argument to [−50, 50]."""


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One whitelisted operator.

    Attributes:
        name: the name used in JSON, infix text and LaTeX sources.
        arity: number of arguments (1 or 2).
        numpy: NumPy implementation, positional arguments only (also usable as a gplearn function).
        tf: TensorFlow implementation.
        sympy: builds the mathematical reading from sympy expressions.
        description: one line for docs and error messages.
        symbol: the infix symbol (``+ - * / ^``) for operators printed infix, else ``None``.
    """

    name: str
    arity: int
    numpy: Callable = dataclasses.field(repr=False)
    tf: Callable = dataclasses.field(repr=False)
    sympy: Callable = dataclasses.field(repr=False)
    description: str = ""
    symbol: str | None = None


# ----------------------------------------------------------------------------------------------- helpers


def _sp():
    import sympy  # local import: sympy is only needed for the symbolic reading

    return sympy


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

# ----------------------------------------------------------------------------------------- NumPy versions


def _np_add(x, y):
    return np.add(x, y)


def _np_sub(x, y):
    return np.subtract(x, y)


def _np_mul(x, y):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.multiply(x, y)


def _np_div(x, y):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(np.abs(y) > DIV_EPS, np.divide(x, y), 1.0)


def _np_neg(x):
    return np.negative(x)


def _np_inv(x):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(np.abs(x) > DIV_EPS, np.divide(1.0, x), 0.0)


def _np_log(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(x) > DIV_EPS, np.log(np.abs(x)), 0.0)


def _np_sqrt(x):
    return np.sqrt(np.abs(x))


def _np_logm(x):
    return np.log(np.abs(x) + LOGM_EPS)


def _np_exp(x):
    return np.exp(np.clip(x, -EXP_CLIP, EXP_CLIP))


def _np_sinh(x):
    return np.sinh(np.clip(x, -EXP_CLIP, EXP_CLIP))


def _np_tanh(x):
    return np.tanh(x)


def _np_asinh(x):
    return np.arcsinh(x)


def _np_square(x):
    with np.errstate(over="ignore"):
        return np.square(x)


def _np_cube(x):
    with np.errstate(over="ignore"):
        return x * x * x


def _np_abs(x):
    return np.abs(x)


def _np_sign(x):
    return np.sign(x)


def _np_pow(x, y):
    ax = np.abs(x)
    pos = ax > 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r = np.sign(x) * np.power(np.where(pos, ax, 1.0), y)
    return np.where(pos, r, 0.0)


def _np_relu(x):
    return np.maximum(x, 0.0)


def _np_erfc(x):
    try:
        from scipy.special import erfc
    except ImportError:  # pragma: no cover - scipy ships with scikit-learn
        import math

        return np.vectorize(math.erfc, otypes=[np.asarray(x).dtype])(x)
    return erfc(x)


def _np_max(x, y):
    return np.maximum(x, y)


def _np_min(x, y):
    return np.minimum(x, y)


def _np_sin(x):
    return np.sin(x)


def _np_cos(x):
    return np.cos(x)


def _np_tan(x):
    return np.tan(x)


def _np_greater(x, y):
    x, y = np.asarray(x), np.asarray(y)
    return np.greater(x, y).astype(np.result_type(x, y, np.float32))


# ------------------------------------------------------------------------------------ TensorFlow versions


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


# ----------------------------------------------------------------------------------------- sympy versions


def _sp_greater(x, y):
    sp = _sp()
    return sp.Piecewise((sp.Integer(1), sp.StrictGreaterThan(x, y)), (sp.Integer(0), True))


# ----------------------------------------------------------------------------------------------- registry

_SPECS = [
    OpSpec("add", 2, _np_add, _binary_tf(tf.add), lambda x, y: x + y, "x + y", "+"),
    OpSpec("sub", 2, _np_sub, _binary_tf(tf.subtract), lambda x, y: x - y, "x − y", "-"),
    OpSpec("mul", 2, _np_mul, _binary_tf(tf.multiply), lambda x, y: x * y, "x · y", "*"),
    OpSpec("div", 2, _np_div, _binary_tf(_tf_div), lambda x, y: x / y, "x / y, 1 where |y| <= 0.001 (gplearn)",
           "/"),
    OpSpec("pow", 2, _np_pow, _binary_tf(_tf_pow), lambda x, y: _sp().sign(x) * _sp().Abs(x) ** y,
           "signed power sign(x)·|x|^y, 0 where x = 0 (PySR)", "^"),
    OpSpec("max", 2, _np_max, _binary_tf(tf.maximum), lambda x, y: _sp().Max(x, y), "max(x, y)"),
    OpSpec("min", 2, _np_min, _binary_tf(tf.minimum), lambda x, y: _sp().Min(x, y), "min(x, y)"),
    OpSpec("greater", 2, _np_greater, _binary_tf(_tf_greater), _sp_greater, "1 if x > y else 0 (PySR)"),
    OpSpec("neg", 1, _np_neg, _unary_tf(tf.negative), lambda x: -x, "−x"),
    OpSpec("inv", 1, _np_inv, _unary_tf(_tf_inv), lambda x: _sp().Integer(1) / x,
           "1/x, 0 where |x| <= 0.001 (gplearn)"),
    OpSpec("abs", 1, _np_abs, _unary_tf(tf.abs), lambda x: _sp().Abs(x), "|x|"),
    OpSpec("sign", 1, _np_sign, _unary_tf(tf.sign), lambda x: _sp().sign(x), "sign(x), 0 at 0"),
    OpSpec("square", 1, _np_square, _unary_tf(tf.square), lambda x: x ** 2, "x²"),
    OpSpec("cube", 1, _np_cube, _unary_tf(_tf_cube), lambda x: x ** 3, "x³"),
    OpSpec("sqrt", 1, _np_sqrt, _unary_tf(_tf_sqrt), lambda x: _sp().sqrt(_sp().Abs(x)), "√|x| (gplearn)"),
    OpSpec("sqrtm", 1, _np_sqrt, _unary_tf(_tf_sqrt), lambda x: _sp().sqrt(_sp().Abs(x)), "√|x| (PySR)"),
    OpSpec("log", 1, _np_log, _unary_tf(_tf_log), lambda x: _sp().log(_sp().Abs(x)),
           "log|x|, 0 where |x| <= 0.001 (gplearn)"),
    OpSpec("logm", 1, _np_logm, _unary_tf(_tf_logm), lambda x: _sp().log(_sp().Abs(x)), "log(|x| + 1e-8) (PySR)"),
    OpSpec("exp", 1, _np_exp, _unary_tf(_tf_exp), lambda x: _sp().exp(x), "exp(x), argument clipped to ±50"),
    OpSpec("tanh", 1, _np_tanh, _unary_tf(tf.tanh), lambda x: _sp().tanh(x), "tanh(x)"),
    OpSpec("sinh", 1, _np_sinh, _unary_tf(_tf_sinh), lambda x: _sp().sinh(x), "sinh(x), argument clipped to ±50"),
    OpSpec("asinh", 1, _np_asinh, _unary_tf(tf.math.asinh), lambda x: _sp().asinh(x), "asinh(x)"),
    OpSpec("relu", 1, _np_relu, _unary_tf(tf.nn.relu), lambda x: _sp().Max(_sp().Integer(0), x), "max(x, 0)"),
    OpSpec("erfc", 1, _np_erfc, _unary_tf(tf.math.erfc), lambda x: _sp().erfc(x), "complementary error function"),
    OpSpec("sin", 1, _np_sin, _unary_tf(tf.sin), lambda x: _sp().sin(x), "sin(x)"),
    OpSpec("cos", 1, _np_cos, _unary_tf(tf.cos), lambda x: _sp().cos(x), "cos(x)"),
    OpSpec("tan", 1, _np_tan, _unary_tf(tf.tan), lambda x: _sp().tan(x), "tan(x) (plain, as gplearn)"),
]

OPS: Mapping[str, OpSpec] = types.MappingProxyType({s.name: s for s in _SPECS})
"""All whitelisted operators by name (read-only)."""

ALLOWED = ", ".join(sorted(OPS))
"""The allowed operator names, for error messages."""


def get_op(name: str) -> OpSpec:
    """Return the operator ``name`` or raise a one-line ``ValueError`` listing the allowed ones."""
    spec = OPS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown operator {short(name)}; allowed: {ALLOWED}")
    return spec


def short(obj, limit: int = 60) -> str:
    """``repr`` of ``obj``, truncated so hostile inputs cannot flood an error message."""
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."
