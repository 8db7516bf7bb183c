"""KerasModelTask: any Keras 3 model as a functional optimizee.

Its losses and gradients equal the functional twins' (MLP, small CNN) for the same weights and minibatch; a model
with BatchNorm, Dropout and an Embedding trains under a shipped rule, deterministically, with dropout masks that
follow the batch seed and BatchNorm statistics recomputed for evaluation; bad input fails with one-line errors.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tf_symbolic_l2o.baselines import Baseline
from tf_symbolic_l2o.data import Dataset, load_dataset
from tf_symbolic_l2o.harness import Harness
from tf_symbolic_l2o.meta.trainer import MetaTrainer, TrainConfig
from tf_symbolic_l2o.meta.unroll import make_rollout
from tf_symbolic_l2o.optimizers import SymbolicRP
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
from tf_symbolic_l2o.seeds import BATCHES, INIT, STATISTICS, step_seed
from tf_symbolic_l2o.tasks.base import ClassificationTask
from tf_symbolic_l2o.tasks.cnn import SmallCNN
from tf_symbolic_l2o.tasks.keras_task import KerasModelTask
from tf_symbolic_l2o.tasks.mlp import MLP
from tf_symbolic_l2o.tasks.registry import make_task, normalize_task_spec

L = keras.layers


def loss_and_grads(task, params, batch):
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = task.loss(params, batch)
    return float(loss), [g.numpy() for g in tape.gradient(loss, params)]


def assert_twins(functional, keras_task, seed):
    """Same weights (the functional task's, perturbed so that biases are non-zero), same minibatch: same loss and
    gradients, rtol 1e-5."""
    params = [p + 0.05 * tf.random.stateless_normal(p.shape, [seed, i])
              for i, p in enumerate(functional.init_params(seed))]
    batch, keras_batch = functional.sample_batch(step_seed(seed, 1)), keras_task.sample_batch(step_seed(seed, 1))
    for a, b in zip(batch, keras_batch):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same examples for the same seed
    loss_f, grads_f = loss_and_grads(functional, params, batch)
    loss_k, grads_k = loss_and_grads(keras_task, params, keras_batch)
    np.testing.assert_allclose(loss_k, loss_f, rtol=1e-5)
    for gk, gf in zip(grads_k, grads_f):
        np.testing.assert_allclose(gk, gf, rtol=1e-5, atol=1e-7)


def token_data(n=512, n_test=128, vocab=50, length=8, seed=0):
    """Token sequences whose label is the first token mod 4."""
    rng = np.random.default_rng(seed)
    x, xt = rng.integers(0, vocab, (n, length)), rng.integers(0, vocab, (n_test, length))
    return (x, x[:, 0] % 4), (xt, xt[:, 0] % 4)


def bn_dropout_embedding_model():
    return keras.Sequential([keras.Input((8,), dtype="int32"), L.Embedding(50, 8), L.Flatten(), L.Dense(32),
                             L.BatchNormalization(), L.ReLU(), L.Dropout(0.3), L.Dense(4)])


# -- (a, b) twins -------------------------------------------------------------------------------------------------
def test_keras_mlp_equals_functional_mlp():
    ds = load_dataset("mnist_subset", flatten=True)
    functional = ClassificationTask(MLP(784), ds, batch_size=32)
    model = keras.Sequential([keras.Input((784,)), L.Dense(30, activation="relu"), L.Dense(20, activation="relu"),
                              L.Dense(10)])
    task = KerasModelTask(model, ds, batch_size=32)
    assert [s.shape for s in task.param_specs()] == [s.shape for s in functional.param_specs()]
    assert task.num_params == functional.num_params and task.fixed_init == []
    assert_twins(functional, task, seed=3)
    # "paper" initialisation draws exactly what the functional task draws
    for a, b in zip(KerasModelTask(model, ds, init="paper").init_params(4), functional.init_params(4)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    cfg = task.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["loss"] == {"name": "sparse_categorical_crossentropy", "from_logits": True}


def test_keras_cnn_equals_functional_cnn():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 32, 32, 3)), rng.integers(0, 5, 64)
    ds = Dataset("fake", x, y, x[:16], y[:16], 5)
    functional = ClassificationTask(SmallCNN((32, 32, 3), 5), ds, batch_size=8)
    model = keras.Sequential([keras.Input((32, 32, 3)), L.Conv2D(6, 3, activation="relu"), L.MaxPooling2D(2),
                              L.Conv2D(12, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dense(5)])
    assert_twins(functional, KerasModelTask(model, ds, batch_size=8), seed=5)


# -- (c) BatchNorm, Dropout, Embedding ----------------------------------------------------------------------------
def test_bn_dropout_embedding_model_trains_deterministically():
    task = KerasModelTask(bn_dropout_embedding_model(), token_data(), batch_size=32)
    assert task.fixed_init == [] and task.config()["dataset"] == "arrays"
    first = task.init_params(0)
    gamma = [p for p, s in zip(first, task.param_specs()) if s.kind == "gamma"][0]
    np.testing.assert_array_equal(gamma.numpy(), np.ones(32))  # the layer's own initialisers
    assert all(np.array_equal(a, b) for a, b in zip(first, task.init_params(0)))
    assert not np.array_equal(first[0].numpy(), task.init_params(1)[0].numpy())

    rule = RuleOptimizer(SymbolicRP().rule)
    rollout = make_rollout(task, rule)
    n = task.num_params
    theta0 = task.flatten(task.init_params(step_seed(7, INIT)))

    def curve():
        return rollout(theta0, rule.init_state(n), step_seed(7, BATCHES), tf.ones([n]), tf.constant(0),
                       tf.constant(60))[2].numpy()

    losses = curve()
    assert np.all(np.isfinite(losses)) and losses[-10:].mean() < 0.7 * losses[:10].mean(), losses
    np.testing.assert_array_equal(curve(), losses)  # the same seed gives the same curve

    # dropout masks follow the batch's seeds: same seeds, same loss; other seeds, another loss
    params = task.init_params(0)
    x, y, seeds = task.sample_batch(step_seed(1, 1))
    other = task.sample_batch(step_seed(1, 2))[2]
    assert float(task.loss(params, (x, y, seeds))) == float(task.loss(params, (x, y, seeds)))
    assert float(task.loss(params, (x, y, other))) != float(task.loss(params, (x, y, seeds)))

    run = Harness(task, Baseline("adam", 1e-2)).run(step_seed(0), 100, test=True)
    assert run.test["test_accuracy"] > 0.9, run.test  # inference-mode BatchNorm with recomputed statistics


def test_evaluation_batchnorm_statistics_are_the_population_moments():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(256, 6)), rng.integers(0, 3, 256)
    model = keras.Sequential([keras.Input((6,)), L.Dense(5), L.BatchNormalization(momentum=0.99), L.Dense(3)])
    task = KerasModelTask(model, (x, y), batch_size=16, bn_batches=4)
    params = task.init_params(3)
    h = np.concatenate([task.sample_batch(step_seed(STATISTICS, i))[0].numpy() @ params[0].numpy() +
                        params[1].numpy() for i in range(4)])
    state = task.inference_state(params)
    names = [v.name for v in model.non_trainable_variables]
    mean_slot, var_slot = names.index("moving_mean"), names.index("moving_variance")
    np.testing.assert_allclose(state[mean_slot].numpy(), h.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state[var_slot].numpy(), h.var(0), rtol=1e-4, atol=1e-5)
    assert task.evaluate(params) == task.evaluate(params)
    assert model.layers[1].momentum == 0.99  # restored after the statistics pass


# -- files, names, the registry, meta-training ------------------------------------------------------------------
def test_keras_file_and_names_through_the_registry(tmp_path):
    path = tmp_path / "mlp.keras"
    keras.Sequential([keras.Input((64,)), L.Dense(16, activation="relu"), L.Dense(10)]).save(path)
    spec = normalize_task_spec({"name": "keras", "model": str(path), "dataset": "digits", "batch_size": 16})
    assert spec["init"] == "keras"
    task = make_task(spec)
    assert isinstance(task, KerasModelTask) and task.config()["model"] == str(path)
    params = task.init_params(0)
    assert np.isfinite(task.loss(params, task.sample_batch(step_seed(0, 1))).numpy())
    named = make_task({"name": "keras", "model": "cnn", "dataset": "synthetic_cifar", "batch_size": 4})
    assert named.config()["model"] == "cnn" and named.config()["loss"]["from_logits"] is False  # softmax head
    assert named.input_shape == (32, 32, 3)


def test_meta_training_rp_s_on_a_keras_mlp(tmp_path):
    path = tmp_path / "mlp.keras"
    keras.Sequential([keras.Input((64,)), L.Dense(16, activation="relu"), L.Dense(10)]).save(path)
    cfg = TrainConfig(optimizer="rp_s", task={"name": "keras", "model": str(path), "dataset": "digits",
                                              "batch_size": 16},
                      epochs=2, epoch_len=4, unroll=2, val_every=1, val_runs=1, seed=1)
    MetaTrainer(cfg, tmp_path / "run").run()
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    assert np.all(np.isfinite(metrics["meta_loss"])) and np.all(np.isfinite(metrics["val_loss"]))


def test_meta_training_on_a_keras_model_resumes_exactly(tmp_path):
    """Stopped after epoch 2 and resumed, a run on a Keras model (with Dropout: its masks are drawn from the step's
    seed) ends with the weights and rows of an uninterrupted run; the part run's rows survive the resume."""
    from tf_symbolic_l2o.learned.io import load_l2o

    path = tmp_path / "mlp.keras"
    keras.Sequential([keras.Input((64,)), L.Dense(16, activation="relu"), L.Dropout(0.2), L.Dense(10)]).save(path)
    cfg = dict(optimizer="rp_s", task={"name": "keras", "model": str(path), "dataset": "digits", "batch_size": 16},
               epochs=3, epoch_len=4, unroll=2, val_every=1, val_runs=1, seed=2)
    MetaTrainer(TrainConfig(**cfg), tmp_path / "full").run()
    MetaTrainer(TrainConfig(**cfg), tmp_path / "part", stop_after_epoch=2).run()
    before = pd.read_csv(tmp_path / "part" / "metrics.csv")
    logs = []
    MetaTrainer(None, tmp_path / "part", resume=True, log=logs.append).run()
    assert any(m.startswith("resumed from") and m.endswith("at epoch 2") for m in logs), logs
    after = pd.read_csv(tmp_path / "part" / "metrics.csv")
    pd.testing.assert_frame_equal(after.iloc[:2].reset_index(drop=True), before)
    full = pd.read_csv(tmp_path / "full" / "metrics.csv")
    pd.testing.assert_frame_equal(after.drop(columns="seconds"), full.drop(columns="seconds"))
    for a, b in zip(load_l2o(tmp_path / "full").weights, load_l2o(tmp_path / "part").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_tf_data_datasets_give_the_same_task_as_arrays():
    """A tf.data.Dataset, batched or not, of (x, y) pairs or {"image", "label"} dicts is read into the same arrays;
    a (train, test) pair gives both splits."""
    x, y = token_data(n=40, n_test=8)[0]
    (xt, yt) = token_data(n=40, n_test=8)[1]
    model = keras.Sequential([keras.Input((8,)), L.Dense(4)])
    ref = KerasModelTask(model, (x, y), batch_size=4)
    pairs = tf.data.Dataset.from_tensor_slices((x, y))
    dicts = tf.data.Dataset.from_tensor_slices({"image": x, "label": y})
    for data in (pairs, pairs.batch(7), dicts, dicts.batch(16)):
        task = KerasModelTask(model, data, batch_size=4)
        np.testing.assert_array_equal(task.dataset.x_train, ref.dataset.x_train)
        np.testing.assert_array_equal(task.dataset.y_train, ref.dataset.y_train)
        assert task.dataset.num_classes == 4
    both = KerasModelTask(model, (pairs.batch(5), tf.data.Dataset.from_tensor_slices((xt, yt))), batch_size=4)
    np.testing.assert_array_equal(both.dataset.x_test, xt.astype(np.float32))
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(4, dtype=np.float32)[y]))
    with pytest.raises(ValueError, match="integer class ids") as e:
        KerasModelTask(model, one_hot.batch(8))
    one_line(e)
    with pytest.raises(ValueError, match="empty"):
        KerasModelTask(model, pairs.take(0))


