"""Keras training (tf_symbolic_l2o.image_data, .tasks.keras_models, .keras_training, and the .fit re-exports):
data protocol, models, optimizers, training against a hand-written loop, LR tuning, reports.

Reference values are computed here independently: parameter counts from the architectures, the cosine schedule
and SGD+momentum from their formulas, the training trajectory by a plain GradientTape loop with the documented
batch order, and cross-entropy / accuracy in NumPy.
"""

import json
import math
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tf_symbolic_l2o import SymbolicOptimizer, SymbolicRP, fit, keras_training
from tf_symbolic_l2o.data import DatasetUnavailableError, load_dataset
from tf_symbolic_l2o.image_data import ImageData, image_data
from tf_symbolic_l2o.keras_training import (
    HISTORY_COLUMNS,
    evaluate,
    make_optimizer,
    summarize,
    train,
    tune_lr,
    write_results,
)
from tf_symbolic_l2o.tasks.keras_models import MODELS, cifar_resnet, make_model, resnet20

REPO = Path(__file__).resolve().parents[1]
RULE = REPO / "saved_models" / "symbolic_rp" / "rule.json"


def one_line_value_error(fn, *args, match=None, **kwargs):
    with pytest.raises(ValueError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


def toy_data(seed=0, n_train=50, n_val=20, n_test=20, classes=3, shape=(12, 12, 3), signal=0.0):
    """Random images; with ``signal`` > 0 the class shifts the mean of a class-specific channel (learnable)."""
    rng = np.random.default_rng(seed)

    def part(n):
        y = rng.integers(0, classes, n).astype(np.int32)
        x = rng.normal(size=(n, *shape)).astype(np.float32)
        if signal:
            x[np.arange(n), :, :, y % shape[-1]] += signal
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = part(n_train), part(n_val), part(n_test)
    return ImageData("toy", xt, yt, xv, yv, xs, ys, classes)


def numpy_ce_acc(probs, y):
    p = np.clip(probs[np.arange(len(y)), y].astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(np.log(p))), float(np.mean(np.argmax(probs, axis=-1) == y))


# ---------------------------------------------------------------------------------------------------------- data


def row_set(x):
    return {row.tobytes() for row in np.ascontiguousarray(x).reshape(len(x), -1)}


def test_image_data_holds_out_a_stratified_validation_part():
    ds = load_dataset("mnist_subset_32", seed=0)
    x_all, y_all = ds.split("train")
    d = image_data("mnist_subset_32", seed=0, val_fraction=0.1)
    assert d.input_shape == (32, 32, 3) and d.num_classes == 10
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (3600, 400, 1000)
    # per class: round(10 %) of that class's training examples
    expected_val = np.round(0.1 * np.bincount(y_all, minlength=10)).astype(int)
    np.testing.assert_array_equal(np.bincount(d.y_val, minlength=10), expected_val)
    # train + val are exactly the dataset's training split, disjoint; test is the test split, untouched
    assert row_set(d.x_train).isdisjoint(row_set(d.x_val))
    assert row_set(d.x_train) | row_set(d.x_val) == row_set(x_all)
    np.testing.assert_array_equal(d.x_test, ds.split("test")[0])
    np.testing.assert_array_equal(d.y_test, ds.split("test")[1])
    # 28x28x1 data is padded with the background value and repeated to RGB: the same as mnist_subset_32
    d28 = image_data("mnist_subset", seed=0, val_fraction=0.1, train_limit=100)
    assert d28.input_shape == (32, 32, 3) and len(d28.y_train) == 100
    np.testing.assert_array_equal(d28.x_train, d.x_train[:100])
    np.testing.assert_array_equal(d28.x_val, d.x_val)


def test_image_data_bad_inputs(tmp_path):
    for frac in (0.0, 1.0, -0.1):
        one_line_value_error(image_data, "mnist_subset_32", val_fraction=frac, match="val_fraction")
    one_line_value_error(image_data, "mnist_subset_32", train_limit=0, match="train_limit")
    one_line_value_error(image_data, "digits", match="32x32x3")
    one_line_value_error(image_data, "imagenet", match="unknown dataset")
    with pytest.raises(DatasetUnavailableError, match="download_and_prepare"):
        image_data("cifar10", data_dir=tmp_path)
    with pytest.raises(ValueError, match="labels"):
        ImageData("bad", np.zeros((2, 4, 4, 3)), np.array([0, 5]), np.zeros((0, 4, 4, 3)), np.zeros(0),
                      np.zeros((0, 4, 4, 3)), np.zeros(0), 3)


# ------------------------------------------------------------------------------------------ models, optimizers


def test_make_model_parameter_counts_and_bn_momentum():
    # cnn: conv 3·3·3·8+8, conv 3·3·8·16+16, dense 16·10+10
    assert make_model("cnn").count_params() == 224 + 1168 + 170
    # ResNet-20: convs 432 + 3·2·2304 + (4608+9216+512) + 2·2·9216 + (18432+36864+2048) + 2·2·36864 = 270,256;
    # 784 BN channels (γ, β trainable; mean, variance not); dense 64·10+10.
    r20 = make_model("resnet20")
    trainable = sum(int(np.prod(v.shape)) for v in r20.trainable_variables)
    assert (r20.count_params(), trainable) == (270_256 + 4 * 784 + 650, 270_256 + 2 * 784 + 650)
    # ResNet-50 has 25,636,712 parameters with its 1000-class head (2048·1000 + 1000); here the head has 10 classes.
    r50 = make_model("RESNET50")
    assert r50.count_params() == 25_636_712 - (2048 * 1000 + 1000) + (2048 * 10 + 10)
    bns = [layer for layer in r50.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 53 and {layer.momentum for layer in bns} == {0.9}
    kept = make_model("resnet20", bn_momentum=None)
    assert {la.momentum for la in kept.layers if isinstance(la, keras.layers.BatchNormalization)} == {0.99}
    msg = one_line_value_error(make_model, "vgg16")
    assert all(name in msg for name in MODELS)


def cosine(peak, step, total):
    """Keras' CosineDecay (no warm-up, alpha 0) by hand: peak·(1 + cos(π·min(step, total)/total))/2."""
    return peak * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def test_make_optimizer_specs():
    adam = make_optimizer("adam", 10, 3e-4)
    assert isinstance(adam, keras.optimizers.Adam) and math.isclose(float(adam.learning_rate), 3e-4, rel_tol=1e-6)
    sgd = make_optimizer("sgd_cosine", 40, 0.2)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9
    schedule = sgd._learning_rate
    for step in (0, 10, 20, 39, 40):
        assert math.isclose(float(schedule(step)), cosine(0.2, step, 40), rel_tol=1e-5, abs_tol=1e-7), step
    rp = make_optimizer("symbolic_rp", 5)
    assert isinstance(rp, SymbolicRP) and float(rp.learning_rate) == 1.0
    rule = make_optimizer(f"symbolic:{RULE}", 5, 0.5)
    assert isinstance(rule, SymbolicOptimizer) and float(rule.learning_rate) == 0.5
    assert rule.rule.to_dict()["expression"] == json.loads(RULE.read_text())["expression"]
    assert math.isclose(float(make_optimizer("adam", 1).learning_rate), 1e-3, rel_tol=1e-6)
    msg = one_line_value_error(make_optimizer, "rmsprop", 10)
    assert "adam" in msg and "symbolic:<rule.json>" in msg
    one_line_value_error(make_optimizer, "symbolic:", 10, match="needs a rule file")
    one_line_value_error(make_optimizer, "symbolic:/no/such/rule.json", 10, match="rule file not found")
    for lr in (0, -1e-3, float("nan"), float("inf"), "fast"):
        one_line_value_error(make_optimizer, "adam", 10, lr, match="learning rate")
    for steps in (0, -5, 2.5, True):
        one_line_value_error(make_optimizer, "sgd_cosine", steps, match="steps_total")


@pytest.mark.parametrize("spec", ["adam+cosine", "symbolic_rp+COSINE", f"symbolic:{RULE} +cosine"])
def test_cosine_suffix_decays_the_learning_rate_to_zero(spec):
    """``+cosine`` on any optimizer: its update at step k equals the constant-rate optimizer's at rate
    lr·(1 + cos(π·k/K))/2 (K = steps_total), for Adam's learning rate and a rule's multiplier alike."""
    opt = make_optimizer(spec, 20, 0.5)
    base = spec.split("+")[0].strip()
    assert type(opt) is type(make_optimizer(base, 20, 0.5))
    grad = np.array([0.3, -1.2, 0.0, 2.5], np.float32)
    for k in (0, 7, 19):
        expected = cosine(0.5, k, 20)
        assert math.isclose(float(opt._learning_rate(k)), expected, rel_tol=1e-5, abs_tol=1e-7), k
        deltas = []
        for o in (make_optimizer(spec, 20, 0.5), make_optimizer(base, 20, expected)):
            var = keras.Variable(np.ones(4, np.float32))
            o.build([var])
            o.iterations.assign(k)
            o.apply([keras.ops.convert_to_tensor(grad)], [var])
            deltas.append(var.numpy() - 1.0)
        np.testing.assert_allclose(deltas[0], deltas[1], rtol=1e-5, atol=1e-8)
        assert np.abs(deltas[0]).max() > 0
    msg = one_line_value_error(make_optimizer, "sgd_cosine+cosine", 10)
    assert "already" in msg
    one_line_value_error(make_optimizer, "rmsprop+cosine", 10, match="unknown optimizer")


# ------------------------------------------------------------------------------------------------------ training


def reference_sgd_cosine_run(data, seed, epochs, batch_size, lr):
    """train's documented protocol written out: same seed → same initial weights; epoch e visits
    ``default_rng([seed, e]).permutation(n)`` cut to whole batches; SGD momentum 0.9 with cosine decay over all
    steps (v ← 0.9·v − lr_t·g, θ ← θ + v); loss = mean cross-entropy of the batch."""
    keras.utils.set_random_seed(seed)
    model = make_model("cnn", data.input_shape, data.num_classes)
    variables = model.trainable_variables
    velocity = [np.zeros(v.shape, np.float32) for v in variables]
    n = len(data.y_train)
    steps_per_epoch = n // batch_size
    total = steps_per_epoch * epochs
    t = 0
    epoch_losses = []
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            x, y = tf.constant(data.x_train[idx]), tf.constant(data.y_train[idx])
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
            grads = tape.gradient(loss, variables)
            lr_t = cosine(lr, t, total)
            for v, g, vel in zip(variables, grads, velocity):
                vel *= 0.9
                vel -= lr_t * g.numpy()
                v.assign(v.numpy() + vel)
            losses.append(float(loss))
            t += 1
        epoch_losses.append(float(np.mean(losses)))
    return model, epoch_losses


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_train_matches_hand_written_loop(loop):
    data = toy_data(seed=1, n_train=50)  # 3 batches of 16 per epoch, 2 examples left out (different ones)
    result = train("cnn", "sgd_cosine", 0.05, epochs=2, batch_size=16, seed=4, data=data, loop=loop)
    model, losses = reference_sgd_cosine_run(data, seed=4, epochs=2, batch_size=16, lr=0.05)
    for got, want in zip(result.model.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    h = result.history
    assert list(h.columns) == list(HISTORY_COLUMNS)
    assert h["epoch"].tolist() == [1, 2] and h["steps"].tolist() == [3, 6]
    assert result.loop == loop and result.replicas == 1
    np.testing.assert_allclose(h["train_loss"], losses, rtol=1e-5)
    for part in ("val", "test"):
        probs = model.predict(getattr(data, f"x_{part}"), verbose=0)
        loss, acc = numpy_ce_acc(probs, getattr(data, f"y_{part}"))
        assert math.isclose(h[f"{part}_loss"].iloc[-1], loss, rel_tol=1e-5)
        assert h[f"{part}_accuracy"].iloc[-1] == acc
    assert (h["seconds"] > 0).all() and result.seconds == pytest.approx(h["seconds"].sum())
    final = result.final()
    assert final["optimizer"] == "sgd_cosine" and final["epoch"] == 2 and final["learning_rate"] == 0.05


def test_train_bad_inputs_fail_fast_with_one_line():
    data = toy_data()
    one_line_value_error(train, "alexnet", "adam", data=data, match="unknown model")
    one_line_value_error(train, "cnn", "lion", data=data, match="unknown optimizer")
    one_line_value_error(train, "cnn", "symbolic:missing.json", data=data, match="rule file not found")
    for epochs in (0, -2, 1.5):
        one_line_value_error(train, "cnn", "adam", epochs=epochs, data=data, match="epochs")
    one_line_value_error(train, "cnn", "adam", batch_size=0, data=data, match="batch_size")
    one_line_value_error(train, "cnn", "adam", batch_size=51, data=data, match="larger than the 50")
    one_line_value_error(train, "cnn", "adam", lr=0, data=data, match="learning rate")
    one_line_value_error(train, "cnn", "adam", data=data, loop="eager", match="unknown loop")
    one_line_value_error(train, "cnn", "adam", data=data, seed=-1, match="seed")


def test_tune_lr_picks_from_grid_on_validation_only(monkeypatch):
    data = toy_data(seed=2, n_train=96, n_val=48, n_test=16, classes=3, signal=1.5)
    seen = []
    real_evaluate = evaluate

    def spy(model, x, y, *args, **kwargs):
        seen.append("test" if x is data.x_test else "val" if x is data.x_val else "other")
        return real_evaluate(model, x, y, *args, **kwargs)

    monkeypatch.setattr(keras_training, "evaluate", spy)
    table, best = tune_lr("cnn", "sgd_cosine", [1e3, 1e-6, 0.1], epochs=3, batch_size=16, seed=0, data=data)
    assert set(seen) == {"val"}  # the test part is never looked at
    assert table["lr"].tolist() == [1e-6, 0.1, 1e3]
    assert set(table.columns) >= {"lr", "val_loss", "val_accuracy", "train_loss", "seconds", "finite", "best"}
    # 1e-6 barely moves the weights, 1e3 diverges (non-finite: ranked last), 0.1 learns the shifted channel.
    assert best == 0.1 and table["best"].tolist() == [False, True, False]
    rows = table.set_index("lr")
    assert rows.loc[1e-6, "val_loss"] > 0.5 and rows.loc[1e-6, "finite"]
    assert rows.loc[0.1, "val_loss"] < 0.1 and rows.loc[0.1, "val_accuracy"] > 0.9
    assert not rows.loc[1e3, "finite"]
    for grid in ([], [0.0], [-1e-3], ["x"], None):
        one_line_value_error(tune_lr, "cnn", "adam", grid, data=data)
    one_line_value_error(tune_lr, "cnn", "adam", [1e-3], data=data, metric="test_accuracy", match="metric")


# ------------------------------------------------------------------------------------------------------ reports


def hand_curves():
    rows = []
    for opt, lr, finals in (("adam", 1e-3, [(0.80, 0.5), (0.90, 0.3)]), ("symbolic", 1.0, [(0.70, 0.9), (0.75, 0.7)])):
        for seed, (acc, loss) in enumerate(finals):
            rows.append({"optimizer": opt, "seed": seed, "learning_rate": lr, "epoch": 1, "train_loss": 2.0,
                         "train_accuracy": 0.3, "val_loss": 1.5, "val_accuracy": 0.5, "test_loss": 1.6,
                         "test_accuracy": 0.4, "seconds": 10.0 + seed, "steps": 5, "eval_seconds": 1.0})
            rows.append({**rows[-1], "epoch": 2, "train_loss": loss, "test_accuracy": acc, "val_accuracy": acc - 0.1,
                         "seconds": 20.0, "steps": 10})
    return pd.DataFrame(rows)


def test_summarize_from_hand_numbers():
    s = summarize(hand_curves()).set_index("optimizer")
    assert s.loc["adam", "runs"] == 2 and s.loc["adam", "epochs"] == 2
    assert s.loc["adam", "test_accuracy_mean"] == pytest.approx(0.85)
    assert s.loc["adam", "test_accuracy_std"] == pytest.approx(math.sqrt(2 * 0.05 ** 2))  # sample std of 0.8, 0.9
    assert s.loc["symbolic", "train_loss_mean"] == pytest.approx(0.8)
    assert s.loc["symbolic", "val_accuracy_mean"] == pytest.approx(0.625)
    assert s.loc["adam", "seconds_mean"] == pytest.approx(30.5)  # (10 + 20 + 11 + 20) / 2
    assert s.loc["symbolic", "learning_rate"] == 1.0
    one_seed = summarize(hand_curves().query("seed == 0")).set_index("optimizer")
    assert np.isnan(one_seed.loc["adam", "test_accuracy_std"])


def test_write_results_writes_csv_png_json(tmp_path):
    curves = hand_curves()
    summary = {"summary": summarize(curves).to_dict(orient="records"), "note": "hand-made"}
    paths = write_results(tmp_path / "out", "toy_train", curves, summary, title="toy")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["toy_train.csv", "toy_train.json",
                                                                    "toy_train.png"]  # no temp files left
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), curves, check_dtype=False)
    assert json.loads(paths["json"].read_text())["note"] == "hand-made"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 5000
    # a real (single-seed) training history goes through the same writer
    result = train("cnn", "adam", 1e-3, epochs=1, batch_size=25, seed=0, data=toy_data(), keep_model=False)
    assert result.model is None
    real = result.history.assign(optimizer="adam", seed=0, learning_rate=1e-3)
    write_results(tmp_path / "real", "run", real, {"final": result.final()})
    assert json.loads((tmp_path / "real" / "run.json").read_text())["final"]["epoch"] == 1


def test_fit_module_re_exports_the_api_from_its_homes():
    assert fit.train is train and fit.tune_lr is tune_lr and fit.evaluate is evaluate
    assert fit.image_data is image_data and fit.ImageData is ImageData and fit.make_model is make_model
    assert fit.cifar_resnet is cifar_resnet and fit.resnet20 is resnet20
    assert all(hasattr(fit, name) for name in fit.__all__)
