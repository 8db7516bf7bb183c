"""Tests for the convolutional / residual optimizees and the random quadratic task.

Parameter counts and forward passes are checked against independently built Keras models; training behaviour with
a few real gradient-descent steps on tiny fake datasets; graph mode and XLA (``jit_compile=True``) on CPU.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.seeds import step_seed
from tf_symbolic_l2o.tasks.base import ClassificationTask, init_param
from tf_symbolic_l2o.tasks.cnn import SmallCNN
from tf_symbolic_l2o.tasks.quadratic import QuadraticTask
from tf_symbolic_l2o.tasks.resnet import VALID_DEPTHS, ResNet


# -- helpers ----------------------------------------------------------------------------------------------
class FakeDataset:
    """The minimal dataset protocol ClassificationTask needs: random images with random labels."""

    def __init__(self, input_shape, num_classes, n_train=64, n_test=32, seed=0):
        rng = np.random.default_rng(seed)
        self.name = "fake"
        self._x = rng.normal(size=(n_train, *input_shape)).astype(np.float32)
        self._y = rng.integers(0, num_classes, size=n_train).astype(np.int32)
        self.x_test = rng.normal(size=(n_test, *input_shape)).astype(np.float32)
        self.y_test = rng.integers(0, num_classes, size=n_test).astype(np.int32)

    def split(self, name):
        return self._x, self._y


def num_params(network) -> int:
    return sum(s.size for s in network.param_specs())


def keras_init(network, seed=0):
    return [init_param(s, step_seed(seed, i), "keras") for i, s in enumerate(network.param_specs())]


def keras_small_cnn(input_shape, num_classes, channels=(6, 12)):
    layers = [keras.Input(input_shape)]
    for c in channels:
        layers += [keras.layers.Conv2D(c, 3, padding="valid", activation="relu"), keras.layers.MaxPooling2D(2)]
    layers += [keras.layers.Flatten(), keras.layers.Dense(num_classes)]
    return keras.Sequential(layers)


def keras_resnet(stage_blocks, widths, input_shape, num_classes):
    """An independent Keras (option-B, PyTorch-padded) BasicBlock ResNet; also returns layers in param order."""
    ordered = []

    def conv_bn(h, c, k, stride):
        if k == 3:
            h = keras.layers.ZeroPadding2D(1)(h)
        conv = keras.layers.Conv2D(c, k, strides=stride, padding="valid", use_bias=False)
        bn = keras.layers.BatchNormalization(epsilon=1e-5)
        ordered.extend([conv, bn])
        return bn(conv(h))

    inp = keras.Input(input_shape)
    h = keras.layers.ReLU()(conv_bn(inp, widths[0], 3, 1))
    c_in = widths[0]
    for stage, (n, c) in enumerate(zip(stage_blocks, widths)):
        for b in range(n):
            stride = 2 if stage > 0 and b == 0 else 1
            out = keras.layers.ReLU()(conv_bn(h, c, 3, stride))
            out = conv_bn(out, c, 3, 1)
            short = conv_bn(h, c, 1, stride) if (stride != 1 or c_in != c) else h
            h = keras.layers.ReLU()(keras.layers.Add()([out, short]))
            c_in = c
    h = keras.layers.GlobalAveragePooling2D()(h)
    dense = keras.layers.Dense(num_classes)
    ordered.append(dense)
    return keras.Model(inp, dense(h)), ordered


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def gd_losses(task, params, batch, lr, steps):
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = task.loss(params, batch)
        grads = tape.gradient(loss, params)
        params = [p - lr * g for p, g in zip(params, grads)]
        losses.append(float(loss))
    losses.append(float(task.loss(params, batch)))
    return losses


# -- SmallCNN ----------------------------------------------------------------------------------------------
def test_small_cnn_param_count_matches_paper_and_keras():
    net = SmallCNN((32, 32, 3), 5)
    # conv(3->6): 3*3*3*6+6 = 168, conv(6->12): 3*3*6*12+12 = 660, fc(6*6*12=432 -> 5): 2165.
    assert num_params(net) == 168 + 660 + 2165 == 2993
    assert num_params(net) == keras_small_cnn((32, 32, 3), 5).count_params()
    mnist = SmallCNN((28, 28, 1), 10)
    assert num_params(mnist) == keras_small_cnn((28, 28, 1), 10).count_params()
    k0 = net.param_specs()[0]
    assert (k0.shape, k0.fan_in, k0.fan_out) == ((3, 3, 3, 6), 27, 54)
    cfg = net.config()
    assert cfg["type"] == "cnn" and json.loads(json.dumps(cfg)) == cfg


def test_small_cnn_matches_keras_forward_and_flat_inputs():
    net = SmallCNN((32, 32, 3), 5)
    model = keras_small_cnn((32, 32, 3), 5)
    params = keras_init(net, seed=3)
    params = [p + 0.1 * tf.random.stateless_normal(p.shape, [7, i]) for i, p in enumerate(params)]  # nonzero biases
    model.set_weights([p.numpy() for p in params])
    x = tf.random.stateless_normal([4, 32, 32, 3], [1, 2])
    logits = net.apply(params, x)
    assert logits.shape == (4, 5)
    np.testing.assert_allclose(logits.numpy(), model(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(net.apply(params, tf.reshape(x, [4, -1])).numpy(), logits.numpy(), atol=1e-6)


def test_small_cnn_validation():
    with pytest.raises(ValueError, match="padding"):
        SmallCNN(padding="FULL")
    with pytest.raises(ValueError, match="too small"):
        SmallCNN((5, 5, 1), 2)
    same = SmallCNN((28, 28, 1), 10, padding="same")
    assert same.feature_shape == (7, 7, 12)


# -- ResNet ----------------------------------------------------------------------------------------------
def test_resnet18_param_count():
    net = ResNet(18, (32, 32, 3), 10)
    model, _ = keras_resnet((2, 2, 2, 2), (64, 128, 256, 512), (32, 32, 3), 10)
    assert num_params(net) == trainable_count(model) == 11_173_962  # kuangliu ResNet18, BN affine included


def test_resnet_6n2_param_counts():
    def formula(n, w=(16, 32, 64), classes=10):
        conv_bn = lambda k, ci, co: k * k * ci * co + 2 * co  # noqa: E731
        total = conv_bn(3, 3, w[0])
        c_in = w[0]
        for c in w:
            for _ in range(n):
                total += conv_bn(3, c_in, c) + conv_bn(3, c, c) + (conv_bn(1, c_in, c) if c_in != c else 0)
                c_in = c
        return total + c_in * classes + classes

    for depth in (8, 20, 32):
        n = (depth - 2) // 6
        net = ResNet(depth)
        model, _ = keras_resnet((n, n, n), (16, 32, 64), (32, 32, 3), 10)
        assert num_params(net) == trainable_count(model) == formula(n)
    assert num_params(ResNet(20)) == 272_474  # ≈ 0.27M
    wide = ResNet(8, width_multiplier=2)
    assert num_params(wide) == formula(1, (32, 64, 128))
    nonorm = ResNet(8, norm="none")
    assert not any(s.kind in ("gamma", "beta") for s in nonorm.param_specs())
    specs = ResNet(8).param_specs()
    assert specs[0].fan_in == 27 and specs[0].fan_out == 9 * 16
    assert [s.kind for s in specs[:3]] == ["kernel", "gamma", "beta"]
    cfg = ResNet(20).config()
    assert cfg["type"] == "resnet" and json.loads(json.dumps(cfg)) == cfg


def test_resnet_invalid_arguments():
    with pytest.raises(ValueError, match=r"depth 19.*20"):
        ResNet(19)
    assert 18 in VALID_DEPTHS and 56 in VALID_DEPTHS
    with pytest.raises(ValueError, match="norm"):
        ResNet(20, norm="layer")


def test_resnet_logits_shapes():
    x = tf.random.stateless_normal([2, 32, 32, 3], [0, 1])
    for depth in (18, 20):
        net = ResNet(depth, num_classes=7)
        assert net.apply(keras_init(net), x).shape == (2, 7)
    net = ResNet(8, (28, 28, 1), 10, norm="none")
    assert net.apply(keras_init(net), tf.zeros([3, 784])).shape == (3, 10)


def test_resnet8_matches_keras_forward_in_training_mode():
    net = ResNet(8, (16, 16, 3), 5)
    model, ordered = keras_resnet((1, 1, 1), (16, 32, 64), (16, 16, 3), 5)
    params = keras_init(net, seed=1)
    params = [p + 0.1 * tf.random.stateless_normal(p.shape, [9, i]) for i, p in enumerate(params)]
    it = iter(params)
    for layer in ordered:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b = next(it), next(it)
            _, _, mm, mv = layer.get_weights()
            layer.set_weights([g.numpy(), b.numpy(), mm, mv])
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights([next(it).numpy(), next(it).numpy()])
        else:
            layer.set_weights([next(it).numpy()])
    assert next(it, None) is None
    x = tf.random.stateless_normal([6, 16, 16, 3], [4, 4])
    np.testing.assert_allclose(net.apply(params, x).numpy(), model(x, training=True).numpy(), atol=1e-4)


# -- training: real gradient steps ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cnn", "resnet8"])
def test_gradient_descent_reduces_loss(kind):
    if kind == "cnn":
        net, shape, lr = SmallCNN((32, 32, 3), 5), (32, 32, 3), 0.01
    else:
        net, shape, lr = ResNet(8, (16, 16, 3), 5), (16, 16, 3), 0.1
    task = ClassificationTask(net, FakeDataset(shape, 5), batch_size=16, init="keras")
    params = task.init_params(0)
    batch = task.sample_batch(step_seed(0, 1))
    losses = gd_losses(task, params, batch, lr, steps=10)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # small enough step: monotone descent
    metrics = task.evaluate(params)
    assert set(metrics) == {"test_loss", "test_accuracy"}


@pytest.mark.parametrize("kind", ["cnn", "resnet8"])
def test_xla_train_step_matches_eager(kind):
    net = SmallCNN((32, 32, 3), 5) if kind == "cnn" else ResNet(8, (16, 16, 3), 5)
    shape = (32, 32, 3) if kind == "cnn" else (16, 16, 3)
    task = ClassificationTask(net, FakeDataset(shape, 5), batch_size=8, init="paper")

    def step(params, seed):
        batch = task.sample_batch(seed)
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = task.loss(params, batch)
        grads = tape.gradient(loss, params)
        return loss, [p - 0.1 * g for p, g in zip(params, grads)]

    params = task.init_params(5)
    seed = step_seed(5, 0)
    loss_e, new_e = step(params, seed)
    loss_x, new_x = tf.function(step, jit_compile=True)(params, seed)
    np.testing.assert_allclose(float(loss_x), float(loss_e), rtol=1e-4)
    for a, b in zip(new_x, new_e):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert abs(float(loss_e) - np.log(5)) < 0.1  # N(0, 0.01²) init: near-uniform predictions


# -- quadratic -------------------------------------------------------------------------------------------------
def test_quadratic_optimum_and_gradient():
    task = QuadraticTask(dim=10, problem_seed=3)
    w, y = task.w.numpy().astype(np.float64), task.y.numpy().astype(np.float64)
    theta_star, *_ = np.linalg.lstsq(w, y, rcond=None)
    loss_star = float(task.loss([tf.constant(theta_star, tf.float32)], task.sample_batch(step_seed(0, 0))))
    assert loss_star < 1e-6 * max(1.0, float(np.sum(y ** 2)))
    assert abs(task.optimum()[1]) < 1e-9

    params = task.init_params(7)
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = task.loss(params, task.sample_batch(step_seed(0, 1)))
    grad = tape.gradient(loss, params)[0].numpy()
    theta = params[0].numpy().astype(np.float64)
    np.testing.assert_allclose(float(loss), np.sum((w @ theta - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(grad, 2 * w.T @ (w @ theta - y), rtol=1e-4, atol=1e-4)
    assert loss_star < float(loss)
    assert task.evaluate(params)["test_loss"] == pytest.approx(float(loss), rel=1e-6)


def test_quadratic_protocol_noise_and_xla():
    a, b = QuadraticTask(problem_seed=1), QuadraticTask(problem_seed=1)
    np.testing.assert_array_equal(a.w.numpy(), b.w.numpy())
    assert not np.allclose(a.w.numpy(), QuadraticTask(problem_seed=2).w.numpy())
    assert a.num_params == 10 and not a.has_accuracy and a.name == "quadratic"
    assert json.loads(json.dumps(a.config()))["type"] == "quadratic"
    np.testing.assert_array_equal(QuadraticTask(init="keras").init_params(0)[0].numpy(), np.zeros(10))
    np.testing.assert_array_equal(a.sample_batch(step_seed(0, 1)).numpy(), np.zeros(10))

    noisy = QuadraticTask(problem_seed=1, noise_std=0.5)
    e1, e2 = noisy.sample_batch(step_seed(0, 1)), noisy.sample_batch(step_seed(0, 2))
    np.testing.assert_array_equal(e1.numpy(), noisy.sample_batch(step_seed(0, 1)).numpy())
    assert not np.allclose(e1.numpy(), e2.numpy())
    params = noisy.init_params(0)
    theta = params[0].numpy()
    expected = np.sum((noisy.w.numpy() @ theta - noisy.y.numpy() - e1.numpy()) ** 2)
    assert float(noisy.loss(params, e1)) == pytest.approx(expected, rel=1e-5)

    @tf.function(jit_compile=True)
    def gd(params, seed):
        for i in range(5):
            batch = noisy.sample_batch(step_seed(seed, i))
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = noisy.loss(params, batch)
            params = [p - 0.01 * g for p, g in zip(params, tape.gradient(loss, params))]
        return params

    out = gd(params, tf.constant([0, 0]))
    assert noisy.evaluate(out)["test_loss"] < noisy.evaluate(params)["test_loss"]

    with pytest.raises(ValueError, match="noise_std"):
        QuadraticTask(noise_std=-1.0)
    with pytest.raises(ValueError, match="init"):
        QuadraticTask(init="zeros")
