"""``Baseline(kind, learning_rate)``: the hand-designed optimizers by kind, kept for compatibility.

The optimizers themselves live in :mod:`tf_symbolic_l2o.functional` (one class each: ``SGD``, ``Momentum``,
``Adam``, ``RMSprop``, ``AdamW``, ``Lion``); new code builds them with
:func:`tf_symbolic_l2o.functional.make_optimizer`. :func:`Baseline` accepts the four kinds it always did and the
hyperparameters of all of them, passing each optimizer only its own.
"""

from __future__ import annotations

from typing import Any

from tf_symbolic_l2o.functional.base import HandDesigned
from tf_symbolic_l2o.functional.registry import make_optimizer

#: The kinds :func:`Baseline` builds (and the hand-designed teachers and evaluation baselines accept).
BASELINES = ("sgd", "momentum", "adam", "rmsprop")


def Baseline(kind: str, learning_rate: Any = 1e-3, momentum: float = 0.9, beta1: float = 0.9,  # noqa: N802
             beta2: float = 0.999, rho: float = 0.9, epsilon: float = 1e-7) -> HandDesigned:
    """The hand-designed optimizer ``kind`` (one of :data:`BASELINES`).

    Args:
        kind: ``sgd``, ``momentum``, ``adam`` or ``rmsprop``.
        learning_rate: step size (> 0); a float or a scalar ``tf.Variable`` (to sweep it without retracing).
        momentum: μ for ``momentum``.
        beta1, beta2: Adam decays.
        rho: RMSprop decay.
        epsilon: ε added to the root of the second moment (Adam, RMSprop).
    """
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; use one of {', '.join(BASELINES)}")
    own = {"sgd": {}, "momentum": {"momentum": momentum},
           "adam": {"beta1": beta1, "beta2": beta2, "epsilon": epsilon},
           "rmsprop": {"rho": rho, "epsilon": epsilon}}[kind]
    return make_optimizer(kind, learning_rate, **own)
