"""Stage 4 of Symbolic L2O, Keras 3 optimizers: a distilled symbolic rule (:class:`SymbolicOptimizer`) and a
trained coordinate-wise LSTM (:class:`LearnedOptimizer`), both registered for ``.keras`` saving under the
package ``"tfl2o"``.

    model.compile(optimizer=SymbolicOptimizer("rule.json"), loss=...)

Both run on every Keras backend (TensorFlow, JAX, PyTorch); under JAX and PyTorch importing them imports no
TensorFlow.
"""

from tf_symbolic_l2o.optimizers.learned import LearnedOptimizer
from tf_symbolic_l2o.optimizers.presets import SymbolicDM, SymbolicRP, SymbolicRPsi
from tf_symbolic_l2o.optimizers.symbolic import SymbolicOptimizer

__all__ = ["LearnedOptimizer", "SymbolicDM", "SymbolicOptimizer", "SymbolicRP", "SymbolicRPsi"]
