"""Keras-model checks of the symbolic optimizers on one Keras backend, run as ``python -m _backend_models`` under
``KERAS_BACKEND=jax`` or ``torch`` by tests/test_backends.py (one process per backend for all of them). In the
working directory it reads what the TensorFlow side wrote (``tf_*.keras``, ``cross.npz``, ``emb.npz``) and
writes its results (``*.npz`` and ``result.json``); the test asserts on them."""

import json

import keras
import numpy as np

from tf_symbolic_l2o import optimizers
from tf_symbolic_l2o.optimizers import SymbolicRP

# the optimizers of the .keras files saved on TensorFlow (continued here) and saved here (continued on TensorFlow)
FROM_TENSORFLOW = {"tf_symbolic": ("SymbolicRP", {}), "tf_learned": ("LearnedOptimizer", {"l2o": "dm_mnist_mlp"})}
FROM_BACKEND = {"symbolic": ("SymbolicRPsi", {}), "learned": ("LearnedOptimizer", {"l2o": "rp_s_mnist_mlp"})}


def make_optimizer(spec):
    name, kwargs = spec
    return getattr(optimizers, name)(**kwargs)


def embedding_model():
    """A model whose Embedding gradient is sparse on TensorFlow (``tf.IndexedSlices``) and dense elsewhere."""
    return keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(40, 4),
                             keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])


def small_model(inputs: int, optimizer, activation: str = "tanh"):
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(inputs + 2, activation=activation),
                              keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def fit(model, x, y, epochs=1, batch_size=32):
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0).history["loss"]


def fit_and_round_trip() -> dict:
    """SymbolicRP() lowers the loss; the .keras file loads with safe_mode=True and continues like the original."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    y = (x @ np.arange(8, dtype="float32") > 0).astype("int32")
    model = small_model(8, SymbolicRP(), activation="relu")
    losses = fit(model, x, y, epochs=2)
    model.save("own.keras")
    loaded = keras.saving.load_model("own.keras", safe_mode=True)
    counts = int(model.optimizer.iterations), int(loaded.optimizer.iterations)
    fit(model, x, y)
    fit(loaded, x, y)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), loaded.get_weights()))
    return {"first_loss": losses[0], "last_loss": losses[-1], "round_trip_diff": diff,
            "loaded_optimizer": type(loaded.optimizer).__name__, "iterations": counts[0],
            "loaded_iterations": counts[1]}


def continue_tensorflow_files() -> dict:
    """Load the .keras files saved on TensorFlow and continue each one epoch."""
    data = np.load("cross.npz", allow_pickle=False)
    out = {}
    for key in FROM_TENSORFLOW:
        model = keras.saving.load_model(f"{key}.keras", safe_mode=True)
        out[key] = {"optimizer": type(model.optimizer).__name__, "iterations": int(model.optimizer.iterations)}
        fit(model, data["x"], data["y"])
        np.savez(f"{key}_continued.npz", *model.get_weights())
    return out


def save_own_files():
    """Train each optimizer of FROM_BACKEND one epoch, save as .keras, then continue (the uninterrupted run)."""
    data = np.load("cross.npz", allow_pickle=False)
    for key, spec in FROM_BACKEND.items():
        keras.utils.set_random_seed(0)
        model = small_model(6, make_optimizer(spec))
        fit(model, data["x"], data["y"])
        model.save(f"{key}.keras")
        fit(model, data["x"], data["y"])
        np.savez(f"{key}_uninterrupted.npz", *model.get_weights())


def fit_embedding():
    """The Embedding model from the TensorFlow side's initial weights, two epochs of SymbolicRP()."""
    data = np.load("emb.npz", allow_pickle=False)
    arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    model = embedding_model()
    model.set_weights(arrays[2:])
    model.compile(optimizer=SymbolicRP(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit(model, arrays[0], arrays[1], epochs=2, batch_size=16)
    np.savez("emb_out.npz", *model.get_weights())


def main():
    result = {"backend": keras.backend.backend(), **fit_and_round_trip(), **continue_tensorflow_files()}
    save_own_files()
    fit_embedding()
    with open("result.json", "w") as f:
        json.dump(result, f)
    print(result["backend"])


if __name__ == "__main__":
    main()
