"""Stage 6 of Symbolic L2O: export symbolic rules and trained Keras models as SavedModels that any TensorFlow
runtime can load.

**A rule** (:func:`export_rule`) becomes a SavedModel with two flat, named signatures, so it can be applied without
this library (from C++, TF Serving, ``saved_model_cli``, or plain ``tf.saved_model.load``):

=================  ==================================================  ================================================
signature          inputs                                              outputs
=================  ==================================================  ================================================
``init_state``     ``n``: int32 scalar (number of coordinates)         one zero tensor per state entry (below)
``update``         ``grad``: float32 ``[n]``; ``step``: int32 scalar   ``delta`` float32 ``[n]`` (the step to *add*:
                   (1-based); every state entry                        θ ← θ + delta); ``raw`` ``[n]`` = f(x), i.e.
                                                                       delta / output_scale (÷ exp(lgain) too for a
                                                                       rule with a step gain); every new state entry
=================  ==================================================  ================================================

State entries are named after the feature state (:meth:`~tf_symbolic_l2o.features.FeatureSet.state_names`:
``m``, ``v``, ``mom5``, ``mom9``, ``mom99``, ``v_mp2``, ``v_mp25``, ``v_mp3`` — only those the rule's features
need), each float32 ``[n]``, plus ``history`` — float32 ``[memlen − 1, n, F]``, the features of the previous
``memlen − 1`` steps, most recent first — when ``memlen > 1``. One step is exactly
:meth:`tf_symbolic_l2o.rules.coordinate.RuleOptimizer.update`::

    m = tf.saved_model.load("rule_sm")
    state = m.signatures["init_state"](n=tf.constant(n))                   # {"m": …, "v": …}
    for t in range(1, T + 1):
        out = m.signatures["update"](grad=g, step=tf.constant(t), **state)  # {"delta", "raw", "m", "v"}
        theta += out.pop("delta"); out.pop("raw"); state = out

The folder also holds ``rule.json`` (the rule itself, for reference; TensorFlow ignores it).
:func:`load_exported_rule` wraps the signatures as a callable ``step(grad, state, step) -> (delta, new_state)``.

**A trained Keras model** (:func:`export_model`) becomes an inference SavedModel with a ``serving_default``
signature (``model.export(..., format="tf_saved_model")``); the optimizer that trained it is not needed to serve it.

Both exports are atomic: the folder appears complete or not at all (an existing folder is replaced only on success).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import tensorflow as tf

from tf_symbolic_l2o.io import atomic_directory
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
from tf_symbolic_l2o.rules.rule import Rule, as_rule

RULE_FILE = "rule.json"
HISTORY = "history"
_RESERVED = ("grad", "step", "delta", "raw", HISTORY)


def rule_state_names(rule: Rule) -> tuple[str, ...]:
    """The names of the state entries of an exported rule, in signature order (feature state, then history).

    Like :class:`RuleOptimizer`, an export keeps only the state its formula needs (:meth:`Rule.minimal`).
    """
    rule = rule.minimal()
    names = tuple(rule.feature_set.state_names())
    return names + ((HISTORY,) if rule.memlen > 1 else ())


class RuleModule(tf.Module):
    """A :class:`Rule` as a plain ``tf.Module`` with ``init_state(n)`` and ``update(grad, step, **state)``.

    Both are ``tf.function`` s with flat, named inputs and a flat dict of named outputs (see the module docstring);
    :func:`export_rule` saves them as the ``init_state`` and ``update`` signatures.
    """

    def __init__(self, rule: Rule):
        super().__init__(name="rule")
        rule = rule.minimal()  # the state RuleOptimizer keeps
        self._optimizer = RuleOptimizer(rule)
        self._feature_names = tuple(rule.feature_set.state_names())
        self._memlen = int(rule.memlen)
        self._num_features = int(rule.feature_set.num_features)
        self.state_names = rule_state_names(rule)
        for name in self._feature_names:
            if name in _RESERVED:  # cannot happen with the current feature sets; guards future ones
                raise ValueError(f"feature state name {name!r} clashes with a signature name")
        self.init_state = tf.function(self._init_state, input_signature=[tf.TensorSpec([], tf.int32, name="n")])
        self.update = tf.function(self._update)
        self.update_signature = self.update.get_concrete_function(**self.update_specs())

    def update_specs(self) -> dict[str, tf.TensorSpec]:
        """The ``update`` inputs: ``grad``, ``step`` and every state entry."""
        specs = {"grad": tf.TensorSpec([None], tf.float32, name="grad"),
                 "step": tf.TensorSpec([], tf.int32, name="step")}
        for name in self._feature_names:
            specs[name] = tf.TensorSpec([None], tf.float32, name=name)
        if self._memlen > 1:
            specs[HISTORY] = tf.TensorSpec([self._memlen - 1, None, self._num_features], tf.float32, name=HISTORY)
        return specs

    def _init_state(self, n):
        feat_state, history = self._optimizer.init_state(n)
        out = {name: tf.identity(feat_state[name]) for name in self._feature_names}
        if self._memlen > 1:
            out[HISTORY] = history
        return out

    def _update(self, **inputs):
        grad, step = inputs["grad"], inputs["step"]
        feat_state = {name: inputs[name] for name in self._feature_names}
        n = tf.shape(grad)[0]
        if self._memlen > 1:
            history = inputs[HISTORY]
        else:
            history = tf.zeros([0, n, self._num_features], grad.dtype)
        raw, _, (new_feat, new_history) = self._optimizer.forward(grad, (feat_state, history), step)
        out = {"delta": self._optimizer.step_scale((new_feat, new_history)) * raw, "raw": raw}
        out.update({name: new_feat[name] for name in self._feature_names})
        if self._memlen > 1:
            out[HISTORY] = new_history
        return out


def export_rule(rule, directory: str | os.PathLike) -> Path:
    """Write ``rule`` as a SavedModel with the ``init_state`` and ``update`` signatures (plus ``rule.json``).

    Args:
        rule: a :class:`~tf_symbolic_l2o.rules.Rule`, its dict or the path of a ``rule.json``.
        directory: the SavedModel folder to create (replaced atomically if it exists).

    Returns:
        ``directory`` as a :class:`~pathlib.Path`.
    """
    rule = as_rule(rule)
    directory = Path(directory)
    module = RuleModule(rule)
    signatures = {"update": module.update_signature,
                  "init_state": module.init_state.get_concrete_function()}
    with atomic_directory(directory) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        rule.save(tmp / RULE_FILE)
    return directory


def export_model(model, directory: str | os.PathLike, verbose: bool = False, **kwargs) -> Path:
    """Write a (trained) Keras model as an inference SavedModel with a ``serving_default`` signature.

    This is ``model.export(directory, format="tf_saved_model")`` made atomic. The optimizer (e.g.
    :class:`~tf_symbolic_l2o.optimizers.SymbolicOptimizer`) is not part of the export, so serving it needs only
    TensorFlow. Extra keyword arguments (e.g. ``input_signature``) go to ``model.export``.

    Returns:
        ``directory`` as a :class:`~pathlib.Path`.
    """
    if not hasattr(model, "export"):
        raise ValueError(f"expected a Keras model, got {type(model).__name__}")
    if not getattr(model, "built", False):
        raise ValueError("the model is not built yet: call it on data (or fit it) before exporting")
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        model.export(str(tmp), format="tf_saved_model", verbose=verbose, **kwargs)
    return directory


def signatures_summary(directory: str | os.PathLike) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{signature: {"inputs": {name: {"dtype", "shape"}}, "outputs": {…}}}`` of any SavedModel.

    ``shape`` lists ``None`` for unknown dimensions (``null`` in JSON).
    """
    directory = Path(directory)
    if not (directory / "saved_model.pb").is_file():
        raise FileNotFoundError(f"no SavedModel in {directory} (saved_model.pb is missing)")
    loaded = tf.saved_model.load(str(directory))

    def spec(s):
        return {"dtype": s.dtype.name, "shape": None if s.shape.rank is None else list(s.shape.as_list())}

    out = {}
    for key in sorted(loaded.signatures.keys()):
        fn = loaded.signatures[key]
        _, kwargs = fn.structured_input_signature
        outputs = fn.structured_outputs
        out[key] = {"inputs": {k: spec(v) for k, v in sorted(kwargs.items())},
                    "outputs": {k: spec(v) for k, v in sorted(outputs.items())}}
    return out


