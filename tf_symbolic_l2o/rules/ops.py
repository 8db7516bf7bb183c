"""The operator whitelist of symbolic update rules: one entry per operator, with five implementations.

Every expression a rule may contain is built from the operators below and nothing else; the parser, the JSON
loader and the importers all refuse any other name. Each :class:`OpSpec` carries

* ``numpy``: the reference implementation on NumPy arrays (what :meth:`Rule.numpy_fn` and R² use);
* ``tf``: the TensorFlow implementation (:mod:`~tf_symbolic_l2o.rules.ops_tf`: ``tf.math``/``tf.nn`` only, so it
  runs in ``tf.function`` and under XLA; protected branches use the "double ``tf.where``" pattern, so gradients
  stay finite at the protected points, needed when a rule's constants are trained);
* ``keras``: the same functions in ``keras.ops`` (:mod:`~tf_symbolic_l2o.rules.ops_keras`), for Keras' JAX and
  PyTorch backends, and ``jax``: the same on ``jax.numpy``, for the rules as optax transformations;
* ``sympy``: a builder of the *mathematical reading* (used for simplification and LaTeX).

The ``tf`` and ``keras`` implementations are loaded the first time one is used, so this module, the parser and
the rule format import neither TensorFlow nor a Keras backend.

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
import functools
import importlib
import types
from typing import Callable, Mapping

import numpy as np

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
        sympy: builds the mathematical reading from sympy expressions.
        description: one line for docs and error messages.
        symbol: the infix symbol (``+ - * / ^``) for operators printed infix, else ``None``.
    """

    name: str
    arity: int
    numpy: Callable = dataclasses.field(repr=False)
    sympy: Callable = dataclasses.field(repr=False)
    description: str = ""
    symbol: str | None = None

    @property
    def tf(self) -> Callable:
        """The TensorFlow implementation (imports TensorFlow on first use)."""
        return _implementations("ops_tf")[self.name]

    @property
    def keras(self) -> Callable:
        """The ``keras.ops`` implementation, for any Keras backend."""
        return _implementations("ops_keras")[self.name]

    @property
    def jax(self) -> Callable:
        """The ``jax.numpy`` implementation (the rules as optax transformations)."""
        return _implementations("ops_keras", "jax_table")[self.name]


@functools.lru_cache(maxsize=None)
def _implementations(module: str, function: str = "table") -> dict:
    return getattr(importlib.import_module(f"tf_symbolic_l2o.rules.{module}"), function)()


# ----------------------------------------------------------------------------------------------- helpers


def _sp():
    import sympy  # local import: sympy is only needed for the symbolic reading

    return sympy


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


# ----------------------------------------------------------------------------------------- sympy versions


def _sp_greater(x, y):
    sp = _sp()
    return sp.Piecewise((sp.Integer(1), sp.StrictGreaterThan(x, y)), (sp.Integer(0), True))


# ----------------------------------------------------------------------------------------------- registry

_SPECS = [
    OpSpec("add", 2, _np_add, lambda x, y: x + y, "x + y", "+"),
    OpSpec("sub", 2, _np_sub, lambda x, y: x - y, "x − y", "-"),
    OpSpec("mul", 2, _np_mul, lambda x, y: x * y, "x · y", "*"),
    OpSpec("div", 2, _np_div, lambda x, y: x / y, "x / y, 1 where |y| <= 0.001 (gplearn)",
           "/"),
    OpSpec("pow", 2, _np_pow, lambda x, y: _sp().sign(x) * _sp().Abs(x) ** y,
           "signed power sign(x)·|x|^y, 0 where x = 0 (PySR)", "^"),
    OpSpec("max", 2, _np_max, lambda x, y: _sp().Max(x, y), "max(x, y)"),
    OpSpec("min", 2, _np_min, lambda x, y: _sp().Min(x, y), "min(x, y)"),
    OpSpec("greater", 2, _np_greater, _sp_greater, "1 if x > y else 0 (PySR)"),
    OpSpec("neg", 1, _np_neg, lambda x: -x, "−x"),
    OpSpec("inv", 1, _np_inv, lambda x: _sp().Integer(1) / x,
           "1/x, 0 where |x| <= 0.001 (gplearn)"),
    OpSpec("abs", 1, _np_abs, lambda x: _sp().Abs(x), "|x|"),
    OpSpec("sign", 1, _np_sign, lambda x: _sp().sign(x), "sign(x), 0 at 0"),
    OpSpec("square", 1, _np_square, lambda x: x ** 2, "x²"),
    OpSpec("cube", 1, _np_cube, lambda x: x ** 3, "x³"),
    OpSpec("sqrt", 1, _np_sqrt, lambda x: _sp().sqrt(_sp().Abs(x)), "√|x| (gplearn)"),
    OpSpec("sqrtm", 1, _np_sqrt, lambda x: _sp().sqrt(_sp().Abs(x)), "√|x| (PySR)"),
    OpSpec("log", 1, _np_log, lambda x: _sp().log(_sp().Abs(x)),
           "log|x|, 0 where |x| <= 0.001 (gplearn)"),
    OpSpec("logm", 1, _np_logm, lambda x: _sp().log(_sp().Abs(x)), "log(|x| + 1e-8) (PySR)"),
    OpSpec("exp", 1, _np_exp, lambda x: _sp().exp(x), "exp(x), argument clipped to ±50"),
    OpSpec("tanh", 1, _np_tanh, lambda x: _sp().tanh(x), "tanh(x)"),
    OpSpec("sinh", 1, _np_sinh, lambda x: _sp().sinh(x), "sinh(x), argument clipped to ±50"),
    OpSpec("asinh", 1, _np_asinh, lambda x: _sp().asinh(x), "asinh(x)"),
    OpSpec("relu", 1, _np_relu, lambda x: _sp().Max(_sp().Integer(0), x), "max(x, 0)"),
    OpSpec("erfc", 1, _np_erfc, lambda x: _sp().erfc(x), "complementary error function"),
    OpSpec("sin", 1, _np_sin, lambda x: _sp().sin(x), "sin(x)"),
    OpSpec("cos", 1, _np_cos, lambda x: _sp().cos(x), "cos(x)"),
    OpSpec("tan", 1, _np_tan, lambda x: _sp().tan(x), "tan(x) (plain, as gplearn)"),
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
