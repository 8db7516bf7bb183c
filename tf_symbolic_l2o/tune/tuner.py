"""Meta-tuning a symbolic rule's constants on a real optimizee (``tfl2o tune``).

Stage 5 of the pipeline: the distilled rule's few constants (or the ψ family's W and γ) are trained by the same
truncated unrolls that meta-train an LSTM optimizer — fresh optimizee runs of ``epoch_len`` steps cut into windows of
``unroll`` steps, one meta-update per window — on a CNN or a CIFAR-style ResNet. It reuses
:class:`~tf_symbolic_l2o.meta.trainer.MetaTrainer` whole (stateless seeds, checkpoints and exact resume, TensorBoard,
best-validation selection, progress, ``tf.distribute``); only what is trained and what is written differ:

* the trained object is a :class:`~tf_symbolic_l2o.tune.tunable.TunableRule` (a handful of floats; the optimizer
  state is the rule's features, Adam-sized, with no LSTM state);
* the meta-optimizer is Adam (default) or SGD with momentum 0.9 (the paper's), and the meta-gradient is by default
  the exact (second-order) one;
* the run directory ends with ``rule.json`` (the tuned rule, canonical format) instead of ``l2o/``.

A tune run directory holds ``config.json`` (with the starting rule, so ``--resume`` needs nothing else),
``metrics.csv`` (one column per constant), ``checkpoints/``, ``tensorboard/``, ``rule.json`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

from tf_symbolic_l2o.meta.trainer import MetaTrainer, TrainConfig
from tf_symbolic_l2o.rules.rule import Rule
from tf_symbolic_l2o.tasks.registry import normalize_task_spec
from tf_symbolic_l2o.tune.tunable import TunableRule, check_tunable

META_OPTIMIZERS = ("sgd", "adam")
#: The default optimizee: the paper's small CNN on the offline MNIST subset at 32×32×3.
DEFAULT_TUNE_TASK = {"name": "cnn", "dataset": "mnist_subset_32", "batch_size": 64}


@dataclasses.dataclass
class TuneConfig(TrainConfig):
    """A meta-tuning run (saved as ``config.json``): the fields of :class:`TrainConfig` plus

    Args:
        rule: the starting rule as a ``Rule.to_dict()`` dict (required).
        meta_optimizer: ``adam`` (default) or ``sgd`` (momentum ``meta_momentum``, the paper's choice).
        meta_momentum: the SGD meta-optimizer's momentum.

    Defaults differ from meta-training: the task is the small CNN (``DEFAULT_TUNE_TASK``), 20 epochs, validation
    (4 runs) every 2 epochs and of the starting rule, Adam(0.003) on the constants (which are relative to their
    starting values, see :class:`~tf_symbolic_l2o.tune.tunable.TunableRule`: 0.003 ≈ 0.3 % per meta-step), and
    **second-order** meta-gradients: the paper's first-order meta-gradient drops Hessian terms that matter for a
    rule, whose step reacts to the gradients it produces (the comparison behind this default is in the README's
    "Tuning results"). ``second_order=False`` gives the cheaper first-order variant, whose memory does not grow
    with the optimizee's activations. ``optimizer`` is always ``"rule"``; imitation does not apply to rules.
    """

    optimizer: str = "rule"
    task: dict = dataclasses.field(default_factory=lambda: normalize_task_spec(DEFAULT_TUNE_TASK))
    epochs: int = 20
    meta_lr: float = 0.003
    val_every: int = 2
    val_runs: int = 4
    second_order: bool = True
    rule: dict | None = None
    meta_optimizer: str = "adam"
    meta_momentum: float = 0.9

    def _check_optimizer(self) -> None:
        if self.optimizer != "rule":
            raise ValueError(f"a tune config's optimizer is 'rule', got {self.optimizer!r}")
        if self.rule is None:
            raise ValueError("a tune config needs the starting rule (rule=...)")
        if isinstance(self.rule, Rule):
            self.rule = self.rule.to_dict()
        check_tunable(Rule.from_dict(self.rule))  # refuses rules without constants and malformed ties
        if self.meta_optimizer not in META_OPTIMIZERS:
            raise ValueError(f"unknown meta-optimizer {self.meta_optimizer!r}; use one of {', '.join(META_OPTIMIZERS)}")
        if not 0.0 <= self.meta_momentum < 1.0:
            raise ValueError(f"meta_momentum must be in [0, 1), got {self.meta_momentum}")
        if self.imitation_prob:
            raise ValueError("imitation does not apply to meta-tuning a rule; leave imitation_prob at 0")

    @property
    def start_rule(self) -> Rule:
        return Rule.from_dict(self.rule)


class MetaTuner(MetaTrainer):
    """Runs (or resumes) the meta-tuning of a rule into a run directory; arguments as :class:`MetaTrainer`."""

    config_class = TuneConfig
    progress_label = "meta-tune"
    validate_at_start = True

    def _make_l2o(self) -> TunableRule:
        return TunableRule(self.config.start_rule, name="rule")

    def _make_meta_optimizer(self) -> keras.optimizers.Optimizer:
        cfg = self.config
        if cfg.meta_optimizer == "adam":
            return keras.optimizers.Adam(cfg.meta_lr)
        return keras.optimizers.SGD(cfg.meta_lr, momentum=cfg.meta_momentum)

    def _train_epoch(self, epoch: int) -> dict:
        row = super()._train_epoch(epoch)
        row.update(self.constants())
        return row

    def constants(self) -> dict[str, float]:
        """The current parameters by name."""
        return dict(zip(self.l2o.parameter_names, self.l2o.values().tolist()))

    def _export(self, summary: dict) -> None:
        start = self.config.start_rule
        tuned = self.l2o.tuned_rule(
            tuned={"from": start.metadata.get("source") or start.infix, "initial_constants": start.constants,
                   "task": self.config.task, "epochs": self.config.epochs, "epoch_len": self.config.horizons[-1],
                   "unroll": self.config.unroll, "meta_optimizer": self.config.meta_optimizer,
                   "meta_lr": self.config.meta_lr, "seed": self.config.seed,
                   "selected": summary["selected"], "best_val_loss": summary["best_val_loss"]})
        tuned.save(self.run_dir / "rule.json")
        summary["constants"] = self.constants()


def load_tuned_rule(run_dir: str | Path) -> Rule:
    """The tuned rule of a finished tune run."""
    path = Path(run_dir) / "rule.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no tuned rule (rule.json missing); finish the run with: "
                                f"tfl2o tune --resume --out {run_dir}")
    return Rule.load(path)
