"""The coordinate-wise optimizer protocol, re-exported from its home :mod:`tf_symbolic_l2o.functional.base`."""

from tf_symbolic_l2o.functional.base import CoordinateOptimizer

__all__ = ["CoordinateOptimizer"]
