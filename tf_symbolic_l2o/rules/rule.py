"""The canonical symbolic update rule and its JSON file format.

A :class:`Rule` is the closed-form replacement of a learned optimizer: for every coordinate,

    Δθ = output_scale · f(inputs),      inputs = features at lags 0 … memlen−1

where ``f`` is an expression tree (:mod:`~tf_symbolic_l2o.rules.expression`), the features are computed by
:class:`~tf_symbolic_l2o.features.FeatureSet` and the sign of the step lives inside ``f`` (as in the paper,
``θ ← θ + 0.01·out``).

Inputs are ordered **lag-major**, the column order of behaviour datasets::

    [f0_0, f1_0, …, fK_0,  f0_1, f1_1, …, fK_1,  …]        (fk = k-th feature in canonical order, _lag)

File format (``rule.json``, written atomically)::

    {
      "format": "tfl2o-rule/1",
      "expression": ["tanh", ["add", 0.0248, ["mul", -1.992, "mt_0"]]],   # prefix form, the source of truth
      "infix": "tanh(0.0248 + -1.992 * mt_0)",                          # for people; IGNORED on load
      "features": {"names": "mt+gt", "beta1": 0.95, "beta2": 0.95, "eps": 1e-12},
      "memlen": 1,
      "output_scale": 0.01,
      "metadata": {"source": "gplearn", "r2": 0.93}                      # free JSON
    }

``features`` may also hold ``"gain": {"up": 1.05, "down": 0.95, "low": 0.01, "high": 30.0}``: a per-coordinate
multiplier on the step that the optimizer adapts (:class:`~tf_symbolic_l2o.features.StepGain`).

An optional ``"size_scale": {"reference": 272474, "power": 0.5}`` scales the step of an optimizer that updates
``n`` coordinates (all the parameters it was built on) by ``min(1, (reference / n) ** power)``
(:meth:`Rule.size_factor`): the rule keeps the step it was tuned with on models up to ``reference`` parameters and
takes a smaller one on larger models, as μP scales Adam's step by 1/width (a model widened r times has r² times the
parameters, so ``power`` 0.5).

Loading validates everything (format version, known keys only, whitelisted operators, variable names, lags below
``memlen``, features of the feature set, finite numbers, bounded depth/size) and never evaluates text.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tf_symbolic_l2o._lazy import LazyModule
from tf_symbolic_l2o.features import FeatureSet, array_ops
from tf_symbolic_l2o.io import atomic_write_json, read_json
from tf_symbolic_l2o.artifacts import resolve_artifact
from tf_symbolic_l2o.rules import convert
from tf_symbolic_l2o.rules.expression import (Const, Node, Op, Var, constants, from_prefix, size, split_var,
                                              to_prefix, variables, with_constants)
from tf_symbolic_l2o.rules.infix import to_infix
from tf_symbolic_l2o.rules.ops import short

tf = LazyModule("tensorflow")

FORMAT = "tfl2o-rule/1"
"""The ``format`` value of rule files this version reads and writes."""
MAX_MEMLEN = 1000

_REQUIRED_KEYS = {"format", "expression", "features", "memlen"}
_OPTIONAL_KEYS = {"infix", "output_scale", "size_scale", "metadata"}
_SIZE_SCALE_KEYS = ("reference", "power")
MAX_SIZE_POWER = 2.0
"""The largest ``size_scale`` power a rule accepts (the range is [0, MAX_SIZE_POWER])."""
_FEATURE_KEYS = {"names", "beta1", "beta2", "eps", "gain"}


def _real(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, got {short(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return value


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _normalize_size_scale(size_scale) -> dict | None:
    if size_scale is None:
        return None
    if not isinstance(size_scale, Mapping) or set(size_scale) != set(_SIZE_SCALE_KEYS):
        raise ValueError(f"size_scale must be a dict with exactly the keys {list(_SIZE_SCALE_KEYS)}, e.g. "
                         f"{{'reference': 272474, 'power': 0.5}}; got {short(size_scale)}")
    reference, power = _real(size_scale["reference"], "size_scale.reference"), _real(size_scale["power"],
                                                                                    "size_scale.power")
    if not reference >= 1:
        raise ValueError(f"size_scale.reference (a number of parameters) must be >= 1, got {reference:g}")
    if not 0 <= power <= MAX_SIZE_POWER:
        raise ValueError(f"size_scale.power must be in [0, {MAX_SIZE_POWER:g}], got {power:g}")
    return {"reference": reference, "power": power}


def _normalize_features(features) -> dict:
    if isinstance(features, FeatureSet):
        fs = features
    elif isinstance(features, (str, list, tuple)):
        fs = FeatureSet(features)
    elif isinstance(features, Mapping):
        unknown = set(features) - _FEATURE_KEYS
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(map(str, unknown))} in features; allowed: "
                             f"{sorted(_FEATURE_KEYS)}")
        if "names" not in features:
            raise ValueError("features need 'names', e.g. {'names': 'mt+gt'}")
        names = features["names"]
        if not (isinstance(names, str) or (isinstance(names, (list, tuple))
                                           and all(isinstance(n, str) for n in names))):
            raise ValueError(f"features.names must be a string like 'mt+gt' or a list of names, got {short(names)}")
        kwargs = {k: _real(features[k], f"features.{k}") for k in ("beta1", "beta2", "eps") if k in features}
        fs = FeatureSet(names, **kwargs, gain=features.get("gain"))
    else:
        raise ValueError(f"features must be a FeatureSet, a string like 'mt+gt' or a dict, got "
                         f"{type(features).__name__}")
    return fs.config()


@dataclasses.dataclass(frozen=True)
class Rule:
    """A symbolic update rule ``Δθ = output_scale · expression(inputs)``.

    Args:
        expression: the expression tree (:class:`Const`, :class:`Var`, :class:`Op`).
        features: a :class:`FeatureSet`, a spec string (``"mt+gt"``) or a dict with ``names`` and optionally
            ``beta1``, ``beta2``, ``eps``; stored normalised as a dict.
        memlen: number of lags (≥ 1); every variable's lag must be below it.
        output_scale: the step is ``output_scale · f`` (0.01 as in the paper).
        metadata: free JSON-serialisable information (source, R², …).
        size_scale: ``None`` or ``{"reference": N₀, "power": p}``: the step of an optimizer that updates ``n``
            coordinates is multiplied by :meth:`size_factor` ``(n)`` (see the module docstring).
    """

    expression: Node
    features: dict = dataclasses.field(hash=False)
    memlen: int = 1
    output_scale: float = 0.01
    metadata: dict = dataclasses.field(default_factory=dict, hash=False)
    size_scale: dict | None = dataclasses.field(default=None, hash=False)

    def __post_init__(self):
        expr = self.expression
        if not isinstance(expr, (Const, Var, Op)):
            raise ValueError(f"expression must be a Const, Var or Op node, got {type(expr).__name__}")
        feats = _normalize_features(self.features)
        memlen = self.memlen
        if isinstance(memlen, bool) or not isinstance(memlen, (int, np.integer)):
            raise ValueError(f"memlen must be an integer, got {short(memlen)}")
        memlen = int(memlen)
        if not 1 <= memlen <= MAX_MEMLEN:
            raise ValueError(f"memlen must be in [1, {MAX_MEMLEN}], got {memlen}")
        scale = _real(self.output_scale, "output_scale")
        names = feats["names"].split("+")
        for v in variables(expr):
            feat, lag = split_var(v)
            if feat not in names:
                raise ValueError(f"variable {v!r} uses feature {feat!r}, which is not in the feature set "
                                 f"{feats['names']!r}")
            if lag >= memlen:
                raise ValueError(f"variable {v!r} has lag {lag}, but memlen is {memlen} (lags 0..{memlen - 1})")
        meta = self.metadata if self.metadata is not None else {}
        if not isinstance(meta, Mapping):
            raise ValueError(f"metadata must be a dict, got {type(meta).__name__}")
        try:
            meta = json.loads(json.dumps(dict(meta), default=_json_default))
        except (TypeError, ValueError, RecursionError) as e:
            raise ValueError(f"metadata must be JSON-serialisable: {e}") from None
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "memlen", memlen)
        object.__setattr__(self, "output_scale", scale)
        object.__setattr__(self, "metadata", meta)
        object.__setattr__(self, "size_scale", _normalize_size_scale(self.size_scale))

    # ------------------------------------------------------------------------------------------ properties

    @property
    def feature_set(self) -> FeatureSet:
        """The :class:`FeatureSet` that computes this rule's features."""
        f = self.features
        return FeatureSet.from_config(f)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.features["names"].split("+"))

    @property
    def inputs(self) -> list[str]:
        """All input names in canonical, lag-major order: ``[f0_0, f1_0, …, f0_1, f1_1, …]``."""
        return [f"{feat}_{lag}" for lag in range(self.memlen) for feat in self.feature_names]

    @property
    def variables(self) -> list[str]:
        """The inputs the expression actually uses."""
        return variables(self.expression)

    @property
    def complexity(self) -> int:
        """Number of nodes of the expression."""
        return size(self.expression)

    @property
    def constants(self) -> list[float]:
        """The expression's constants in pre-order."""
        return constants(self.expression)

    @property
    def infix(self) -> str:
        return to_infix(self.expression)

    def size_factor(self, num_coords):
        """The multiplier on the step of an optimizer that updates ``num_coords`` coordinates: 1 without a
        ``size_scale`` or up to its ``reference``, else ``(reference / num_coords) ** power``. ``num_coords`` is a
        number, or a scalar tensor (the factor is then a float32 tensor)."""
        if self.size_scale is None:
            return 1.0
        reference, power = self.size_scale["reference"], self.size_scale["power"]
        if isinstance(num_coords, (int, float, np.integer, np.floating)):
            return 1.0 if num_coords <= reference else float((reference / float(num_coords)) ** power)
        n = tf.cast(num_coords, tf.float32)
        return tf.minimum(1.0, tf.pow(tf.constant(reference, tf.float32) / n, power))

    def with_constants(self, values: Sequence[float]) -> "Rule":
        """A copy with the constants replaced (pre-order), e.g. after refitting or meta-tuning."""
        return dataclasses.replace(self, expression=with_constants(self.expression, values))

    def minimal(self) -> "Rule":
        """The same function with only the features and lags it uses (fewer optimizer slots, same updates).

        Features are computed independently of each other, so dropping unused ones changes no value; the input
        order of the result follows its own (smaller) feature set.
        """
        used = self.variables
        if not used:
            names, memlen = self.feature_names[:1], 1
        else:
            feats = {v.rsplit("_", 1)[0] for v in used}
            names = tuple(n for n in self.feature_names if n in feats)
            memlen = 1 + max(int(v.rsplit("_", 1)[1]) for v in used)
        if names == self.feature_names and memlen == self.memlen:
            return self
        return dataclasses.replace(self, features={**self.features, "names": "+".join(names)}, memlen=memlen)

    def replace(self, **changes) -> "Rule":
        """``dataclasses.replace`` with validation."""
        return dataclasses.replace(self, **changes)

    def __str__(self):
        return f"Δθ = {self.output_scale!r} · ({self.infix})"

    # ------------------------------------------------------------------------------------------------ JSON

    def to_dict(self) -> dict:
        """The JSON layout described in the module docstring."""
        return {
            "format": FORMAT,
            "expression": to_prefix(self.expression),
            "infix": self.infix,
            "features": dict(self.features),
            "memlen": self.memlen,
            "output_scale": self.output_scale,
            **({} if self.size_scale is None else {"size_scale": dict(self.size_scale)}),
            "metadata": copy.deepcopy(self.metadata),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "Rule":
        """Validate and build a rule from its JSON layout (``infix`` is ignored)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a rule must be a JSON object, got {type(d).__name__}")
        keys = set(d)
        unknown = keys - _REQUIRED_KEYS - _OPTIONAL_KEYS
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(short(k) for k in unknown)} in rule; allowed: "
                             f"{sorted(_REQUIRED_KEYS | _OPTIONAL_KEYS)}")
        missing = _REQUIRED_KEYS - keys
        if missing:
            raise ValueError(f"rule is missing key(s) {sorted(missing)}")
        if d["format"] != FORMAT:
            raise ValueError(f"unsupported rule format {short(d['format'])}; expected {FORMAT!r}")
        if "infix" in d and not isinstance(d["infix"], str):
            raise ValueError("'infix' must be a string (it is informative only)")
        expression = from_prefix(d["expression"])
        return cls(expression=expression, features=d["features"], memlen=d["memlen"],
                   output_scale=d.get("output_scale", 0.01), metadata=d.get("metadata") or {},
                   size_scale=d.get("size_scale"))

    @classmethod
    def from_json(cls, text: str) -> "Rule":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"rule is not valid JSON ({e})") from None
        except RecursionError:
            raise ValueError("rule JSON is nested too deeply") from None
        return cls.from_dict(obj)

    def save(self, path: str | os.PathLike) -> None:
        """Write the rule as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Rule":
        """Read and validate a rule file; ``ValueError`` naming the file when it is invalid."""
        try:
            obj = read_json(path, what="rule file")
        except RecursionError:
            raise ValueError(f"rule file {path} is nested too deeply") from None
        try:
            return cls.from_dict(obj)
        except ValueError as e:
            raise ValueError(f"invalid rule file {path}: {e}") from None

    # ------------------------------------------------------------------------------------------ converters

    def numpy_fn(self) -> Callable[..., np.ndarray]:
        """``f(X, constants=None)``: X is ``[..., len(inputs)]`` in :attr:`inputs` order; returns ``[...]``.

        ``constants`` optionally replaces the expression's constants (pre-order).
        """
        expr, index, n_in = self.expression, {n: i for i, n in enumerate(self.inputs)}, len(self.inputs)
        used = variables(expr)

        def f(X, constants=None):
            X = np.asarray(X)
            if X.ndim < 1 or X.shape[-1] != n_in:
                raise ValueError(f"expected inputs of shape [..., {n_in}] ({', '.join(self.inputs)}), got {X.shape}")
            env = {v: X[..., index[v]] for v in used}
            dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
            out = convert.evaluate_numpy(expr, env, constants=constants, dtype=dtype)
            return np.broadcast_to(out, X.shape[:-1]).copy() if out.shape != X.shape[:-1] else out

        return f

    def tf_fn(self) -> Callable[..., tf.Tensor]:
        """``f(inputs, constants=None)`` built from TF ops (usable in ``tf.function(jit_compile=True)``).

        ``inputs`` is either a dict ``{name: tensor}`` (at least the variables used) or one tensor
        ``[..., len(inputs)]`` in :attr:`inputs` order; the result has the inputs' batch shape and dtype.
        ``constants`` optionally replaces the constants (pre-order), e.g. a trainable ``tf.Variable`` vector.
        """
        expr, index, n_in = self.expression, {n: i for i, n in enumerate(self.inputs)}, len(self.inputs)
        used = variables(expr)

        @tf.autograph.experimental.do_not_convert
        def f(inputs, constants=None):
            if isinstance(inputs, Mapping):
                missing = [v for v in used if v not in inputs]
                if missing:
                    raise ValueError(f"missing input(s) {missing}")
                env = {v: inputs[v] for v in used}
                ref = inputs[used[0]] if used else next(iter(inputs.values()), None)
                if ref is None:
                    raise ValueError("no inputs given")
                ref = tf.convert_to_tensor(ref)
                batch_shape = tf.shape(ref)
            else:
                x = tf.convert_to_tensor(inputs)
                if x.shape.rank == 0 or (x.shape[-1] is not None and x.shape[-1] != n_in):
                    raise ValueError(f"expected inputs of shape [..., {n_in}] ({', '.join(self.inputs)}), "
                                     f"got {x.shape}")
                env = {v: x[..., index[v]] for v in used}
                ref = x
                batch_shape = tf.shape(x)[:-1]
            out = convert.evaluate_tf(expr, env, constants=constants, dtype=ref.dtype)
            if not used:  # a constant rule: give it the batch shape
                out = tf.broadcast_to(out, batch_shape)
            return out

        return f

    def keras_fn(self, backend: str = "keras") -> Callable:
        """``f(x, constants=None)`` built from ``keras.ops``, for any Keras backend (``backend="jax"``: from
        ``jax.numpy``): ``x`` is one tensor ``[..., len(inputs)]`` in :attr:`inputs` order, or a dict
        ``{name: tensor}`` (at least the variables used); the result has the inputs' batch shape and dtype."""
        o = array_ops(backend)
        expr, index, n_in = self.expression, {n: i for i, n in enumerate(self.inputs)}, len(self.inputs)
        used = variables(expr)

        def f(x, constants=None):
            if isinstance(x, Mapping):  # {name: tensor}, at least the variables used
                missing = [v for v in used if v not in x]
                if missing or not x:
                    raise ValueError(f"missing input(s) {missing or list(self.inputs)}")
                env = {v: o.convert_to_tensor(x[v]) for v in used}
                ref = env[used[0]] if used else o.convert_to_tensor(next(iter(x.values())))
            else:
                x = ref = o.convert_to_tensor(x)
                if len(x.shape) == 0 or x.shape[-1] != n_in:
                    raise ValueError(f"expected inputs of shape [..., {n_in}] ({', '.join(self.inputs)}), got "
                                     f"{tuple(x.shape)}")
                env, ref = {v: x[..., index[v]] for v in used}, x[..., 0]
            out = convert.evaluate_keras(expr, env, constants=constants, dtype=o.dtype(ref), backend=backend)
            return out if used else out * o.ones_like(ref)

        return f

    def to_sympy(self, simplify: bool = True):
        """The sympy expression of f (mathematical reading of the protected operators; real symbols named like
        the variables, constants as exact sympy Floats). ``simplify`` runs ``sympy.simplify`` (slow for large
        expressions)."""
        import sympy as sp

        expr = convert.to_sympy(self.expression, evaluate=True)
        return sp.simplify(expr) if simplify else expr

    def latex(self, simplify: bool = False) -> str:
        """LaTeX of f with m̃-style symbols (``mt_2`` → ``\\tilde{m}_{t-2}``) and full-precision constants.

        By default the structure is kept as written, so constants appear exactly as in the rule; with
        ``simplify=True`` sympy simplifies first (and may merge constants).
        """
        return convert.to_latex(self.expression, simplify=simplify)


def as_rule(rule) -> Rule:
    """A :class:`Rule` from a ``Rule``, its dict (``Rule.to_dict()`` layout), the path of a ``rule.json`` or of a
    folder holding one, or the name of a shipped rule (``"symbolic_rp_small"``)."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, Mapping):
        return Rule.from_dict(rule)
    if isinstance(rule, (str, os.PathLike)):
        path = resolve_artifact(rule)
        return Rule.load(path / "rule.json" if path.is_dir() else path)
    raise ValueError("rule must be a Rule, a rule dict, the path of a rule.json file or a shipped rule's name, got "
                     f"{type(rule).__name__}")
