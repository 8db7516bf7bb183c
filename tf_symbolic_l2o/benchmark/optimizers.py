"""The optimizers the benchmark compares, all as functional coordinate-wise rules
(``init_state(n)`` / ``update(grad, state, step) -> (delta, state)``, the protocol of :mod:`tf_symbolic_l2o.baselines`).

Tuned baselines (learning rate from a grid):

* ``adam``, ``momentum`` (SGD + heavy-ball momentum 0.9), ``rmsprop`` — :class:`~tf_symbolic_l2o.baselines.Baseline`;
* ``adamw`` — :class:`AdamW`, Keras's ``AdamW``: decoupled weight decay, then the Adam step::

      θ ← θ − lr·wd·θ;   m, v EMAs;   θ ← θ − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)

* ``lion`` — :class:`Lion`, Keras's ``Lion`` (Chen et al., 2023)::

      θ ← θ − lr·wd·θ (if wd);   θ ← θ − lr·sign(β1·m + (1−β1)·g);   m ← β2·m + (1−β2)·g

Untuned learned / symbolic optimizers from ``saved_models/``: ``rp_mnist_mlp`` (the meta-trained RNNprop LSTM,
:func:`~tf_symbolic_l2o.learned.io.load_l2o`) and the rules ``symbolic_rp``, ``symbolic_rp_small``,
``symbolic_psi_tuned``, ``symbolic_rp_si`` and ``symbolic_dm`` (:class:`~tf_symbolic_l2o.rules.coordinate.RuleOptimizer`).

Decoupled weight decay needs θ, which the coordinate-wise protocol does not pass to ``update``. :class:`AdamW` and
:class:`Lion` therefore keep a mirror of θ in their state: ``init_state(n, params=θ₀)`` seeds it, and every
``update`` adds its own Δ to it — exactly the addition the rollout performs, so the mirror equals θ bit for bit. The
mirror is the last element of the state and is not counted as optimizer memory (:func:`state_bytes_per_param`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import tensorflow as tf

TUNED = ("adam", "adamw", "momentum", "rmsprop", "lion")
LEARNED = ("rp_mnist_mlp",)
RULES = ("symbolic_rp", "symbolic_rp_small", "symbolic_psi_tuned", "symbolic_rp_si", "symbolic_dm")
LABELS = {"adam": "Adam", "adamw": "AdamW", "momentum": "SGD+momentum", "rmsprop": "RMSprop", "lion": "Lion",
          "rp_mnist_mlp": "RNNprop (learned)", "symbolic_rp": "symbolic RP", "symbolic_psi_tuned": "symbolic ψ tuned",
          "symbolic_rp_small": "symbolic RP (8 B/param)",
          "symbolic_rp_si": "symbolic RP-si",
          "symbolic_dm": "symbolic DM"}


class AdamW:
    """Keras 3 ``AdamW`` as a functional rule (defaults: β1 0.9, β2 0.999, ε 1e-7, weight decay 0.004).

    ``learning_rate`` may be a float or a scalar ``tf.Variable`` (to sweep it without retracing).
    """

    params_in_state = True

    def __init__(self, learning_rate: Any = 1e-3, weight_decay: float = 0.004, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-7):
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be positive, got {float(learning_rate)}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
        self.learning_rate, self.weight_decay = learning_rate, float(weight_decay)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        self.name = f"adamw(lr={float(learning_rate):g})"

    def init_state(self, num_coords: int, params=None):
        z = tf.zeros([num_coords])
        return z, z, _mirror(params, num_coords, self.weight_decay)

    def update(self, grad, state, step):
        m, v, theta = state
        lr = tf.cast(self.learning_rate, grad.dtype)
        t = tf.cast(step, grad.dtype)
        m = self.beta1 * m + (1.0 - self.beta1) * grad
        v = self.beta2 * v + (1.0 - self.beta2) * tf.square(grad)
        alpha = lr * tf.sqrt(1.0 - tf.pow(self.beta2, t)) / (1.0 - tf.pow(self.beta1, t))
        delta = -alpha * m / (tf.sqrt(v) + self.epsilon)
        if self.weight_decay:
            delta = delta - theta * (self.weight_decay * lr)
        return delta, (m, v, theta + delta)

    def config(self) -> dict:
        return {"kind": "adamw", "learning_rate": float(self.learning_rate), "weight_decay": self.weight_decay,
                "beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon}


class Lion:
    """Keras 3 ``Lion`` as a functional rule (defaults: β1 0.9, β2 0.99, no weight decay)."""

    params_in_state = True

    def __init__(self, learning_rate: Any = 1e-4, beta1: float = 0.9, beta2: float = 0.99,
                 weight_decay: float | None = None):
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be positive, got {float(learning_rate)}")
        if not (0 <= beta1 <= 1 and 0 <= beta2 <= 1):
            raise ValueError(f"beta1 and beta2 must lie in [0, 1], got {beta1}, {beta2}")
        self.learning_rate, self.beta1, self.beta2 = learning_rate, float(beta1), float(beta2)
        self.weight_decay = float(weight_decay) if weight_decay else 0.0
        self.name = f"lion(lr={float(learning_rate):g})"

    def init_state(self, num_coords: int, params=None):
        return tf.zeros([num_coords]), _mirror(params, num_coords, self.weight_decay)

    def update(self, grad, state, step):
        m, theta = state
        lr = tf.cast(self.learning_rate, grad.dtype)
        delta = -lr * tf.sign(m * self.beta1 + grad * (1.0 - self.beta1))
        if self.weight_decay:
            delta = delta - theta * (self.weight_decay * lr)
        m = m * self.beta2 + grad * (1.0 - self.beta2)
        return delta, (m, theta + delta)

    def config(self) -> dict:
        return {"kind": "lion", "learning_rate": float(self.learning_rate), "beta1": self.beta1,
                "beta2": self.beta2, "weight_decay": self.weight_decay}


def _mirror(params, num_coords: int, weight_decay: float):
    if params is None:
        if weight_decay:
            raise ValueError("decoupled weight decay needs the initial parameters: call init_state(n, params=θ₀)")
        return tf.zeros([num_coords])
    params = tf.reshape(tf.cast(params, tf.float32), [-1])
    if int(params.shape[0]) != int(num_coords):
        raise ValueError(f"init_state got {int(params.shape[0])} parameters for {num_coords} coordinates")
    return params


def known_optimizer(name: str) -> str:
    if name not in TUNED + LEARNED + RULES:
        raise ValueError(f"unknown benchmark optimizer {name!r}; use one of {', '.join(TUNED + LEARNED + RULES)}")
    return name


def is_tunable(name: str) -> bool:
    return known_optimizer(name) in TUNED


def make_optimizer(name: str, learning_rate: Any = None):
    """The optimizer ``name``; tuned ones take ``learning_rate`` (float or scalar ``tf.Variable``), learned and
    symbolic ones are loaded from ``saved_models/`` and run untuned (``learning_rate`` must be ``None``)."""
    known_optimizer(name)
    if name in TUNED:
        if learning_rate is None:
            raise ValueError(f"optimizer {name!r} needs a learning rate")
        if name == "adamw":
            return AdamW(learning_rate)
        if name == "lion":
            return Lion(learning_rate)
        from tf_symbolic_l2o.baselines import Baseline

        return Baseline(name, learning_rate)
    if learning_rate is not None:
        raise ValueError(f"optimizer {name!r} is run untuned; it takes no learning rate")
    path = artifact_path(name)
    if name in LEARNED:
        from tf_symbolic_l2o.learned.io import load_l2o

        return load_l2o(path)
    from tf_symbolic_l2o.rules import Rule
    from tf_symbolic_l2o.rules.coordinate import RuleOptimizer

    return RuleOptimizer(Rule.load(path / "rule.json"), name=name)


def artifact_path(name: str) -> Path | None:
    """The ``saved_models/`` folder of a learned or symbolic optimizer (``None`` for tuned baselines)."""
    if known_optimizer(name) in TUNED:
        return None
    from tf_symbolic_l2o.artifacts import saved_models_dir

    path = saved_models_dir() / name
    if not path.is_dir():
        raise FileNotFoundError(f"shipped optimizer {name!r} not found at {path}")
    return path


def artifact_digest(name: str) -> str:
    """SHA-256 of the files that define a shipped optimizer (its weights or rule); ``""`` for baselines."""
    path = artifact_path(name)
    if path is None:
        return ""
    files = [path / "rule.json"] if name in RULES else \
        sorted([path / "l2o.json", *path.glob("weights.*")])
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def init_state(optimizer, num_coords: int, theta0=None):
    """The optimizer's initial state; rules with a parameter mirror get θ₀."""
    if getattr(optimizer, "params_in_state", False):
        return optimizer.init_state(num_coords, params=theta0)
    return optimizer.init_state(num_coords)


def state_bytes_per_param(optimizer, num_coords: int) -> float:
    """Bytes of optimizer state per optimized parameter (the θ mirror of :class:`AdamW`/:class:`Lion` excluded)."""
    state = init_state(optimizer, num_coords, tf.zeros([num_coords]))
    if getattr(optimizer, "params_in_state", False):
        state = state[:-1]
    total = 0
    for t in tf.nest.flatten(state):
        t = tf.convert_to_tensor(t)
        total += int(tf.size(t)) * t.dtype.size
    return total / float(num_coords)
