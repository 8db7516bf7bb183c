"""Per-coordinate optimizer features: the one implementation shared by every optimizer in the library.

The LSTM optimizers (``learned/``), the behaviour recorder and the Keras symbolic optimizers all see a gradient
through this module, so a rule distilled from an LSTM is evaluated on exactly the inputs the LSTM saw.

State is per coordinate and starts at zero at the beginning of every run; the step ``t`` starts at 1.
With β1 = β2 = 0.95 (the RNNprop defaults):

====================  ===========================================================================================
name                  definition
====================  ===========================================================================================
``mt``                m̃ = m̂ / s,  m = β1·m + (1−β1)·g,  m̂ = m / (1−β1ᵗ),  s = √v̂ + ε,  v̂ = v / (1−β2ᵗ)
``gt``                g̃ = g / s,   v = β2·v + (1−β2)·g²
``g``                 the raw gradient
``mom5/mom9/mom99``   EMAs of g with decay 0.5 / 0.9 / 0.99: mom = d·mom + (1−d)·g
``t``                 step / 1000
``m``                 m (not bias-corrected)
``mhat``              m̂
``s``                 s = √v̂ + ε
``mp2/mp25/mp3``      RNNprop-si "magic" inputs m̂ / ((v̂ᵖ)^{1/p} + 1e-8), vᵖ = β2·vᵖ + (1−β2)·|g|ᵖ, p = 2, 2.5, 3
``emt5/emt9/emt99``   EMAs of m̃ with decay 0.5 / 0.9 / 0.99: e = d·e + (1−d)·m̃ₜ (m̃ₜ of this step)
``egt5/egt9/egt99``   EMAs of g̃ with decay 0.5 / 0.9 / 0.99
====================  ===========================================================================================

The EMAs of m̃ and g̃ summarise their past in one slot each, where a lag history keeps ``memlen − 1`` copies of every
feature and shifts them every step: a rule on ``mt+gt+emt5+emt9+egt5+egt9`` at ``memlen`` 1 reads no history.

**Step gain** (optional, ``FeatureSet(..., gain=StepGain())``): a per-coordinate multiplier on the rule's step that
the optimizer adapts itself, so that one rule serves problems whose best step sizes differ by orders of magnitude.
Its logarithm is the state slot ``lgain`` (zero at the start, so the gain starts at 1)::

    lgain ← clip(lgain + (log up if g·m_{t−1} > 0, log down if g·m_{t−1} < 0, else 0), log low, log high)
    Δθ    ← exp(lgain) · Δθ_rule

It grows while the gradient keeps agreeing with the momentum m of the previous step and shrinks while it
oscillates against it: the sign form of the multiplicative hypergradient step-size adaptation of Baydin et al.
(ICLR 2018), per coordinate like Rprop's (Riedmiller & Braun, 1993). With ``log up ≈ −log down`` the gain settles
where the gradient is uncorrelated with the momentum, so it also shrinks the step once noise dominates. It depends
on the gradients only through the product g·m, which negating every gradient leaves unchanged, so an odd rule stays
odd; a zero gradient leaves it unchanged.

Column order is canonical (the order of :data:`FEATURE_NAMES`), whatever order a feature string lists them in,
so ``"gt+mt"`` and ``"mt+gt"`` are the same feature set with columns ``[mt, gt]``.

Note on ``mp*``: the authors' code divides the *un-corrected* ``m`` by the corrected ``(v̂ᵖ)^{1/p}``, which only
shrinks the first steps by (1−β1ᵗ); we use the bias-corrected m̂ so ``mp2`` is m̃ with ε = 1e-8.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from typing import Mapping

from tf_symbolic_l2o._lazy import LazyModule

tf = LazyModule("tensorflow")

FEATURE_NAMES: tuple[str, ...] = ("mt", "gt", "g", "mom5", "mom9", "mom99", "t", "m", "mhat", "s",
                                  "mp2", "mp25", "mp3", "emt5", "emt9", "emt99", "egt5", "egt9", "egt99")
#: EMA features of the normalised inputs: name → (the feature averaged, decay).
_FEATURE_EMA = {f"e{base}{tag}": (base, d) for base in ("mt", "gt") for tag, d in (("5", 0.5), ("9", 0.9),
                                                                                   ("99", 0.99))}
FEATURE_DESCRIPTIONS: dict[str, str] = {
    "mt": "m̂/s, the Adam direction (RNNprop input m̃)",
    "gt": "g/s, the normalised gradient (RNNprop input g̃)",
    "g": "raw gradient",
    "mom5": "EMA of g, decay 0.5",
    "mom9": "EMA of g, decay 0.9",
    "mom99": "EMA of g, decay 0.99",
    "t": "step / 1000",
    "m": "first moment, not bias-corrected",
    "mhat": "bias-corrected first moment m̂",
    "s": "sqrt(v̂) + eps",
    "mp2": "m̂ / ((v̂²)^(1/2) + 1e-8)",
    "mp25": "m̂ / ((v̂^2.5)^(1/2.5) + 1e-8)",
    "mp3": "m̂ / ((v̂³)^(1/3) + 1e-8)",
    **{name: f"EMA of {base}, decay {d}" for name, (base, d) in _FEATURE_EMA.items()},
}
EVEN_FEATURES: frozenset[str] = frozenset({"t", "s"})
"""Features that do not change when the whole gradient sequence is negated; every other feature is odd: it is
negated with the gradients (m, the momenta, m̂, m̃, g̃ and their EMAs, the magic inputs; v and vᵖ see only |g|)."""
_MOM_DECAY = {"mom5": 0.5, "mom9": 0.9, "mom99": 0.99}
_MAGIC_P = {"mp2": 2.0, "mp25": 2.5, "mp3": 3.0}
MAGIC_EPS = 1e-8


@dataclasses.dataclass(frozen=True)
class StepGain:
    """The per-coordinate step gain's constants (see the module docstring): growth factor ``up`` ≥ 1, shrink factor
    ``down`` in (0, 1], and the gain's range [``low``, ``high``] around its start 1."""

    up: float = 1.05
    down: float = 0.95
    low: float = 0.01
    high: float = 30.0

    def __post_init__(self):
        values = {k: getattr(self, k) for k in ("up", "down", "low", "high")}
        bad = [k for k, v in values.items() if isinstance(v, bool) or not isinstance(v, (int, float))
               or not math.isfinite(v)]
        if bad:
            raise ValueError(f"step gain: {', '.join(bad)} must be finite numbers, got {values}")
        if not (self.up >= 1.0 and 0.0 < self.down <= 1.0 and 0.0 < self.low <= 1.0 <= self.high):
            raise ValueError(f"step gain needs up >= 1, 0 < down <= 1 and 0 < low <= 1 <= high, got {values}")
        for k, v in values.items():
            object.__setattr__(self, k, float(v))

    def config(self) -> dict:
        return {"up": self.up, "down": self.down, "low": self.low, "high": self.high}

    @classmethod
    def from_config(cls, config) -> "StepGain":
        if isinstance(config, StepGain):
            return config
        if not isinstance(config, Mapping):
            raise ValueError(f"step gain must be a dict with up, down, low, high, got {type(config).__name__}")
        unknown = set(config) - {"up", "down", "low", "high"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(map(str, unknown))} in the step gain; use up, down, low, high")
        return cls(**config)


