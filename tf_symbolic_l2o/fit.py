"""Compatibility module: the Keras-training API under its former single-module name.

Everything here is re-exported from the modules where it lives:

* :mod:`tf_symbolic_l2o.image_data` — :class:`ImageData`, :func:`image_data` (32×32×3 train / val / test arrays)
  and :func:`epoch_order`;
* :mod:`tf_symbolic_l2o.tasks.keras_models` — :func:`make_model`, :func:`cifar_resnet`, :func:`resnet20`,
  :data:`MODELS`, :data:`BN_MOMENTUM`;
* :mod:`tf_symbolic_l2o.keras_training` — :func:`train`, :func:`tune_lr`, :func:`evaluate`,
  :func:`make_optimizer`, :class:`TrainResult`, :func:`summarize`, :func:`plot_curves`, :func:`write_results` and
  the training protocol they follow.

New code should import from those modules.
"""

from __future__ import annotations

from tf_symbolic_l2o.image_data import ImageData, epoch_order, image_data
from tf_symbolic_l2o.keras_training import (
    DEFAULT_LR,
    HISTORY_COLUMNS,
    OPTIMIZERS,
    TrainResult,
    evaluate,
    make_optimizer,
    plot_curves,
    summarize,
    train,
    tune_lr,
    write_results,
)
from tf_symbolic_l2o.tasks.keras_models import BN_MOMENTUM, MODELS, cifar_resnet, make_model, resnet20

__all__ = [
    "BN_MOMENTUM",
    "DEFAULT_LR",
    "HISTORY_COLUMNS",
    "ImageData",
    "MODELS",
    "OPTIMIZERS",
    "TrainResult",
    "cifar_resnet",
    "epoch_order",
    "evaluate",
    "image_data",
    "make_model",
    "make_optimizer",
    "plot_curves",
    "resnet20",
    "summarize",
    "train",
    "tune_lr",
    "write_results",
]
