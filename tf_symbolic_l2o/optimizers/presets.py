"""Ready-made symbolic optimizers whose default rules ship in ``saved_models/``.

Each default rule was produced by this project's own pipeline (``tfl2o train`` → ``tfl2o record`` →
``tfl2o distill``, for ``SymbolicRP`` then ``tfl2o tune --task-family``, and for all three
``tfl2o tune-gain``);
``saved_models/MANIFEST.json`` records
the commands, seeds and measured figures (R², closed-loop loss, validation). Pass ``rule=`` to use another rule with
the same class name in configs.

=================  ==================================================  ===========================================
class              default rule                                        made from
=================  ==================================================  ===========================================
``SymbolicRP``     ``saved_models/symbolic_rp_gain/rule.json``         ``saved_models/symbolic_rp_ema_family``
                                                                       (distilled from ``rp_s``: m̃, g̃ and EMAs
                                                                       of m̃, g̃ with decays 0.5, 0.9, its
                                                                       constants meta-tuned on the ``small``
                                                                       family) with a per-coordinate step gain
                                                                       chosen on the ``default`` family by
                                                                       ``tfl2o tune-gain``; 28 B/param
``SymbolicRPsi``   ``saved_models/symbolic_rp_si_gain/rule.json``      ``saved_models/symbolic_rp_si`` (distilled from
                                                                       ``rp_si``: 12 lags of m̃, g̃, mp25, mp3) with
                                                                       a step gain chosen on the ``default`` family
                                                                       by ``tfl2o tune-gain``; 196 B/param
``SymbolicDM``     ``saved_models/symbolic_dm_gain/rule.json``         ``saved_models/symbolic_dm`` (distilled from
                                                                       ``dm``: lags of g, its momenta, m̃, g̃)
                                                                       with a step gain chosen on the ``default``
                                                                       family by ``tfl2o tune-gain``; 96 B/param
=================  ==================================================  ===========================================

Every default rule is odd in the gradient by construction (distilled by ``tfl2o distill``'s default, odd search,
from odd LSTM teachers) and passes :func:`~tf_symbolic_l2o.invariants.check_invariants`: no step at zero gradient,
opposite steps for opposite gradients, descent on the sanity quadratics. ``SymbolicRP``'s step gain
(:class:`~tf_symbolic_l2o.features.StepGain`) multiplies each coordinate's step by a factor that grows while the
gradient agrees with the momentum and shrinks while it oscillates against it, so the same rule takes large steps on
a smooth low-dimensional problem and small ones on a noisy deep network; it keeps the rule odd and at rest. It keeps
seven slots per parameter (m, v, four EMAs and the gain's logarithm);
``SymbolicOptimizer("saved_models/symbolic_rp_ema_family/rule.json")`` is the previous default, the same rule
without the gain (24 B/param), and ``SymbolicOptimizer("saved_models/symbolic_rp_small/rule.json")`` the 8 B/param
variant (Adam's two slots), less faithful to its teacher.

All three rules also carry a size scale (:class:`~tf_symbolic_l2o.rules.Rule`): on a model of n > 272,474 trainable
parameters (the largest member of the ``default`` family, a ResNet-20) the step is multiplied by √(272,474 / n),
μP's 1/width, so the rules keep the step chosen on the family on models of its sizes (every task of the benchmark)
and take a smaller one on larger models (ResNet-50: × 0.108).

The default learning rate is 1.0: the rule's native step (Δθ = 0.01·f(features)).
"""

from __future__ import annotations

from pathlib import Path

import keras

from tf_symbolic_l2o.artifacts import saved_models_dir
from tf_symbolic_l2o.optimizers.symbolic import SymbolicOptimizer


def default_rule_path(name: str) -> Path:
    path = saved_models_dir() / name / "rule.json"
    if not path.is_file():
        raise FileNotFoundError(f"default rule {path} is missing; reinstall the package or pass rule=")
    return path


class _Preset(SymbolicOptimizer):
    _default = ""

    def __init__(self, rule=None, learning_rate=1.0, name=None, **kwargs):
        super().__init__(rule if rule is not None else default_rule_path(self._default), learning_rate,
                         name=name or type(self).__name__.lower(), **kwargs)


@keras.saving.register_keras_serializable(package="tfl2o")
class SymbolicRP(_Preset):
    """The symbolic RNNprop rule distilled by this project, meta-tuned on a task family and given a per-coordinate step
    gain (see the module docstring); Keras arguments as :class:`SymbolicOptimizer`, ``learning_rate`` multiplies the
    rule's step (default 1.0)."""

    _default = "symbolic_rp_gain"


@keras.saving.register_keras_serializable(package="tfl2o")
class SymbolicRPsi(_Preset):
    """The symbolic RNNprop-si rule (lags of m̃, g̃ and the p = 2.5, 3 normalised momenta) distilled by this project,
    with a per-coordinate step gain."""

    _default = "symbolic_rp_si_gain"


@keras.saving.register_keras_serializable(package="tfl2o")
class SymbolicDM(_Preset):
    """The symbolic DM rule (gradient history) distilled by this project, with a per-coordinate step gain."""

    _default = "symbolic_dm_gain"
