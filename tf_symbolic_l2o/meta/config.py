"""The configuration of a meta-training run (``config.json`` of a run directory)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tf_symbolic_l2o.learned.registry import available_optimizers
from tf_symbolic_l2o.tasks.registry import normalize_task_spec


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a meta-training run (saved as ``config.json``).

    Args:
        optimizer: ``dm``, ``rp``, ``rp_s`` or ``rp_si``.
        l2o: overrides of the preset (``features``, ``preproc``, ``lstm``, …).
        task: task spec (see :mod:`tf_symbolic_l2o.tasks.registry`); default MLP 784-30-20-10 on the MNIST subset.
            A task family (:mod:`tf_symbolic_l2o.tasks.family`) draws a member and a horizon per epoch.
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
        for field in dataclasses.fields(self):  # no setting takes NaN or ±inf
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value}")
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
        if self.task.get("name") == "family":
            if self.curriculum:
                raise ValueError("a task family gives each member its own horizons; drop the curriculum")
            for member in self.task["members"]:
                bad = [h for h in member["horizons"] or [] if h % self.unroll]
                if bad:
                    raise ValueError(f"task family member {member['label']!r}: horizon(s) {bad} are not multiples "
                                     f"of unroll {self.unroll}; choose an unroll that divides every horizon")

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
