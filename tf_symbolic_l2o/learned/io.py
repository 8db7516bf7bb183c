"""Saving, loading and exporting trained learned optimizers.

A saved L2O is a folder with ``l2o.json`` (the layer config), ``weights.npz`` (the layer's weights in order, for
every Keras backend), ``weights.*`` (the same as a ``tf.train.Checkpoint``) and ``saved_model/`` (a SavedModel any
TensorFlow runtime can load without this library). :func:`load_l2o` reads ``weights.npz`` when it is there, so it
needs no TensorFlow; folders saved before it existed are read from the checkpoint.

    m = tf.saved_model.load("run/l2o/saved_model")
    state = m.init_state(n)                        # list of tensors
    out = m.step(grad, step, state)                # {"delta", "raw", "state"}
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np

from tf_symbolic_l2o._lazy import LazyModule
from tf_symbolic_l2o.artifacts import resolve_artifact
from tf_symbolic_l2o.io import atomic_directory, atomic_write_bytes, atomic_write_json, read_json
from tf_symbolic_l2o.learned.lstm import CoordinatewiseLSTM
from tf_symbolic_l2o.learned.registry import l2o_from_config

tf = LazyModule("tensorflow")
WEIGHTS_NPZ = "weights.npz"


@functools.lru_cache(maxsize=None)
def _module_class():
    """The ``tf.Module`` class of :func:`l2o_module`, defined on first use (importing this file needs no TensorFlow)."""

    class L2OModule(tf.Module):
        """A trained L2O as a plain ``tf.Module`` with ``init_state(n)`` and ``step(grad, step, state)``."""

        def __init__(self, l2o: CoordinatewiseLSTM):
            super().__init__(name="l2o")
            self.l2o = l2o
            example = l2o.init_state(1)
            self._structure = example
            flat = tf.nest.flatten(example)
            state_spec = [tf.TensorSpec([None, *t.shape[1:]], tf.float32) for t in flat]
            self.init_state = tf.function(self._init_state, input_signature=[tf.TensorSpec([], tf.int32)])
            self.step = tf.function(self._step, input_signature=[
                tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32), state_spec])

        def _init_state(self, n):
            return tf.nest.flatten(self.l2o.init_state(n))

        def _step(self, grad, step, state):
            nested = tf.nest.pack_sequence_as(self._structure, list(state))
            raw, _, new = self.l2o.forward(grad, nested, step)
            return {"delta": self.l2o.output_scale * raw, "raw": raw, "state": tf.nest.flatten(new)}

    return L2OModule


def l2o_module(l2o: CoordinatewiseLSTM):
    """``l2o`` as a ``tf.Module`` with ``init_state(n)`` and ``step(grad, step, state)`` (what the SavedModel holds)."""
    return _module_class()(l2o)


def weights_checkpoint(l2o: CoordinatewiseLSTM) -> "tf.train.Checkpoint":
    """A checkpoint of the L2O's variables, by position (Keras 3 layers in lists are not TF-trackable)."""
    return tf.train.Checkpoint(l2o_weights=list(l2o.weights))


def save_l2o(l2o: CoordinatewiseLSTM, directory: str | Path, metadata: dict | None = None) -> Path:
    """Write config, weights and a SavedModel of ``l2o`` to ``directory`` (atomically)."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        atomic_write_json(tmp / "l2o.json", {"config": l2o.get_config(), "metadata": metadata or {}})
        buffer = io.BytesIO()
        np.savez(buffer, *[np.asarray(w, np.float32) for w in l2o.get_weights()])
        atomic_write_bytes(tmp / WEIGHTS_NPZ, buffer.getvalue())
        weights_checkpoint(l2o).write(str(tmp / "weights"))
        tf.saved_model.save(l2o_module(l2o), str(tmp / "saved_model"))
    return directory


def load_l2o(directory: str | Path) -> CoordinatewiseLSTM:
    """Rebuild a saved L2O (a folder written by :func:`save_l2o`, a run directory containing ``l2o/``, or the name
    of a shipped one: ``rp_mnist_mlp``, …)."""
    directory = resolve_artifact(directory)
    if (directory / "l2o" / "l2o.json").is_file():
        directory = directory / "l2o"
    info = read_json(directory / "l2o.json", "learned optimizer description")
    try:
        l2o = l2o_from_config(info["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{directory / 'l2o.json'} does not describe a learned optimizer ({e})") from None
    if (directory / WEIGHTS_NPZ).is_file():
        _read_npz(l2o, directory / WEIGHTS_NPZ)
        return l2o
    try:
        weights_checkpoint(l2o).read(str(directory / "weights")).assert_existing_objects_matched()
    except Exception as e:  # noqa: BLE001 - a broken checkpoint raises OpError, IndexError, AssertionError, …
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read learned-optimizer weights in {directory} ({msg})") from None
    return l2o


def _read_npz(l2o: CoordinatewiseLSTM, path: Path) -> None:
    """Set ``l2o``'s weights from ``weights.npz`` (arrays ``arr_0`` … in ``l2o.weights`` order), checked."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"cannot read learned-optimizer weights {path} ({e})") from None
    set_checked_weights(l2o, arrays, str(path))


def set_checked_weights(l2o: CoordinatewiseLSTM, arrays, source: str) -> None:
    """Set ``l2o``'s weights to ``arrays`` (in ``l2o.weights`` order, as float32) after checking that they are
    numeric, of the layer's shapes and finite; otherwise a one-line ``ValueError`` naming ``source``."""
    expected = [tuple(v.shape) for v in l2o.weights]
    try:
        arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    except (TypeError, ValueError):
        raise ValueError(f"{source} holds a weight that is not a numeric array") from None
    shapes = [a.shape for a in arrays]
    if shapes != expected:
        raise ValueError(f"{source} holds weights of shapes {shapes}, the learned optimizer needs {expected}")
    bad = [v.path for v, a in zip(l2o.weights, arrays) if not np.all(np.isfinite(a))]
    if bad:
        raise ValueError(f"{source} holds non-finite weights ({', '.join(bad)})")
    l2o.set_weights(arrays)
