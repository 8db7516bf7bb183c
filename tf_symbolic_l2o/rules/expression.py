"""Immutable expression trees for symbolic update rules, with a JSON prefix form and a safe infix parser.

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
* **infix** (for people): ``tanh(0.0248 + -1.992 * mt_0)``. :func:`parse_infix` is a hand-written tokenizer
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
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from tf_symbolic_l2o.rules.ops import ALLOWED, OPS, _short, get_op

MAX_DEPTH = 200
"""Maximum nesting depth of a tree (a leaf has depth 1)."""
MAX_NODES = 10_000
"""Maximum number of nodes of a tree."""
MAX_INFIX_CHARS = 100_000
"""Maximum length of an infix string accepted by :func:`parse_infix`."""
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
            raise ValueError(f"constant must be a real number, got {_short(self.value)}")
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
                raise ValueError(f"argument of {self.name!r} must be a Const, Var or Op node, got {_short(a)}")
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
        raise ValueError(f"variable name must be a string, got {_short(name)}")
    if len(name) > MAX_NAME_CHARS or not VAR_PATTERN.fullmatch(name):
        raise ValueError(f"invalid variable name {_short(name)}: expected <feature>_<lag> such as 'mt_0'")
    return name


def split_var(name: str) -> tuple[str, int]:
    """``"mom5_3"`` → ``("mom5", 3)``."""
    check_var_name(name)
    feat, lag = name.rsplit("_", 1)
    return feat, int(lag)


def _check_node(node) -> None:
    if not isinstance(node, (Const, Var, Op)):
        raise ValueError(f"expected an expression node (Const, Var or Op), got {_short(node)}")


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
    _check_node(node)
    names = {n.name for n in _preorder(node) if isinstance(n, Var)}
    return sorted(names, key=lambda s: (s.rsplit("_", 1)[0], int(s.rsplit("_", 1)[1])))


def constants(node: Node) -> list[float]:
    """The constants in pre-order (left to right); the order :func:`with_constants` and evaluators use."""
    _check_node(node)
    return [n.value for n in _preorder(node) if isinstance(n, Const)]


def with_constants(node: Node, values: Sequence[float]) -> Node:
    """Return ``node`` with its constants replaced, in :func:`constants` order, by ``values``."""
    _check_node(node)
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
    _check_node(node)
    for key, value in mapping.items():
        check_var_name(key)
        _check_node(value)

    def rebuild(n):
        if isinstance(n, Var):
            return mapping.get(n.name, n)
        if isinstance(n, Op):
            return Op(n.name, tuple(rebuild(a) for a in n.args))
        return n

    return rebuild(node)


def map_variables(node: Node, fn: Callable[[str], str]) -> Node:
    """Rename every variable with ``fn`` (e.g. to shift lags)."""
    return substitute(node, {name: Var(fn(name)) for name in variables(node)})


# ---------------------------------------------------------------------------------------------- prefix


def to_prefix(node: Node) -> Any:
    """The JSON-able prefix form: lists are operators, strings variables, numbers constants."""
    _check_node(node)
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
                raise ValueError(f"first element of an operator list must be its name, got {_short(head)}")
            spec = get_op(head)
            if len(o) - 1 != spec.arity:
                raise ValueError(f"operator {head!r} takes {spec.arity} argument(s), got {len(o) - 1}")
            return Op(head, tuple(build(a, level + 1) for a in o[1:]))
        raise ValueError(f"invalid expression element of type {type(o).__name__}: {_short(o)}")

    return build(obj, 1)


# ----------------------------------------------------------------------------------------------- infix

_PREC_ADD, _PREC_MUL, _PREC_NEG, _PREC_POW, _PREC_ATOM = 1, 2, 3, 4, 5
_BINARY = {"add": ("+", _PREC_ADD), "sub": ("-", _PREC_ADD), "mul": ("*", _PREC_MUL), "div": ("/", _PREC_MUL)}
_BINARY_BY_SYMBOL = {sym: name for name, (sym, _) in _BINARY.items()}


def _precedence(node: Node) -> int:
    if isinstance(node, Const):
        return _PREC_NEG if repr(node.value).startswith("-") else _PREC_ATOM
    if isinstance(node, Var):
        return _PREC_ATOM
    if node.name in _BINARY:
        return _BINARY[node.name][1]
    if node.name == "neg":
        return _PREC_NEG
    if node.name == "pow":
        return _PREC_POW
    return _PREC_ATOM


def to_infix(node: Node) -> str:
    """Readable infix text; floats are printed with ``repr`` so :func:`parse_infix` gives back the same tree."""
    _check_node(node)

    def fmt(n, min_prec):
        s = render(n)
        return f"({s})" if _precedence(n) < min_prec else s

    def render(n):
        if isinstance(n, Const):
            return repr(n.value)
        if isinstance(n, Var):
            return n.name
        a = n.args
        if n.name in _BINARY:
            sym, prec = _BINARY[n.name]
            return f"{fmt(a[0], prec)} {sym} {fmt(a[1], prec + 1)}"
        if n.name == "neg":
            return f"-({render(a[0])})" if isinstance(a[0], Const) else f"-{fmt(a[0], _PREC_NEG)}"
        if n.name == "pow":
            return f"{fmt(a[0], _PREC_ATOM)} ^ {fmt(a[1], _PREC_NEG)}"
        return f"{n.name}({', '.join(fmt(x, 0) for x in a)})"

    return fmt(node, 0)


_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op>\*\*|[-+*/^(),])"
    r")"
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            # reported by the parser when it gets there, so earlier, more useful errors win
            tokens.append(("error", text[pos], pos))
            return tokens
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "op" and value == "**":
            value = "^"
        tokens.append((kind, value, m.start(kind)))
        pos = m.end()
    tokens.append(("end", "", n))
    return tokens


class _Parser:
    """Recursive-descent parser over the token list; nesting is bounded by ``MAX_DEPTH + 10``."""

    def __init__(self, text: str, functions: Mapping[str, str] | None = None,
                 rename: Callable[[str], str] | None = None,
                 power: Callable[[Node, Node], Node] | None = None):
        self.tokens = _tokenize(text)
        self.i = 0
        self.nesting = 0
        self.functions = dict(functions or {})
        self.rename = rename
        self.power = power or (lambda base, exp: Op("pow", (base, exp)))

    # -- token helpers
    def peek(self, k: int = 0):
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, value: str):
        kind, v, pos = self.take()
        if kind == "error":
            raise self.unexpected(kind, v, pos)
        if kind != "op" or v != value:
            found = "end of input" if kind == "end" else repr(v)
            raise ValueError(f"expected {value!r} at position {pos}, found {found}")

    def enter(self):
        self.nesting += 1
        if self.nesting > MAX_DEPTH + 10:
            raise ValueError(f"expression nested deeper than {MAX_DEPTH} levels")

    # -- grammar
    def parse(self) -> Node:
        node = self.binary(_PREC_ADD)
        kind, v, pos = self.peek()
        if kind != "end":
            raise self.unexpected(kind, v, pos)
        return node

    def binary(self, min_prec: int) -> Node:
        left = self.operand()
        while True:
            kind, v, _ = self.peek()
            if kind != "op" or v not in _BINARY_BY_SYMBOL:
                return left
            name = _BINARY_BY_SYMBOL[v]
            prec = _BINARY[name][1]
            if prec < min_prec:
                return left
            self.take()
            right = self.binary(prec + 1)
            left = Op(name, (left, right))

    def operand(self) -> Node:
        """``[+-]* atom [^ operand]``; the signs apply to the whole power, as in Python."""
        signs = []
        while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
            signs.append(self.take()[1])
        fold = (signs and signs[-1] == "-" and self.peek()[0] == "num"
                and not (self.peek(1)[0] == "op" and self.peek(1)[1] == "^"))
        if fold:
            signs.pop()
            node = Const(-float(self.take()[1]))
        else:
            node = self.atom()
            if self.peek()[0] == "op" and self.peek()[1] == "^":
                self.take()
                self.enter()
                node = self.power(node, self.operand())
                self.nesting -= 1
        for s in reversed(signs):
            if s == "-":
                node = Op("neg", (node,))
        return node

    def atom(self) -> Node:
        kind, v, pos = self.take()
        if kind == "num":
            return Const(float(v))
        if kind == "op" and v == "(":
            self.enter()
            node = self.binary(_PREC_ADD)
            self.expect(")")
            self.nesting -= 1
            return node
        if kind == "name":
            name = re.sub(r"\s+", "", v)
            is_call = self.peek()[0] == "op" and self.peek()[1] == "("
            if is_call:
                return self.call(name, pos)
            if "." in name:
                raise ValueError(f"attribute access is not allowed: {_short(name)} at position {pos}")
            if name.startswith("_"):
                raise ValueError(f"names starting with '_' are not allowed: {_short(name)} at position {pos}")
            if name in OPS or name in self.functions:
                raise ValueError(f"function {name!r} at position {pos} must be called with arguments")
            if self.rename is not None:
                name = self.rename(name)
            try:
                return Var(name)
            except ValueError:
                raise ValueError(f"unknown name {_short(name)} at position {pos}: variables are written "
                                 f"<feature>_<lag> such as 'mt_0'") from None
        raise self.unexpected(kind, v, pos)

    @staticmethod
    def unexpected(kind: str, v: str, pos: int) -> ValueError:
        if kind == "error":
            return ValueError(f"unexpected character {v!r} at position {pos}")
        return ValueError(f"unexpected {'end of input' if kind == 'end' else repr(v)} at position {pos}")

    def call(self, name: str, pos: int) -> Node:
        op_name = self.functions.get(name, name)
        if "." in name or name.startswith("_") or op_name not in OPS:
            extra = f", {', '.join(sorted(self.functions))}" if self.functions else ""
            raise ValueError(f"unknown function {_short(name)} at position {pos}; allowed: {ALLOWED}{extra}")
        spec = OPS[op_name]
        self.expect("(")
        self.enter()
        args = []
        if not (self.peek()[0] == "op" and self.peek()[1] == ")"):
            while True:
                args.append(self.binary(_PREC_ADD))
                if self.peek()[0] == "op" and self.peek()[1] == ",":
                    self.take()
                    continue
                break
        self.expect(")")
        self.nesting -= 1
        if len(args) != spec.arity:
            raise ValueError(f"function {name!r} at position {pos} takes {spec.arity} argument(s), got {len(args)}")
        return Op(op_name, tuple(args))


def parse_infix(text: str, *, functions: Mapping[str, str] | None = None,
                rename: Callable[[str], str] | None = None,
                power: Callable[[Node, Node], Node] | None = None) -> Node:
    """Parse infix text (see the module docstring) into a validated tree.

    Args:
        text: the expression, at most :data:`MAX_INFIX_CHARS` characters.
        functions: extra function-name aliases, ``{alias: op_name}`` (e.g. ``{"plus": "add"}``); targets must be
            whitelisted operators.
        rename: maps each variable name as written to the name to use (e.g. PySR's ``x0`` → ``mt_0``).
        power: builds the node for ``a ^ b`` (default: the signed power ``pow``).

    Raises:
        ValueError: with a one-line message naming the offending token and its position.
    """
    if not isinstance(text, str):
        raise ValueError(f"expression text must be a string, got {type(text).__name__}")
    if len(text) > MAX_INFIX_CHARS:
        raise ValueError(f"expression text longer than {MAX_INFIX_CHARS} characters ({len(text)})")
    for alias, target in (functions or {}).items():
        if target not in OPS:
            raise ValueError(f"alias {alias!r} points to unknown operator {target!r}")
    if not text.strip():
        raise ValueError("empty expression")
    return _Parser(text, functions, rename, power).parse()
