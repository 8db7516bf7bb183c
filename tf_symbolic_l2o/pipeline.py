"""The whole method in one run directory: meta-train an LSTM optimizer, record its behaviour, distill a symbolic
rule, evaluate both closed-loop against tuned baselines, train a Keras model with the rule through ``model.fit``,
export the rule and the model as SavedModels, and write a report (``tfl2o pipeline``).

Each stage calls the library function its own command calls (``tfl2o train``, ``record``, ``distill``,
``evaluate``, ``export``) and writes into its own folder of the run directory::

    OUT/pipeline.json     the configuration and, per finished stage, its fingerprint, outputs and seconds
    OUT/train/            the meta-training run (config.json, metrics.csv, checkpoints/, tensorboard/, l2o/)
    OUT/record/           behaviour.npy + behaviour.json (the manifest)
    OUT/distill/          rule.json, report.json, pareto.csv, pareto.png
    OUT/evaluate/         LSTM and rule against tuned baselines: summary.csv/.md, curves.csv, loss_curves.png
    OUT/fit/              model.fit with the rule and with Adam(): fit.csv, summary.csv, fit_curves.png, model.keras
    OUT/export/           rule/ (update-rule SavedModel) and model/ (serving SavedModel of the fitted model)
    OUT/report.md         the report, with meta_training.png beside it

A stage is skipped when ``pipeline.json`` holds its fingerprint — a hash of its options and of the fingerprints of
the stages whose outputs it reads (:data:`DEPENDS`) — and its outputs exist, so a killed pipeline continues where it stopped (an interrupted
meta-training resumes from its last checkpoint) and changing one stage's options re-runs that stage and the ones
after it. Meta-training is the one stage that is never thrown away: a run directory meta-trained with other
options is an error that names them (more epochs only extend it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np

from tf_symbolic_l2o.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

__all__ = ["DEPENDS", "PipelineConfig", "PipelineResult", "SIZES", "STAGES", "run_pipeline"]

#: The stages, in order (``until`` names one of them).
STAGES = ("train", "record", "distill", "evaluate", "fit", "export", "report")

#: Default sizes. ``quick`` is the README's first command (about 6 minutes on 2 CPU cores): 10 epochs of 100 steps
#: with 10-step unrolls (10 meta-updates per epoch) at meta-learning rate 3e-3. ``full`` has the sizes of the shipped
#: RNNprop and of the paper: 50 epochs of 200 steps, 20-step unrolls, 1e-3 (about 20 minutes of meta-training).
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 10, "epoch_len": 100, "unroll": 10, "meta_lr": 3e-3, "samples": 5_000, "eval_runs": 5,
              "fit_epochs": 3, "fit_seeds": 3},
    "full": {"epochs": 50, "epoch_len": 200, "unroll": 20, "meta_lr": 1e-3, "samples": 20_000, "eval_runs": 10,
             "fit_epochs": 10, "fit_seeds": 3},
}

_FIT_BATCH = 128


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline runs. ``size`` fills the counts left as ``None`` (:data:`SIZES`).

    Attributes:
        optimizer: the learned optimizer meta-trained (``rp``, ``rp_s``, ``rp_si``, ``dm``).
        task: the optimizee task spec (``None``: the paper's MLP on the offline MNIST subset).
        epochs, epoch_len, unroll, meta_lr: meta-training (see :class:`~tf_symbolic_l2o.meta.config.TrainConfig`).
        train_options: further :class:`TrainConfig` options (``curriculum``, ``random_scale``, …).
        samples, memlen, record_steps: the behaviour dataset (rows, lags per row, steps per recorded run;
            ``record_steps`` ``None`` = the training horizon).
        backend, distill_options: the symbolic-regression backend and its options (``tfl2o distill``).
        eval_runs, eval_steps, baselines: the closed-loop evaluation (``eval_steps`` ``None`` = the horizon).
        fit_epochs, fit_seeds: the Keras ``model.fit`` check (an MLP of the task's widths on the task's dataset).
        seed: the base seed of every stage.
    """

    size: str = "quick"
    optimizer: str = "rp"
    task: dict | None = None
    epochs: int | None = None
    epoch_len: int | None = None
    unroll: int | None = None
    meta_lr: float | None = None
    train_options: dict = dataclasses.field(default_factory=dict)
    samples: int | None = None
    memlen: int = 4
    record_steps: int | None = None
    backend: str = "sparse"
    distill_options: dict = dataclasses.field(default_factory=dict)
    eval_runs: int | None = None
    eval_steps: int | None = None
    baselines: tuple[str, ...] = ("adam", "rmsprop", "momentum")
    fit_epochs: int | None = None
    fit_seeds: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; use one of {', '.join(SIZES)}")
        for key, value in SIZES[self.size].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        for key in ("epochs", "epoch_len", "unroll", "samples", "memlen", "eval_runs", "fit_epochs", "fit_seeds",
                    "record_steps", "eval_steps"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 1):
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if not (isinstance(self.meta_lr, (int, float)) and math.isfinite(self.meta_lr) and self.meta_lr > 0):
            raise ValueError(f"meta_lr must be a positive finite number, got {self.meta_lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "baselines", tuple(self.baselines))

    def train_config(self):
        """The meta-training stage's :class:`~tf_symbolic_l2o.meta.config.TrainConfig`."""
        from tf_symbolic_l2o.meta.config import TrainConfig

        options = {"optimizer": self.optimizer, "epochs": self.epochs, "epoch_len": self.epoch_len,
                   "unroll": self.unroll, "meta_lr": self.meta_lr, "seed": self.seed, **self.train_options}
        if self.task is not None:
            options["task"] = self.task
        return TrainConfig(**options)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "baselines": list(self.baselines)}


