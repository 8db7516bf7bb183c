"""Evaluate expression trees with NumPy or TensorFlow, and read them as sympy/LaTeX.

All converters walk the :mod:`~tf_symbolic_l2o.rules.expression` tree directly and call the whitelisted
implementations of :mod:`~tf_symbolic_l2o.rules.ops`; no text is generated and compiled (no ``lambdify``, no
``eval``, no ``sympify``).

Constants can be overridden at evaluation time (``constants=``): the i-th value replaces the i-th constant in
pre-order (:func:`~tf_symbolic_l2o.rules.expression.constants` order). With TensorFlow the values may be a
``tf.Variable`` vector, which is how a rule's constants are trained (the refit phase of distillation, and
meta-tuning).

The sympy reading (:func:`to_sympy`) is the *mathematical* one: protected operators become their textbook
functions (``div`` → x/y, ``log`` → log|x|, …; see the table in :mod:`~tf_symbolic_l2o.rules.ops`), so it agrees
with the numerical implementations everywhere except inside the protected regions (|y| ≤ 0.001 for ``div``, …).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from tf_symbolic_l2o._lazy import LazyModule, not_converted_by_autograph
from tf_symbolic_l2o.features import array_ops
from tf_symbolic_l2o.rules.expression import Const, Node, Var, constants as _constants, split_var, variables
from tf_symbolic_l2o.rules.ops import OPS

tf = LazyModule("tensorflow")


def _constant_source(node: Node, values):
    """Return a function ``i -> value`` for the i-th constant, checking the count when it is known."""
    if values is None:
        return None
    n = len(_constants(node))
    length = None
    if hasattr(values, "shape") and hasattr(values, "dtype"):  # a tensor or variable of any backend
        rank = values.shape.rank if hasattr(values.shape, "rank") else len(values.shape)
        if rank is not None and rank != 1:
            raise ValueError(f"constants must be a vector, got shape {values.shape}")
        length = values.shape[0]
    else:
        values = list(values)
        length = len(values)
    if length is not None and length != n:
        raise ValueError(f"expression has {n} constant(s), got {length} value(s)")
    return lambda i: values[i]


def _used_variables(node: Node, env: Mapping[str, Any]) -> list[str]:
    """The variables of ``node``; a one-line error if ``env`` lacks one."""
    used = variables(node)
    missing = [v for v in used if v not in env]
    if missing:
        raise ValueError(f"missing input(s) {missing}")
    return used


def _walk(node: Node, const, leaves: Mapping[str, Any], backend: str):
    """Evaluate ``node`` bottom-up: ``const(i, value)`` for the i-th constant (pre-order), ``leaves[name]`` for
    variables, and each op's ``backend`` implementation (``"numpy"``, ``"tf"`` or ``"keras"``)."""
    counter = [0]

    def ev(n):
        if isinstance(n, Const):
            counter[0] += 1
            return const(counter[0] - 1, n.value)
        if isinstance(n, Var):
            return leaves[n.name]
        return getattr(OPS[n.name], backend)(*[ev(a) for a in n.args])

    return ev(node)


def evaluate_numpy(node: Node, env: Mapping[str, Any], constants: Sequence[float] | None = None,
                   dtype=None) -> np.ndarray:
    """Evaluate ``node`` on NumPy arrays.

    Args:
        node: the expression.
        env: ``{variable name: array}`` for every variable of ``node`` (arrays broadcast together).
        constants: optional replacement values for the constants (pre-order).
        dtype: computation dtype; default: the result type of the inputs, float64 if not floating.
    """
    used = _used_variables(node, env)
    arrays = {v: np.asarray(env[v]) for v in used}
    if dtype is None:
        dtype = np.result_type(*arrays.values()) if arrays else np.float64
        if not np.issubdtype(dtype, np.floating):
            dtype = np.float64
    dtype = np.dtype(dtype)
    arrays = {k: a.astype(dtype, copy=False) for k, a in arrays.items()}
    get_const = _constant_source(node, constants)

    def const(i, value):
        return dtype.type(value if get_const is None else get_const(i))

    with np.errstate(all="ignore"):
        return np.asarray(_walk(node, const, arrays, "numpy"), dtype=dtype)


