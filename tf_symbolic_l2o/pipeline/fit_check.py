"""The pipeline's ``fit`` stage: the distilled rule as a Keras optimizer in ``model.fit``, against ``Adam()``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tf_symbolic_l2o.io import atomic_write_bytes, atomic_write_text, figure_png

#: Batch size of the ``model.fit`` check.
FIT_BATCH = 128


def fit_check(ctx) -> dict:
    """``model.fit`` of an MLP (the task's widths and activation when the task is an MLP; 30-20 ReLU otherwise) on
    the task's dataset with the distilled rule as a Keras optimizer and with ``Adam()`` at its defaults; the
    rule-trained model of the first seed is saved as ``model.keras`` and loaded back (``safe_mode=True``)."""
    import keras
    import pandas as pd

    from tf_symbolic_l2o.data import load_dataset
    from tf_symbolic_l2o.optimizers import SymbolicOptimizer
    from tf_symbolic_l2o.tasks.family import primary_task
    from tf_symbolic_l2o.tasks.registry import normalize_task_spec

    c = ctx.config
    task = primary_task(normalize_task_spec(ctx.train_config.task))
    mlp = task["name"] == "mlp"
    hidden, activation = (task["hidden"], task["activation"]) if mlp else ([30, 20], "relu")
    data = load_dataset(task.get("dataset", "mnist_subset"), data_dir=task.get("data_dir"), flatten=True)
    x_train, y_train = data.x_train.reshape(len(data.x_train), -1), data.y_train
    x_test, y_test = data.x_test.reshape(len(data.x_test), -1), data.y_test
    rule_path = ctx.path("distill", "rule.json")
    optimizers = {"rule": lambda: SymbolicOptimizer(str(rule_path)), "Adam()": lambda: keras.optimizers.Adam()}
    out = ctx.path("fit")
    out.mkdir(parents=True, exist_ok=True)
    rows, saved = [], None
    with ctx.progress("model.fit") as progress:
        total, done = len(optimizers) * c.fit_seeds, 0
        for name, make in optimizers.items():
            for seed in range(c.fit_seeds):
                keras.utils.set_random_seed(c.seed + seed)
                model = keras.Sequential([keras.Input((x_train.shape[1],))]
                                         + [keras.layers.Dense(w, activation=activation) for w in hidden]
                                         + [keras.layers.Dense(data.num_classes)])
                model.compile(optimizer=make(), metrics=["accuracy"],
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
                history = model.fit(x_train, y_train, batch_size=FIT_BATCH, epochs=c.fit_epochs, verbose=0,
                                    validation_data=(x_test, y_test)).history
                for epoch in range(c.fit_epochs):
                    rows.append({"optimizer": name, "seed": c.seed + seed, "epoch": epoch + 1,
                                 "train_loss": history["loss"][epoch], "test_loss": history["val_loss"][epoch],
                                 "test_accuracy": history["val_accuracy"][epoch]})
                if name == "rule" and saved is None:
                    saved = _save_and_reload(model, out / "model.keras", x_test[:256])
                done += 1
                progress(done, total, f"{name} seed {c.seed + seed}")
    curves = pd.DataFrame(rows)
    atomic_write_text(out / "fit.csv", curves.to_csv(index=False))
    last = curves[curves.epoch == c.fit_epochs]
    summary = last.groupby("optimizer", sort=False)[["train_loss", "test_loss", "test_accuracy"]].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    summary = summary.reset_index()
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_bytes(out / "fit_curves.png", _fit_png(curves))
    by = summary.set_index("optimizer")
    figures = {"model": f"MLP {x_train.shape[1]}-{'-'.join(map(str, hidden))}-{data.num_classes} ({activation})",
               "dataset": data.name, "epochs": c.fit_epochs, "seeds": c.fit_seeds, "reload_max_abs_diff": saved,
               **{f"{name}_{col}": float(by.loc[name, col]) for name in optimizers for col in by.columns}}
    ctx.log(f"fit: train loss after {c.fit_epochs} epochs: rule {figures['rule_train_loss_mean']:.4f}, Adam() "
            f"{figures['Adam()_train_loss_mean']:.4f}; test accuracy {100 * figures['rule_test_accuracy_mean']:.2f} % "
            f"vs {100 * figures['Adam()_test_accuracy_mean']:.2f} %")
    return figures


def _save_and_reload(model, path: Path, x: np.ndarray) -> float:
    """Save ``model`` (with its symbolic optimizer) atomically, load it back with ``safe_mode=True``; the largest
    difference of the two models' outputs on ``x``."""
    import tempfile

    import keras

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        model.save(staged)
        staged.replace(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    diff = float(np.max(np.abs(model.predict(x, verbose=0) - reloaded.predict(x, verbose=0))))
    if diff > 1e-5:
        raise RuntimeError(f"{path} does not load back to the same model (outputs differ by {diff:g})")
    return diff


def _fit_png(curves) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (name, color) in zip(curves.optimizer.unique(), ("tab:red", "tab:blue", "tab:green")):
        g = curves[curves.optimizer == name].groupby("epoch")
        for ax, col in zip(axes, ("train_loss", "test_accuracy")):
            mean, std = g[col].mean(), g[col].std().fillna(0.0)
            ax.plot(mean.index, mean.values, color=color, label=name)
            ax.fill_between(mean.index, mean - std, mean + std, color=color, alpha=0.2)
    axes[0].set(xlabel="epoch", ylabel="training loss (epoch mean)", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="test accuracy")
    axes[0].legend()
    fig.suptitle("model.fit: the distilled rule vs Adam() (mean ± std over seeds)")
    fig.tight_layout()
    return figure_png(fig)


