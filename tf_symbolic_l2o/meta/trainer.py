"""Meta-training of a learned optimizer: epochs of truncated unrolls, with checkpoints, resume and logging.

An *epoch* is one fresh optimizee (new initialisation, new minibatch stream) optimized for ``epoch_len`` steps by the
learned optimizer, cut into windows of ``unroll`` steps; after every window the L2O weights get one meta-update.
All randomness derives from ``(seed, epoch, step)`` through stateless RNG, so a resumed run is bit-identical to an
uninterrupted one.

Options from the paper and its TF baselines:

* curriculum (``curriculum=[100, 200, 500]``): the horizon grows to the next length when the validation loss has not
  improved for ``curriculum_patience`` validations (the best weights are restored first);
* imitation (``imitation_prob=0.3``): with that probability an epoch trains the L2O to reproduce Adam(0.01)'s steps;
* random scaling (``random_scale=b``): per epoch, the objective becomes f(θ ⊙ r), r = exp(U(−b, b)) per coordinate;
* a task family (``task={"name": "family", …}``, :mod:`tf_symbolic_l2o.tasks.family`): each epoch draws one member
  task and one horizon; the epoch's meta-loss is divided by the member's loss scale at that horizon — measured at
  the start as learning-rate-tuned Adam's mean training loss over that many steps, and kept in ``config.json`` — so
  that no task and no horizon dominates; validation averages the members' final losses at their longest horizons,
  each divided by its scale there, and ``metrics.csv`` gains a ``task`` column.

A run directory holds ``config.json``, ``metrics.csv``, ``checkpoints/`` (``tf.train.CheckpointManager``),
``tensorboard/`` and, at the end, ``l2o/`` (config, weights and a SavedModel of the selected L2O).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import tensorflow as tf

from tf_symbolic_l2o.baselines import Baseline
from tf_symbolic_l2o.io import atomic_write_json, atomic_write_text, read_json
from tf_symbolic_l2o.meta.config import TrainConfig
from tf_symbolic_l2o.meta.learner import LSTMLearner, MetaLearner
from tf_symbolic_l2o.meta.unroll import Unroller, make_rollout
from tf_symbolic_l2o.seeds import BATCHES, COIN, INIT, LR_TUNING, SCALE, TRAINING, VALIDATION, step_seed
from tf_symbolic_l2o.tasks.base import Task
from tf_symbolic_l2o.tasks.family import draw_member, is_family, member_horizons, member_norm
from tf_symbolic_l2o.tasks.registry import make_task, task_keys as _task_keys

#: Adam learning rates tried when a family member's loss scale is measured (the best mean training loss wins).
NORM_LR_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)

#: How ``config.json`` names a model given as an object (it cannot be rebuilt from the file).
IN_MEMORY = "<in-memory model"


def task_record(task: Task) -> dict:
    """The task spec ``config.json`` records for a task given as an object: its registry spec (``model`` a
    ``.keras`` path or a ``keras.applications`` name, or ``<in-memory model NAME>`` for a model object)."""
    config = task.config()
    if config.get("name") == "keras" and config.get("model") is None:
        config = {**config, "model": f"{IN_MEMORY} {config.get('model_name', '')}>"}
    allowed = _task_keys(config.get("name"))
    return {k: v for k, v in config.items() if k in allowed}


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored."""


