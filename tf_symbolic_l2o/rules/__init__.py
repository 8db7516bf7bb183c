"""Symbolic update rules: one canonical format from symbolic regression to Keras.

* :mod:`.ops` — the operator whitelist (NumPy, TensorFlow and sympy implementations, protected semantics);
* :mod:`.expression` — immutable trees (:class:`Const`, :class:`Var`, :class:`Op`), the JSON prefix form and a
  whitelisted infix parser (no ``eval`` anywhere);
* :mod:`.convert` — NumPy/TensorFlow evaluation and the sympy/LaTeX reading;
* :mod:`.rule` — :class:`Rule` (expression + features + memlen + output scale) and its ``tfl2o-rule/1`` JSON file;
* :mod:`.importers` — gplearn programs, PySR equations and hall-of-fame files.
"""

from tf_symbolic_l2o.rules.convert import evaluate_numpy, evaluate_tf, latex_symbol, to_latex, to_sympy
from tf_symbolic_l2o.rules.expression import (MAX_DEPTH, MAX_NODES, Const, Node, Op, Var, constants, depth,
                                              from_prefix, size, substitute, to_prefix, variables, with_constants)
from tf_symbolic_l2o.rules.infix import parse_infix, to_infix
from tf_symbolic_l2o.rules.importers import (from_gplearn, from_pysr_equation, gplearn_function,
                                             gplearn_function_set, load_pysr_hall_of_fame)
from tf_symbolic_l2o.rules.ops import OPS, OpSpec
from tf_symbolic_l2o.rules.rule import FORMAT, Rule

__all__ = [
    "FORMAT", "MAX_DEPTH", "MAX_NODES", "OPS", "Const", "Node", "Op", "OpSpec", "Rule", "Var", "constants",
    "depth", "evaluate_numpy", "evaluate_tf", "from_gplearn", "from_prefix", "from_pysr_equation",
    "gplearn_function", "gplearn_function_set", "latex_symbol", "load_pysr_hall_of_fame", "parse_infix", "size",
    "substitute", "to_infix", "to_latex", "to_prefix", "to_sympy", "variables", "with_constants",
]
