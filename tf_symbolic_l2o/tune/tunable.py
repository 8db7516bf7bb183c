"""Rules with trainable constants (stage 5 of the pipeline: meta-tuning), and the paper's parametric family ψ.

:class:`TunableRule` turns the constants of any :class:`~tf_symbolic_l2o.rules.Rule` into one trainable vector and
drives an optimizee exactly as :class:`~tf_symbolic_l2o.rules.coordinate.RuleOptimizer` does, so the meta-training
engine (:mod:`tf_symbolic_l2o.meta`) meta-tunes it as it meta-trains an LSTM.

Constants can be **tied**: a rule's ``metadata["tied_constants"]`` lists, for each constant of the expression in
pre-order, the index of the trainable parameter it reads. :func:`psi_rule` uses this so that the one clipping scale
γ appears in every term but is a single parameter. Without the entry every constant is its own parameter.

The paper's meta-tunable form (Zheng et al., 2022, "Symbolic Learning to Optimize", ICLR)::

    ψ(𝒢; W) = − Σ_{g∈𝒢} Σ_{τ=0..L} W[g,τ] · γ · tanh(g_{t−τ} / γ)

is an ordinary rule here (``Δθ = output_scale · ψ``), written in the canonical format, so a tuned ψ runs in
:class:`~tf_symbolic_l2o.optimizers.SymbolicOptimizer` like any distilled rule.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from tf_symbolic_l2o.features import FeatureSet
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
from tf_symbolic_l2o.rules.expression import Const, Op, Var
from tf_symbolic_l2o.rules.rule import Rule, as_rule

#: Metadata key of the constant → parameter map.
TIE_KEY = "tied_constants"
#: Metadata key of the parameters' names (informative).
NAMES_KEY = "parameter_names"


def tied_constants(rule: Rule) -> list[int]:
    """For each constant of ``rule`` (pre-order), the index of the parameter it reads; validated."""
    n = len(rule.constants)
    tie = rule.metadata.get(TIE_KEY)
    if tie is None:
        return list(range(n))
    if (not isinstance(tie, list) or len(tie) != n
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in tie)):
        raise ValueError(f"metadata '{TIE_KEY}' must list one parameter index (an int >= 0) for each of the rule's "
                         f"{n} constants; fix or remove it")
    if set(tie) != set(range(max(tie, default=-1) + 1)):
        raise ValueError(f"metadata '{TIE_KEY}' must use every parameter index 0..{max(tie)}; fix or remove it")
    values = rule.constants
    for i, p in enumerate(tie):
        first = tie.index(p)
        if not np.isclose(values[i], values[first], rtol=1e-6, atol=1e-12):
            raise ValueError(f"constants {first} and {i} are tied (parameter {p}) but differ ({values[first]} vs "
                             f"{values[i]}); fix '{TIE_KEY}' in the rule's metadata")
    return list(tie)


def check_tunable(rule: Rule) -> list[int]:
    """The constant → parameter map of a rule that can be tuned (:func:`tied_constants`); ``ValueError`` when the
    rule has no constants or a malformed tie."""
    if not rule.constants:
        raise ValueError(f"the rule {rule.infix!r} has no constants to tune; use a rule with constants (e.g. "
                         f"one from 'tfl2o distill') or the ψ family ('psi')")
    return tied_constants(rule)


class TunableRule(tf.Module):
    """A symbolic rule whose constants are one trainable vector, usable wherever the engine takes an L2O.

    Args:
        rule: a :class:`Rule`, its dict, or the path of a ``rule.json``.
        name: module name (also the label in reports).

    Raises:
        ValueError: the rule has no constants, or its ``tied_constants`` metadata is malformed.
    """

    def __init__(self, rule, name: str = "tunable_rule"):
        super().__init__(name=name)
        rule = as_rule(rule)
        values = rule.constants
        tie = check_tunable(rule)
        first = [tie.index(p) for p in range(max(tie) + 1)]
        start = np.asarray([values[i] for i in first], np.float64)
        self.rule = rule
        self.tie = tf.constant(tie, tf.int32)
        # constant = scale · parameter, scale = |starting value| (1 for zeros): every parameter starts at ±1 (or 0),
        # so a meta-optimizer step changes each constant by the same RELATIVE amount — the rules' constants span
        # orders of magnitude (an offset of 1e-4 next to a slope of 60), and equal absolute steps would wreck the
        # small ones. The map constants = selection @ (scale ⊙ parameters) is dense, so the meta-gradient is a dense
        # vector (a gather's would be IndexedSlices, which all-reduces and meta-optimizers handle less simply).
        self.scale = np.where(start != 0.0, np.abs(start), 1.0)
        self._selection = tf.constant((np.eye(len(first)) * self.scale)[tie], tf.float32)
        self.params = tf.Variable((start / self.scale).astype(np.float32), name="constants")
        self._optimizer = RuleOptimizer(rule, constants=self.constants, name=name)
        self.features = self._optimizer.features
        self.output_scale = self._optimizer.output_scale
        names = rule.metadata.get(NAMES_KEY)
        self.parameter_names = (list(names) if isinstance(names, list) and len(names) == len(first)
                                else [f"c{p}" for p in range(len(first))])

    @property
    def weights(self) -> list[tf.Variable]:
        return [self.params]

    def constants(self) -> tf.Tensor:
        """The expression's constants (pre-order) read from the parameters."""
        return tf.linalg.matvec(self._selection, self.params)

    def values(self) -> np.ndarray:
        """The current value of each parameter (one per tied group), in float64."""
        return np.asarray(self.params.numpy(), np.float64) * self.scale

    def init_state(self, num_coords):
        return self._optimizer.init_state(num_coords)

    def forward(self, grad, state, step):
        return self._optimizer.forward(grad, state, step)

    def split_state(self, state, sizes):
        """One state per consecutive block of coordinates (the rule is coordinate-wise, so blocks update alone)."""
        return self._optimizer.split_state(state, sizes)

    def merge_state(self, states):
        return self._optimizer.merge_state(states)

    def update(self, grad, state, step, params=None):
        return self._optimizer.update(grad, state, step)

    def update_and_jacobian(self, grad, state, step, num_coords=None):
        """``(Δ [n], ∂Δ/∂parameters [n, P], new_state)`` with the gradient held fixed, for first-order meta-tuning
        without a tape over the unroll. The rule is elementwise, so giving every coordinate its own copy of each
        constant turns one reverse pass into all the per-coordinate derivatives ∂Δ_i/∂c_k; the chain rule through
        the (tied, relative) parameters is a [K, P] matrix. ``num_coords``: the size of the whole vector when
        ``grad`` is one block of it (for the rule's size factor)."""
        x, _, state = self._optimizer.inputs(grad, state, step)
        n = tf.shape(x)[0]
        copies = [tf.fill([n], c) for c in tf.unstack(self.constants())]
        with tf.GradientTape() as tape:
            tape.watch(copies)
            raw = self._optimizer._f(x, copies)
        d_const = tape.gradient(raw, copies, unconnected_gradients=tf.UnconnectedGradients.ZERO)  # K × [n]
        jac = tf.matmul(tf.stack(d_const, axis=1), self._selection)  # [n, K] @ [K, P]
        scale = self._optimizer.step_scale(state, num_coords)
        return scale * raw, (scale[:, None] if self._optimizer.features.gain else scale) * jac, state

    def tuned_rule(self, tuned: dict | None = None) -> Rule:
        """The rule with the current parameter values, in the canonical format; its metadata is
        :func:`tuned_metadata` of the start's and the ``tuned`` record (how it was tuned)."""
        values = self.values()[self.tie.numpy()].tolist()
        return self.rule.with_constants(values).replace(metadata=tuned_metadata(self.rule.metadata, tuned or {}))