class MetaTrainer:
    """Runs (or resumes) the meta-learning of a :class:`~tf_symbolic_l2o.meta.learner.MetaLearner` into a run
    directory: an LSTM optimizer (the default, :class:`~tf_symbolic_l2o.meta.learner.LSTMLearner`) or a rule's
    constants (:class:`~tf_symbolic_l2o.tune.tuner.RuleLearner`).

    Args:
        config: the run's config (the learner's ``config_class``; ``None`` with ``resume``).
        run_dir: where everything is written.
        resume: continue from the latest checkpoint in ``run_dir`` (the saved config wins, except ``epochs``).
        progress: a callback ``progress(done, total, info)`` called after every epoch (epochs done, epochs in
            all, a short text with the epoch's losses); ``None``: none.
        stop_after_epoch: stop (after checkpointing) once this epoch is done, as an interrupted run would.
        log: a callable taking one line of text (start, resume, validation and curriculum events).
        epochs: with ``resume``, a new total number of epochs (to extend a finished run); ``None`` keeps it.
        strategy: a ``tf.distribute`` strategy: the optimizee's minibatch is split across its replicas (the
            inner gradients and the meta-gradient are all-reduced), so the run equals a single-device run up to
            float rounding. ``None``: the current (default) strategy.
        learner: what is meta-learned (default: an :class:`~tf_symbolic_l2o.meta.learner.LSTMLearner`).
        estimator: the window estimator that computes and applies meta-gradients (default: an
            :class:`~tf_symbolic_l2o.meta.unroll.Unroller` built from the config); it must offer ``train_window``,
            ``imitation_window`` and ``jit_compile`` like the Unroller.
        task: the optimizee, when it is not built from ``config.task``: e.g. a
            :class:`~tf_symbolic_l2o.tasks.keras_task.KerasModelTask` of a model object and a ``tf.data.Dataset``.
            ``config.json`` then records :func:`task_record` of it, and resuming such a run needs the same task
            again.
    """

    def __init__(self, config: TrainConfig | None, run_dir: str | Path, resume: bool = False,
                 progress: Callable[[int, int, str], None] | None = None, stop_after_epoch: int | None = None,
                 log: Callable[[str], None] | None = None, epochs: int | None = None, strategy=None,
                 learner: MetaLearner | None = None, estimator=None, task: Task | None = None):
        self.learner = learner or LSTMLearner()
        self.run_dir = Path(run_dir)
        self.resume = resume
        if isinstance(progress, bool):  # the pre-0.2 flag: True drew a rich bar inside the library
            warnings.warn("MetaTrainer(progress=True/False) is deprecated; pass a callback progress(done, total, "
                          "info) or None (True now prints one line per epoch)", DeprecationWarning, stacklevel=2)
            progress = _print_progress if progress else None
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be a callable progress(done, total, info) or None, got {progress!r}")
        self.progress = progress or (lambda done, total, info: None)
        self.stop_after_epoch = stop_after_epoch
        self.log = log or (lambda msg: None)
        if resume:
            config = self._saved_config(epochs)
        elif (self.run_dir / "checkpoints").exists() and any((self.run_dir / "checkpoints").iterdir()):
            raise FileExistsError(f"{self.run_dir} already holds a run; resume it or choose another directory")
        if task is not None and not resume:
            config = dataclasses.replace(config, task=task_record(task))
        elif task is None and str(config.task.get("model", "")).startswith(IN_MEMORY):
            raise ValueError(f"the run in {self.run_dir} was made on a model object ({config.task['model']}); "
                             f"resume it with task=KerasModelTask(model, data), the same model and data")
        self.family = config.task if is_family(config.task) else None
        if self.family is not None and estimator is not None:
            raise ValueError("a custom estimator meta-trains on one task; use a single task, not a task family")
        self.tasks: list[Task] = ([make_task(m["task"], split="meta_train") for m in self.family["members"]]
                                  if self.family is not None else
                                  [task if task is not None else make_task(config.task, split="meta_train")])
        self.task: Task = self.tasks[0]
        self.num_coords = self.task.num_params
        if self.family is not None and any(m["norm"] is None for m in self.family["members"]):
            config = dataclasses.replace(config, task=self._measure_norms(config))
            self.family = config.task
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.learned = self.learner.build(config)
            self.meta_optimizer = self.learner.meta_optimizer(config)
            self.meta_optimizer.build(self.learned.trainable_variables)
        self.teacher = Baseline("adam", config.imitation_lr) if config.imitation_prob > 0 else None
        self.unrollers = [estimator or Unroller(t, self.learned, self.meta_optimizer, config.unroll,
                                                config.jit_compile, config.meta_clip_norm, self.teacher,
                                                strategy=strategy, second_order=config.second_order)
                          for t in self.tasks]
        self.unroller = self.unrollers[0]
        self.rollouts = [make_rollout(t, self.learned, self.unroller.jit_compile) for t in self.tasks]
        self.rollout = self.rollouts[0]
        # run state that lives in the checkpoint
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.stage = tf.Variable(0, dtype=tf.int64, trainable=False, name="curriculum_stage")
        self.best_val = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_val")
        self.bad_vals = tf.Variable(0, dtype=tf.int64, trainable=False, name="validations_without_improvement")
        self.best_weights = [tf.Variable(w, trainable=False, name=f"best_{i}")
                             for i, w in enumerate(self.learned.weights)]
        self.checkpoint = tf.train.Checkpoint(l2o_weights=list(self.learned.weights),
                                              meta_optimizer=self.meta_optimizer, epoch=self.epoch, stage=self.stage,
                                              best_val=self.best_val, bad_vals=self.bad_vals,
                                              best_weights=self.best_weights)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.run_dir / "checkpoints"),
                                                  max_to_keep=config.keep_checkpoints)
        self.metrics: list[dict] = []

    def _saved_config(self, epochs: int | None):
        if not (self.run_dir / "config.json").is_file():
            raise FileNotFoundError(f"no run to resume in {self.run_dir} (config.json missing)")
        saved = read_json(self.run_dir / "config.json", "run config")
        if not isinstance(saved, dict):
            raise ValueError(f"{self.run_dir / 'config.json'} does not hold a training config")
        if epochs is not None:
            saved["epochs"] = int(epochs)
        return self.learner.config_class.from_dict(saved)

    def _measure_norms(self, config) -> dict:
        """The family spec with every missing member ``norm`` filled in: with normaliser ``adam``, one run of Adam
        over the member's longest horizon for each learning rate of :data:`NORM_LR_GRID` (from a seed of the run's
        own ``LR_TUNING`` stream); the run with the lowest mean loss gives, for each of the member's horizons h,
        the mean of its first h losses."""
        from tf_symbolic_l2o.functional.registry import make_optimizer
        from tf_symbolic_l2o.harness import Harness, grid_search

        family = config.task
        members = []
        for i, (member, task) in enumerate(zip(family["members"], self.tasks)):
            if member["norm"] is None:
                steps = max(member_horizons(member, config.horizons))
                lr = tf.Variable(NORM_LR_GRID[0], dtype=tf.float32, trainable=False)
                harness = Harness(task, make_optimizer("adam", lr))
                curves = []

                def score(value: float) -> float:
                    lr.assign(value)
                    curves.append(harness.run(step_seed(config.seed, LR_TUNING, i), steps).losses)
                    return float(np.mean(curves[-1])) if np.all(np.isfinite(curves[-1])) else float("inf")

                error = (f"cannot measure the loss scale of family member {member['label']!r}: Adam diverged at "
                         f"every learning rate of {list(NORM_LR_GRID)}; give the member a 'norm'")
                best = grid_search(NORM_LR_GRID, score, error=error).index
                norm = {str(h): float(np.mean(curves[best][:h]))
                        for h in sorted(member_horizons(member, config.horizons))}
                if not min(norm.values()) > 0:
                    raise ValueError(f"cannot measure the loss scale of family member {member['label']!r}: Adam "
                                     f"reached loss 0; give the member a 'norm'")
                self.log(f"loss scale of {member['label']} (Adam lr {NORM_LR_GRID[best]:g}): "
                         + ", ".join(f"{v:.4g} at {h} steps" for h, v in norm.items()))
                member = {**member, "norm": norm}
            members.append(member)
        return {**family, "members": members}

    def describe(self) -> str:
        """One line: what is meta-learned, on what, for how long, and where."""
        cfg = self.config
        if self.family is not None:
            labels = ", ".join(m["label"] for m in self.family["members"])
            return (f"{self.learner.label} {self.learner.describe(self.learned, cfg)} on the task family "
                    f"{self.family['family']} ({labels}): {cfg.epochs} epochs, one member and horizon drawn per "
                    f"epoch, unroll {cfg.unroll}, {self.strategy.num_replicas_in_sync} replica(s), run directory "
                    f"{self.run_dir}")
        dataset = f" / {cfg.task['dataset']}" if "dataset" in cfg.task else ""
        return (f"{self.learner.label} {self.learner.describe(self.learned, cfg)} on {cfg.task['name']}{dataset}: "
                f"{cfg.epochs} epochs, horizon {'→'.join(str(h) for h in cfg.horizons)}, unroll {cfg.unroll}, "
                f"{self.num_coords} optimizee parameters, {self.strategy.num_replicas_in_sync} replica(s), "
                f"run directory {self.run_dir}")

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
    def _fresh_run(self, seed, task: Task | None = None):
        task = task or self.task
        theta = task.flatten(task.init_params(step_seed(seed, INIT)))
        if self.config.random_scale <= 0:
            return theta, None  # r = 1
        b = self.config.random_scale
        scale = tf.exp(tf.random.stateless_uniform([task.num_params], step_seed(seed, SCALE), -b, b))
        return theta / scale, scale

    def _train_epoch(self, epoch: int) -> dict:
        cfg = self.config
        seed = step_seed(cfg.seed, TRAINING, epoch)
        if self.family is not None:
            index, horizon = draw_member(self.family, seed, cfg.horizons)
        else:
            index, horizon = 0, self._horizon()
        task, unroller = self.tasks[index], self.unrollers[index]
        norm = member_norm(self.family["members"][index], horizon) if self.family is not None else 1.0
        unroller.meta_loss_scale.assign(1.0 / norm)
        n = task.num_params
        theta, scale = self._fresh_run(seed, task)
        state = self.learned.init_state(n)
        coin = float(tf.random.stateless_uniform([], step_seed(seed, COIN)))
        imitate = self.teacher is not None and coin < cfg.imitation_prob
        teacher_state = self.teacher.init_state(n) if imitate else None
        batch_seed = step_seed(seed, BATCHES)
        meta_losses, grad_norms = [], []
        last = float("nan")
        for w in range(horizon // cfg.unroll):
            step0 = tf.constant(w * cfg.unroll, tf.int32)
            if imitate:
                ml, last, grad_norm, theta, state, teacher_state = unroller.imitation_window(
                    theta, state, teacher_state, step0, batch_seed, scale)
            else:
                ml, last, grad_norm, theta, state = unroller.train_window(theta, state, step0, batch_seed, scale)
            meta_losses.append(float(ml))
            grad_norms.append(float(grad_norm))
            last = float(last)
        row = {"epoch": epoch}
        if self.family is not None:  # losses in units of the member's loss scale
            row["task"] = self.family["members"][index]["label"]
        return {**row, "horizon": horizon, "mode": "imitation" if imitate else "unroll",
                "meta_loss": float(np.mean(meta_losses)) / (1.0 if imitate else norm), "final_loss": last / norm,
                "meta_grad_norm": float(np.mean(grad_norms))}

    def validate(self, horizon: int | None = None) -> float:
        """Mean final-loss (average of the last 10 % of steps) over ``val_runs`` fixed validation runs; for a task
        family, the mean over its members of that loss divided by the member's loss scale, each at the member's
        longest horizon (unless ``horizon`` is given)."""
        if self.family is None:
            return self._validate_task(0, horizon or self._horizon())
        finals = []
        for i, m in enumerate(self.family["members"]):
            h = horizon or max(member_horizons(m, self.config.horizons))
            finals.append(self._validate_task(i, h) / member_norm(m, h))
        return float(np.mean(finals))

    def _validate_task(self, index: int, horizon: int) -> float:
        task, rollout = self.tasks[index], self.rollouts[index]
        tail = max(1, horizon // 10)
        finals = []
        for r in range(self.config.val_runs):
            seed = step_seed(self.config.seed, VALIDATION, r)
            theta, scale = self._fresh_run(seed, task)
            _, _, losses = rollout(theta, self.learned.init_state(task.num_params), step_seed(seed, BATCHES),
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
            for b, w in zip(self.best_weights, self.learned.weights):
                b.assign(w)
            return
        self.bad_vals.assign_add(1)
        if self.config.curriculum and int(self.bad_vals.numpy()) >= self.config.curriculum_patience:
            if int(self.stage.numpy()) + 1 < len(self.config.horizons):
                for b, w in zip(self.best_weights, self.learned.weights):
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
        if start_epoch == 1:
            self.log(self.describe())
        if (self.learner.validate_at_start or getattr(cfg, "init_from", None)) and cfg.val_every and start_epoch == 1:
            val = self.validate()
            self._after_validation(val)
            self.log(f"validation loss of the starting point: {val:.4g}")
            with writer.as_default(step=0):
                tf.summary.scalar("val_loss", val)
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.time()
            row = self._train_epoch(epoch)
            row.update(self.learner.epoch_metrics(self.learned))
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
            self.progress(epoch, cfg.epochs, _epoch_info(row))
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
            for b, w in zip(self.best_weights, self.learned.weights):
                w.assign(b)
        summary = {"optimizer": self.config.optimizer, "epochs": self.config.epochs,
                   "selected": "best_validation" if use_best else "last",
                   "best_val_loss": float(self.best_val.numpy()) if use_best else None,
                   "train_seconds_this_session": seconds, "num_coords": max(t.num_params for t in self.tasks),
                   "l2o_params": int(sum(np.prod(v.shape) for v in self.learned.trainable_variables)),
                   "jit_compile": self.unroller.jit_compile}
        if self.family is not None:
            summary["family"] = self.family["family"]
            summary["family_tasks"] = [m["label"] for m in self.family["members"]]
        self.learner.export(self.learned, self.config, self.run_dir, summary)
        atomic_write_json(self.run_dir / "summary.json", summary)
        return summary


def _epoch_info(row: dict) -> str:
    """The short text a progress display shows after an epoch."""
    info = f"meta-loss {row['meta_loss']:.3f}  final {row['final_loss']:.3f}"
    return info + (f"  val {row['val_loss']:.3f}" if not math.isnan(row["val_loss"]) else "")


def _print_progress(done: int, total: int, info: str) -> None:
    print(f"epoch {done}/{total}  {info}", flush=True)


def ignored_on_resume(options: dict, kept: tuple[str, ...] = ("epochs",)) -> list[str]:
    """The given options a resumed run ignores: its saved config wins, only ``kept`` options (``epochs``) apply."""
    return sorted(k for k, v in options.items() if v is not None and k not in kept)