@dataclasses.dataclass
class PipelineResult:
    """A finished (or stopped, ``until``) pipeline: the run directory, per stage ``"ran"``/``"skipped"`` and its
    seconds, and the headline figures the report gives (``None`` for stages not reached)."""

    out: Path
    stages: dict[str, dict[str, Any]]
    headline: dict[str, Any]
    report: Path | None


# ---------------------------------------------------------------------------------------------------- helpers


def _fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _no_progress(label: str) -> ContextManager[Callable[..., None]]:
    import contextlib

    return contextlib.nullcontext(lambda done, total, info="": None)


class _Context:
    """What the stages share: the configuration, the run directory, logging and progress."""

    def __init__(self, config: PipelineConfig, out: Path, log, progress):
        self.config, self.out, self.log, self.progress = config, out, log, progress
        self.train_config = config.train_config()

    @property
    def horizon(self) -> int:
        return self.train_config.horizons[-1]

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)


# ----------------------------------------------------------------------------------------------------- stages


def _train(ctx: _Context) -> dict:
    from tf_symbolic_l2o.meta.config import TrainConfig
    from tf_symbolic_l2o.meta.trainer import MetaTrainer

    run_dir, wanted = ctx.path("train"), ctx.train_config
    resume = (run_dir / "config.json").is_file()
    if resume:
        saved = TrainConfig.from_dict(read_json(run_dir / "config.json", "run config")).to_dict()
        differ = sorted(k for k, v in wanted.to_dict().items() if k != "epochs" and saved.get(k) != v)
        if differ:
            raise ValueError(f"{run_dir} was meta-trained with other options ({', '.join(differ)}); give another "
                             f"--out, or delete {run_dir} to meta-train again")
        if saved["epochs"] > wanted.epochs:
            raise ValueError(f"{run_dir} was meta-trained for {saved['epochs']} epochs, more than the "
                             f"{wanted.epochs} asked; give --epochs {saved['epochs']} or more, or another --out")
        ctx.log(f"train: continuing the meta-training in {run_dir}")
    with ctx.progress("meta-train") as progress:
        trainer = MetaTrainer(None if resume else wanted, run_dir, resume=resume, progress=progress, log=ctx.log,
                              epochs=wanted.epochs if resume else None)
        summary = trainer.run()
    return {"best_val_loss": summary.get("best_val_loss"), "epochs": wanted.epochs}