def test_meta_tuning_a_model_object_and_resuming_it(tmp_path):
    """The Python entry point: a rule meta-tuned on a model OBJECT and a tf.data.Dataset (MetaTuner(task=...));
    config.json names the model as in-memory, resuming without the task is refused in one line, and resuming with
    it ends where an uninterrupted run ends."""
    from tf_symbolic_l2o.tune import MetaTuner, load_tuned_rule, tune_config

    data = load_dataset("digits")
    ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)).batch(64)

    def task():
        keras.utils.set_random_seed(0)  # the same architecture; weights are drawn per run from the seed anyway
        model = keras.Sequential([keras.Input((64,)), L.Dense(16, activation="relu"), L.Dense(10)], name="mine")
        return KerasModelTask(model, (ds, ds), batch_size=16)

    cfg = dict(epochs=3, epoch_len=4, unroll=2, val_every=1, val_runs=1, seed=3, second_order=False)
    MetaTuner(tune_config("psi", **cfg), tmp_path / "full", task=task()).run()
    MetaTuner(tune_config("psi", **cfg), tmp_path / "part", task=task(), stop_after_epoch=1).run()
    saved = json.loads((tmp_path / "part" / "config.json").read_text())
    assert saved["task"]["name"] == "keras" and saved["task"]["model"] == "<in-memory model mine>"
    assert saved["task"]["dataset"] == "arrays" and saved["task"]["batch_size"] == 16
    with pytest.raises(ValueError, match="made on a model object.*task=KerasModelTask") as e:
        MetaTuner(None, tmp_path / "part", resume=True)
    one_line(e)
    MetaTuner(None, tmp_path / "part", resume=True, task=task()).run()
    full, part = load_tuned_rule(tmp_path / "full"), load_tuned_rule(tmp_path / "part")
    assert part.constants == full.constants
    assert part.constants != tune_config("psi").start_rule.constants  # tuning moved them
    rows = pd.read_csv(tmp_path / "part" / "metrics.csv")
    assert list(rows["epoch"]) == [1, 2, 3]


