"""Train and evaluate Keras image classifiers with any optimizer of this library, and record their curves.

This is the large-model check of symbolic rules: does a distilled rule train a real network (ResNet-50) as well as
learning-rate-tuned Adam and SGD? ``benchmarks/resnet50_train.py`` runs the whole comparison from the command line.

    from tf_symbolic_l2o.image_data import image_data
    from tf_symbolic_l2o.keras_training import train, tune_lr, write_results

    data = image_data("mnist_subset_32")                       # 32×32×3 train / val / test arrays
    tuning, lr = tune_lr("resnet20", "adam", [1e-4, 1e-3, 1e-2], epochs=1, batch_size=64, data=data)
    result = train("resnet20", "adam", lr, epochs=5, batch_size=64, seed=0, data=data)
    result.history       # pandas, one row per epoch: train/val/test loss and accuracy, seconds

Protocol:

* **Data** (:func:`~tf_symbolic_l2o.image_data.image_data`): the dataset's train split minus a class-stratified
  validation part (``val_fraction``) is what the models train on; the validation part is what :func:`tune_lr`
  selects the learning rate on; the test split is only ever reported, never used to choose anything
  (:func:`tune_lr` does not even evaluate it).
* **Order and seeds**: ``keras.utils.set_random_seed(seed)`` before the model is built (same initial weights
  for the same seed). Epoch ``e`` (1-based) visits the training examples in the order
  ``np.random.default_rng([seed, e]).permutation(n)`` (:func:`~tf_symbolic_l2o.image_data.epoch_order`), cut to
  a whole number of batches (the last ``n mod batch_size`` examples of that order are skipped in that epoch;
  different ones every epoch), so every strategy and every worker sees exactly the same batches.
* **Training**: the model and the optimizer are created and compiled (sparse categorical cross-entropy, accuracy)
  under ``strategy.scope()``, and every epoch is one ``model.fit`` call over the epoch's batches (``batch_size`` is
  the global batch, split across replicas). Under ``MultiWorkerMirroredStrategy``, where Keras 3's ``fit`` fails
  (keras-team/keras#20585), an equivalent loop runs instead: ``strategy.run`` of forward pass, the same loss
  (summed over the replica's examples, divided by the global batch) and ``optimizer.apply_gradients``
  (``loop="custom"`` forces it anywhere).
* **Evaluation**: after every epoch, the loss and accuracy on the validation and test arrays, computed by the
  model in inference mode on one device (identical on every worker).

Models (:func:`~tf_symbolic_l2o.tasks.keras_models.make_model`): ``resnet50``
(``keras.applications.ResNet50(weights=None)``, 23.6 M parameters), ``resnet20`` (the CIFAR ResNet-20 of He et al.,
0.27 M) and ``cnn`` (a 2-layer convnet without BatchNorm, for tests). Optimizers (:func:`make_optimizer`):
``adam``, ``sgd_cosine`` (SGD, momentum 0.9, cosine decay to 0 over the whole run), ``symbolic_rp`` /
``symbolic_rp_si`` / ``symbolic_dm`` (the shipped presets) and ``symbolic:<rule.json>``; for the symbolic ones the
learning rate multiplies the rule's native step (1.0 = as distilled). A ``+cosine`` suffix (``adam+cosine``,
``symbolic_rp+cosine``, ``symbolic:<rule.json>+cosine``) decays that learning rate (or multiplier) to 0 over the
whole run by ``keras.optimizers.schedules.CosineDecay``, as ``sgd_cosine`` does.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tf_symbolic_l2o.harness import grid_search
from tf_symbolic_l2o.image_data import ImageData, epoch_order, image_data
from tf_symbolic_l2o.io import atomic_write_bytes, atomic_write_json, atomic_write_text, figure_png
from tf_symbolic_l2o.tasks.keras_models import _check_model_name, make_model

__all__ = [
    "DEFAULT_LR",
    "HISTORY_COLUMNS",
    "OPTIMIZERS",
    "TrainResult",
    "evaluate",
    "make_optimizer",
    "plot_curves",
    "summarize",
    "train",
    "tune_lr",
    "write_results",
]

#: Optimizer names :func:`make_optimizer` accepts (plus ``"symbolic:<path of rule.json>"``).
OPTIMIZERS = ("adam", "sgd_cosine", "symbolic_rp", "symbolic_rp_si", "symbolic_dm")
#: Learning rate used when none is given.
DEFAULT_LR = {"adam": 1e-3, "sgd_cosine": 0.1, "symbolic": 1.0}
#: Columns of :attr:`TrainResult.history`.
HISTORY_COLUMNS = ("epoch", "steps", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
                   "test_accuracy", "seconds", "eval_seconds")
_PRESETS = {"symbolic_rp": "SymbolicRP", "symbolic_rp_si": "SymbolicRPsi", "symbolic_dm": "SymbolicDM"}
_SYMBOLIC_PREFIX = "symbolic:"
_COSINE_SUFFIX = "+cosine"
_LOOPS = ("auto", "fit", "custom")
_EVAL_BATCH = 256


def _parse_optimizer(spec) -> tuple[str, str | None, bool]:
    """``(kind, rule path or None, cosine)``; kind is a name of :data:`OPTIMIZERS` or ``"symbolic"``, cosine says
    whether the spec ends with ``+cosine``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"optimizer must be a non-empty string, got {spec!r}")
    text = spec.strip()
    cosine = text.lower().endswith(_COSINE_SUFFIX)
    if cosine:
        text = text[:-len(_COSINE_SUFFIX)].strip()
        if text.lower() == "sgd_cosine":
            raise ValueError(f"optimizer {spec!r}: sgd_cosine already decays by cosine; drop the '+cosine'")
    if text.lower().startswith(_SYMBOLIC_PREFIX):
        path = text[len(_SYMBOLIC_PREFIX):].strip()
        if not path:
            raise ValueError("optimizer 'symbolic:' needs a rule file: symbolic:path/to/rule.json")
        if not Path(path).is_file():
            raise ValueError(f"rule file not found: {path} (optimizer {spec!r})")
        return "symbolic", path, cosine
    key = text.lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {spec!r}; use one of {', '.join(OPTIMIZERS)} or symbolic:<rule.json>, "
                         f"optionally with a {_COSINE_SUFFIX} suffix")
    return key, None, cosine


