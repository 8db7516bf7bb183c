"""A module imported on first attribute access: ``tf = LazyModule("tensorflow")`` lets the modules that Keras'
JAX and PyTorch backends use (rules, features, the symbolic optimizers) mention TensorFlow in code paths that only
the TensorFlow backend runs, without importing it."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name``; the first attribute access imports it."""

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (imported)'}>"


def not_converted_by_autograph(fn):
    """Mark ``fn`` the way ``tf.autograph.experimental.do_not_convert`` marks its wrapper (the ``autograph_info__``
    attribute of an autograph artifact), without importing TensorFlow: inside ``tf.function`` autograph then calls
    ``fn`` as plain Python instead of converting its loops and branches."""
    fn.autograph_info__ = None
    return fn