# -- (d) bad input ----------------------------------------------------------------------------------------------
def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_input_fails_with_one_line_errors(tmp_path):
    data = token_data(n=32, n_test=8)
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("not a model")
    with pytest.raises(ValueError, match="is not a Keras model file") as e:
        KerasModelTask(str(not_a_model), data)
    assert "model.save" in one_line(e)
    with pytest.raises(FileNotFoundError, match="not found") as e:
        KerasModelTask(str(tmp_path / "missing.keras"), data)
    one_line(e)
    wrong = keras.Sequential([keras.Input((8,)), L.Dense(3)])
    with pytest.raises(ValueError, match=r"does not fit dataset 'arrays' \(4 classes\).*Dense\(4\)") as e:
        KerasModelTask(wrong, data)
    one_line(e)
    with pytest.raises(ValueError, match="not built and no input_shape") as e:
        KerasModelTask(keras.Sequential([L.Dense(4)]), data)
    one_line(e)
    assert KerasModelTask(keras.Sequential([L.Dense(4)]), data, input_shape=[8]).num_params == 36
    with pytest.raises(ValueError, match="unknown model 'resnet51'.*did you mean resnet50") as e:
        KerasModelTask("resnet51", data)
    one_line(e)
    with pytest.raises(ValueError, match="inputs .* do not fit the model's input"):
        KerasModelTask(keras.Sequential([keras.Input((9,)), L.Dense(4)]), data)
    with pytest.raises(ValueError, match="needs a model"):
        normalize_task_spec({"name": "keras"})
    with pytest.raises(ValueError, match="does not take"):
        normalize_task_spec({"name": "keras", "model": "resnet50", "depth": 20})
