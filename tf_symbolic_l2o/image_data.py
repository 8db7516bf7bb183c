"""Image-classification arrays for Keras training: train / validation / test parts and the per-epoch order.

:func:`image_data` turns a dataset of :mod:`tf_symbolic_l2o.data` into an :class:`ImageData` of 32×32×3 arrays:
the dataset's train split minus a class-stratified validation part (``val_fraction``) is the training part, the
validation part is what learning rates are selected on, and the test split is only ever reported.
:func:`epoch_order` is the order in which an epoch of a seeded run visits the training examples
(:func:`tf_symbolic_l2o.keras_training.train` uses it, so every strategy and worker sees the same batches).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tf_symbolic_l2o.data import load_dataset, to_rgb32

__all__ = ["ImageData", "epoch_order", "image_data"]


@dataclasses.dataclass
class ImageData:
    """Image-classification arrays: float32 ``[N, H, W, C]`` images, int32 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self):
        for part in ("train", "val", "test"):
            x = np.asarray(getattr(self, f"x_{part}"), np.float32)
            y = np.asarray(getattr(self, f"y_{part}"), np.int32)
            if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(f"ImageData {part}: need images [N, H, W, C] and labels [N], got "
                                 f"{x.shape} and {y.shape}")
            setattr(self, f"x_{part}", x)
            setattr(self, f"y_{part}", y)
        if len(self.y_train) == 0:
            raise ValueError("ImageData: the training part is empty")
        if not self.x_train.shape[1:] == self.x_val.shape[1:] == self.x_test.shape[1:]:
            raise ValueError(f"ImageData: image shapes differ between train {self.x_train.shape[1:]}, val "
                             f"{self.x_val.shape[1:]} and test {self.x_test.shape[1:]}")
        self.num_classes = int(self.num_classes)
        for part in ("train", "val", "test"):
            y = getattr(self, f"y_{part}")
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"ImageData {part}: labels must be in [0, {self.num_classes})")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"ImageData(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, input_shape={self.input_shape}, num_classes={self.num_classes})")


def image_data(name: str = "mnist_subset_32", data_dir=None, seed: int = 0, val_fraction: float = 0.1,
               train_limit: int | None = None) -> ImageData:
    """A dataset of :mod:`tf_symbolic_l2o.data` as 32×32×3 train / val / test arrays.

    ``val_fraction`` of the dataset's train split (per class, rounded) is held out as the validation part;
    ``train_limit`` keeps only the first that many of the remaining training examples (quick runs). 28×28×1
    datasets (``mnist``, ``fashion_mnist``) are padded to 32×32 with the background value and repeated to 3 channels,
    like ``mnist_subset_32``. TFDS datasets (``cifar10``) are read from ``data_dir`` and never downloaded.

    Raises:
        ValueError: a bad fraction or limit, or a dataset that is not 32×32×3 / 28×28×1 images.
        tf_symbolic_l2o.data.DatasetUnavailableError: a TFDS dataset that is not prepared under ``data_dir``.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if train_limit is not None and int(train_limit) < 1:
        raise ValueError(f"train_limit must be a positive number of examples, got {train_limit}")
    ds = load_dataset(name, data_dir=data_dir, seed=seed, flatten=False)
    x, y = ds.split("train")
    x_test, y_test = ds.split("test")
    x, x_test = _to_32x32x3(x, ds.name), _to_32x32x3(x_test, ds.name)
    val_idx, train_idx = _stratified_holdout(y, float(val_fraction))
    if train_limit is not None:
        train_idx = train_idx[: int(train_limit)]
    return ImageData(ds.name, x[train_idx], y[train_idx], x[val_idx], y[val_idx], x_test, y_test, ds.num_classes)


def _to_32x32x3(x: np.ndarray, name: str) -> np.ndarray:
    if x.shape[1:] == (32, 32, 3):
        return x
    if x.shape[1:] == (28, 28, 1):
        return to_rgb32(x)
    raise ValueError(f"dataset {name!r} has images of shape {x.shape[1:]}; image_data needs 32x32x3 or 28x28x1 "
                     f"images (e.g. mnist_subset_32, synthetic_cifar, cifar10)")


def _stratified_holdout(y: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(val_idx, train_idx)``: for every class, its first ``round(fraction · count)`` examples (in the dataset's
    seeded order) go to validation; both index arrays keep the dataset's order."""
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        val.append(idx[: int(round(fraction * idx.size))])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(y.shape[0]), val_idx)
    return val_idx, train_idx


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` (1-based) of a run with ``seed`` visits ``n`` training examples."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n))
