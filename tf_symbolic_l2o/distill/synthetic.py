"""Synthetic behaviour datasets with a known rule: the sanity checks of the symbolic-regression step.

The paper checked its SR step by recovering known optimizers from their behaviour (``−0.01·g`` with R² 1.0,
momentum, Adam). :func:`synthetic_behaviour` builds such a dataset without running an optimizee: per-coordinate
gradient sequences are drawn, the features are computed with the library's own
:class:`~tf_symbolic_l2o.features.FeatureSet` (so the columns have the scales and correlations of recorded data:
``mt`` mostly in [−1, 1], ``gt`` up to ≈ ±4.4, raw gradients and their EMAs of scale 1e-4…1e-2), rows are taken
at random steps, and the target is the given rule evaluated on the rows (plus optional Gaussian noise).

Gradient model (coordinate k, step t = 1…T): ``g_t = s_k · (a_k · exp(−t/τ_k) + b_k + σ_k · ε_t)`` with a
log-uniform scale s_k ∈ [1e-4, 1e-2], a decaying drift a_k ~ N(0, 1), a persistent drift b_k ~ N(0, 0.3²) and noise
σ_k ~ U(0.2, 1.5).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tf_symbolic_l2o.features import FeatureSet
from tf_symbolic_l2o.rules import Node, Rule, parse_infix

__all__ = ["synthetic_features", "synthetic_behaviour"]


def synthetic_features(n: int, features: str | FeatureSet = "mt+gt+g+mom5+mom9+mom99", memlen: int = 1,
                       seed: int = 0, steps: int = 100, coordinates: int | None = None) -> tuple[np.ndarray, list]:
    """``n`` rows of features (lag-major columns ``<feature>_<lag>``) from simulated gradient sequences.

    Returns:
        ``(X [n, memlen·F], columns)``.
    """
    fs = features if isinstance(features, FeatureSet) else FeatureSet(features)
    n, memlen, steps = int(n), int(memlen), int(steps)
    if n < 1 or memlen < 1 or steps < memlen:
        raise ValueError("need n >= 1, memlen >= 1 and steps >= memlen")
    rng = np.random.default_rng(seed)
    K = int(coordinates) if coordinates else max(64, min(4096, n // 8 + 1))
    s = 10.0 ** rng.uniform(-4, -2, K)
    a, b = rng.normal(0, 1, K), rng.normal(0, 0.3, K)
    tau, sigma = rng.uniform(5, 100, K), rng.uniform(0.2, 1.5, K)
    t = np.arange(1, steps + 1)[:, None]
    g = s * (a * np.exp(-t / tau) + b + sigma * rng.normal(size=(steps, K)))  # [T, K]
    state = fs.init_state([K], tf.float64)
    feats = np.empty((steps, K, fs.num_features))
    for k in range(steps):
        f, state = fs.update(state, tf.constant(g[k], tf.float64), k + 1)
        feats[k] = f.numpy()
    newest = rng.integers(memlen - 1, steps, n)
    coord = rng.integers(0, K, n)
    X = np.concatenate([feats[newest - lag, coord] for lag in range(memlen)], axis=1)
    columns = [f"{name}_{lag}" for lag in range(memlen) for name in fs.names]
    return X, columns


def synthetic_behaviour(n: int, rule: str | Node | Rule, features: str | FeatureSet = "mt+gt+g+mom5+mom9+mom99",
                        memlen: int = 1, noise: float = 0.0, seed: int = 0, output_scale: float = 0.01,
                        steps: int = 100) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A behaviour dataset whose target is a known rule.

    Args:
        n: rows.
        rule: the target ``y = f(row)``: infix text (parsed by the whitelisted parser, e.g. ``"-10 * mom9_0"``),
            an expression node or a :class:`Rule`.
        features, memlen: the feature set and lags of the columns.
        noise: standard deviation of Gaussian noise added to y, relative to the std of the noiseless y.
        seed: seeds the gradients, the rows and the noise.
        output_scale: recorded in the manifest (``source.output_scale``).

    Returns:
        ``(X, y, manifest)`` shaped like :func:`tf_symbolic_l2o.record.load_behaviour`'s output.
    """
    fs = features if isinstance(features, FeatureSet) else FeatureSet(features)
    X, columns = synthetic_features(n, fs, memlen, seed, steps)
    if isinstance(rule, Rule):
        target = rule
        text = rule.infix
    else:
        node = parse_infix(rule) if isinstance(rule, str) else rule
        target = Rule(node, features=fs, memlen=memlen, output_scale=output_scale)
        text = target.infix
    y = target.numpy_fn()(X).astype(np.float64)
    if noise:
        y = y + float(noise) * float(np.std(y)) * np.random.default_rng([seed, 1]).normal(size=y.shape)
    manifest = {"columns": columns, "target": "y", "features": fs.config(), "memlen": memlen,
                "source": {"kind": "synthetic", "rule": text, "noise": float(noise), "output_scale": output_scale},
                "task": {"name": "synthetic", "seed": seed}, "counts": {"rows": int(n)}}
    return X, y, manifest
