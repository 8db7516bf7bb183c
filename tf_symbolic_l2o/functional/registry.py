"""The hand-designed optimizers by name: ``make_optimizer("adam", 1e-3)``."""

from __future__ import annotations

from typing import Any

from tf_symbolic_l2o.functional.adam import Adam
from tf_symbolic_l2o.functional.adamw import AdamW
from tf_symbolic_l2o.functional.base import HandDesigned
from tf_symbolic_l2o.functional.lion import Lion
from tf_symbolic_l2o.functional.momentum import Momentum
from tf_symbolic_l2o.functional.rmsprop import RMSprop
from tf_symbolic_l2o.functional.sgd import SGD

#: name → class, in the order reports list them.
OPTIMIZERS: dict[str, type[HandDesigned]] = {cls.kind: cls for cls in (SGD, Momentum, Adam, RMSprop, AdamW, Lion)}


def available_optimizers() -> tuple[str, ...]:
    return tuple(OPTIMIZERS)


def make_optimizer(name: str, learning_rate: Any, **hyperparameters) -> HandDesigned:
    """The hand-designed optimizer ``name`` (one of :data:`OPTIMIZERS`) at ``learning_rate`` (a float or a scalar
    ``tf.Variable``); ``hyperparameters`` go to its constructor (e.g. ``momentum=0.9``, ``weight_decay=0.01``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate, **hyperparameters)