class ExportedRule:
    """A SavedModel written by :func:`export_rule`, applied through its signatures (no Python rule code).

    ``rule(grad, state, step)`` returns ``(delta, new_state)`` like :meth:`RuleOptimizer.update
    <tf_symbolic_l2o.rules.coordinate.RuleOptimizer.update>`, with ``state`` the flat dict of the signature
    (``{"m": …, "v": …[, "history": …]}``) as returned by :meth:`init_state`.

    Attributes:
        state_names: the state entries, in signature order.
        rule: the :class:`Rule` from ``rule.json`` when the folder has one, else ``None``.
    """

    def __init__(self, directory: str | os.PathLike):
        directory = Path(directory)
        if not (directory / "saved_model.pb").is_file():
            raise FileNotFoundError(f"no SavedModel in {directory} (saved_model.pb is missing)")
        self.directory = directory
        self._loaded = tf.saved_model.load(str(directory))
        missing = {"update", "init_state"} - set(self._loaded.signatures.keys())
        if missing:
            raise ValueError(f"{directory} is not an exported rule: signature(s) {sorted(missing)} missing "
                             f"(found {sorted(self._loaded.signatures.keys())})")
        self._update = self._loaded.signatures["update"]
        self._init = self._loaded.signatures["init_state"]
        _, inputs = self._update.structured_input_signature
        names = {k for k in inputs if k not in ("grad", "step")}
        rule_path = directory / RULE_FILE
        self.rule = Rule.load(rule_path) if rule_path.is_file() else None
        if self.rule is not None and set(rule_state_names(self.rule)) == names:
            self.state_names = rule_state_names(self.rule)
        else:  # no (matching) rule.json: sorted feature state, history last
            self.state_names = tuple(sorted(names - {HISTORY})) + ((HISTORY,) if HISTORY in names else ())

    def init_state(self, n: int) -> dict[str, tf.Tensor]:
        """The zero state for ``n`` coordinates."""
        return dict(self._init(n=tf.constant(int(n), tf.int32)))

    def forward(self, grad, state: Mapping[str, Any], step) -> dict[str, tf.Tensor]:
        """Every output of the ``update`` signature: ``delta``, ``raw`` and the new state entries."""
        grad = tf.convert_to_tensor(grad, tf.float32)
        if grad.shape.rank != 1:
            raise ValueError(f"grad must be a vector [n] (flatten it first), got shape {grad.shape}")
        if set(state) != set(self.state_names):
            raise ValueError(f"state must have exactly the entries {list(self.state_names)}, got {sorted(state)}")
        feed = {k: tf.convert_to_tensor(v, tf.float32) for k, v in state.items()}
        return dict(self._update(grad=grad, step=tf.constant(int(step), tf.int32), **feed))

    def __call__(self, grad, state: Mapping[str, Any], step) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        out = self.forward(grad, state, step)
        delta = out.pop("delta")
        out.pop("raw")
        return delta, out


def load_exported_rule(directory: str | os.PathLike) -> ExportedRule:
    """Load a folder written by :func:`export_rule` as a callable ``step(grad, state, step) -> (delta, new_state)``
    (with ``.init_state(n)``, ``.forward(...)`` for ``raw`` too, ``.state_names`` and ``.rule``)."""
    return ExportedRule(directory)


__all__ = ["ExportedRule", "RuleModule", "export_model", "export_rule", "load_exported_rule", "rule_state_names",
           "signatures_summary"]
