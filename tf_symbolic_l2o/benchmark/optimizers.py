"""The optimizers the benchmark compares, by name; all follow the functional protocol of
:mod:`tf_symbolic_l2o.functional` (``init_state(n)`` / ``update(grad, state, step, params) -> (delta, state)``).

Tuned baselines (learning rate from a grid), built by :func:`tf_symbolic_l2o.functional.make_optimizer`:

* ``adam``, ``momentum`` (SGD + heavy-ball momentum 0.9), ``rmsprop``;
* ``adamw`` — Keras's ``AdamW`` (weight decay 0.004): decoupled weight decay, then the Adam step;
* ``lion`` — Keras's ``Lion`` (Chen et al., 2023), without weight decay.

Untuned learned / symbolic optimizers from ``saved_models/``: ``rp_mnist_mlp`` (the meta-trained RNNprop LSTM,
:func:`~tf_symbolic_l2o.learned.io.load_l2o`) and the rules ``symbolic_rp``, ``symbolic_rp_small``,
``symbolic_psi_tuned``, ``symbolic_rp_si``, ``symbolic_dm``, ``symbolic_rp_family`` (``symbolic_rp`` meta-tuned on
a task family), ``symbolic_rp_ema`` (an RP rule on EMAs instead of lags), ``symbolic_rp_ema_family``
(``symbolic_rp_ema`` meta-tuned on a task family) and ``symbolic_rp_gain`` (``SymbolicRP()``'s default:
``symbolic_rp_ema_family`` with a per-coordinate step gain chosen on a task family by ``tfl2o tune-gain``) and
``symbolic_dm_gain`` (``SymbolicDM()``'s default: ``symbolic_dm`` with such a gain) and ``symbolic_rp_si_gain``
(``SymbolicRPsi()``'s default: ``symbolic_rp_si`` with such a gain)
(:class:`~tf_symbolic_l2o.rules.coordinate.RuleOptimizer`). The rules of the Keras presets are labelled as the
presets are called (``SymbolicRP()``, ``SymbolicRPsi()``, ``SymbolicDM()``), and each has a tuned twin,
``<rule>+lr`` (e.g. ``symbolic_rp_gain+lr``): the same rule with a learning-rate multiplier on its step, tuned
on the grid :data:`PRESET_LR_GRID` like the baselines' learning rates, and counted as tuned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import tensorflow as tf

from tf_symbolic_l2o.artifacts import saved_models_dir
from tf_symbolic_l2o.functional import AdamW, Lion, state_bytes_per_param
from tf_symbolic_l2o.functional.registry import make_optimizer as make_hand_designed
from tf_symbolic_l2o.learned.io import load_l2o
from tf_symbolic_l2o.rules import Rule
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer

__all__ = ["AdamW", "LABELS", "LEARNED", "Lion", "PRESETS", "PRESET_LR_GRID", "RULES", "TUNED", "TUNED_PRESETS",
           "artifact_digest", "artifact_path", "is_tunable", "known_optimizer", "make_optimizer",
           "state_bytes_per_param"]

TUNED = ("adam", "adamw", "momentum", "rmsprop", "lion")
LEARNED = ("rp_mnist_mlp",)
RULES = ("symbolic_rp_gain", "symbolic_rp_ema_family", "symbolic_rp_ema", "symbolic_rp_family", "symbolic_rp",
         "symbolic_rp_small", "symbolic_psi_tuned", "symbolic_rp_si_gain", "symbolic_rp_si", "symbolic_dm_gain",
         "symbolic_dm")
#: The rules behind the Keras presets, labelled as the presets are called.
PRESETS = {"symbolic_rp_gain": "SymbolicRP()", "symbolic_rp_si_gain": "SymbolicRPsi()",
           "symbolic_dm_gain": "SymbolicDM()"}
#: Each preset's rule with a tuned learning-rate multiplier.
TUNED_PRESETS = tuple(f"{rule}+lr" for rule in PRESETS)
#: Multipliers tried for a preset's step: the baselines' log grid (steps of ≈ √10), centred on the native step.
PRESET_LR_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
LABELS = {"adam": "Adam", "adamw": "AdamW", "momentum": "SGD+momentum", "rmsprop": "RMSprop", "lion": "Lion",
          "rp_mnist_mlp": "RNNprop (learned)", "symbolic_psi_tuned": "symbolic ψ tuned",
          "symbolic_rp": "symbolic RP (distilled, untuned)",
          "symbolic_rp_small": "symbolic RP (8 B/param)", "symbolic_rp_ema": "symbolic RP, EMAs (distilled, untuned)",
          "symbolic_rp_family": "symbolic RP, 16 lags (family-tuned)",
          "symbolic_rp_ema_family": "symbolic RP, EMAs (family-tuned, no step gain)",
          "symbolic_dm": "symbolic DM (distilled, no step gain)",
          "symbolic_rp_si": "symbolic RP-si (distilled, no step gain)", **PRESETS,
          **{f"{rule}+lr": f"{label[:-2]}(learning_rate tuned)" for rule, label in PRESETS.items()}}


def known_optimizer(name: str) -> str:
    if name not in TUNED + LEARNED + RULES + TUNED_PRESETS:
        raise ValueError(f"unknown benchmark optimizer {name!r}; use one of "
                         f"{', '.join(TUNED + LEARNED + RULES + TUNED_PRESETS)}")
    return name


def _twin_rule(name: str) -> str:
    """The shipped rule behind ``name`` (a tuned twin ``<rule>+lr`` is its rule's; any other name is itself)."""
    return name[:-len("+lr")] if name in TUNED_PRESETS else name


def is_tunable(name: str) -> bool:
    return known_optimizer(name) in TUNED + TUNED_PRESETS


class ScaledStep:
    """A functional optimizer whose step is ``learning_rate`` × another's (a preset's rule with a tuned
    multiplier); ``learning_rate`` may be a scalar ``tf.Variable``, swept without retracing."""

    def __init__(self, optimizer, learning_rate: Any):
        self.optimizer, self.learning_rate = optimizer, learning_rate
        self.name = f"{optimizer.name}+lr"

    def init_state(self, num_coords: int):
        return self.optimizer.init_state(num_coords)

    def update(self, grad, state, step, params=None):
        delta, state = self.optimizer.update(grad, state, step, params=params)
        return tf.cast(self.learning_rate, delta.dtype) * delta, state


def make_optimizer(name: str, learning_rate: Any = None):
    """The optimizer ``name``; tuned ones take ``learning_rate`` (float or scalar ``tf.Variable``) and come from
    :func:`tf_symbolic_l2o.functional.make_optimizer` with their default hyperparameters; learned and symbolic
    ones are loaded from ``saved_models/`` and run untuned (``learning_rate`` must be ``None``)."""
    known_optimizer(name)
    if name in TUNED + TUNED_PRESETS and learning_rate is None:
        raise ValueError(f"optimizer {name!r} needs a learning rate")
    if name in TUNED:
        return make_hand_designed(name, learning_rate)
    if name in TUNED_PRESETS:
        rule = _twin_rule(name)
        return ScaledStep(RuleOptimizer(Rule.load(artifact_path(rule) / "rule.json"), name=rule), learning_rate)
    if learning_rate is not None:
        raise ValueError(f"optimizer {name!r} is run untuned; it takes no learning rate")
    path = artifact_path(name)
    if name in LEARNED:
        return load_l2o(path)
    return RuleOptimizer(Rule.load(path / "rule.json"), name=name)


def artifact_path(name: str) -> Path | None:
    """The ``saved_models/`` folder of a learned or symbolic optimizer (``None`` for tuned baselines)."""
    if known_optimizer(name) in TUNED:
        return None
    path = saved_models_dir() / _twin_rule(name)
    if not path.is_dir():
        raise FileNotFoundError(f"shipped optimizer {name!r} not found at {path}")
    return path


def artifact_digest(name: str) -> str:
    """SHA-256 of the files that define a shipped optimizer (its weights or rule); ``""`` for baselines."""
    path = artifact_path(name)
    if path is None:
        return ""
    files = [path / "rule.json"] if name in RULES + TUNED_PRESETS else \
        sorted([path / "l2o.json", *path.glob("weights.*")])
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