def parse_features(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Turn ``"mt+gt"`` (or a sequence of names) into the canonical, ordered tuple of feature names."""
    names = [n.strip() for n in spec.split("+")] if isinstance(spec, str) else [str(n).strip() for n in spec]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"empty feature set {spec!r}; use names from {'+'.join(FEATURE_NAMES)}")
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown} in {spec!r}; known: {', '.join(FEATURE_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate feature in {spec!r}")
    return tuple(n for n in FEATURE_NAMES if n in names)


# The functions every array backend's namespace has, under keras.ops' names (jax.numpy shares them). The features
# use some, the rules' operator tables (rules/ops_keras.py) others.
_SHARED = ("where", "sqrt", "power", "square", "abs", "isfinite", "logical_and", "stack", "ones_like", "zeros_like",
           "tanh", "exp", "log", "clip", "concatenate", "zeros", "reshape", "all", "add", "subtract", "multiply",
           "maximum", "minimum", "greater", "negative", "sign", "sinh", "arcsinh", "sin", "cos", "tan")


@functools.lru_cache(maxsize=None)
def array_ops(backend: str = "tensorflow") -> types.SimpleNamespace:
    """The array functions of one backend, built once: TensorFlow's for ``"tensorflow"`` (the LSTM optimizers, the
    recorder, meta-training, the TensorFlow Keras optimizers), ``keras.ops`` for ``"keras"`` (the Keras optimizers
    on the JAX and PyTorch backends) or ``jax.numpy`` for ``"jax"`` (the optax transformations). Same functions,
    same order of operations. The ``"keras"`` and ``"jax"`` namespaces carry ``keras.ops``' names (``_SHARED``,
    ``relu``, ``erf``, ``cast``, ``convert_to_tensor``, ``cond``) and also serve the rules' operator tables;
    ``pow``, ``constant(value, dtype)`` and ``dtype(x)`` (a dtype name) are in all three."""
    if backend == "tensorflow":
        return types.SimpleNamespace(
            where=tf.where, sqrt=tf.sqrt, pow=tf.pow, square=tf.square, abs=tf.abs, isfinite=tf.math.is_finite,
            logical_and=tf.logical_and, stack=tf.stack, cast=tf.cast, ones_like=tf.ones_like,
            zeros_like=tf.zeros_like, constant=tf.constant, dtype=lambda x: x.dtype, tanh=tf.tanh, exp=tf.exp,
            log=tf.math.log, clip=tf.clip_by_value, concatenate=lambda xs, axis: tf.concat(xs, axis), zeros=tf.zeros,
            reshape=tf.reshape, all=tf.reduce_all, cond=tf.cond)
    if backend == "keras":
        import keras
        from keras import ops

        return types.SimpleNamespace(
            **{n: getattr(ops, n) for n in _SHARED}, relu=ops.relu, erf=ops.erf, cast=ops.cast,
            convert_to_tensor=ops.convert_to_tensor, cond=ops.cond, pow=ops.power,
            constant=lambda value, dtype: ops.convert_to_tensor(value, dtype=dtype),
            dtype=lambda x: keras.backend.standardize_dtype(x.dtype))
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return types.SimpleNamespace(
            **{n: getattr(jnp, n) for n in _SHARED}, relu=jax.nn.relu, erf=jax.scipy.special.erf,
            cast=lambda x, dtype: jnp.asarray(x).astype(dtype),
            convert_to_tensor=lambda value, dtype=None: jnp.asarray(value, dtype=dtype),
            cond=lambda pred, true_fn, false_fn: jax.lax.cond(pred, true_fn, false_fn), pow=jnp.power,
            constant=lambda value, dtype: jnp.asarray(value, dtype=dtype), dtype=lambda x: jnp.dtype(x.dtype).name)
    raise ValueError(f"unknown array backend {backend!r}; use 'tensorflow', 'keras' or 'jax'")


def keras_array_backend() -> str:
    """The :func:`array_ops` backend for Keras' current backend: ``"tensorflow"`` on TensorFlow, else ``"keras"``."""
    import keras

    return "tensorflow" if keras.backend.backend() == "tensorflow" else "keras"


