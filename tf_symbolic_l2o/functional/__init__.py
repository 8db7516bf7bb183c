"""Functional coordinate-wise optimizers, optax-style: ``init_state(n)`` / ``update(grad, state, step, params)``.

* :mod:`.base`     — the :class:`CoordinateOptimizer` protocol (learned, symbolic and hand-designed optimizers all
  follow it) and the base of the hand-designed ones;
* :mod:`.sgd`, :mod:`.momentum`, :mod:`.adam`, :mod:`.rmsprop`, :mod:`.adamw`, :mod:`.lion` — one algorithm each,
  reproducing the Keras optimizer of the same name;
* :mod:`.registry` — :func:`make_optimizer` by name.
"""

from tf_symbolic_l2o.functional.adam import Adam
from tf_symbolic_l2o.functional.adamw import AdamW
from tf_symbolic_l2o.functional.base import CoordinateOptimizer, HandDesigned, state_bytes_per_param
from tf_symbolic_l2o.functional.lion import Lion
from tf_symbolic_l2o.functional.momentum import Momentum
from tf_symbolic_l2o.functional.registry import OPTIMIZERS, available_optimizers, make_optimizer
from tf_symbolic_l2o.functional.rmsprop import RMSprop
from tf_symbolic_l2o.functional.sgd import SGD

__all__ = ["Adam", "AdamW", "CoordinateOptimizer", "HandDesigned", "Lion", "Momentum", "OPTIMIZERS", "RMSprop", "SGD",
           "available_optimizers", "make_optimizer", "state_bytes_per_param"]