def psi_rule(features: str | Sequence[str] = "mt+gt", lags: int = 1, gamma: float = 1.0,
             weights: Sequence[Sequence[float]] | None = None, output_scale: float = 0.01,
             beta1: float = 0.95, beta2: float = 0.95) -> Rule:
    """The paper's ψ(𝒢; W) = −Σ_g Σ_τ W[g,τ]·γ·tanh(g_{t−τ}/γ) as a rule with tied constants.

    Args:
        features: the input set 𝒢 (feature names of :class:`~tf_symbolic_l2o.features.FeatureSet`), e.g.
            ``"mt+gt"`` (RNNprop's inputs m̃, g̃, the default) or ``"g+mom9"``.
        lags: L; the terms use lags τ = 0..L (``memlen = L + 1``).
        gamma: the initial clipping scale γ (> 0).
        weights: initial W, ``[len(𝒢)][L + 1]``; default 1 for the first feature at lag 0 and 0 elsewhere
            (Δθ = −output_scale·γ·tanh(m̃_t/γ): a clipped Adam-like step).
        output_scale: Δθ = output_scale · ψ.
        beta1, beta2: the features' moving-average factors (0.95 as RNNprop's).

    The parameters are ``W[g,τ]`` (feature-major) then γ; the rule's metadata names them and ties every γ to one.
    """
    names = features.split("+") if isinstance(features, str) else list(features)
    fs = FeatureSet("+".join(names), beta1=beta1, beta2=beta2)  # validates the names
    names = list(fs.names)
    if int(lags) != lags or lags < 0:
        raise ValueError(f"lags must be an integer >= 0, got {lags}")
    lags = int(lags)
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if weights is None:
        w = np.zeros((len(names), lags + 1))
        w[0, 0] = 1.0
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(names), lags + 1):
            raise ValueError(f"weights must have shape [{len(names)}][{lags + 1}] (features × lags), got "
                             f"{list(w.shape)}")
    gamma_index = w.size
    terms, tie, param_names = [], [], []
    for i, feat in enumerate(names):
        for tau in range(lags + 1):
            p = i * (lags + 1) + tau
            param_names.append(f"W[{feat},{tau}]")
            # W · (γ · tanh(x / γ)); pre-order constants: W, γ, γ
            terms.append(Op("mul", (Const(float(w[i, tau])),
                                    Op("mul", (Const(float(gamma)),
                                               Op("tanh", (Op("div", (Var(f"{feat}_{tau}"),
                                                                      Const(float(gamma))),),)))))))
            tie += [p, gamma_index, gamma_index]
    total = terms[0]
    for term in terms[1:]:
        total = Op("add", (total, term))
    # pre-order of add(add(t0, t1), t2) is t0, t1, t2: the tie list above is already in that order
    return Rule(Op("neg", (total,)), features={"names": "+".join(names), "beta1": beta1, "beta2": beta2},
                memlen=lags + 1, output_scale=output_scale,
                metadata={"family": "psi", "description": "ψ(G; W) = −Σ_g Σ_τ W[g,τ]·γ·tanh(g_{t−τ}/γ)",
                          TIE_KEY: tie, NAMES_KEY: param_names + ["gamma"]})


