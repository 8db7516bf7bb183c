"""Import symbolic-regression results (gplearn programs, PySR equations and hall-of-fame files) as trees.

gplearn
    :func:`from_gplearn` walks a fitted ``_Program`` (``est._program``; its ``program`` attribute is a flat
    prefix list of ``_Function`` objects, integer feature indices and float constants). gplearn's built-in
    functions (add sub mul div sqrt log abs neg inv max min sin cos tan) have exactly the protected semantics of
    the operators of the same name here. A *custom* function is mapped by its name to the operator of that name
    (``make_function(..., name="tanh")`` → ``tanh``); to be sure the semantics match, build custom functions with
    :func:`gplearn_function`, which wraps this package's own NumPy implementation.

PySR
    :func:`from_pysr_equation` reads PySR's functional strings (``mult(plus(g_0, 0.5), tanh(mt_0))``, as in the
    original Symbolic-L2O hall-of-fame files) and sympy-style infix strings (``0.5*x0 + tanh(x1)``) with the
    whitelisted parser of :mod:`~tf_symbolic_l2o.rules.expression` after renaming operators
    (:data:`PYSR_FUNCTIONS`). Semantics, following the original code's operator definitions: ``pow`` is the signed
    power sign(x)|x|^y; ``greater`` is 1[x > y]; ``logm``/``log`` → log(|x| + 1e-8); ``sqrtm``/``sqrt`` → √|x|;
    ``cos`` is the real cosine (the original Python mirrors had a ``cos = sin`` bug, not reproduced); ``div`` is
    the protected division (differs from PySR's plain x/y only where |y| ≤ 0.001). An infix power ``a^n`` or
    ``a**n`` with an integer constant exponent keeps its real meaning (``square``, ``cube``, ``pow(abs(a), n)``
    for even n, signed ``pow`` for odd n); other infix powers become the signed ``pow``, which equals the real
    power for positive bases.

    :func:`load_pysr_hall_of_fame` reads ``hall_of_fame*.csv`` files in the old ``Complexity|MSE|Equation`` layout
    or the newer comma-separated ``Complexity,Loss,Equation`` one, with the ``csv`` module (no ``eval``).
"""

from __future__ import annotations

import csv
import io
import numbers
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from tf_symbolic_l2o.rules.expression import Const, Node, Op, Var, check_var_name
from tf_symbolic_l2o.rules.infix import parse_infix
from tf_symbolic_l2o.rules.ops import ALLOWED, OPS, short

GPLEARN_BUILTINS = ("add", "sub", "mul", "div", "sqrt", "log", "abs", "neg", "inv", "max", "min", "sin", "cos",
                    "tan")
"""gplearn's built-in function names; their semantics equal the operators of the same name."""

PYSR_FUNCTIONS: Mapping[str, str] = {
    "plus": "add", "add": "add", "mult": "mul", "mul": "mul", "sub": "sub", "div": "div", "pow": "pow",
    "greater": "greater", "relu": "relu", "exp": "exp", "tanh": "tanh", "sinh": "sinh", "asinh": "asinh",
    "erfc": "erfc", "square": "square", "cube": "cube", "abs": "abs", "Abs": "abs", "sign": "sign",
    "logm": "logm", "log": "logm", "sqrtm": "sqrtm", "sqrt": "sqrtm", "neg": "neg", "cos": "cos", "sin": "sin",
    "tan": "tan", "inv": "inv", "max": "max", "min": "min", "Max": "max", "Min": "min",
}
"""PySR (and sympy-printed) function names → operators."""

MAX_HOF_BYTES = 64 * 1024 * 1024


# --------------------------------------------------------------------------------------------- gplearn


def from_gplearn(program: Any, feature_names: Sequence[str]) -> Node:
    """Convert a fitted gplearn program into a tree.

    Args:
        program: a ``gplearn`` ``_Program`` (``est._program``), a fitted estimator (its ``_program`` is used)
            or the raw prefix list.
        feature_names: the variable name of each column of the training matrix X (e.g. ``rule.inputs``).

    Raises:
        ValueError: unknown function, bad feature index, malformed program.
    """
    prog = getattr(program, "_program", program)
    items = getattr(prog, "program", prog)
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"expected a gplearn program (a non-empty prefix list), got {type(items).__name__}")
    names = [check_var_name(n) for n in feature_names]

    def terminal(item):
        if isinstance(item, bool):
            raise ValueError(f"invalid gplearn terminal {item!r}")
        if isinstance(item, numbers.Integral):
            i = int(item)
            if not 0 <= i < len(names):
                raise ValueError(f"gplearn feature index {i} out of range for {len(names)} feature names")
            return Var(names[i])
        if isinstance(item, numbers.Real):
            return Const(float(item))
        return None

    def function(item):
        name, arity = getattr(item, "name", None), getattr(item, "arity", None)
        if not isinstance(name, str) or not isinstance(arity, int):
            raise ValueError(f"invalid gplearn program element {short(item)}")
        if name not in OPS:
            raise ValueError(f"gplearn function {short(name)} has no counterpart; allowed: {ALLOWED}")
        if OPS[name].arity != arity:
            raise ValueError(f"gplearn function {name!r} has arity {arity}, operator {name!r} has "
                             f"{OPS[name].arity}")
        return name

    first = terminal(items[0])
    if first is not None:
        if len(items) != 1:
            raise ValueError("malformed gplearn program: elements after a complete expression")
        return first
    stack: list[list] = []  # [[op name, arity, args...], ...] as in gplearn's _Program.execute
    for pos, item in enumerate(items):
        node = terminal(item)
        if node is None:
            stack.append([function(item)])
            continue
        if not stack:
            raise ValueError("malformed gplearn program: elements after a complete expression")
        stack[-1].append(node)
        while stack and len(stack[-1]) == OPS[stack[-1][0]].arity + 1:
            name, *args = stack.pop()
            result = Op(name, tuple(args))
            if not stack:
                if pos != len(items) - 1:
                    raise ValueError("malformed gplearn program: elements after a complete expression")
                return result
            stack[-1].append(result)
    raise ValueError("malformed gplearn program: incomplete expression")


