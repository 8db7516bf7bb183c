"""Stage 3 of Symbolic L2O: distill a behaviour dataset into a closed-form update rule.

* :mod:`.backends` — the symbolic-regression interface, :class:`GplearnBackend` (default) and the optional
  :class:`OperonBackend` (``pip install tf-symbolic-l2o[operon]``), :func:`get_backend`;
* :mod:`.sparse` — :class:`SparseBackend`: fast, deterministic sparse regression over odd basis functions;
* :mod:`.standardize` — standardisation of X and y and its exact fold back into the expression;
* :mod:`.simplify` — value-preserving clean-up of redundant constants;
* :mod:`.refit` — the second phase of distillation: refitting a rule's constants by gradient descent
  (:func:`refit_constants`);
* :mod:`.distill` — :func:`distill` (split, symmetrise, standardise, SR, odd part, fold, score, Pareto front,
  select a rule that passes the invariant checks) and :func:`distill_file`;
* :mod:`.symmetry` — column parities, the odd-part projection (:func:`odd_part`) and the oddness test;
* :mod:`.result` — :class:`CandidateResult` and :class:`DistillResult`, what :func:`distill` returns;
* :mod:`.report` — :func:`write_distill_report` (``rule.json``, ``report.json``, ``pareto.csv``, ``pareto.png``);
* :mod:`.synthetic` — behaviour datasets with a known rule (sanity checks and benchmarks).
"""

from tf_symbolic_l2o.distill.backends import (GplearnBackend, OperonBackend, available_backends, get_backend,
                                              parse_operon_model)
from tf_symbolic_l2o.distill.base import Candidate, SRBackend
from tf_symbolic_l2o.distill.distill import UnsoundRuleError, distill, distill_file
from tf_symbolic_l2o.distill.refit import RefitResult, refit_constants
from tf_symbolic_l2o.distill.report import write_distill_report
from tf_symbolic_l2o.distill.result import CandidateResult, DistillResult
from tf_symbolic_l2o.distill.simplify import simplify
from tf_symbolic_l2o.distill.sparse import SparseBackend
from tf_symbolic_l2o.distill.standardize import Standardizer, fold_constants
from tf_symbolic_l2o.distill.symmetry import odd_part
from tf_symbolic_l2o.distill.synthetic import synthetic_behaviour, synthetic_features

__all__ = [
    "Candidate", "CandidateResult", "DistillResult", "GplearnBackend", "OperonBackend", "RefitResult",
    "SRBackend", "SparseBackend", "Standardizer", "UnsoundRuleError", "available_backends", "distill",
    "distill_file", "fold_constants", "get_backend", "odd_part", "parse_operon_model", "refit_constants",
    "simplify", "synthetic_behaviour", "synthetic_features", "write_distill_report",
]