@not_converted_by_autograph
def evaluate_tf(node: Node, env: Mapping[str, Any], constants=None, dtype=None) -> tf.Tensor:
    """Evaluate ``node`` with TensorFlow ops (works in ``tf.function`` and under XLA).

    Args:
        node: the expression.
        env: ``{variable name: tensor}`` for every variable of ``node``.
        constants: optional replacement values for the constants (pre-order): a list of scalars or a vector
            tensor/``tf.Variable``; they are cast to ``dtype``.
        dtype: computation dtype; default: the dtype of the first input tensor, float32 without inputs.
    """
    used = _used_variables(node, env)
    tensors = {}
    for v in used:
        x = env[v]
        tensors[v] = x if (tf.is_tensor(x) or isinstance(x, tf.Variable)) else tf.convert_to_tensor(x)
    if dtype is None:
        dtype = tensors[used[0]].dtype if used else tf.float32
    dtype = tf.as_dtype(dtype)
    tensors = {k: (t if t.dtype == dtype else tf.cast(t, dtype)) for k, t in tensors.items()}
    get_const = _constant_source(node, constants)

    def const(i, value):
        return tf.constant(value, dtype=dtype) if get_const is None else tf.cast(get_const(i), dtype)

    return _walk(node, const, tensors, "tf")


def evaluate_keras(node: Node, env: Mapping[str, Any], constants=None, dtype=None, backend: str = "keras"):
    """Evaluate ``node`` with ``keras.ops`` (any Keras backend; ``backend="jax"``: ``jax.numpy``), as
    :func:`evaluate_tf` does with TensorFlow.

    Args:
        node: the expression.
        env: ``{variable name: tensor}`` for every variable of ``node``.
        constants: optional replacement values for the constants (pre-order), cast to ``dtype``.
        dtype: computation dtype; default: the dtype of the first input, float32 without inputs.
        backend: ``"keras"`` or ``"jax"``.
    """
    if backend not in ("keras", "jax"):
        raise ValueError(f"unknown backend {backend!r}; use 'keras' or 'jax'")
    o = array_ops(backend)
    used = _used_variables(node, env)
    tensors = {v: o.convert_to_tensor(env[v]) for v in used}
    if dtype is None:
        dtype = o.dtype(tensors[used[0]]) if used else "float32"
    dtype = o.dtype(o.convert_to_tensor(0.0, dtype=dtype))
    tensors = {k: o.cast(t, dtype) for k, t in tensors.items()}
    get_const = _constant_source(node, constants)

    def const(i, value):
        return o.convert_to_tensor(value, dtype=dtype) if get_const is None else o.cast(get_const(i), dtype)

    return _walk(node, const, tensors, backend)


# ------------------------------------------------------------------------------------------------ sympy

LATEX_FEATURES: dict[str, str] = {
    "mt": r"\tilde{m}",
    "gt": r"\tilde{g}",
    "g": "g",
    "m": "m",
    "mhat": r"\hat{m}",
    "s": "s",
}
"""LaTeX of feature names; any other feature ``f`` is written ``\\mathrm{f}``."""


def latex_symbol(name: str) -> str:
    """LaTeX for a variable: ``mt_0`` → ``\\tilde{m}_{t}``, ``mt_2`` → ``\\tilde{m}_{t-2}``, ``mom9_1`` →
    ``\\mathrm{mom9}_{t-1}``."""
    feat, lag = split_var(name)
    base = LATEX_FEATURES.get(feat, rf"\mathrm{{{feat}}}")
    return f"{base}_{{t}}" if lag == 0 else f"{base}_{{t-{lag}}}"


def sympy_float(value: float):
    """A sympy ``Float`` that holds the double exactly and prints its shortest round-trip digits."""
    import sympy as sp

    return sp.Float(repr(float(value)))


def to_sympy(node: Node, evaluate: bool = True, symbols: Mapping[str, Any] | None = None):
    """Build the sympy expression of ``node`` (the mathematical reading; see the module docstring).

    Args:
        node: the expression.
        evaluate: if ``False`` the expression is built unevaluated, so it keeps the tree's structure and
            constants exactly as written (sympy would otherwise fold ``(-1.99·x)³`` into ``-7.9·x³``).
        symbols: optional ``{variable name: sympy Symbol}``; by default real symbols named like the variables.
    """
    import sympy as sp

    syms = dict(symbols or {})
    for v in variables(node):
        syms.setdefault(v, sp.Symbol(v, real=True))

    def build(n):
        if isinstance(n, Const):
            return sympy_float(n.value)
        if isinstance(n, Var):
            return syms[n.name]
        return OPS[n.name].sympy(*[build(a) for a in n.args])

    with sp.evaluate(evaluate):
        return build(node)


def to_latex(node: Node, simplify: bool = False) -> str:
    """LaTeX of ``node`` with m̃-style symbols (:func:`latex_symbol`) and full-precision constants.

    With ``simplify=False`` (default) the structure is kept as written; with ``simplify=True`` the expression is
    first evaluated and passed through ``sympy.simplify`` (constants may then be merged).
    """
    import sympy as sp

    expr = to_sympy(node, evaluate=simplify)
    if simplify:
        expr = sp.simplify(expr)
    names = {s: latex_symbol(s.name) for s in expr.free_symbols if isinstance(s, sp.Symbol)}
    return sp.latex(expr, symbol_names=names)
