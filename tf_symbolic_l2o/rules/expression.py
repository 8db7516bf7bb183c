"""Immutable expression trees for symbolic update rules and their JSON prefix form (the infix form and its safe
parser are in :mod:`tf_symbolic_l2o.rules.infix`).

A rule's right-hand side is a tree of three node types:

* :class:`Const` — a finite float;
* :class:`Var` — an input named ``<feature>_<lag>`` (``mt_0`` is m̃ at the current step, ``mom5_3`` is the
  0.5-momentum three steps ago); the name must match ``^[A-Za-z][A-Za-z0-9]*_[0-9]+$``;
* :class:`Op` — a whitelisted operator (:data:`~tf_symbolic_l2o.rules.ops.OPS`) applied to its arguments.

Nodes validate themselves on construction (known operator, right arity, finite constant, well-formed name, at
most :data:`MAX_DEPTH` levels and :data:`MAX_NODES` nodes), so every tree that exists is a valid one and the
recursive helpers below can never hit Python's recursion limit.

Two text forms:

* **prefix** (the JSON form): ``["tanh", ["add", 0.0248, ["mul", -1.992, "mt_0"]]]`` — lists are operator
  applications, strings are variables, numbers are constants. :func:`from_prefix` accepts only lists, strings,
  ints and floats (``bool`` is refused) and checks depth and size *before* recursing deeper.
* **infix** (for people, :mod:`tf_symbolic_l2o.rules.infix`): ``tanh(0.0248 + -1.992 * mt_0)``.
  :func:`~tf_symbolic_l2o.rules.infix.parse_infix` is a hand-written tokenizer
  and recursive-descent parser: numbers, variables, ``+ - * /``, ``^`` or ``**`` (the signed power ``pow``),
  unary minus, parentheses and calls ``name(arg, ...)`` of whitelisted operators. Nothing is ever passed to
  ``eval``; attribute access, names starting with ``_``, unknown functions and anything else are a
  ``ValueError``. ``parse_infix(to_infix(node)) == node`` for every tree (floats are printed with ``repr``).

Precedence (low to high): ``+ -`` < ``* /`` < unary ``-`` < ``^`` (right-associative) < calls/atoms, so
``-x^2`` is ``neg(pow(x, 2))`` as in Python. A minus sign written directly before a number that is not raised to
a power is part of the number: ``-1.5`` is ``Const(-1.5)``, while ``-(1.5)`` is ``neg(1.5)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any, Iterable, Mapping, Sequence, Union

from tf_symbolic_l2o.rules.ops import get_op, short

MAX_DEPTH = 200
"""Maximum nesting depth of a tree (a leaf has depth 1)."""
MAX_NODES = 10_000
"""Maximum number of nodes of a tree."""
MAX_NAME_CHARS = 64
"""Maximum length of a variable name."""

VAR_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9]*_[0-9]+")
"""Variable names: ``<feature>_<lag>``, matched in full."""


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and type(x).__name__ != "bool_"


# ----------------------------------------------------------------------------------------------- nodes


@dataclasses.dataclass(frozen=True, slots=True)
class Const:
    """A finite constant."""

    value: float

    def __post_init__(self):
        if not _is_number(self.value):
            raise ValueError(f"constant must be a real number, got {short(self.value)}")
        v = float(self.value)
        if not math.isfinite(v):
            raise ValueError(f"constant must be finite, got {v}")
        object.__setattr__(self, "value", v)

    def __repr__(self):
        return f"Const({self.value!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Var:
    """An input variable ``<feature>_<lag>``."""

    name: str

    def __post_init__(self):
        check_var_name(self.name)

    @property
    def feature(self) -> str:
        return self.name.rsplit("_", 1)[0]

    @property
    def lag(self) -> int:
        return int(self.name.rsplit("_", 1)[1])

    def __repr__(self):
        return f"Var({self.name!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """A whitelisted operator applied to ``args`` (a tuple of nodes)."""

    name: str
    args: tuple
    _size: int = dataclasses.field(init=False, repr=False, compare=False)
    _depth: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        spec = get_op(self.name)
        args = self.args
        if not isinstance(args, (tuple, list)):
            raise ValueError(f"arguments of {self.name!r} must be a tuple of nodes, got {type(args).__name__}")
        args = tuple(args)
        if len(args) != spec.arity:
            raise ValueError(f"operator {self.name!r} takes {spec.arity} argument(s), got {len(args)}")
        for a in args:
            if not isinstance(a, (Const, Var, Op)):
                raise ValueError(f"argument of {self.name!r} must be a Const, Var or Op node, got {short(a)}")
        n = 1 + sum(size(a) for a in args)
        d = 1 + max(depth(a) for a in args)
        if d > MAX_DEPTH:
            raise ValueError(f"expression deeper than {MAX_DEPTH} levels")
        if n > MAX_NODES:
            raise ValueError(f"expression has more than {MAX_NODES} nodes")
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "_size", n)
        object.__setattr__(self, "_depth", d)

    def __repr__(self):
        return f"Op({self.name!r}, {self.args!r})"


Node = Union[Const, Var, Op]
"""Any expression node."""


def check_var_name(name) -> str:
    """Validate a variable name (``<feature>_<lag>``) and return it; ``ValueError`` otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"variable name must be a string, got {short(name)}")
    if len(name) > MAX_NAME_CHARS or not VAR_PATTERN.fullmatch(name):
        raise ValueError(f"invalid variable name {short(name)}: expected <feature>_<lag> such as 'mt_0'")
    return name


