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
the stages whose outputs it reads (:data:`DEPENDS`) — and its outputs exist, so a killed pipeline continues where
it stopped (an interrupted meta-training resumes from its last checkpoint) and changing one stage's options re-runs
that stage and the ones that read it. Meta-training is the one stage that is never thrown away: a run directory
meta-trained with other options is an error that names them (more epochs only extend it).

The ``fit`` stage lives in :mod:`.fit_check`, the ``report`` stage in :mod:`.report`; the others call the library
functions of their commands directly.
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

from tf_symbolic_l2o.io import atomic_write_json, read_json
from tf_symbolic_l2o.pipeline.fit_check import FIT_BATCH

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
    from tf_symbolic_l2o.runs import best_baseline

    final = dict(zip(summary["optimizer"], summary["final_loss_mean"]))
    rule = next((name for name in final if name.startswith("rule:")), None)
    best, best_loss = best_baseline(final, learned)
    lstm = final.get(label)
    figures = {"lstm": label, "lstm_final_loss": lstm, "rule_final_loss": final.get(rule), "best_baseline": best,
               "best_baseline_final_loss": best_loss}
    figures["closed_loop_ratio"] = final[rule] / lstm if rule and lstm else None
    figures["lstm_vs_best_baseline"] = lstm / best_loss if best and lstm is not None else None
    figures["rule_vs_best_baseline"] = final[rule] / best_loss if best and rule else None
    return figures


def _export(ctx: _Context) -> dict:
    import keras

    from tf_symbolic_l2o.export import export_model, export_rule, signatures_summary

    export_rule(ctx.path("distill", "rule.json"), ctx.path("export", "rule"))
    export_model(keras.saving.load_model(ctx.path("fit", "model.keras"), safe_mode=True), ctx.path("export", "model"))
    ctx.log(f"export: {ctx.path('export', 'rule')} (init_state, update) and {ctx.path('export', 'model')} "
            f"(serving_default)")
    return {name: sorted(signatures_summary(ctx.path("export", name))) for name in ("rule", "model")}


def _fit(ctx: _Context) -> dict:
    from tf_symbolic_l2o.pipeline.fit_check import fit_check

    return fit_check(ctx)


_STAGE_FUNCTIONS = {"train": _train, "record": _record, "distill": _distill, "evaluate": _evaluate, "fit": _fit,
                    "export": _export}

# The options each stage's fingerprint covers; the stages it reads are covered through their fingerprints.
_STAGE_OPTIONS = {
    "train": lambda c, tc: tc.to_dict(),
    "record": lambda c, tc: {"samples": c.samples, "memlen": c.memlen, "steps": c.record_steps, "seed": c.seed},
    "distill": lambda c, tc: {"backend": c.backend, "options": c.distill_options, "seed": c.seed},
    "evaluate": lambda c, tc: {"runs": c.eval_runs, "steps": c.eval_steps, "baselines": list(c.baselines),
                               "seed": c.seed},
    "fit": lambda c, tc: {"epochs": c.fit_epochs, "seeds": c.fit_seeds, "seed": c.seed, "batch": FIT_BATCH},
    "export": lambda c, tc: {},
    "report": lambda c, tc: {"version": 1},
}

#: The stages whose outputs each stage reads.
DEPENDS = {"train": (), "record": ("train",), "distill": ("record",), "evaluate": ("train", "distill"),
           "fit": ("distill",), "export": ("distill", "fit"),
           "report": ("train", "distill", "evaluate", "fit", "export")}

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
                from tf_symbolic_l2o.pipeline.report import write_report

                entry = {"figures": write_report(ctx, figures, seconds)}
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
