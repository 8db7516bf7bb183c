"""Meta-training of a learned optimizer: epochs of truncated unrolls, with checkpoints, resume and logging.

An *epoch* is one fresh optimizee (new initialisation, new minibatch stream) optimized for ``epoch_len`` steps by the
learned optimizer, cut into windows of ``unroll`` steps; after every window the L2O weights get one meta-update.
All randomness derives from ``(seed, epoch, step)`` through stateless RNG, so a resumed run is bit-identical to an
uninterrupted one.

Options from the paper and its TF baselines:

* curriculum (``curriculum=[100, 200, 500]``): the horizon grows to the next length when the validation loss has not
  improved for ``curriculum_patience`` validations (the best weights are restored first);
* imitation (``imitation_prob=0.3``): with that probability an epoch trains the L2O to reproduce Adam(0.01)'s steps;
* random scaling (``random_scale=b``): per epoch, the objective becomes f(θ ⊙ r), r = exp(U(−b, b)) per coordinate.

A run directory holds ``config.json``, ``metrics.csv``, ``checkpoints/`` (``tf.train.CheckpointManager``),
``tensorboard/`` and, at the end, ``l2o/`` (config, weights and a SavedModel of the selected L2O).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tf_symbolic_l2o.baselines import Baseline
from tf_symbolic_l2o.io import atomic_write_json, atomic_write_text, read_json
from tf_symbolic_l2o.learned.io import save_l2o
from tf_symbolic_l2o.learned.registry import available_optimizers, make_l2o
from tf_symbolic_l2o.meta.unroll import Unroller, make_rollout
from tf_symbolic_l2o.seeds import BATCHES, COIN, INIT, SCALE, TRAINING, VALIDATION, step_seed
from tf_symbolic_l2o.tasks.base import Task
from tf_symbolic_l2o.tasks.registry import make_task, normalize_task_spec

@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a meta-training run (saved as ``config.json``).

    Args:
        optimizer: ``dm``, ``rp``, ``rp_s`` or ``rp_si``.
        l2o: overrides of the preset (``features``, ``preproc``, ``lstm``, …).
        task: task spec (see :mod:`tf_symbolic_l2o.tasks.registry`); default MLP 784-30-20-10 on the MNIST subset.
        epochs: number of optimizee runs (50 by default, so the offline default job takes minutes; the paper: 200).
        epoch_len: steps per run (the training horizon); a multiple of ``unroll``.
        unroll: truncation length U.
        meta_lr: Adam learning rate of the meta-optimizer.
        meta_clip_norm: clip meta-gradients to this global norm (``None`` = off).
        seed: base seed of every random draw.
        curriculum: increasing horizons (replaces ``epoch_len``), or ``None``.
        curriculum_patience: validations without improvement before the horizon grows.
        imitation_prob: probability that an epoch imitates Adam(``imitation_lr``).
        imitation_lr: the imitated Adam's learning rate (0.01 in the paper).
        random_scale: bound b of the random objective scaling (0 = off).
        jit_compile: ``"auto"`` (XLA on GPU only), true or false.
        checkpoint_every: save a checkpoint every N epochs (and at the end).
        keep_checkpoints: how many checkpoints to keep.
        val_every: validate every N epochs (0 = never; then the last weights are exported).
        val_runs: optimizee runs per validation (on the meta-training split, fixed seeds).
        init_from: start from the weights of a saved learned optimizer (a run directory or an ``l2o/`` folder
            of the same architecture; ``odd`` may differ), e.g. to re-train a plain network as an odd one. The
            starting weights are validated too, so the exported weights are never worse than them on the
            validation runs.
        second_order: exact meta-gradients through the optimizee's gradients (Hessian-vector products) instead of
            the paper's first-order ones; costs memory proportional to the optimizee's activations × the unroll.
    """

    optimizer: str = "rp"
    l2o: dict = dataclasses.field(default_factory=dict)
    task: dict = dataclasses.field(default_factory=lambda: normalize_task_spec(None))
    epochs: int = 50
    epoch_len: int = 200
    unroll: int = 20
    meta_lr: float = 1e-3
    meta_clip_norm: float | None = 1.0
    seed: int = 0
    curriculum: list[int] | None = None
    curriculum_patience: int = 3
    imitation_prob: float = 0.0
    imitation_lr: float = 0.01
    random_scale: float = 0.0
    jit_compile: Any = "auto"
    checkpoint_every: int = 1
    keep_checkpoints: int = 3
    val_every: int = 5
    val_runs: int = 2
    second_order: bool = False
    init_from: str | None = None

    def __post_init__(self):
        self.task = normalize_task_spec(self.task)
        self._check_optimizer()
        for name in ("epochs", "epoch_len", "unroll", "checkpoint_every", "keep_checkpoints", "val_runs",
                     "curriculum_patience"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0, got {self.val_every}")
        if not self.meta_lr > 0:
            raise ValueError(f"meta_lr must be positive, got {self.meta_lr}")
        if self.meta_clip_norm is not None and not self.meta_clip_norm > 0:
            raise ValueError(f"meta_clip_norm must be positive or None, got {self.meta_clip_norm}")
        if not 0.0 <= self.imitation_prob <= 1.0:
            raise ValueError(f"imitation_prob must be in [0, 1], got {self.imitation_prob}")
        if self.random_scale < 0:
            raise ValueError(f"random_scale must be >= 0, got {self.random_scale}")
        if self.curriculum is not None:
            self.curriculum = [int(h) for h in self.curriculum]
            if not self.curriculum or any(h <= 0 for h in self.curriculum):
                raise ValueError(f"curriculum horizons must be positive, got {self.curriculum}")
        for h in self.horizons:
            if h % self.unroll:
                raise ValueError(f"horizon {h} is not a multiple of unroll {self.unroll}; "
                                 f"choose epoch_len/curriculum as multiples of the unroll")

    def _check_optimizer(self) -> None:
        if self.optimizer not in available_optimizers():
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(available_optimizers())}")

    @property
    def horizons(self) -> list[int]:
        return list(self.curriculum) if self.curriculum else [int(self.epoch_len)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training option(s) {sorted(unknown)}")
        return cls(**d)


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored."""


class MetaTrainer:
    """Runs (or resumes) meta-training into a run directory.

    Args:
        config: the run's :class:`TrainConfig`.
        run_dir: where everything is written.
        resume: continue from the latest checkpoint in ``run_dir`` (the saved config wins, except ``epochs``).
        epochs: with ``resume``, a new total number of epochs (to extend a finished run); ``None`` keeps it.
        progress: show a progress bar (rich).
        stop_after_epoch: stop (after checkpointing) once this epoch is done — used to test resume.
        strategy: a ``tf.distribute`` strategy: the optimizee's minibatch is split across its replicas (the
            inner gradients and the meta-gradient are all-reduced), so the run equals a single-device run up to
            float rounding. ``None``: the current (default) strategy.

    Subclasses (the meta-tuner of :mod:`tf_symbolic_l2o.tune`) replace what is optimized and what is written at the
    end through :meth:`_make_l2o`, :meth:`_make_meta_optimizer` and :meth:`_export`.
    """

    config_class = TrainConfig
    progress_label = "meta-train"
    #: validate the starting weights too (epoch 0), so the selected weights are never worse than the start on the
    #: validation runs — right for tuning a rule that already works, pointless for a randomly initialised LSTM
    validate_at_start = False

    def __init__(self, config: TrainConfig | None, run_dir: str | Path, resume: bool = False,
                 progress: bool = False, stop_after_epoch: int | None = None,
                 log: Callable[[str], None] | None = None, epochs: int | None = None, strategy=None):
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress = progress
        self.stop_after_epoch = stop_after_epoch
        self.log = log or (lambda msg: None)
        if resume:
            if not (self.run_dir / "config.json").is_file():
                raise FileNotFoundError(f"no run to resume in {self.run_dir} (config.json missing)")
            saved = read_json(self.run_dir / "config.json", "run config")
            if not isinstance(saved, dict):
                raise ValueError(f"{self.run_dir / 'config.json'} does not hold a training config")
            if epochs is not None:
                saved["epochs"] = int(epochs)
            config = self.config_class.from_dict(saved)
        elif (self.run_dir / "checkpoints").exists() and any((self.run_dir / "checkpoints").iterdir()):
            raise FileExistsError(f"{self.run_dir} already holds a run; resume it or choose another directory")
        self.config = config
        self.task: Task = make_task(config.task, split="meta_train")
        self.num_coords = self.task.num_params
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.l2o = self._make_l2o()
            self.meta_optimizer = self._make_meta_optimizer()
            self.meta_optimizer.build(self.l2o.trainable_variables)
        teacher = Baseline("adam", config.imitation_lr) if config.imitation_prob > 0 else None
        self.unroller = Unroller(self.task, self.l2o, self.meta_optimizer, config.unroll, config.jit_compile,
                                 config.meta_clip_norm, teacher, strategy=strategy,
                                 second_order=config.second_order)
        self.teacher = teacher
        self.rollout = make_rollout(self.task, self.l2o, self.unroller.jit_compile)
        # run state that lives in the checkpoint
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.stage = tf.Variable(0, dtype=tf.int64, trainable=False, name="curriculum_stage")
        self.best_val = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_val")
        self.bad_vals = tf.Variable(0, dtype=tf.int64, trainable=False, name="validations_without_improvement")
        self.best_weights = [tf.Variable(w, trainable=False, name=f"best_{i}")
                             for i, w in enumerate(self.l2o.weights)]
        self.checkpoint = tf.train.Checkpoint(l2o_weights=list(self.l2o.weights), meta_optimizer=self.meta_optimizer,
                                              epoch=self.epoch, stage=self.stage, best_val=self.best_val,
                                              bad_vals=self.bad_vals, best_weights=self.best_weights)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.run_dir / "checkpoints"),
                                                  max_to_keep=config.keep_checkpoints)
        self.metrics: list[dict] = []

    # -- what is meta-trained (overridden by the meta-tuner) --------------------------------------------------
    def _make_l2o(self):
        l2o = make_l2o(self.config.optimizer, **{"seed": self.config.seed, **self.config.l2o})
        if self.config.init_from:
            from tf_symbolic_l2o.learned.io import load_l2o

            start = load_l2o(self.config.init_from)
            got, want = [tuple(w.shape) for w in start.weights], [tuple(w.shape) for w in l2o.weights]
            if got != want:
                raise ValueError(f"cannot start from {self.config.init_from}: its weights have shapes {got}, "
                                 f"{self.config.optimizer} needs {want}")
            l2o.set_weights(start.get_weights())
        return l2o

    def _make_meta_optimizer(self) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(self.config.meta_lr)

    def _export(self, summary: dict) -> None:
        """Write the selected optimizer (here: ``l2o/``, config + weights + SavedModel)."""
        save_l2o(self.l2o, self.run_dir / "l2o", metadata={"train_config": self.config.to_dict(), **summary})

    # -- state ----------------------------------------------------------------------------------------------
    def _restore(self):
        latest = self.manager.latest_checkpoint
        if latest is None:
            self.log(f"no checkpoint in {self.run_dir / 'checkpoints'}; starting from epoch 0")
            return
        try:
            self.checkpoint.read(latest).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - TF raises many types for broken files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint {latest} cannot be restored ({first[:200]}); delete the "
                                  f"checkpoints folder to start over") from None
        metrics_path = self.run_dir / "metrics.csv"
        if metrics_path.is_file():
            df = pd.read_csv(metrics_path)
            self.metrics = df[df["epoch"] <= int(self.epoch.numpy())].to_dict("records")
        self.log(f"resumed from {latest} at epoch {int(self.epoch.numpy())}")

    def _horizon(self) -> int:
        return self.config.horizons[int(self.stage.numpy())]

    # -- one epoch ------------------------------------------------------------------------------------------
    def _fresh_run(self, seed):
        theta = self.task.flatten(self.task.init_params(step_seed(seed, INIT)))
        if self.config.random_scale > 0:
            b = self.config.random_scale
            scale = tf.exp(tf.random.stateless_uniform([self.num_coords], step_seed(seed, SCALE), -b, b))
        else:
            scale = tf.ones([self.num_coords])
        return theta / scale, scale

    def _train_epoch(self, epoch: int) -> dict:
        cfg = self.config
        seed = step_seed(cfg.seed, TRAINING, epoch)
        theta, scale = self._fresh_run(seed)
        state = self.l2o.init_state(self.num_coords)
        coin = float(tf.random.stateless_uniform([], step_seed(seed, COIN)))
        imitate = self.teacher is not None and coin < cfg.imitation_prob
        teacher_state = self.teacher.init_state(self.num_coords) if imitate else None
        horizon = self._horizon()
        batch_seed = step_seed(seed, BATCHES)
        meta_losses, norms = [], []
        last = float("nan")
        for w in range(horizon // cfg.unroll):
            step0 = tf.constant(w * cfg.unroll, tf.int32)
            if imitate:
                ml, last, norm, theta, state, teacher_state = self.unroller.imitation_window(
                    theta, state, teacher_state, step0, batch_seed, scale)
            else:
                ml, last, norm, theta, state = self.unroller.train_window(theta, state, step0, batch_seed, scale)
            meta_losses.append(float(ml))
            norms.append(float(norm))
            last = float(last)
        return {"epoch": epoch, "horizon": horizon, "mode": "imitation" if imitate else "unroll",
                "meta_loss": float(np.mean(meta_losses)), "final_loss": last,
                "meta_grad_norm": float(np.mean(norms))}

    def validate(self, horizon: int | None = None) -> float:
        """Mean final-loss (average of the last 10 % of steps) over ``val_runs`` fixed validation runs."""
        horizon = horizon or self._horizon()
        tail = max(1, horizon // 10)
        finals = []
        for r in range(self.config.val_runs):
            seed = step_seed(self.config.seed, VALIDATION, r)
            theta, scale = self._fresh_run(seed)
            _, _, losses = self.rollout(theta, self.l2o.init_state(self.num_coords), step_seed(seed, BATCHES),
                                        scale, tf.constant(0), tf.constant(horizon))
            losses = losses.numpy()
            finals.append(float(np.mean(losses[-tail:])) if np.all(np.isfinite(losses)) else float("inf"))
        return float(np.mean(finals))

    def _after_validation(self, val: float) -> None:
        """Track the best weights; advance the curriculum after ``curriculum_patience`` validations without
        improvement (restoring the best weights first)."""
        if val < float(self.best_val.numpy()):
            self.best_val.assign(val)
            self.bad_vals.assign(0)
            for b, w in zip(self.best_weights, self.l2o.weights):
                b.assign(w)
            return
        self.bad_vals.assign_add(1)
        if self.config.curriculum and int(self.bad_vals.numpy()) >= self.config.curriculum_patience:
            if int(self.stage.numpy()) + 1 < len(self.config.horizons):
                for b, w in zip(self.best_weights, self.l2o.weights):
                    w.assign(b)
                self.stage.assign_add(1)
                self.best_val.assign(np.inf)
                self.bad_vals.assign(0)
                self.log(f"curriculum: horizon → {self._horizon()}")

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until ``epochs``; returns a summary dict (also saved as ``summary.json``)."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self._restore()
        atomic_write_json(self.run_dir / "config.json", cfg.to_dict())  # on resume: the saved one (+ epochs)
        writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard"))
        start_epoch = int(self.epoch.numpy()) + 1
        t_start = time.time()
        progress = _Progress(self.progress, cfg.epochs, start_epoch - 1, self.progress_label)
        if (self.validate_at_start or getattr(cfg, "init_from", None)) and cfg.val_every and start_epoch == 1:
            val = self.validate()
            self._after_validation(val)
            self.log(f"validation loss of the starting point: {val:.4g}")
            with writer.as_default(step=0):
                tf.summary.scalar("val_loss", val)
        with progress:
            for epoch in range(start_epoch, cfg.epochs + 1):
                t0 = time.time()
                row = self._train_epoch(epoch)
                row["val_loss"] = float("nan")
                if cfg.val_every and (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
                    row["val_loss"] = self.validate()
                    self._after_validation(row["val_loss"])
                row["best_val_loss"] = float(self.best_val.numpy())
                row["seconds"] = time.time() - t0
                self.metrics.append(row)
                self.epoch.assign(epoch)
                with writer.as_default(step=epoch):
                    for key, value in row.items():  # every number of the row (a tuner's constants too)
                        if key not in ("epoch", "seconds", "best_val_loss") and isinstance(value, (int, float)) \
                                and not math.isnan(float(value)):
                            tf.summary.scalar(key, float(value))
                if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs or epoch == self.stop_after_epoch:
                    self._write_metrics()
                    self.manager.save(checkpoint_number=epoch)
                progress.advance(row)
                if self.stop_after_epoch is not None and epoch >= self.stop_after_epoch:
                    writer.flush()
                    return {"stopped_at_epoch": epoch}
        writer.flush()
        return self._finish(time.time() - t_start)

    def _write_metrics(self):
        atomic_write_text(self.run_dir / "metrics.csv", pd.DataFrame(self.metrics).to_csv(index=False))

    def _finish(self, seconds: float) -> dict:
        use_best = self.config.val_every > 0 and np.isfinite(float(self.best_val.numpy()))
        if use_best:
            for b, w in zip(self.best_weights, self.l2o.weights):
                w.assign(b)
        summary = {"optimizer": self.config.optimizer, "epochs": self.config.epochs,
                   "selected": "best_validation" if use_best else "last",
                   "best_val_loss": float(self.best_val.numpy()) if use_best else None,
                   "train_seconds_this_session": seconds, "num_coords": self.num_coords,
                   "l2o_params": int(sum(np.prod(v.shape) for v in self.l2o.trainable_variables)),
                   "jit_compile": self.unroller.jit_compile}
        self._export(summary)
        atomic_write_json(self.run_dir / "summary.json", summary)
        return summary


class _Progress:
    """A rich progress bar over epochs (or nothing)."""

    def __init__(self, enabled: bool, total: int, done: int, label: str = "meta-train"):
        self.enabled, self.total, self.done, self.label = enabled, total, done, label
        self._progress = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self._progress.__enter__()
            self._task = self._progress.add_task("epochs", total=self.total, completed=self.done, info="")
        return self

    def advance(self, row: dict):
        if self._progress is not None:
            info = f"meta-loss {row['meta_loss']:.3f}  final {row['final_loss']:.3f}"
            if not math.isnan(row["val_loss"]):
                info += f"  val {row['val_loss']:.3f}"
            self._progress.update(self._task, advance=1, info=info)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False
