"""The infix text form of expression trees: a printer and a safe, hand-written parser.

``to_infix`` prints ``tanh(0.0248 + -1.992 * mt_0)``; :func:`parse_infix` reads it back (``parse_infix(to_infix(n))
== n`` for every tree; floats are printed with ``repr``). Grammar and precedence are described in
:mod:`tf_symbolic_l2o.rules.expression`. Nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

from tf_symbolic_l2o.rules.expression import MAX_DEPTH, Const, Node, Op, Var, check_node
from tf_symbolic_l2o.rules.ops import ALLOWED, OPS, short

MAX_INFIX_CHARS = 100_000
"""Maximum length of an infix string accepted by :func:`parse_infix`."""


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
    check_node(node)

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
                raise ValueError(f"attribute access is not allowed: {short(name)} at position {pos}")
            if name.startswith("_"):
                raise ValueError(f"names starting with '_' are not allowed: {short(name)} at position {pos}")
            if name in OPS or name in self.functions:
                raise ValueError(f"function {name!r} at position {pos} must be called with arguments")
            if self.rename is not None:
                name = self.rename(name)
            try:
                return Var(name)
            except ValueError:
                raise ValueError(f"unknown name {short(name)} at position {pos}: variables are written "
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
            raise ValueError(f"unknown function {short(name)} at position {pos}; allowed: {ALLOWED}{extra}")
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
