"""Meta-tuning a symbolic rule's constants on a real optimizee (``tfl2o tune``).

Stage 5 of the pipeline: the distilled rule's few constants (or the ψ family's W and γ) are trained by the same
truncated unrolls that meta-train an LSTM optimizer — fresh optimizee runs of ``epoch_len`` steps cut into windows of
``unroll`` steps, one meta-update per window — on a CNN or a CIFAR-style ResNet. The
:class:`~tf_symbolic_l2o.meta.trainer.MetaTrainer` runs it whole (stateless seeds, checkpoints and exact resume,
TensorBoard, best-validation selection, progress, ``tf.distribute``) with a :class:`RuleLearner`, which says what is
trained and what is written:

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

from tf_symbolic_l2o.meta.config import TrainConfig
from tf_symbolic_l2o.meta.learner import MetaLearner
from tf_symbolic_l2o.meta.trainer import MetaTrainer
from tf_symbolic_l2o.rules.rule import Rule
from tf_symbolic_l2o.tasks.registry import normalize_task_spec, task_spec
from tf_symbolic_l2o.tune.tunable import TunableRule, check_tunable, resolve_rule

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


def tune_config(rule: str | None, task: str | None = None, dataset: str | None = None, data_dir=None,
                depth: int | None = None, batch_size: int | None = None, init: str | None = None,
                model: str | None = None, input_shape: list[int] | None = None, family: str | None = None,
                **options) -> TuneConfig:
    """A tuning config from command-line style arguments: ``rule`` is resolved (a rule.json, a shipped rule's name,
    or ``psi[:FEATURES[:LAGS]]``), the task options (``None`` = not given; a ``model`` means the ``keras`` task) are
    merged over :data:`DEFAULT_TUNE_TASK` when the task is the default CNN, ``family`` (a name or JSON file) gives a
    task family instead, and ``options`` are :class:`TuneConfig` fields."""
    if rule is None:
        raise ValueError("give the RULE to tune (a rule.json, a shipped rule name or psi), or --resume a run")
    spec = task_spec(task, DEFAULT_TUNE_TASK, dataset=dataset, data_dir=data_dir, depth=depth, batch_size=batch_size,
                     init=init, model=model, input_shape=input_shape, family=family)
    return TuneConfig(rule=resolve_rule(rule).to_dict(), **({"task": spec} if spec else {}), **options)


class RuleLearner(MetaLearner):
    """A rule's constants as what is meta-learned (a :class:`~tf_symbolic_l2o.tune.tunable.TunableRule`); the run's
    artifact is the tuned ``rule.json``, and every epoch's metrics row carries the constants by name."""

    config_class = TuneConfig
    label = "meta-tune"
    validate_at_start = True

    def build(self, config: TuneConfig) -> TunableRule:
        return TunableRule(config.start_rule, name="rule")

    def meta_optimizer(self, config: TuneConfig) -> keras.optimizers.Optimizer:
        if config.meta_optimizer == "adam":
            return keras.optimizers.Adam(config.meta_lr)
        return keras.optimizers.SGD(config.meta_lr, momentum=config.meta_momentum)

    def epoch_metrics(self, learned: TunableRule) -> dict[str, float]:
        return dict(zip(learned.parameter_names, learned.values().tolist()))

    def describe(self, learned: TunableRule, config: TuneConfig) -> str:
        return (f"{config.start_rule.infix} ({learned.params.shape[0]} constants; {config.meta_optimizer} lr "
                f"{config.meta_lr}, {'second' if config.second_order else 'first'}-order meta-gradients)")

    def export(self, learned: TunableRule, config: TuneConfig, run_dir: Path, summary: dict) -> None:
        start = config.start_rule
        tuned = learned.tuned_rule({
            "from": start.metadata.get("source") or start.infix, "initial_constants": start.constants,
            "task": config.task, "epochs": config.epochs, "epoch_len": config.horizons[-1], "unroll": config.unroll,
            "meta_optimizer": config.meta_optimizer, "meta_lr": config.meta_lr, "seed": config.seed,
            "selected": summary["selected"], "best_val_loss": summary["best_val_loss"]})
        tuned.save(Path(run_dir) / "rule.json")
        summary["constants"] = self.epoch_metrics(learned)


def MetaTuner(config: TuneConfig | None, run_dir: str | Path, **kwargs) -> MetaTrainer:  # noqa: N802 - API name
    """A :class:`~tf_symbolic_l2o.meta.trainer.MetaTrainer` of a rule's constants (a :class:`RuleLearner`): runs
    or resumes the meta-tuning of a rule into a run directory; keyword arguments as for the MetaTrainer."""
    return MetaTrainer(config, run_dir, learner=RuleLearner(), **kwargs)


def load_tuned_rule(run_dir: str | Path) -> Rule:
    """The tuned rule of a finished tune run."""
    path = Path(run_dir) / "rule.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no tuned rule (rule.json missing); finish the run with: "
                                f"tfl2o tune --resume --out {run_dir}")
    return Rule.load(path)