def keep_where(ok, new, old, event_dims: int = 0, backend: str = "tensorflow"):
    """``new`` where the coordinate is ``ok``, else ``old`` (``ok`` broadcast over ``event_dims`` trailing axes);
    ``backend`` as in :func:`array_ops`."""
    mask = ok
    for _ in range(event_dims):
        mask = mask[..., None]
    return array_ops(backend).where(mask, new, old)


def _root(x, p: float, o: types.SimpleNamespace):
    """x^(1/p) for x ≥ 0 with a finite derivative at 0 (0 there instead of ∞·0 = NaN), the same values otherwise, so
    second-order meta-gradients through the features stay finite where a coordinate's gradient is exactly zero."""
    positive = x > 0
    safe = o.where(positive, x, o.ones_like(x))
    root = o.sqrt(safe) if p == 2.0 else o.pow(safe, 1.0 / p)
    return o.where(positive, root, o.zeros_like(x))


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """An ordered set of per-coordinate features and the state they need.

    Args:
        names: feature names or a ``"+"``-joined string (see the module docstring).
        beta1: decay of the first moment m (default 0.95).
        beta2: decay of the second moment v and of vᵖ (default 0.95).
        eps: ε in s = √v̂ + ε (1e-12 as in the authors' PyTorch code).
        gain: a :class:`StepGain` (or its config dict) to adapt a per-coordinate multiplier on the step (state
            ``m`` and ``lgain``); ``None`` (the default): no gain.
    """

    names: tuple[str, ...]
    beta1: float = 0.95
    beta2: float = 0.95
    eps: float = 1e-12
    gain: StepGain | None = None

    def __init__(self, names, beta1: float = 0.95, beta2: float = 0.95, eps: float = 1e-12, gain=None):
        for label, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{label} must be in [0, 1), got {b}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        object.__setattr__(self, "names", parse_features(names))
        object.__setattr__(self, "beta1", float(beta1))
        object.__setattr__(self, "beta2", float(beta2))
        object.__setattr__(self, "eps", float(eps))
        object.__setattr__(self, "gain", None if gain is None else StepGain.from_config(gain))

    @property
    def num_features(self) -> int:
        return len(self.names)

    @property
    def spec(self) -> str:
        return "+".join(self.names)

    def parity(self) -> tuple[float, ...]:
        """Per feature, the factor it takes when the whole gradient sequence is negated: −1.0 for odd features,
        +1.0 for even ones (``t``, ``s``), in column order. A rule ``f`` is sign-symmetric when
        ``f(parity · x) = −f(x)`` (lags included: every lag of a feature has the feature's parity)."""
        return tuple(1.0 if n in EVEN_FEATURES else -1.0 for n in self.names)

    def state_names(self) -> tuple[str, ...]:
        """The state slots these features need, in a fixed order (so Keras slot creation is deterministic)."""
        need = set()
        for n in self.names:
            if n in ("mt", "gt", "s"):
                need |= {"m", "v"} if n == "mt" else {"v"}
            elif n in ("m", "mhat"):
                need.add("m")
            elif n in _MOM_DECAY:
                need.add(n)
            elif n in _MAGIC_P:
                need |= {"m", f"v_{n}"}
            elif n in _FEATURE_EMA:
                need |= {"m", "v", n} if _FEATURE_EMA[n][0] == "mt" else {"v", n}
        if self.gain is not None:
            need |= {"m", "lgain"}
        order = ("m", "v", "mom5", "mom9", "mom99", "v_mp2", "v_mp25", "v_mp3", *_FEATURE_EMA, "lgain")
        return tuple(s for s in order if s in need)

    def init_state(self, shape, dtype="float32", backend: str = "tensorflow") -> dict[str, tf.Tensor]:
        """Zero state for coordinates of the given shape (``backend`` as in :func:`array_ops`)."""
        zeros = array_ops(backend).zeros
        return {name: zeros(shape, dtype) for name in self.state_names()}

    def update(self, state: Mapping[str, tf.Tensor], g: tf.Tensor, step, backend: str = "tensorflow"
               ) -> tuple[tf.Tensor, dict]:
        """Advance the state with gradient ``g`` at step ``step`` (1-based). ``backend``: ``"tensorflow"`` or
        ``"keras"`` (``keras.ops``, any Keras backend; see :func:`array_ops`), for this and the methods below.

        Returns:
            ``(features, new_state)``; ``features`` has shape ``g.shape + [num_features]``.
        """
        new = self.advance(state, g, backend, step)
        return self.features(new, g, step, backend), new

    def inputs_finite(self, g: tf.Tensor, backend: str = "tensorflow") -> tf.Tensor:
        """Per coordinate, ``True`` where ``g`` and every quantity :meth:`advance` averages into the state (g²,
        |g|ᵖ) are finite: from a finite state, the advanced state is then finite too (up to rounding at the top of
        the float range). A function of ``g`` alone, so a guard built on it needs no pass over the new state."""
        o = array_ops(backend)
        ok = o.isfinite(g)
        names = self.state_names()
        if "v" in names:
            ok = o.logical_and(ok, o.isfinite(o.square(g)))
        for name, p in _MAGIC_P.items():
            if f"v_{name}" in names:
                ok = o.logical_and(ok, o.isfinite(o.pow(o.abs(g), p)))
        return ok

    def advance(self, state: Mapping[str, tf.Tensor], g: tf.Tensor, backend: str = "tensorflow", step=None) -> dict:
        """The state after gradient ``g`` at step ``step`` (the first half of :meth:`update`; ``step`` is needed only
        by the EMAs of m̃ and g̃, which average this step's bias-corrected values)."""
        o = array_ops(backend)
        dtype = o.dtype(g)
        b1, b2 = o.constant(self.beta1, dtype), o.constant(self.beta2, dtype)
        new = {}
        if "lgain" in state:  # the agreement of g with the momentum of the previous step
            agree, gain = g * state["m"], self.gain
            log_up, log_down = o.constant(math.log(gain.up), dtype), o.constant(math.log(gain.down), dtype)
            change = o.where(agree > 0, log_up, o.where(agree < 0, log_down, o.zeros_like(g)))  # scalars broadcast
            new["lgain"] = o.clip(state["lgain"] + change, math.log(gain.low), math.log(gain.high))
        if "m" in state:
            new["m"] = b1 * state["m"] + (1.0 - b1) * g
        if "v" in state:
            new["v"] = b2 * state["v"] + (1.0 - b2) * o.square(g)
        for name, d in _MOM_DECAY.items():
            if name in state:
                new[name] = d * state[name] + (1.0 - d) * g
        for name, p in _MAGIC_P.items():
            key = f"v_{name}"
            if key in state:
                new[key] = b2 * state[key] + (1.0 - b2) * o.pow(o.abs(g), p)
        emas = [n for n in _FEATURE_EMA if n in state]
        if emas:
            if step is None:
                raise ValueError(f"the EMA features {emas} need the step: call advance(state, g, backend, step)")
            bases = tuple(b for b in ("mt", "gt") if any(_FEATURE_EMA[n][0] == b for n in emas))
            current = self.features(new, g, step, backend, names=bases, stack=False)
            for name in emas:
                base, d = _FEATURE_EMA[name]
                new[name] = d * state[name] + (1.0 - d) * current[bases.index(base)]
        return new

    def features(self, new: Mapping[str, tf.Tensor], g: tf.Tensor, step, backend: str = "tensorflow",
                 names: tuple[str, ...] | None = None, stack: bool = True):
        """The features of step ``step`` from the state ``new`` already advanced with ``g`` (the second half of
        :meth:`update`), shape ``g.shape + [num_features]`` (``names``: only these features, in that order;
        ``stack=False``: the list of the features, each shaped like ``g``, which a compiler need not write to a
        stacked buffer and read back)."""
        o = array_ops(backend)
        dtype = o.dtype(g)
        t = o.cast(step, dtype)
        b1, b2 = o.constant(self.beta1, dtype), o.constant(self.beta2, dtype)
        cache = {}

        def mhat():
            if "mhat" not in cache:
                cache["mhat"] = new["m"] / (1.0 - o.pow(b1, t))
            return cache["mhat"]

        def s():
            if "s" not in cache:
                cache["s"] = _root(new["v"] / (1.0 - o.pow(b2, t)), 2.0, o) + o.constant(self.eps, dtype)
            return cache["s"]

        cols = []
        for n in self.names if names is None else names:
            if n == "mt":
                cols.append(mhat() / s())
            elif n == "gt":
                cols.append(g / s())
            elif n == "g":
                cols.append(g)
            elif n in _MOM_DECAY or n in _FEATURE_EMA:
                cols.append(new[n])
            elif n == "t":
                cols.append(o.ones_like(g) * (t / 1000.0))
            elif n == "m":
                cols.append(new["m"])
            elif n == "mhat":
                cols.append(mhat())
            elif n == "s":
                cols.append(s())
            else:  # magic inputs
                p = _MAGIC_P[n]
                vhat_p = new[f"v_{n}"] / (1.0 - o.pow(b2, t))
                cols.append(mhat() / (_root(vhat_p, p, o) + MAGIC_EPS))
        return o.stack(cols, axis=-1) if stack else cols

    def step_gain(self, state: Mapping[str, tf.Tensor], backend: str = "tensorflow"):
        """The per-coordinate multiplier on the step, ``exp(lgain)`` of an advanced state, or ``None`` without a
        gain (see the module docstring)."""
        return array_ops(backend).exp(state["lgain"]) if "lgain" in state else None

    def config(self) -> dict:
        config = {"names": self.spec, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}
        return config if self.gain is None else {**config, "gain": self.gain.config()}

    @classmethod
    def from_config(cls, config: Mapping) -> "FeatureSet":
        return cls(config["names"], config.get("beta1", 0.95), config.get("beta2", 0.95),
                   config.get("eps", 1e-12), config.get("gain"))
