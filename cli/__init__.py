"""``tfl2o``: the command-line interface of :mod:`tf_symbolic_l2o` (a thin layer over the library)."""