def gplearn_function(name: str, wrap: bool = False):
    """The gplearn function for operator ``name``: gplearn's own name for its built-ins, otherwise
    ``gplearn.functions.make_function`` around this package's NumPy implementation (so a fitted program means
    exactly what the imported tree means)."""
    if name in GPLEARN_BUILTINS:
        return name
    if name not in OPS:
        raise ValueError(f"unknown operator {short(name)}; allowed: {ALLOWED}")
    from gplearn.functions import make_function

    spec = OPS[name]
    return make_function(function=spec.numpy, name=name, arity=spec.arity, wrap=wrap)


def gplearn_function_set(names: Sequence[str], wrap: bool = False) -> tuple:
    """``function_set`` for ``gplearn.genetic.SymbolicRegressor`` from operator names."""
    return tuple(gplearn_function(n, wrap=wrap) for n in names)


# ------------------------------------------------------------------------------------------------- PySR


def real_power(base: Node, exponent: Node) -> Node:
    """Infix ``a^b`` of PySR/sympy/operon text: keep the real meaning for integer constant exponents
    (``x^2`` → square, ``x^3`` → cube, even n → ``pow(|x|, n)``); other exponents become the signed ``pow``."""
    if isinstance(exponent, Const) and float(exponent.value).is_integer():
        n = exponent.value
        if n == 1:
            return base
        if n == 2:
            return Op("square", (base,))
        if n == 3:
            return Op("cube", (base,))
        if n % 2 == 0:
            return Op("pow", (Op("abs", (base,)), exponent))
    return Op("pow", (base, exponent))


def from_pysr_equation(text: str, variable_map: Mapping[str, str] | None = None) -> Node:
    """Parse one PySR equation (functional ``mult(plus(a, 0.5), b)`` or infix ``0.5*x0 + tanh(x1)``).

    Args:
        text: the equation.
        variable_map: renames variables as written (``{"x0": "mt_0", "g0": "g_0"}``); names not in the map must
            already be ``<feature>_<lag>``.
    """
    vm = dict(variable_map or {})
    for k, v in vm.items():
        if not isinstance(k, str):
            raise ValueError(f"variable_map keys must be strings, got {short(k)}")
        check_var_name(v)
    rename = (lambda name: vm.get(name, name)) if vm else None
    return parse_infix(text, functions=PYSR_FUNCTIONS, rename=rename, power=real_power)


def load_pysr_hall_of_fame(path: str | os.PathLike, variable_map: Mapping[str, str] | None = None) -> list[dict]:
    """Read a PySR ``hall_of_fame*.csv`` file.

    Both layouts are accepted: ``Complexity|MSE|Equation`` (PySR 2020, as in the original repository) and
    ``Complexity,Loss,Equation`` (newer PySR, equations quoted). Extra columns are ignored.

    Returns:
        one dict per row, in file order: ``{"complexity": int, "loss": float, "equation": str, "node": Node}``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hall-of-fame file not found: {path}")
    if path.stat().st_size > MAX_HOF_BYTES:
        raise ValueError(f"hall-of-fame file {path} is larger than {MAX_HOF_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"hall-of-fame file {path} is not UTF-8 text ({e})") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"hall-of-fame file {path} is empty")
    delimiter = "|" if "|" in lines[0] else ","
    csv.field_size_limit(max(csv.field_size_limit(), 1_000_000))
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, skipinitialspace=True))
    except csv.Error as e:
        raise ValueError(f"hall-of-fame file {path} is not valid CSV ({e})") from None
    header = [h.strip().lower() for h in rows[0]]

    def column(*names):
        for n in names:
            if n in header:
                return header.index(n)
        raise ValueError(f"hall-of-fame file {path} has no {'/'.join(names)} column (header: {rows[0]})")

    i_c, i_l, i_e = column("complexity"), column("mse", "loss"), column("equation")
    out = []
    for r, row in enumerate(rows[1:], start=2):
        try:
            if len(row) <= max(i_c, i_l, i_e):
                raise ValueError(f"expected {len(header)} columns, got {len(row)}")
            complexity = float(row[i_c])
            if not complexity.is_integer():
                raise ValueError(f"complexity must be an integer, got {row[i_c]!r}")
            equation = row[i_e].strip()
            out.append({"complexity": int(complexity), "loss": float(row[i_l]), "equation": equation,
                        "node": from_pysr_equation(equation, variable_map)})
        except ValueError as e:
            raise ValueError(f"{path} row {r}: {e}") from None
    return out
