"""What is meta-learned: one interface for the meta-trainer, implemented by the LSTM optimizers and by tunable rules.

:class:`~tf_symbolic_l2o.meta.trainer.MetaTrainer` runs truncated unrolls, checkpoints, validation and resume for any
:class:`MetaLearner`. A learner says which run config it reads, builds the optimizer whose weights φ are trained
(a coordinate-wise optimizer with ``weights`` / ``trainable_variables``, ``init_state`` and ``update``), builds the
meta-optimizer, adds its own numbers to each epoch's metrics row, and writes the finished run's artifact.

* :class:`LSTMLearner`: the LSTM optimizers (DM, RNNprop); the artifact is ``l2o/``;
* :class:`~tf_symbolic_l2o.tune.tuner.RuleLearner`: a symbolic rule's constants; the artifact is ``rule.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from tf_symbolic_l2o.learned.io import load_l2o, save_l2o
from tf_symbolic_l2o.learned.registry import make_l2o
from tf_symbolic_l2o.meta.config import TrainConfig


class MetaLearner:
    """Base class of what a :class:`~tf_symbolic_l2o.meta.trainer.MetaTrainer` meta-learns.

    Attributes:
        config_class: the run config this learner reads (``config.json`` is loaded with it on resume).
        label: what the progress display calls a run (``"meta-train"``, ``"meta-tune"``).
        validate_at_start: also validate the starting weights (epoch 0), so the selected weights are never worse
            than the start on the validation runs — right for tuning a rule that already works, pointless for a
            randomly initialised LSTM.
    """

    config_class: type
    label = "meta-train"
    validate_at_start = False

    def build(self, config) -> Any:
        """The optimizer whose weights are meta-learned."""
        raise NotImplementedError

    def meta_optimizer(self, config) -> keras.optimizers.Optimizer:
        """The optimizer of the meta-parameters (default: Adam at ``config.meta_lr``)."""
        return keras.optimizers.Adam(config.meta_lr)

    def epoch_metrics(self, learned) -> dict[str, float]:
        """Numbers added to every epoch's metrics row (and TensorBoard)."""
        return {}

    def describe(self, learned, config) -> str:
        """What is being meta-learned, in a few words (the run's first log line)."""
        raise NotImplementedError

    def export(self, learned, config, run_dir: Path, summary: dict) -> None:
        """Write the finished run's artifact into ``run_dir`` (``summary`` may be extended)."""
        raise NotImplementedError


class LSTMLearner(MetaLearner):
    """The coordinate-wise LSTM optimizers (``config.optimizer``: dm, rp, rp_s, rp_si), optionally started from a
    saved optimizer's weights (``config.init_from``)."""

    config_class = TrainConfig

    def build(self, config):
        l2o = make_l2o(config.optimizer, **{"seed": config.seed, **config.l2o})
        if config.init_from:
            start = load_l2o(config.init_from)
            got, want = [tuple(w.shape) for w in start.weights], [tuple(w.shape) for w in l2o.weights]
            if got != want:
                raise ValueError(f"cannot start from {config.init_from}: its weights have shapes {got}, "
                                 f"{config.optimizer} needs {want}")
            l2o.set_weights(start.get_weights())
        return l2o

    def describe(self, learned, config) -> str:
        return config.optimizer

    def export(self, learned, config, run_dir: Path, summary: dict) -> None:
        save_l2o(learned, Path(run_dir) / "l2o", metadata={"train_config": config.to_dict(), **summary})
