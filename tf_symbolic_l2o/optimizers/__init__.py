"""Stage 4 of Symbolic L2O, Keras 3 optimizers: a distilled symbolic rule (:class:`SymbolicOptimizer`) and a
trained coordinate-wise LSTM (:class:`LearnedOptimizer`), both registered for ``.keras`` saving under the
package ``"tfl2o"``.

    model.compile(optimizer=SymbolicOptimizer("rule.json"), loss=...)

The symbolic optimizers run on every Keras backend, and under the JAX and PyTorch backends importing them imports
no TensorFlow; :class:`LearnedOptimizer` needs the TensorFlow backend, where it is imported (and registered) here.
"""

import keras

from tf_symbolic_l2o.optimizers.presets import SymbolicDM, SymbolicRP, SymbolicRPsi
from tf_symbolic_l2o.optimizers.symbolic import SymbolicOptimizer

if keras.backend.backend() == "tensorflow":
    from tf_symbolic_l2o.optimizers.learned import LearnedOptimizer

__all__ = ["LearnedOptimizer", "SymbolicDM", "SymbolicOptimizer", "SymbolicRP", "SymbolicRPsi"]


def __getattr__(name: str):
    if name == "LearnedOptimizer":
        from tf_symbolic_l2o.optimizers.learned import LearnedOptimizer

        return LearnedOptimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
