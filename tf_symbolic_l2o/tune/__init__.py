"""Stage 5 of Symbolic L2O: meta-tuning symbolic rules (:mod:`.tunable`: trainable constants and the ψ family;
:mod:`.tuner`: the ``tfl2o tune`` run on the meta-training engine; :mod:`.gain`: ``tfl2o tune-gain``, a rule's step
gain chosen by a grid search on a task family)."""

from tf_symbolic_l2o.tune.tunable import TunableRule, psi_rule, resolve_rule, tied_constants
from tf_symbolic_l2o.tune.tuner import MetaTuner, RuleLearner, TuneConfig, load_tuned_rule, tune_config

__all__ = ["MetaTuner", "RuleLearner", "TunableRule", "TuneConfig", "load_tuned_rule", "psi_rule", "resolve_rule",
           "tied_constants", "tune_config"]
