"""Light, value-preserving clean-up of expression trees (constants only; no computer algebra).

Symbolic regression leaves redundant constant structure behind: gplearn's ``div(0.3, 0.7)`` (never folded,
gplearn#236), linear scaling's ``a + b·neg(f)``, operon's ``1.000031 * (-0.96 * x)``. :func:`simplify` removes it
with local rewrites that change the value by at most a rounding error:

* sub-trees without variables are evaluated (the rule's own NumPy float64 implementations);
* ``neg(neg(f)) → f``, ``neg(c) → −c``, ``c·neg(f) → (−c)·f``, ``neg(c·f) → (−c)·f``;
* constants move to the left of ``mul``/``add`` and nested ones merge: ``c1·(c2·f) → (c1c2)·f``,
  ``c1 + (c2 + f) → (c1+c2) + f``, ``f − c → (−c) + f``; ``1·f → f``, ``0 + f → f``;
* ``div(f, c) → (1/c)·f`` when |c| > 0.001 (where the protected ``div`` is the plain quotient);
* ``f + neg(g) → f − g``, ``f − neg(g) → f + g``, ``f + f → 2·f``.

Two options, used only in standardised space (before the standardisation is folded back):

* ``distribute=True``: ``c1·(c2 + f) → c1c2 + c1·f`` (same size, lets the constant merge with an outer ``+``). Not
  used on rules over raw columns: distributing ``(x − μ)·(1/σ)`` would turn a well-conditioned standardisation
  into the difference of two large numbers, which float32 evaluation cannot resolve;
* ``drop_tolerance``: additive constants with |c| ≤ tol and factors with |c − 1| ≤ tol are removed (on
  standardised data an intercept of 1e-17 is rounding noise of the least-squares fit).
"""

from __future__ import annotations

import math

import numpy as np

from tf_symbolic_l2o.rules import Const, Node, Op
from tf_symbolic_l2o.rules.ops import DIV_EPS, OPS

__all__ = ["simplify"]


def _const(value: float) -> Const | None:
    value = float(value)
    return Const(value) if math.isfinite(value) else None


def simplify(node: Node, distribute: bool = False, drop_tolerance: float = 0.0) -> Node:
    """Return an equivalent, usually smaller tree (see the module docstring)."""
    tol = float(drop_tolerance)

    def is_c(n) -> bool:
        return isinstance(n, Const)

    def mul(c: float, f: Node) -> Node:
        return rewrite(Op("mul", (Const(c), f)))

    def add(c: float, f: Node) -> Node:
        return rewrite(Op("add", (Const(c), f)))

    def rewrite(n: Node) -> Node:
        if not isinstance(n, Op):
            return n
        a = n.args
        if all(is_c(x) for x in a):
            with np.errstate(all="ignore"):
                v = OPS[n.name].numpy(*[np.float64(x.value) for x in a])
            c = _const(np.asarray(v, dtype=np.float64))
            if c is not None:
                return c
            return n
        name = n.name
        if name == "neg":
            (f,) = a
            if isinstance(f, Op) and f.name == "neg":
                return f.args[0]
            if isinstance(f, Op) and f.name == "mul" and is_c(f.args[0]):
                return mul(-f.args[0].value, f.args[1])
            return n
        if name == "mul":
            x, y = a
            if is_c(y) and not is_c(x):
                return rewrite(Op("mul", (y, x)))
            if not is_c(x):
                return n
            c, f = x.value, y
            if c == 1.0 or (tol and abs(c - 1.0) <= tol):
                return f
            if isinstance(f, Op):
                if f.name == "neg":
                    return mul(-c, f.args[0])
                if f.name == "mul" and is_c(f.args[0]):
                    cc = _const(c * f.args[0].value)
                    if cc is not None:
                        return mul(cc.value, f.args[1])
                if f.name == "div" and is_c(f.args[1]) and abs(f.args[1].value) > DIV_EPS:
                    cc = _const(c / f.args[1].value)
                    if cc is not None:
                        return mul(cc.value, f.args[0])
                if distribute and f.name == "add" and is_c(f.args[0]):
                    cc = _const(c * f.args[0].value)
                    if cc is not None:
                        return add(cc.value, mul(c, f.args[1]))
            return n
        if name == "div":
            x, y = a
            if is_c(y) and abs(y.value) > DIV_EPS:
                cc = _const(1.0 / y.value)
                if cc is not None:
                    return mul(cc.value, x)
            return n
        if name == "sub":
            x, y = a
            if is_c(y):
                return add(-y.value, x)
            if isinstance(y, Op) and y.name == "neg":
                return rewrite(Op("add", (x, y.args[0])))
            return n
        if name == "add":
            x, y = a
            if is_c(y) and not is_c(x):
                return rewrite(Op("add", (y, x)))
            if isinstance(y, Op) and y.name == "neg":
                return rewrite(Op("sub", (x, y.args[0])))
            if isinstance(x, Op) and x.name == "neg" and not is_c(y):
                return rewrite(Op("sub", (y, x.args[0])))
            if x == y:  # f + f is exactly 2·f
                return mul(2.0, x)
            if not is_c(x):
                return n
            c, f = x.value, y
            if c == 0.0 or (tol and abs(c) <= tol):
                return f
            if isinstance(f, Op) and f.name == "add" and is_c(f.args[0]):
                cc = _const(c + f.args[0].value)
                if cc is not None:
                    return add(cc.value, f.args[1])
            return n
        return n

    def rec(n: Node) -> Node:
        if not isinstance(n, Op):
            return n
        return rewrite(Op(n.name, tuple(rec(x) for x in n.args)))

    return rec(node)