def split_var(name: str) -> tuple[str, int]:
    """``"mom5_3"`` → ``("mom5", 3)``."""
    check_var_name(name)
    feat, lag = name.rsplit("_", 1)
    return feat, int(lag)


def check_node(node) -> None:
    if not isinstance(node, (Const, Var, Op)):
        raise ValueError(f"expected an expression node (Const, Var or Op), got {short(node)}")


# --------------------------------------------------------------------------------------------- helpers


def size(node: Node) -> int:
    """Number of nodes (the complexity used by symbolic regression)."""
    return node._size if isinstance(node, Op) else 1


def depth(node: Node) -> int:
    """Nesting depth (a leaf has depth 1)."""
    return node._depth if isinstance(node, Op) else 1


def _preorder(node: Node) -> Iterable[Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, Op):
            stack.extend(reversed(n.args))


def variables(node: Node) -> list[str]:
    """The distinct variable names, sorted by feature name and then by lag."""
    check_node(node)
    names = {n.name for n in _preorder(node) if isinstance(n, Var)}
    return sorted(names, key=lambda s: (s.rsplit("_", 1)[0], int(s.rsplit("_", 1)[1])))


def constants(node: Node) -> list[float]:
    """The constants in pre-order (left to right); the order :func:`with_constants` and evaluators use."""
    check_node(node)
    return [n.value for n in _preorder(node) if isinstance(n, Const)]


def with_constants(node: Node, values: Sequence[float]) -> Node:
    """Return ``node`` with its constants replaced, in :func:`constants` order, by ``values``."""
    check_node(node)
    values = [float(v) for v in values]
    expected = len(constants(node))
    if len(values) != expected:
        raise ValueError(f"expression has {expected} constant(s), got {len(values)} value(s)")
    it = iter(values)

    def rebuild(n):
        if isinstance(n, Const):
            return Const(next(it))
        if isinstance(n, Op):
            return Op(n.name, tuple(rebuild(a) for a in n.args))
        return n

    return rebuild(node)


def substitute(node: Node, mapping: Mapping[str, Node]) -> Node:
    """Replace every variable named in ``mapping`` by the corresponding node."""
    check_node(node)
    for key, value in mapping.items():
        check_var_name(key)
        check_node(value)

    def rebuild(n):
        if isinstance(n, Var):
            return mapping.get(n.name, n)
        if isinstance(n, Op):
            return Op(n.name, tuple(rebuild(a) for a in n.args))
        return n

    return rebuild(node)


# ---------------------------------------------------------------------------------------------- prefix


def to_prefix(node: Node) -> Any:
    """The JSON-able prefix form: lists are operators, strings variables, numbers constants."""
    check_node(node)
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Var):
        return node.name
    return [node.name, *(to_prefix(a) for a in node.args)]


def from_prefix(obj: Any) -> Node:
    """Build and validate a tree from its prefix form (see :func:`to_prefix`); ``ValueError`` on anything else."""
    count = [0]

    def build(o, level):
        if level > MAX_DEPTH:
            raise ValueError(f"expression deeper than {MAX_DEPTH} levels")
        count[0] += 1
        if count[0] > MAX_NODES:
            raise ValueError(f"expression has more than {MAX_NODES} nodes")
        if isinstance(o, bool):
            raise ValueError(f"booleans are not valid constants: {o!r}")
        if isinstance(o, str):
            return Var(o)
        if isinstance(o, (int, float)):
            return Const(o)
        if isinstance(o, list):
            if not o:
                raise ValueError("empty list in expression; expected [op, arg, ...]")
            head = o[0]
            if not isinstance(head, str):
                raise ValueError(f"first element of an operator list must be its name, got {short(head)}")
            spec = get_op(head)
            if len(o) - 1 != spec.arity:
                raise ValueError(f"operator {head!r} takes {spec.arity} argument(s), got {len(o) - 1}")
            return Op(head, tuple(build(a, level + 1) for a in o[1:]))
        raise ValueError(f"invalid expression element of type {type(o).__name__}: {short(o)}")

    return build(obj, 1)