def _record(ctx: _Context) -> dict:
    from tf_symbolic_l2o.record import RecordConfig, record_to_file

    c = ctx.config
    config = RecordConfig(samples=c.samples, memlen=c.memlen, steps=c.record_steps or ctx.horizon, seed=c.seed)
    with ctx.progress("record") as progress:
        manifest = record_to_file(str(ctx.path("train")), ctx.path("record", "behaviour.npy"), config,
                                  progress=progress)
    ctx.log(f"record: {manifest['shape'][0]} rows × {manifest['shape'][1] - 1} columns "
            f"({', '.join(manifest['columns'][:4])}{', …' if len(manifest['columns']) > 4 else ''})")
    return {"rows": manifest["shape"][0], "columns": manifest["columns"]}


def _distill(ctx: _Context) -> dict:
    from tf_symbolic_l2o.distill import distill_file

    c = ctx.config
    ctx.log(f"distill: {c.backend} symbolic regression …")
    result = distill_file(ctx.path("record", "behaviour.npy"), ctx.path("distill"), backend=c.backend,
                          seed=c.seed, **c.distill_options)
    chosen = result.chosen
    ctx.log(f"distill: {chosen.rule.infix}  (test R² {chosen.r2_test:.4f})")
    return {"rule": chosen.rule.infix, "r2_train": chosen.r2_train, "r2_test": chosen.r2_test,
            "complexity": chosen.complexity}


def _evaluate(ctx: _Context) -> dict:
    from tf_symbolic_l2o.runs import evaluate_run, verdict_lines

    c = ctx.config
    evaluation = evaluate_run(ctx.path("train"), rules=[ctx.path("distill", "rule.json")], runs=c.eval_runs,
                              steps=c.eval_steps, baselines=c.baselines, seed=c.seed, out=ctx.path("evaluate"),
                              log=ctx.log)
    for line in verdict_lines(evaluation):
        ctx.log(f"evaluate: {line}")
    return _evaluation_figures(evaluation.summary, evaluation.label, learned=evaluation.learned)


def _evaluation_figures(summary, label: str, learned) -> dict:
    """Closed-loop ratio (rule / LSTM) and the LSTM's and the rule's final loss over the best tuned baseline's."""
    final = dict(zip(summary["optimizer"], summary["final_loss_mean"]))
    rule = next((name for name in final if name.startswith("rule:")), None)
    baselines = {k: v for k, v in final.items() if k not in learned and math.isfinite(v) and v > 0}
    best = min(baselines, key=baselines.get) if baselines else None
    lstm = final.get(label)
    figures = {"lstm": label, "lstm_final_loss": lstm, "rule_final_loss": final.get(rule), "best_baseline": best,
               "best_baseline_final_loss": baselines.get(best)}
    figures["closed_loop_ratio"] = final[rule] / lstm if rule and lstm else None
    figures["lstm_vs_best_baseline"] = lstm / baselines[best] if best and lstm is not None else None
    figures["rule_vs_best_baseline"] = final[rule] / baselines[best] if best and rule else None
    return figures