def resolve_rule(spec) -> Rule:
    """A rule from a path, a dict, a :class:`Rule`, a shipped name (``symbolic_rp``, …) or a ψ spec.

    ψ specs: ``psi`` (𝒢 = m̃, g̃; L = 1) or ``psi:FEATURES[:LAGS]``, e.g. ``psi:mt+gt+g:2``.
    """
    if isinstance(spec, str) and (spec == "psi" or spec.startswith("psi:")):
        parts = spec.split(":")
        if len(parts) > 3:
            raise ValueError(f"ψ spec {spec!r}: use psi, psi:FEATURES or psi:FEATURES:LAGS (e.g. psi:mt+gt:1)")
        features = parts[1] if len(parts) > 1 and parts[1] else "mt+gt"
        try:
            lags = int(parts[2]) if len(parts) > 2 else 1
        except ValueError:
            raise ValueError(f"ψ spec {spec!r}: LAGS must be an integer") from None
        return psi_rule(features, lags)
    if isinstance(spec, str) and "/" not in spec and not spec.endswith(".json"):
        from tf_symbolic_l2o.artifacts import saved_models_dir

        path = saved_models_dir() / spec / "rule.json"
        if not path.is_file():
            shipped = sorted(p.parent.name for p in saved_models_dir().glob("*/rule.json"))
            raise ValueError(f"unknown rule {spec!r}: give a rule.json path, psi[:FEATURES[:LAGS]] or a shipped "
                             f"rule ({', '.join(shipped)})")
        return Rule.load(path)
    return as_rule(spec)


#: Metadata that describes a rule's form, so it holds for the tuned rule too (ψ's description, ties and names,
#: its family, oddness); everything else (a distillation's R², MSE, invariants, dataset) was measured on the start.
FORM_KEYS = (TIE_KEY, NAMES_KEY, "family", "description", "odd")


def tuned_metadata(start: dict, tuned: dict) -> dict:
    """A tuned rule's metadata: the start's form keys, ``source``, the ``tuned`` record and the start's measurements
    under ``distilled_start`` (a distilled start) or ``start_metadata``, so that no figure of the start (its R² to
    the teacher above all) reads as the tuned rule's own."""
    out = {k: start[k] for k in FORM_KEYS if k in start}
    measured = {k: v for k, v in start.items() if k not in FORM_KEYS}
    if measured:
        out["distilled_start" if start.get("source") == "distill" else "start_metadata"] = measured
    return {**out, "source": "tfl2o tune", "tuned": tuned}