def _default_lr(kind: str) -> float:
    return DEFAULT_LR["symbolic" if kind.startswith("symbolic") else kind]


def _check_lr(lr) -> float:
    try:
        value = float(lr)
    except (TypeError, ValueError):
        raise ValueError(f"learning rate must be a positive number, got {lr!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"learning rate must be a positive number, got {lr!r}")
    return value


def make_optimizer(spec: str, steps_total: int, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name (create it under the strategy's scope).

    Args:
        spec: ``adam``, ``sgd_cosine``, ``symbolic_rp``, ``symbolic_rp_si``, ``symbolic_dm`` or
            ``symbolic:<path of rule.json>``; a ``+cosine`` suffix decays the learning rate to 0 over the run.
        steps_total: the run's number of optimizer steps (the length of the cosine decay).
        learning_rate: Adam's / SGD's learning rate (SGD's peak), or the multiplier on a symbolic rule's step;
            ``None`` → :data:`DEFAULT_LR`.

    Raises:
        ValueError: an unknown name, a missing rule file, a non-positive learning rate or step count.
    """
    kind, path, cosine = _parse_optimizer(spec)
    if isinstance(steps_total, bool) or not isinstance(steps_total, (int, np.integer)) or steps_total < 1:
        raise ValueError(f"steps_total must be a positive integer, got {steps_total!r}")
    lr = _default_lr(kind) if learning_rate is None else _check_lr(learning_rate)
    if cosine or kind == "sgd_cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=int(steps_total))
    if kind == "adam":
        return keras.optimizers.Adam(lr)
    if kind == "sgd_cosine":
        return keras.optimizers.SGD(lr, momentum=0.9)
    from tf_symbolic_l2o import optimizers  # noqa: PLC0415  (heavy: rules, presets)

    if kind == "symbolic":
        return optimizers.SymbolicOptimizer(path, learning_rate=lr)
    return getattr(optimizers, _PRESETS[kind])(learning_rate=lr)


# ---- training --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the per-epoch ``history`` (columns :data:`HISTORY_COLUMNS`) and the trained
    ``model`` (compiled; its optimizer holds the final state)."""

    model_name: str
    optimizer: str
    learning_rate: float
    seed: int
    epochs: int
    batch_size: int
    replicas: int
    loop: str
    history: pd.DataFrame
    model: keras.Model | None = None

    @property
    def seconds(self) -> float:
        """Training seconds (without evaluation), all epochs."""
        return float(self.history["seconds"].sum())

    def final(self) -> dict:
        """The last epoch's row of the history plus the run's settings, as plain Python values."""
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in self.history.iloc[-1].to_dict().items()}
        return {"model": self.model_name, "optimizer": self.optimizer, "learning_rate": self.learning_rate,
                "seed": self.seed, "epochs": self.epochs, "batch_size": self.batch_size,
                "replicas": self.replicas, "loop": self.loop, "train_seconds": self.seconds, **row}


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _is_multi_worker(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or (
        resolver is not None and getattr(resolver, "task_type", None) is not None)


def train(model_name: str, optimizer_spec: str, lr: float | None = None, epochs: int = 1, batch_size: int = 64,
          seed: int = 0, strategy: tf.distribute.Strategy | None = None, data: ImageData | None = None, *,
          evaluate_test: bool = True, loop: str = "auto", keep_model: bool = True,
          log=None) -> TrainResult:
    """Train a fresh ``model_name`` with ``optimizer_spec`` for ``epochs`` epochs (see the module docstring).

    Args:
        model_name: one of :data:`~tf_symbolic_l2o.tasks.keras_models.MODELS`.
        optimizer_spec: see :func:`make_optimizer`.
        lr: the learning rate (``None`` → :data:`DEFAULT_LR`).
        epochs: number of passes over the training part.
        batch_size: the global batch size (a multiple of the strategy's replica count).
        seed: initial weights and data order.
        strategy: a ``tf.distribute.Strategy`` (``None``: the current one, normally the default strategy).
        data: the arrays (``None``: :func:`image_data` with its defaults).
        evaluate_test: also evaluate the test part after every epoch (:func:`tune_lr` turns it off).
        loop: ``"fit"`` (``model.fit``), ``"custom"`` (``strategy.run`` loop) or ``"auto"`` (custom under
            ``MultiWorkerMirroredStrategy``, ``fit`` otherwise).
        keep_model: keep the trained model in the result (``False`` frees it at once).
        log: optional callable given a one-line message after every epoch.

    Raises:
        ValueError: unknown model or optimizer, non-positive epochs / batch size / learning rate, a batch size that
            is not a multiple of the replica count or larger than the training part.
    """
    model_name = _check_model_name(model_name)
    kind, _, _ = _parse_optimizer(optimizer_spec)
    lr = _default_lr(kind) if lr is None else _check_lr(lr)
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    if loop not in _LOOPS:
        raise ValueError(f"unknown loop {loop!r}; use one of {', '.join(_LOOPS)}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if data is None:
        data = image_data()
    strategy = strategy if strategy is not None else tf.distribute.get_strategy()
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size % replicas:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the {replicas} replicas of the strategy; "
                         f"use a multiple of {replicas}")
    n = int(data.x_train.shape[0])
    steps_per_epoch = n // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training examples")
    if loop == "auto":
        loop = "custom" if _is_multi_worker(strategy) else "fit"

    with strategy.scope():
        keras.utils.set_random_seed(seed)
        model = make_model(model_name, data.input_shape, data.num_classes)
        optimizer = make_optimizer(optimizer_spec, steps_per_epoch * epochs, lr)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        if loop == "custom":
            optimizer.build(model.trainable_variables)
    step = _custom_step(model, strategy, batch_size) if loop == "custom" else None
    predict = tf.function(lambda x: model(x, training=False), autograph=False)

    rows = []
    for epoch in range(1, epochs + 1):
        order = epoch_order(n, seed, epoch)[: steps_per_epoch * batch_size]
        x, y = data.x_train[order], data.y_train[order]
        t0 = time.perf_counter()
        if loop == "fit":
            logs = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0).history
            train_loss, train_acc = float(logs["loss"][-1]), float(logs["accuracy"][-1])
        else:
            train_loss, train_acc = _custom_epoch(strategy, step, x, y, batch_size)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val, predict=predict)
        test_loss, test_acc = (evaluate(model, data.x_test, data.y_test, predict=predict) if evaluate_test
                               else (float("nan"), float("nan")))
        rows.append({"epoch": epoch, "steps": epoch * steps_per_epoch, "train_loss": train_loss,
                     "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc,
                     "test_loss": test_loss, "test_accuracy": test_acc, "seconds": seconds,
                     "eval_seconds": time.perf_counter() - t0})
        if log is not None:
            r = rows[-1]
            log(f"{model_name} {optimizer_spec} lr={lr:g} seed={seed} epoch {epoch}/{epochs}: train loss "
                     f"{train_loss:.4f}, val acc {val_acc:.4f}"
                     + (f", test acc {test_acc:.4f}" if evaluate_test else "") + f" ({r['seconds']:.1f} s)")
    history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    return TrainResult(model_name, str(optimizer_spec), lr, seed, epochs, batch_size, replicas, loop, history,
                       model if keep_model else None)


def _custom_step(model, strategy, global_batch: int):
    """One distributed training step, equivalent to ``model.fit``'s: per replica, the cross-entropy summed over its
    examples / the global batch (+ the model's own losses / replicas), gradients all-reduced (summed) by the
    optimizer. Returns ``(sum of per-example losses, number correct)`` over the global batch."""
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(y, pred)
            loss = tf.reduce_sum(per_example) / tf.cast(global_batch, per_example.dtype)
            if model.losses:
                loss += tf.add_n(model.losses) / tf.cast(replicas, per_example.dtype)
            scaled = model.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        model.optimizer.apply_gradients(zip(grads, variables))
        correct = tf.equal(tf.argmax(pred, axis=-1, output_type=tf.int32), tf.cast(y, tf.int32))
        return tf.reduce_sum(per_example), tf.reduce_sum(tf.cast(correct, tf.float32))

    @tf.function
    def step(x, y):
        loss_sum, correct = strategy.run(replica_step, args=(x, y))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    return step


def _custom_epoch(strategy, step, x: np.ndarray, y: np.ndarray, global_batch: int) -> tuple[float, float]:
    """Run ``step`` over the batches of ``(x, y)``; ``(mean batch loss, accuracy)`` like ``fit``'s logs.

    Every input pipeline (worker) takes, from every global batch, its own consecutive slice (one per-replica batch
    for each of its local replicas), so the replicas together see exactly the global batch."""
    steps = x.shape[0] // global_batch

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(global_batch)
        local = per_replica * (strategy.num_replicas_in_sync // context.num_input_pipelines)
        start = context.input_pipeline_id * local
        idx = (np.arange(steps)[:, None] * global_batch + start + np.arange(local)[None, :]).reshape(-1)
        return tf.data.Dataset.from_tensor_slices((x[idx], y[idx])).batch(per_replica, drop_remainder=True)

    dist = strategy.distribute_datasets_from_function(dataset_fn)
    losses, correct = [], 0.0
    for xb, yb in dist:
        loss_sum, n_correct = step(xb, yb)
        losses.append(float(loss_sum) / global_batch)
        correct += float(n_correct)
    return float(np.mean(losses)), correct / (steps * global_batch)


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = _EVAL_BATCH, predict=None) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of a softmax classifier on ``(x, y)``, in inference mode, on one device
    (the same on every worker of a distributed run); ``(nan, nan)`` for an empty set. The last batch is padded to
    ``batch_size`` (the padding is ignored), so ``predict`` is traced once."""
    n = len(y)
    if n == 0:
        return float("nan"), float("nan")
    if predict is None:
        predict = tf.function(lambda t: model(t, training=False), autograph=False)
    batch_size = min(int(batch_size), n)
    loss_sum, correct = 0.0, 0
    for i in range(0, n, batch_size):
        xb, yb = np.asarray(x[i:i + batch_size]), np.asarray(y[i:i + batch_size])
        m = len(yb)
        if m < batch_size:
            xb = np.concatenate([xb, np.zeros((batch_size - m, *xb.shape[1:]), xb.dtype)])
        probs = predict(tf.constant(xb))[:m]
        loss_sum += float(tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(yb, probs)))
        correct += int(np.sum(np.argmax(np.asarray(probs), axis=-1) == yb))
    return loss_sum / n, correct / n


def tune_lr(model_name: str, optimizer_spec: str, grid, epochs: int = 1, batch_size: int = 64, seed: int = 0,
            strategy: tf.distribute.Strategy | None = None, data: ImageData | None = None,
            metric: str = "val_loss", log=None) -> tuple[pd.DataFrame, float]:
    """Pick the learning rate from ``grid`` by a short run (``epochs``) for each, on the validation part.

    Every run starts from the same initial weights (``seed``); the test part is not evaluated. The best learning
    rate has the lowest final ``val_loss`` (``metric="val_accuracy"``: the highest final validation accuracy); a
    run that ends with a non-finite value ranks last; ties go to the smaller learning rate
    (:func:`~tf_symbolic_l2o.harness.grid_search`).

    Returns:
        ``(table, best_lr)``: one row per learning rate (``lr``, ``val_loss``, ``val_accuracy``, ``train_loss``,
        ``seconds``, ``finite``, ``best``).

    Raises:
        ValueError: an empty or non-positive grid, an unknown metric, or every run non-finite.
    """
    if metric not in ("val_loss", "val_accuracy"):
        raise ValueError(f"unknown metric {metric!r}; use val_loss or val_accuracy")
    try:
        values = sorted({_check_lr(v) for v in grid})
    except TypeError:
        raise ValueError(f"grid must be a list of positive learning rates, got {grid!r}") from None
    if not values:
        raise ValueError("the learning-rate grid is empty; give at least one positive value")
    _check_model_name(model_name)
    _parse_optimizer(optimizer_spec)
    rows = []

    def score(lr: float) -> float:
        result = train(model_name, optimizer_spec, lr, epochs, batch_size, seed, strategy, data,
                       evaluate_test=False, keep_model=False, log=log)
        last = result.history.iloc[-1]
        finite = bool(np.isfinite([last["val_loss"], last["val_accuracy"], last["train_loss"]]).all())
        rows.append({"lr": lr, "val_loss": float(last["val_loss"]), "val_accuracy": float(last["val_accuracy"]),
                     "train_loss": float(last["train_loss"]), "seconds": result.seconds, "finite": finite})
        del result
        gc.collect()
        if not finite:
            return math.inf
        return rows[-1]["val_loss"] if metric == "val_loss" else -rows[-1]["val_accuracy"]

    # the grid is sorted: the first of tied points is the smallest learning rate
    search = grid_search(values, score, if_all_diverged="raise",
                         error=f"every learning rate of the grid {values} gave non-finite losses for "
                               f"{optimizer_spec}; try smaller values")
    table = pd.DataFrame(rows)
    table["best"] = np.arange(len(table)) == search.index
    return table, search.learning_rate


# ---- reports ---------------------------------------------------------------------------------------------------


def summarize(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per optimizer from per-epoch curves (columns ``optimizer``, ``seed``, ``epoch`` + the history's):
    the last epoch's test accuracy and train loss as mean and std over seeds (sample std; NaN for one seed), the
    mean training seconds per run, and the learning rate(s)."""
    rows = []
    for name, group in curves.groupby("optimizer", sort=False):
        last = group.sort_values("epoch").groupby("seed").tail(1)
        secs = group.groupby("seed")["seconds"].sum()
        n = len(last)
        row = {"optimizer": name, "runs": n, "epochs": int(last["epoch"].max())}
        for col in ("test_accuracy", "train_loss", "val_accuracy"):
            row[f"{col}_mean"] = float(last[col].mean())
            row[f"{col}_std"] = float(last[col].std(ddof=1)) if n > 1 else float("nan")
        row["seconds_mean"] = float(secs.mean())
        if "learning_rate" in group:
            row["learning_rate"] = float(group["learning_rate"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame, path, title: str = "") -> Path:
    """Train loss and test (else validation) accuracy against epoch, per optimizer: mean over seeds, shaded
    min–max. Written atomically as PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415, F401

    acc = "test_accuracy" if curves["test_accuracy"].notna().any() else "val_accuracy"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, group in curves.groupby("optimizer", sort=False):
        for ax, col in zip(axes, ("train_loss", acc)):
            stats = group.groupby("epoch")[col].agg(["mean", "min", "max"])
            line, = ax.plot(stats.index, stats["mean"], marker="o", markersize=3, label=str(name))
            if group["seed"].nunique() > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
    axes[0].set_ylabel("train loss (mean over the epoch)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel(acc.replace("_", " "))
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    atomic_write_bytes(path, figure_png(fig, dpi=120))
    return path


def write_results(out_dir, stem: str, curves: pd.DataFrame, summary: dict, title: str = "") -> dict:
    """Write ``<stem>.csv`` (the curves), ``<stem>.png`` (:func:`plot_curves`) and ``<stem>.json`` (``summary``)
    into ``out_dir``, each atomically; returns their paths."""
    out = Path(out_dir)
    paths = {"csv": out / f"{stem}.csv", "png": out / f"{stem}.png", "json": out / f"{stem}.json"}
    atomic_write_text(paths["csv"], curves.to_csv(index=False))
    plot_curves(curves, paths["png"], title)
    atomic_write_json(paths["json"], summary)
    return paths