def _fit(ctx: _Context) -> dict:
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
                history = model.fit(x_train, y_train, batch_size=_FIT_BATCH, epochs=c.fit_epochs, verbose=0,
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
    import io

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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _export(ctx: _Context) -> dict:
    import keras

    from tf_symbolic_l2o.export import export_model, export_rule, signatures_summary

    export_rule(ctx.path("distill", "rule.json"), ctx.path("export", "rule"))
    export_model(keras.saving.load_model(ctx.path("fit", "model.keras"), safe_mode=True), ctx.path("export", "model"))
    ctx.log(f"export: {ctx.path('export', 'rule')} (init_state, update) and {ctx.path('export', 'model')} "
            f"(serving_default)")
    return {name: sorted(signatures_summary(ctx.path("export", name))) for name in ("rule", "model")}


def _report(ctx: _Context, figures: dict[str, dict], seconds: dict[str, float]) -> dict:
    atomic_write_bytes(ctx.path("meta_training.png"), _meta_training_png(ctx.path("train", "metrics.csv")))
    atomic_write_text(ctx.path("report.md"), _report_markdown(ctx, figures, seconds))
    ctx.log(f"report: {ctx.path('report.md')}")
    return {"report": "report.md"}


def _meta_training_png(metrics_csv: Path) -> bytes:
    import io

    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = pd.read_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(m.epoch, m.final_loss, ".-", label="final optimizee loss of the epoch", color="tab:red", alpha=0.7)
    ax.plot(m.epoch, m.meta_loss, ".-", label="meta-loss (mean over the unrolls)", color="tab:gray", alpha=0.7)
    val = m.dropna(subset=["val_loss"])
    if len(val):
        ax.plot(val.epoch, val.val_loss, "o-", label="validation loss", color="tab:blue")
    ax.set(xlabel="meta-training epoch", ylabel="loss", yscale="log", title="meta-training")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _f(value, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _report_markdown(ctx: _Context, figures: dict[str, dict], seconds: dict[str, float]) -> str:
    import pandas as pd

    from tf_symbolic_l2o.rules.rule import Rule

    c, tc = ctx.config, ctx.train_config
    ev, dist, fit = figures["evaluate"], figures["distill"], figures["fit"]
    rule = Rule.load(ctx.path("distill", "rule.json"))
    shown = rule.with_constants([float(f"{v:.4g}") for v in rule.constants])  # for display only
    task = tc.task
    lines = [f"# tfl2o pipeline: {c.optimizer} on {task.get('name')} / {task.get('dataset', '—')}", "",
             f"Configuration: size `{c.size}`, {tc.epochs} meta-training epochs × {tc.horizons[-1]} steps (unroll "
             f"{tc.unroll}, meta-lr {tc.meta_lr:g}), {c.samples} recorded rows with {c.memlen} lags, "
             f"`{c.backend}` distillation, {c.eval_runs} evaluation runs, {c.fit_epochs} epoch(s) × {c.fit_seeds} "
             f"seed(s) of `model.fit`; seed {c.seed}.", "",
             "## Headline", "",
             f"- The learned optimizer ({ev['lstm']}) reaches a final loss of {_f(ev['lstm_final_loss'])} against "
             f"{_f(ev['best_baseline_final_loss'])} for the best tuned baseline ({ev['best_baseline']}): ratio "
             f"**{_f(ev['lstm_vs_best_baseline'], 3)}** (below 1: the learned optimizer wins).",
             f"- The distilled rule explains the LSTM's behaviour with test R² **{dist['r2_test']:.4f}** "
             f"(train {dist['r2_train']:.4f}); run closed-loop in its teacher's place, its final loss is "
             f"**{_f(ev['closed_loop_ratio'], 3)}×** the LSTM's ({_f(ev['rule_vs_best_baseline'], 3)}× the best "
             f"tuned baseline's).",
             f"- As a Keras optimizer (`model.fit`, {fit['model']}, {fit['epochs']} epoch(s)): training loss "
             f"{fit['rule_train_loss_mean']:.4f} ± {fit['rule_train_loss_std']:.2g} against `Adam()`'s "
             f"{fit['Adam()_train_loss_mean']:.4f} ± {fit['Adam()_train_loss_std']:.2g}; test accuracy "
             f"{100 * fit['rule_test_accuracy_mean']:.2f} % against {100 * fit['Adam()_test_accuracy_mean']:.2f} %.",
             "",
             "One meta-training seed is one draw: meta-training is chaotic, and on other hardware float rounding "
             "changes the learned optimizer from the first epoch, so these figures vary across machines (re-running "
             "or resuming on the same machine reproduces them bit for bit). Run several `--seed`s for a "
             "distribution.", "",
             "## Meta-training", "", "![meta-training](meta_training.png)", "",
             "## The distilled rule", "",
             f"`{shown.infix}`", "", f"$$\\Delta\\theta = {shown.latex()}$$", "",
             "Constants to 4 significant digits here; `distill/rule.json` holds them exactly.", "",
             f"Features: `{', '.join(rule.feature_names)}` × {rule.memlen} lags; complexity {dist['complexity']}; test R² {dist['r2_test']:.4f}."]
    invariants = rule.metadata.get("invariants", {})
    if invariants:
        lines += ["", "| invariant | holds | detail |", "|---|---|---|"]
        lines += [f"| {name} | {'yes' if inv['passed'] else '**no**'} | {inv['detail']} |"
                  for name, inv in invariants.items()]
    teacher = rule.metadata.get("teacher")
    if teacher:
        lines += ["", "The teacher's own soundness (its raw output; a bias at rest is reported here, not copied into "
                  "the rule): " + ", ".join(f"{k} {_f(v, 3)}" for k, v in teacher.items()) + "."]
    lines += ["", "![Pareto front](distill/pareto.png)", "",
              "## Closed-loop evaluation (held-out split)", ""]
    summary = pd.read_csv(ctx.path("evaluate", "summary.csv"))
    lines += ["| optimizer | final loss | test accuracy | diverged |", "|---|---|---|---|"]
    for _, r in summary.iterrows():
        acc = "—" if math.isnan(r.test_accuracy_mean) else \
            f"{100 * r.test_accuracy_mean:.2f} % ± {100 * r.test_accuracy_std:.2f}"
        lines.append(f"| {r.optimizer} | {r.final_loss_mean:.4g} ± {r.final_loss_std:.2g} | {acc} | "
                     f"{int(r.diverged_runs)}/{int(r.runs)} |")
    lines += ["", "Baselines' learning rates are tuned on the meta-training split; the runs above use the held-out "
                  "split. Final loss: mean of the last 10 % of steps; mean ± std over runs.", "",
              "![evaluation](evaluate/loss_curves.png)", "",
              "## `model.fit` with the rule", "",
              f"{fit['model']} on `{fit['dataset']}`, batch {_FIT_BATCH}, {fit['epochs']} epoch(s), "
              f"{fit['seeds']} seed(s). `fit/model.keras` (trained with the rule) loads back with `safe_mode=True` "
              f"to the same outputs (largest difference {fit['reload_max_abs_diff']:.2g}).", "",
              "| optimizer | training loss | test loss | test accuracy |", "|---|---|---|---|"]
    for name in ("rule", "Adam()"):
        lines.append(f"| {name} | {fit[f'{name}_train_loss_mean']:.4f} ± {fit[f'{name}_train_loss_std']:.2g} | "
                     f"{fit[f'{name}_test_loss_mean']:.4f} ± {fit[f'{name}_test_loss_std']:.2g} | "
                     f"{100 * fit[f'{name}_test_accuracy_mean']:.2f} % ± "
                     f"{100 * fit[f'{name}_test_accuracy_std']:.2f} |")
    lines += ["", "![model.fit](fit/fit_curves.png)", "",
              "## Use it", "", "```python",
              "from tf_symbolic_l2o.optimizers import SymbolicOptimizer",
              f"model.compile(optimizer=SymbolicOptimizer(\"{ctx.path('distill', 'rule.json')}\"), loss=...)",
              "```", "",
              f"SavedModels: `{ctx.path('export', 'rule')}` (signatures `init_state`, `update`: the rule for any "
              f"TensorFlow runtime) and `{ctx.path('export', 'model')}` (`serving_default`: the fitted model).", "",
              "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds[stage]:.1f} |" for stage in STAGES if stage in seconds]
    return "\n".join(lines) + "\n"


_STAGE_FUNCTIONS = {"train": _train, "record": _record, "distill": _distill, "evaluate": _evaluate, "fit": _fit,
                    "export": _export}

# The options each stage's fingerprint covers; the stages it reads are covered through their fingerprints.
_STAGE_OPTIONS = {
    "train": lambda c, tc: tc.to_dict(),
    "record": lambda c, tc: {"samples": c.samples, "memlen": c.memlen, "steps": c.record_steps, "seed": c.seed},
    "distill": lambda c, tc: {"backend": c.backend, "options": c.distill_options, "seed": c.seed},
    "evaluate": lambda c, tc: {"runs": c.eval_runs, "steps": c.eval_steps, "baselines": list(c.baselines),
                               "seed": c.seed},
    "fit": lambda c, tc: {"epochs": c.fit_epochs, "seeds": c.fit_seeds, "seed": c.seed, "batch": _FIT_BATCH},
    "export": lambda c, tc: {},
    "report": lambda c, tc: {"version": 1},
}

#: The stages whose outputs each stage reads.
DEPENDS = {"train": (), "record": ("train",), "distill": ("record",), "evaluate": ("train", "distill"),
           "fit": ("distill",), "export": ("distill", "fit"), "report": ("train", "distill", "evaluate", "fit", "export")}

_STAGE_OUTPUTS = {
    "train": ("train/l2o", "train/metrics.csv"),
    "record": ("record/behaviour.npy", "record/behaviour.json"),
    "distill": ("distill/rule.json", "distill/report.json", "distill/pareto.png"),
    "evaluate": ("evaluate/summary.csv", "evaluate/loss_curves.png"),
    "fit": ("fit/fit.csv", "fit/summary.csv", "fit/fit_curves.png", "fit/model.keras"),
    "export": ("export/rule", "export/model"),
    "report": ("report.md", "meta_training.png"),
}


def run_pipeline(out: str | Path, config: PipelineConfig | None = None, until: str = "report",
                 log: Callable[[str], None] | None = None,
                 progress: Callable[[str], ContextManager[Callable[..., None]]] | None = None) -> PipelineResult:
    """Run the stages of :data:`STAGES` up to ``until`` into ``out`` (see the module docstring).

    Args:
        out: the run directory (created; an existing one is continued).
        config: what to run (``None``: :class:`PipelineConfig` defaults, the quick size).
        until: the last stage to run.
        log: called with one line per stage event.
        progress: ``progress(label)`` returns a context manager yielding a ``progress(done, total, info="")``
            callback, for the stages that report progress.

    Raises:
        ValueError: an unknown stage, a run directory meta-trained with other options, an option a stage rejects.
    """
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; use one of {', '.join(STAGES)}")
    config = config or PipelineConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory; give a directory for --out")
    ctx = _Context(config, out, log or (lambda msg: None), progress or _no_progress)  # validates the options
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "pipeline.json"
    state = read_json(state_path, "pipeline state") if state_path.is_file() else {}
    stages = dict(state.get("stages", {})) if isinstance(state, dict) else {}
    result: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    for stage in STAGES[: STAGES.index(until) + 1]:
        fingerprint = fingerprints[stage] = _fingerprint(stage, _STAGE_OPTIONS[stage](config, ctx.train_config),
                                                         [fingerprints[d] for d in DEPENDS[stage]])
        entry = stages.get(stage, {})
        current = (entry.get("fingerprint") == fingerprint
                   and all((out / p).exists() for p in _STAGE_OUTPUTS[stage]))
        if current:
            ctx.log(f"{stage}: up to date, skipped")
            result[stage] = {"status": "skipped", "seconds": entry.get("seconds", 0.0)}
        else:
            ctx.log(f"{stage}: running")
            t0 = time.perf_counter()
            if stage == "report":
                figures = {s: stages[s]["figures"] for s in ("distill", "evaluate", "fit")}
                seconds = {s: stages[s].get("seconds", 0.0) for s in STAGES if s in stages}
                entry = {"figures": _report(ctx, figures, seconds)}
            else:
                entry = {"figures": _STAGE_FUNCTIONS[stage](ctx)}
            entry.update(fingerprint=fingerprint, seconds=round(time.perf_counter() - t0, 2),
                         finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            stages[stage] = entry
            atomic_write_json(state_path, {"config": config.to_dict(), "stages": stages})
            result[stage] = {"status": "ran", "seconds": entry["seconds"]}
    headline = {}
    for stage in ("distill", "evaluate", "fit"):
        if stage in result:
            headline.update({f"{stage}.{k}": v for k, v in stages[stage]["figures"].items()})
    return PipelineResult(out, result, headline, out / "report.md" if "report" in result else None)
