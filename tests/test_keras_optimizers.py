"""The Keras optimizers (SymbolicOptimizer, LearnedOptimizer) against the Keras optimizer checklist.

Values are checked against NumPy written here from the paper's formulas and against the functional coordinate-wise
optimizers (``RuleOptimizer``, ``CoordinatewiseLSTM.update``) driven on the flattened parameters.
"""

import contextlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.learned.io import save_l2o
from tf_symbolic_l2o.learned.registry import make_l2o
from tf_symbolic_l2o.optimizers import LearnedOptimizer, SymbolicOptimizer
from tf_symbolic_l2o.rules import Rule
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer

REPO = Path(__file__).resolve().parents[1]


def rule_dict(expression, features, memlen=1, output_scale=0.1):
    return {"format": "tfl2o-rule/1", "expression": expression, "features": {"names": features},
            "memlen": memlen, "output_scale": output_scale}


# Δθ = 0.1 · (−0.5 · m̃_t)                                  (Adam-like, memlen 1)
RULE_A = Rule.from_dict(rule_dict(["mul", -0.5, "mt_0"], "mt"))
# Δθ = 0.1 · tanh(−2 · mom9_t − 0.5 · g̃_{t−1})             (memlen 2: a lag-history slot)
RULE_B = Rule.from_dict(rule_dict(["tanh", ["add", ["mul", -2.0, "mom9_0"], ["mul", -0.5, "gt_1"]]],
                                  "gt+mom9", memlen=2))
# Δθ = −g                                                   (plain SGD: makes clipping / EMA / scaling visible)
RULE_SGD = Rule.from_dict(rule_dict(["neg", "g_0"], "g", output_scale=1.0))
RULES = {"A": RULE_A, "B": RULE_B}


def numpy_rule_trajectory(kind, theta0, grads, lrs=None):
    """Independent NumPy reference (float64) of rules A and B: returns the parameters after every step."""
    b1 = b2 = 0.95
    eps = 1e-12
    theta = np.array(theta0, np.float64)
    m = v = mom9 = gt_prev = np.zeros_like(theta)
    out = []
    for i, g in enumerate(grads):
        t = i + 1
        g = np.asarray(g, np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mom9 = 0.9 * mom9 + 0.1 * g
        s = np.sqrt(v / (1 - b2 ** t)) + eps
        mt, gt = (m / (1 - b1 ** t)) / s, g / s
        f = -0.5 * mt if kind == "A" else np.tanh(-2.0 * mom9 - 0.5 * gt_prev)
        gt_prev = gt
        lr = 1.0 if lrs is None else lrs[i]
        theta = theta + lr * 0.1 * f
        out.append(theta.copy())
    return out


def functional_trajectory(rule, theta0_list, grads_seq, lr=1.0):
    """Drive ``RuleOptimizer`` on the concatenation of all variables (flat vector)."""
    sizes = [int(np.prod(np.shape(t))) for t in theta0_list]
    opt = RuleOptimizer(rule)
    state = opt.init_state(sum(sizes))
    theta = tf.constant(np.concatenate([np.reshape(t, [-1]) for t in theta0_list]).astype(np.float32))
    for step, grads in enumerate(grads_seq, start=1):
        g = tf.constant(np.concatenate([np.reshape(x, [-1]) for x in grads]).astype(np.float32))
        delta, state = opt.update(g, state, step)
        theta = theta + lr * delta
    parts = np.split(theta.numpy(), np.cumsum(sizes)[:-1])
    return [p.reshape(np.shape(t)) for p, t in zip(parts, theta0_list)]


def tiny_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], np.float32) + 0.3).astype(np.float32)
    return x, y


def tiny_model(seed=0, dtype=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh", dtype=dtype),
                             keras.layers.Dense(1, dtype=dtype)])


@pytest.fixture
def dtype_policy():
    """Set a global dtype policy for one test and restore float32 afterwards."""
    old = keras.config.dtype_policy()

    def set_policy(name):
        keras.config.set_dtype_policy(name)

    yield set_policy
    keras.config.set_dtype_policy(old)


# ------------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("kind", ["A", "B"])
def test_config_round_trip(kind):
    opt = SymbolicOptimizer(RULES[kind], learning_rate=0.5, weight_decay=0.01, clipnorm=1.0, use_ema=True,
                            ema_momentum=0.9, gradient_accumulation_steps=2, name="sym")
    config = opt.get_config()
    assert config["rule"] == RULES[kind].to_dict()
    json.dumps(config)  # JSON-serialisable
    again = SymbolicOptimizer.from_config(json.loads(json.dumps(config)))
    assert json.dumps(again.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    assert again.rule == RULES[kind]

    serialized = keras.saving.serialize_keras_object(opt)
    assert serialized["registered_name"] == "tfl2o>SymbolicOptimizer"
    revived = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert isinstance(revived, SymbolicOptimizer)
    assert revived.get_config() == config
    assert isinstance(keras.optimizers.get(serialized), SymbolicOptimizer)


def test_config_with_schedule_and_rule_sources(tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.9)
    opt = SymbolicOptimizer(RULE_B.to_dict(), learning_rate=schedule)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(opt))
    assert isinstance(revived._learning_rate, keras.optimizers.schedules.ExponentialDecay)
    assert revived.get_config() == opt.get_config()
    path = tmp_path / "rule.json"
    RULE_B.save(path)
    assert SymbolicOptimizer(str(path)).rule == RULE_B
    assert SymbolicOptimizer(path).rule == RULE_B
    with pytest.raises(ValueError):
        SymbolicOptimizer(42)
    with pytest.raises(ValueError):
        SymbolicOptimizer(RULE_A, learning_rate=1)  # Keras: an int learning rate is refused


@pytest.mark.parametrize("hostile", [
    ["__import__", "os"],
    ["eval", "mt_0"],
    "__import__('os').system('true')",
    ["mul", "mt_0", {"__class__": "x"}],
])
def test_hostile_rule_in_config_is_refused(hostile):
    config = SymbolicOptimizer(RULE_A).get_config()
    config["rule"]["expression"] = hostile
    with pytest.raises(ValueError):
        SymbolicOptimizer.from_config(config)
    serialized = keras.saving.serialize_keras_object(SymbolicOptimizer(RULE_A))
    serialized["config"]["rule"]["expression"] = hostile
    with pytest.raises(ValueError):
        keras.saving.deserialize_keras_object(serialized)


def test_rule_with_unknown_keys_is_refused():
    config = SymbolicOptimizer(RULE_A).get_config()
    config["rule"]["code"] = "import os"
    with pytest.raises(ValueError, match="unknown key"):
        SymbolicOptimizer.from_config(config)


def test_slot_layout_is_deterministic():
    w1, w2 = keras.Variable(np.zeros((3, 2), np.float32), name="w1"), keras.Variable(np.zeros(4, np.float32),
                                                                                      name="w2")
    opt = SymbolicOptimizer(RULE_B)
    opt.build([w1, w2])
    names = [v.name for v in opt.variables]
    assert names == ["iteration", "learning_rate", "w1_v", "w1_mom9", "w1_lag_history",
                     "w2_v", "w2_mom9", "w2_lag_history"]
    assert [tuple(v.shape) for v in opt.variables[2:]] == [(3, 2), (3, 2), (1, 3, 2, 2), (4,), (4,), (1, 4, 2)]
    opt_a = SymbolicOptimizer(RULE_A)
    opt_a.build([w1, w2])
    assert [v.name for v in opt_a.variables[2:]] == ["w1_m", "w1_v", "w2_m", "w2_v"]


# -------------------------------------------------------------------------------------------- numerics

def test_single_step_by_hand():
    # t = 1: m̂ = g, v̂ = g², s = |g| + 1e-12, so m̃ = sign(g) (0 at g = 0): Δθ = 0.1 · (−0.5) · sign(g).
    var = keras.Variable([1.0, 2.0, 3.0, 4.0, 5.0])
    SymbolicOptimizer(RULE_A).apply_gradients([(np.array([1.0, -6.0, 7.0, 0.5, 0.0], np.float32), var)])
    np.testing.assert_allclose(var.numpy(), [0.95, 2.05, 2.95, 3.95, 5.0], rtol=0, atol=1e-6)
    # t = 1 with rule B: mom9 = 0.1·g and no history yet: Δθ = 0.1 · tanh(−0.2·g).
    var = keras.Variable([1.0, 2.0, 3.0])
    g = np.array([1.0, -6.0, 0.0], np.float32)
    SymbolicOptimizer(RULE_B).apply_gradients([(g, var)])
    np.testing.assert_allclose(var.numpy(), np.array([1.0, 2.0, 3.0]) + 0.1 * np.tanh(-0.2 * g), atol=1e-7)


@pytest.mark.parametrize("kind", ["A", "B"])
def test_five_steps_against_numpy(kind):
    rng = np.random.default_rng(1)
    theta0 = rng.normal(size=6)
    grads = [rng.normal(size=6) * 10.0 ** rng.integers(-3, 1) for _ in range(5)]
    var = keras.Variable(theta0.astype(np.float32))
    opt = SymbolicOptimizer(RULES[kind])
    ref = numpy_rule_trajectory(kind, theta0.astype(np.float32), grads)
    for g, expected in zip(grads, ref):
        opt.apply_gradients([(g.astype(np.float32), var)])
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["A", "B"])
def test_golden_trajectory_matches_functional_rule_optimizer(kind):
    rng = np.random.default_rng(2)
    shapes = [(3, 2), (4,), ()]
    theta0 = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads_seq = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(5)]
    variables = [keras.Variable(t) for t in theta0]
    opt = SymbolicOptimizer(RULES[kind])
    for grads in grads_seq:
        opt.apply_gradients(zip(grads, variables))
    expected = functional_trajectory(RULES[kind], theta0, grads_seq)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=0, atol=1e-6)
    assert int(opt.iterations.numpy()) == 5


def test_learning_rate_is_a_multiplier_and_schedules_work():
    rng = np.random.default_rng(3)
    theta0 = rng.normal(size=5).astype(np.float32)
    grads = [rng.normal(size=5).astype(np.float32) for _ in range(4)]
    native = numpy_rule_trajectory("B", theta0, grads)
    deltas = np.diff(np.stack([theta0.astype(np.float64)] + native), axis=0)

    var = keras.Variable(theta0)
    opt = SymbolicOptimizer(RULE_B, learning_rate=0.5)
    for g in grads:
        opt.apply_gradients([(g, var)])
    np.testing.assert_allclose(var.numpy() - theta0, 0.5 * deltas.sum(0), atol=1e-6)

    # The schedule is called with the 0-based iteration: lr_k = 0.5^(k−1) for step k.
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)
    var = keras.Variable(theta0)
    opt = SymbolicOptimizer(RULE_B, learning_rate=schedule)
    for g in grads:
        opt.apply_gradients([(g, var)])
    lrs = 0.5 ** np.arange(4)
    np.testing.assert_allclose(var.numpy() - theta0, (lrs[:, None] * deltas).sum(0), atol=1e-6)

    var = keras.Variable(theta0)
    opt = SymbolicOptimizer(RULE_B, learning_rate=lambda: 0.25)
    for g in grads:
        opt.apply_gradients([(g, var)])
    np.testing.assert_allclose(var.numpy() - theta0, 0.25 * deltas.sum(0), atol=1e-6)


def test_weight_decay_and_exclusion():
    # A zero gradient gives m̃ = 0 and no rule step, so only the decoupled decay moves the weights.
    grads = np.zeros((), np.float32)
    var1, var2, var3 = keras.Variable(2.0), keras.Variable(2.0, name="exclude"), keras.Variable(2.0)
    opt1 = SymbolicOptimizer(RULE_A, weight_decay=0.004)
    opt1.apply_gradients([(grads, var1)])
    opt2 = SymbolicOptimizer(RULE_A, weight_decay=0.004)
    opt2.exclude_from_weight_decay(var_names=["exclude"])
    opt2.apply_gradients([(grads, var1), (grads, var2)])
    opt3 = SymbolicOptimizer(RULE_A, weight_decay=0.004)
    opt3.exclude_from_weight_decay(var_list=[var3])
    opt3.apply_gradients([(grads, var1), (grads, var3)])
    np.testing.assert_allclose(var1.numpy(), 2.0 * (1 - 0.004) ** 3, rtol=1e-6)
    assert var2.numpy() == 2.0 and var3.numpy() == 2.0

    # With lr = 0.5 the decay is lr·wd and the rule step is halved: θ = θ·(1 − 0.5·wd) + 0.5·Δθ.
    var = keras.Variable([1.0, -1.0])
    SymbolicOptimizer(RULE_A, learning_rate=0.5, weight_decay=0.1).apply_gradients(
        [(np.array([2.0, 2.0], np.float32), var)])
    np.testing.assert_allclose(var.numpy(), np.array([1.0, -1.0]) * 0.95 - 0.5 * 0.05, atol=1e-6)


def test_clipnorm_and_clipvalue():
    opt = SymbolicOptimizer(RULE_SGD, clipnorm=1.0)
    clipped = opt._clip_gradients([np.array([100.0, 100.0], np.float32)])
    np.testing.assert_allclose(clipped[0], [2 ** 0.5 / 2, 2 ** 0.5 / 2], rtol=1e-6)
    opt = SymbolicOptimizer(RULE_SGD, clipvalue=1.0)
    clipped = opt._clip_gradients([np.array([100.0, -100.0, 0.5], np.float32)])
    np.testing.assert_allclose(clipped[0], [1.0, -1.0, 0.5])
    # end to end: the rule sees the clipped gradient
    var = keras.Variable([0.0, 0.0])
    SymbolicOptimizer(RULE_SGD, clipnorm=1.0).apply_gradients([(np.array([3.0, 4.0], np.float32), var)])
    np.testing.assert_allclose(var.numpy(), [-0.6, -0.8], rtol=1e-6)
    var = keras.Variable([0.0, 0.0, 0.0])
    SymbolicOptimizer(RULE_SGD, clipvalue=1.0).apply_gradients([(np.array([3.0, -4.0, 0.5], np.float32), var)])
    np.testing.assert_allclose(var.numpy(), [-1.0, 1.0, -0.5], rtol=1e-6)
    var = keras.Variable([0.0, 0.0])
    SymbolicOptimizer(RULE_SGD, global_clipnorm=1.0).apply_gradients([(np.array([3.0, 4.0], np.float32), var)])
    np.testing.assert_allclose(var.numpy(), [-0.6, -0.8], rtol=1e-6)
    with pytest.raises(ValueError):
        SymbolicOptimizer(RULE_SGD, clipnorm=1.0, clipvalue=1.0)


def test_clipnorm_with_embedding_indexed_slices():
    def one_fit_step(x, y):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,), dtype="int32"), keras.layers.Embedding(10, 3),
                                  keras.layers.Flatten(), keras.layers.Dense(1)])
        model.compile(optimizer=SymbolicOptimizer(RULE_B, clipnorm=1.0), loss="mse")
        before = [w.astype(np.float64) for w in model.get_weights()]
        model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        return before, model.get_weights()

    def numpy_grads(x, y, emb0, w0, b0):
        """mse(Flatten(E[x]) @ W + b, y): the embedding gradient as slices (one per looked-up row) and dense."""
        h = emb0[x].reshape(len(x), 6)
        r = 2.0 / len(x) * (h @ w0 + b0 - y)  # dL/d(output)
        slices = (r @ w0.T).reshape(len(x), 2, 3)
        g_emb = np.zeros_like(emb0)
        np.add.at(g_emb, x, slices)  # scattered, duplicate rows summed
        return slices, [g_emb, h.T @ r, r.sum(0)]

    y = np.full((3, 1), 100.0, np.float32)  # far from the outputs: every gradient norm is > 1, so clipping acts
    # Distinct rows: the step equals rule B on the dense gradients, each clipped to norm 1 (NumPy).
    x = np.array([[1, 2], [3, 4], [5, 6]], np.int32)
    (emb0, w0, b0), got = one_fit_step(x, y)
    _, grads = numpy_grads(x, y, emb0, w0, b0)
    assert min(np.linalg.norm(g) for g in grads) > 1.5
    expected = [numpy_rule_trajectory("B", w, [g / np.linalg.norm(g)])[0] for w, g in zip((emb0, w0, b0), grads)]
    unclipped = numpy_rule_trajectory("B", emb0, [grads[0]])[0]
    assert np.max(np.abs(unclipped - expected[0])) > 1e-2  # clipping changes the embedding step
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    untouched, indexed = [0, 7, 8, 9], [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(got[0][untouched], emb0[untouched].astype(np.float32))
    assert np.all(np.abs(got[0][indexed] - emb0[indexed]) > 1e-3)  # every looked-up row moved

    # Row 1 looked up twice: Keras clips a tf.IndexedSlices by the norm of its values, duplicates not summed
    # (keras.optimizers.SGD does the same), so the dense step is scaled by 1/‖values‖, not 1/‖dense‖.
    x = np.array([[1, 2], [3, 4], [1, 5]], np.int32)
    (emb0, w0, b0), got = one_fit_step(x, y)
    slices, grads = numpy_grads(x, y, emb0, w0, b0)
    scale = [1 / np.linalg.norm(slices)] + [1 / np.linalg.norm(g) for g in grads[1:]]
    expected = [numpy_rule_trajectory("B", w, [c * g])[0] for w, g, c in zip((emb0, w0, b0), grads, scale)]
    for a, e in zip(got, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    untouched = [0, 6, 7, 8, 9]
    np.testing.assert_array_equal(got[0][untouched], emb0[untouched].astype(np.float32))


def test_ema_values():
    rng = np.random.default_rng(4)
    theta0 = rng.normal(size=4).astype(np.float32)
    grads = [rng.normal(size=4).astype(np.float32) for _ in range(4)]
    ref = numpy_rule_trajectory("A", theta0, grads)
    var = keras.Variable(theta0)
    opt = SymbolicOptimizer(RULE_A, use_ema=True, ema_momentum=0.9)
    ema = None
    for g, theta in zip(grads, ref):
        opt.apply_gradients([(g, var)])
        ema = theta if ema is None else 0.9 * ema + 0.1 * theta  # the EMA starts at the first updated value
        np.testing.assert_allclose(var.numpy(), theta, atol=1e-6)
        np.testing.assert_allclose(opt._model_variables_moving_average[0].numpy(), ema, atol=1e-6)
    opt.finalize_variable_values([var])
    np.testing.assert_allclose(var.numpy(), ema, atol=1e-6)

    # overwrite frequency, with the SGD rule (Keras' own SGD numbers)
    var = keras.Variable([[3.0, 4.0], [5.0, 6.0]])
    opt = SymbolicOptimizer(RULE_SGD, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=3)
    ones = np.ones((2, 2), np.float32)
    opt.apply_gradients([(ones, var)])
    opt.apply_gradients([(ones, var)])
    np.testing.assert_allclose(opt._model_variables_moving_average[0].numpy(), [[1.9, 2.9], [3.9, 4.9]], atol=1e-6)
    opt.apply_gradients([(ones, var)])
    np.testing.assert_allclose(var.numpy(), [[1.71, 2.71], [3.71, 4.71]], atol=1e-6)


def test_gradient_accumulation():
    rng = np.random.default_rng(5)
    theta0 = rng.normal(size=(2, 3)).astype(np.float32)
    grads = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(4)]
    var = keras.Variable(theta0)
    opt = SymbolicOptimizer(RULE_B, gradient_accumulation_steps=2)
    opt.apply_gradients([(grads[0], var)])
    np.testing.assert_array_equal(var.numpy(), theta0)
    opt.apply_gradients([(grads[1], var)])
    step1 = functional_trajectory(RULE_B, [theta0], [[(grads[0] + grads[1]) / 2]])[0]
    np.testing.assert_allclose(var.numpy(), step1, atol=1e-6)
    opt.apply_gradients([(grads[2], var)])
    np.testing.assert_allclose(var.numpy(), step1, atol=1e-6)
    opt.apply_gradients([(grads[3], var)])
    # the rule sees t = 1, 2 (updates), not t = 2, 4 (apply calls)
    expected = functional_trajectory(RULE_B, [theta0], [[(grads[0] + grads[1]) / 2], [(grads[2] + grads[3]) / 2]])
    np.testing.assert_allclose(var.numpy(), expected[0], atol=1e-6)
    assert int(opt.iterations.numpy()) == 2


@pytest.mark.parametrize("rule", [RULE_SGD, RULE_B], ids=["sgd", "B"])
def test_static_loss_scale_factor(rule):
    g = np.array([0.3, -1.2, 2.0], np.float32)
    var_ref, var_scaled = keras.Variable([1.0, 2.0, 3.0]), keras.Variable([1.0, 2.0, 3.0])
    opt_ref, opt_scaled = SymbolicOptimizer(rule), SymbolicOptimizer(rule, loss_scale_factor=1024.0)
    assert float(opt_scaled.scale_loss(tf.constant(2.0))) == 2048.0
    for _ in range(3):
        opt_ref.apply_gradients([(g, var_ref)])
        opt_scaled.apply_gradients([(g * 1024.0, var_scaled)])
    np.testing.assert_allclose(var_scaled.numpy(), var_ref.numpy(), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------- sparse

@pytest.mark.parametrize("kind", ["A", "B"])
def test_sparse_gradients_never_write_variables_directly(kind):
    model_variable = keras.Variable(initializer="ones", shape=(5, 10))
    optimizer = SymbolicOptimizer(RULES[kind])
    grad = tf.IndexedSlices(0.5 * tf.ones((3, 10)), tf.constant([0, 2, 4]), tf.constant([5, 10]))
    variable_class = model_variable._value.__class__
    sparse_updates = {"model": False, "optimizer": False}
    written = []

    def mock_optimizer_assign(variable, value):
        if isinstance(variable, keras.Variable):
            variable = variable._value
        written.append(variable)
        if isinstance(value, tf.IndexedSlices):
            key = "model" if variable is model_variable._value else "optimizer"
            sparse_updates[key] = True

    def mock_variable_assign(variable, value):
        if len(variable.shape):  # the scalar iteration counter is allowed
            pytest.fail("the optimizer called assign/assign_add/assign_sub on a variable directly")

    with (mock.patch.object(optimizer, "_apply_weight_decay", autospec=True),
          mock.patch.object(optimizer, "assign", autospec=True) as o_assign,
          mock.patch.object(optimizer, "assign_add", autospec=True) as o_assign_add,
          mock.patch.object(optimizer, "assign_sub", autospec=True) as o_assign_sub,
          mock.patch.object(variable_class, "assign", autospec=True) as v_assign,
          mock.patch.object(variable_class, "assign_add", autospec=True) as v_assign_add,
          mock.patch.object(variable_class, "assign_sub", autospec=True) as v_assign_sub):
        for m in (o_assign, o_assign_add, o_assign_sub):
            m.side_effect = mock_optimizer_assign
        for m in (v_assign, v_assign_add, v_assign_sub):
            m.side_effect = mock_variable_assign
        optimizer.apply([grad], [model_variable])
    # the state decays in every row, so all updates are dense — and all of them went through self.assign*
    assert sparse_updates == {"model": False, "optimizer": False}
    assert any(w is model_variable._value for w in written)
    assert len(written) == len(optimizer.variables) - 2 + 1  # every slot and the model variable


@pytest.mark.parametrize("kind", ["A", "B"])
def test_sparse_and_dense_gradients_agree(kind):
    opt_sparse, opt_dense = SymbolicOptimizer(RULES[kind]), SymbolicOptimizer(RULES[kind])
    var_sparse = keras.Variable(initializer="ones", shape=(5, 3, 2))
    var_dense = keras.Variable(initializer="ones", shape=(5, 3, 2))
    for i in range(5):
        grad_sparse = tf.IndexedSlices(values=tf.ones((3, 3, 2)) * (10.0 - i), indices=tf.constant([0, 2, 4]),
                                       dense_shape=tf.constant([5, 3, 2]))
        grad_dense = tf.convert_to_tensor(grad_sparse)
        opt_sparse.apply([grad_sparse], [var_sparse])
        opt_dense.apply([grad_dense], [var_dense])
        np.testing.assert_allclose(var_sparse.numpy(), var_dense.numpy(), rtol=1e-6, atol=1e-7)
    for a, b in zip(opt_sparse.variables, opt_dense.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    # duplicate indices are summed, as in the dense gradient
    opt_dup, var_dup = SymbolicOptimizer(RULES[kind]), keras.Variable(initializer="ones", shape=(5, 3, 2))
    opt_ref, var_ref = SymbolicOptimizer(RULES[kind]), keras.Variable(initializer="ones", shape=(5, 3, 2))
    dup = tf.IndexedSlices(tf.ones((3, 3, 2)), tf.constant([1, 1, 3]), tf.constant([5, 3, 2]))
    opt_dup.apply([dup], [var_dup])
    opt_ref.apply([tf.convert_to_tensor(dup)], [var_ref])
    np.testing.assert_allclose(var_dup.numpy(), var_ref.numpy(), rtol=1e-6)


# ------------------------------------------------------------------------------------------ non-finite

def test_non_finite_gradients_skip_only_those_coordinates():
    theta0 = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    var = keras.Variable(theta0)
    ref = keras.Variable(theta0)
    opt, opt_ref = SymbolicOptimizer(RULE_B), SymbolicOptimizer(RULE_B)
    g_ok = np.array([0.5, -0.5, 1.0, 2.0], np.float32)
    opt.apply_gradients([(g_ok, var)])
    opt_ref.apply_gradients([(g_ok, ref)])
    before = [v.numpy().copy() for v in opt.variables[2:]]
    bad = np.array([np.inf, np.nan, 1.0, -np.inf], np.float32)
    opt.apply_gradients([(bad, var)])
    after = [v.numpy() for v in opt.variables[2:]]
    theta = var.numpy()
    assert np.all(np.isfinite(theta)) and all(np.all(np.isfinite(a)) for a in after)
    np.testing.assert_array_equal(theta[[0, 1, 3]], np.asarray(ref.numpy())[[0, 1, 3]])  # unchanged
    assert theta[2] != ref.numpy()[2]  # the finite coordinate moved
    for b, a in zip(before, after):  # state of skipped coordinates kept (last axis of lag_history is F)
        idx = (Ellipsis, [0, 1, 3]) if b.ndim == 1 else (slice(None), [0, 1, 3])
        np.testing.assert_array_equal(a[idx], b[idx])
    for _ in range(3):  # and training continues normally
        opt.apply_gradients([(g_ok, var)])
    assert np.all(np.isfinite(var.numpy()))


def test_gradient_overflowing_the_state_is_skipped():
    var = keras.Variable([1.0, 1.0])
    opt = SymbolicOptimizer(RULE_A)
    opt.apply_gradients([(np.array([3e38, 1.0], np.float32), var)])  # g² overflows float32 in v
    assert np.all(np.isfinite(var.numpy())) and all(np.all(np.isfinite(v.numpy())) for v in opt.variables)
    np.testing.assert_allclose(var.numpy(), [1.0, 0.95], atol=1e-6)


def test_non_finite_step_keeps_the_parameter_and_advances_the_state():
    """A rule whose output overflows (finite gradient and state): the parameter stays, the state advances."""
    rule = Rule.from_dict(rule_dict(["mul", 3e38, ["mul", 3e38, "mt_0"]], "mt"))  # ±inf wherever m̃ ≠ 0
    var = keras.Variable([1.0, 2.0])
    opt = SymbolicOptimizer(rule)
    opt.apply_gradients([(np.array([0.5, 0.0], np.float32), var)])
    np.testing.assert_array_equal(var.numpy(), [1.0, 2.0])  # 0: step inf → kept; 1: m̃ = 0 → step 0
    m, v = (next(x.numpy() for x in opt.variables if x.path.endswith(name)) for name in ("_m", "_v"))
    np.testing.assert_allclose(m, [0.05 * 0.5, 0.0], rtol=1e-6)  # (1 − β1)·g with β1 = 0.95
    np.testing.assert_allclose(v, [0.05 * 0.25, 0.0], rtol=1e-6)


def test_fit_with_inf_loss_keeps_weights_finite():
    x, y = tiny_data(8)
    y = y.copy()
    y[3] = np.inf
    model = tiny_model()
    model.compile(optimizer=SymbolicOptimizer(RULE_A), loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert all(np.all(np.isfinite(v.numpy())) for v in model.optimizer.variables)


# ------------------------------------------------------------------------------------- precision, XLA

def test_float16_and_bfloat16_variables_use_float32_state():
    rng = np.random.default_rng(6)
    theta0 = rng.normal(size=5).astype(np.float32)
    grads = [rng.normal(size=5).astype(np.float32) for _ in range(4)]
    ref = numpy_rule_trajectory("B", theta0, grads)
    for dtype, tol in (("float16", 2e-3), ("bfloat16", 2e-2)):
        var = keras.Variable(theta0, dtype=dtype)
        opt = SymbolicOptimizer(RULE_B)
        for g in grads:
            opt.apply_gradients([(tf.cast(g, dtype), var)])
        assert var.dtype == dtype
        assert all(v.dtype == "float32" for v in opt.variables[2:])
        np.testing.assert_allclose(np.asarray(tf.cast(var.value, tf.float32)), ref[-1], atol=tol)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_fit(policy, dtype_policy):
    x, y = tiny_data(64)
    # Targets scaled by 0.1 so that no float16 gradient overflows at the initial loss scale 2^15 (at full scale
    # some steps are skipped, legitimately, and the runs diverge); rule B's momentum sees the raw gradient, so a
    # step taken on a still-scaled gradient would also show.
    y = 0.1 * y

    def train():
        model = tiny_model()
        model.compile(optimizer=SymbolicOptimizer(RULE_B), loss="mse", jit_compile=False)
        hist = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0).history["loss"]
        return model, hist

    dtype_policy("float32")
    ref, _ = train()
    dtype_policy(policy)
    model, hist = train()
    inner = model.optimizer
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        inner = model.optimizer.inner_optimizer
        assert isinstance(inner, SymbolicOptimizer)
    assert int(inner.iterations.numpy()) == 24  # no step skipped
    assert all(np.isfinite(hist)) and hist[-1] < hist[0]
    # Same weights as the float32 run of the same model, data and seed (the weights move by up to 0.7). Measured
    # max |Δw|: 2.8e-4 (mixed_float16), 1.6e-3 (mixed_bfloat16); the tolerances leave a margin of ~6-10x.
    atol = {"mixed_float16": 3e-3, "mixed_bfloat16": 1e-2}[policy]
    for a, b in zip(model.get_weights(), ref.get_weights()):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_jit_compile_matches_eager_apply(jit_compile):
    x, y = tiny_data(32)
    model = tiny_model()
    model.compile(optimizer=SymbolicOptimizer(RULE_B), loss="mse", jit_compile=jit_compile)
    hist = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    assert hist[-1] < hist[0]

    # the same 12 steps driven eagerly with apply_gradients
    ref = tiny_model()
    opt = SymbolicOptimizer(RULE_B)
    loss_fn = keras.losses.MeanSquaredError()
    for _ in range(3):
        for i in range(0, 32, 8):
            with tf.GradientTape() as tape:
                loss = loss_fn(y[i:i + 8], ref(x[i:i + 8]))
            grads = tape.gradient(loss, ref.trainable_variables)
            opt.apply_gradients(zip(grads, ref.trainable_variables))
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5)


# --------------------------------------------------------------------------------------- persistence

def test_tf_checkpoint_round_trip(tmp_path):
    x, y = tiny_data(16)
    model = tiny_model()
    opt = SymbolicOptimizer(RULE_B)
    model.compile(optimizer=opt, loss="mse")
    for _ in range(3):
        model.train_on_batch(x, y)
    saved = [v.numpy().copy() for v in opt.variables]
    ref_pred = model.predict(x, verbose=0)
    path = tf.train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    # the original model trains on, uninterrupted, from its own state at the save
    model.train_on_batch(x, y)
    assert not np.allclose(model.predict(x, verbose=0), ref_pred)
    model.train_on_batch(x, y)
    uninterrupted = model.get_weights()
    uninterrupted_slots = [v.numpy().copy() for v in opt.variables]

    # restore into a fresh model and optimizer
    model2 = tiny_model(seed=1)
    opt2 = SymbolicOptimizer(RULE_B)
    model2.compile(optimizer=opt2, loss="mse")
    opt2.build(model2.trainable_variables)
    tf.train.Checkpoint(model=model2, optimizer=opt2).restore(path).assert_existing_objects_matched()
    assert len(opt2.variables) == len(saved)
    for v, s in zip(opt2.variables, saved):
        np.testing.assert_array_equal(v.numpy(), s)
    np.testing.assert_allclose(model2.predict(x, verbose=0), ref_pred, atol=1e-6)
    # the restored model continues exactly like the original did (nothing copied between them)
    model2.train_on_batch(x, y)
    model2.train_on_batch(x, y)
    for a, b in zip(model2.get_weights(), uninterrupted):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
    for v, s in zip(opt2.variables, uninterrupted_slots):
        np.testing.assert_allclose(v.numpy(), s, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kind", ["A", "B"])
def test_keras_save_load_resume_equals_uninterrupted(kind, tmp_path):
    x, y = tiny_data(32)
    full = tiny_model()
    full.compile(optimizer=SymbolicOptimizer(RULES[kind], learning_rate=0.7), loss="mse")
    full.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)

    part = tiny_model()
    part.compile(optimizer=SymbolicOptimizer(RULES[kind], learning_rate=0.7), loss="mse")
    part.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    path = tmp_path / "model.keras"
    part.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.optimizer, SymbolicOptimizer)
    assert loaded.optimizer.get_config() == part.optimizer.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == 8
    for a, b in zip(loaded.optimizer.variables, part.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loaded.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_keras_load_refuses_hostile_rule(tmp_path):
    import zipfile

    model = tiny_model()
    model.compile(optimizer=SymbolicOptimizer(RULE_A), loss="mse")
    model.fit(*tiny_data(8), verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(data)
                cfg["compile_config"]["optimizer"]["config"]["rule"]["expression"] = ["__import__", "os"]
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    with pytest.raises(ValueError):
        keras.saving.load_model(bad, safe_mode=True)


def test_pickle():
    opt = SymbolicOptimizer(RULE_B, learning_rate=0.5, weight_decay=0.01)
    reloaded = pickle.loads(pickle.dumps(opt))
    assert isinstance(reloaded, SymbolicOptimizer)
    assert reloaded.get_config() == opt.get_config()
    # the reloaded optimizer steps exactly like the original on a twin variable (rule, lr and weight decay kept)
    var, twin = keras.Variable([1.0, 2.0, -3.0]), keras.Variable([1.0, 2.0, -3.0])
    for g in ([1.0, -1.0, 0.5], [0.3, 2.0, -0.5]):
        reloaded.apply_gradients([(np.array(g, np.float32), var)])
        opt.apply_gradients([(np.array(g, np.float32), twin)])
        np.testing.assert_array_equal(var.numpy(), twin.numpy())
    assert np.all(np.abs(var.numpy() - [1.0, 2.0, -3.0]) > 1e-3)


# -------------------------------------------------------------------------------------- tf.distribute

DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from tf_symbolic_l2o.optimizers import SymbolicOptimizer

    rule = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], np.float32) + 0.3).astype(np.float32)

    def run(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"),
                                      keras.layers.Dense(1)])
            model.compile(optimizer=SymbolicOptimizer(rule), loss="mse")
        init = model.get_weights()
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), init))
        return model.get_weights(), [v.numpy() for v in model.optimizer.variables], model.optimizer, moved

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    w2, s2, opt2, moved = run(mirrored)
    w1, s1, _, _ = run(tf.distribute.get_strategy())
    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "mirrored_slot": type(opt2.variables[2].value).__name__,
        "max_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2)),
        "max_slot_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(s1, s2)),
        "moved": moved,
    }))
""")


def test_mirrored_strategy_matches_single_device():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", DISTRIBUTED_SCRIPT, json.dumps(RULE_B.to_dict())],
                          capture_output=True, text=True, env=env, timeout=240, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert "Mirrored" in result["mirrored_slot"] or "Distributed" in result["mirrored_slot"], result
    assert result["max_weight_diff"] < 1e-5, result
    assert result["max_slot_diff"] < 1e-4, result
    assert result["moved"] > 0.05, result
    print(result)


# ------------------------------------------------------------------------------------ LearnedOptimizer

@pytest.fixture(scope="module")
def l2o():
    return make_l2o("rp_s", seed=0)


def l2o_functional(l2o, theta0_list, grads_seq):
    sizes = [int(np.prod(np.shape(t))) for t in theta0_list]
    state = l2o.init_state(sum(sizes))
    theta = tf.constant(np.concatenate([np.reshape(t, [-1]) for t in theta0_list]).astype(np.float32))
    for step, grads in enumerate(grads_seq, start=1):
        g = tf.constant(np.concatenate([np.reshape(x, [-1]) for x in grads]).astype(np.float32))
        delta, state = l2o.update(g, state, step)
        theta = theta + delta
    parts = np.split(theta.numpy(), np.cumsum(sizes)[:-1])
    return [p.reshape(np.shape(t)) for p, t in zip(parts, theta0_list)]


def test_learned_optimizer_matches_functional_l2o(l2o):
    rng = np.random.default_rng(7)
    shapes = [(3, 2), (4,), ()]
    theta0 = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads_seq = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(5)]
    variables = [keras.Variable(t) for t in theta0]
    opt = LearnedOptimizer(l2o)
    for grads in grads_seq:
        opt.apply_gradients(zip(grads, variables))
    for v, e in zip(variables, l2o_functional(l2o, theta0, grads_seq)):
        np.testing.assert_allclose(v.numpy(), e, rtol=0, atol=1e-6)
    names = [v.name.rsplit("_", 1)[-1] if "lstm" not in v.name else v.name[-8:] for v in opt.variables[2:6]]
    assert names == ["m", "v", "lstm_0_h", "lstm_0_c"]
    assert l2o.odd and tuple(opt.variables[4].shape) == (3, 2, 2 * 7)  # both branches of the odd network
    assert not any(w is v for w in l2o.weights for v in opt.variables)  # L2O weights are not optimizer state


def test_learned_optimizer_config_and_sources(l2o, tmp_path):
    opt = LearnedOptimizer(l2o, learning_rate=0.5)
    config = opt.get_config()
    json.dumps(config)
    again = LearnedOptimizer.from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config
    for a, b in zip(again.l2o.get_weights(), l2o.get_weights()):
        np.testing.assert_array_equal(a, b)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(opt))
    assert isinstance(revived, LearnedOptimizer) and revived.get_config() == config

    save_l2o(l2o, tmp_path / "l2o")
    from_path = LearnedOptimizer(str(tmp_path / "l2o"))
    for a, b in zip(from_path.l2o.get_weights(), l2o.get_weights()):
        np.testing.assert_array_equal(a, b)

    bad = json.loads(json.dumps(config))
    bad["l2o"]["weights"] = bad["l2o"]["weights"][:-1]
    with pytest.raises(ValueError):
        LearnedOptimizer.from_config(bad)
    bad = json.loads(json.dumps(config))
    bad["l2o"]["weights"][0] = [[1.0]]
    with pytest.raises(ValueError):
        LearnedOptimizer.from_config(bad)
    with pytest.raises(ValueError):
        LearnedOptimizer(3)


def test_learned_optimizer_fit_and_keras_round_trip(l2o, tmp_path):
    x, y = tiny_data(32)
    full = tiny_model()
    full.compile(optimizer=LearnedOptimizer(l2o), loss="mse", jit_compile=False)
    hist = full.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0).history["loss"]
    assert all(np.isfinite(hist))
    assert len(full.trainable_variables) == 4  # the L2O's weights are not trained by the model
    before = [w.copy() for w in l2o.get_weights()]

    xla = tiny_model()
    xla.compile(optimizer=LearnedOptimizer(l2o), loss="mse", jit_compile=True)
    xla.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    for a, b in zip(xla.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)

    part = tiny_model()
    part.compile(optimizer=LearnedOptimizer(l2o), loss="mse", jit_compile=False)
    part.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    path = tmp_path / "model.keras"
    part.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.optimizer, LearnedOptimizer)
    assert loaded.optimizer.get_config() == part.optimizer.get_config()
    for a, b in zip(loaded.optimizer.variables, part.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loaded.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(l2o.get_weights(), before):  # the L2O itself never changes
        np.testing.assert_array_equal(a, b)


def test_learned_optimizer_pickle(l2o):
    opt = LearnedOptimizer(l2o, learning_rate=0.5)
    reloaded = pickle.loads(pickle.dumps(opt))
    assert isinstance(reloaded, LearnedOptimizer) and reloaded.get_config() == opt.get_config()


def test_learned_optimizer_mixed_precision_and_non_finite(dtype_policy):
    dtype_policy("mixed_float16")
    l2o_mixed = make_l2o("rp_s", seed=0)  # built under the mixed policy: the optimizer runs a float32 copy
    x, y = tiny_data(32)
    model = tiny_model()
    model.compile(optimizer=LearnedOptimizer(l2o_mixed), loss="mse", jit_compile=False)
    hist = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    assert isinstance(model.optimizer.inner_optimizer, LearnedOptimizer)
    assert model.optimizer.inner_optimizer.l2o.compute_dtype == "float32"
    assert all(np.isfinite(hist)) and all(np.all(np.isfinite(w)) for w in model.get_weights())
    dtype_policy("float32")

    opt = LearnedOptimizer(make_l2o("rp_s", seed=0))
    var = keras.Variable(np.ones(3, np.float32), dtype="float16")
    opt.apply_gradients([(tf.constant([1.0, -2.0, np.inf], tf.float16), var)])
    assert var.dtype == "float16" and all(v.dtype == "float32" for v in opt.variables[2:])
    theta = np.asarray(tf.cast(var.value, tf.float32))
    assert np.all(np.isfinite(theta)) and theta[2] == 1.0 and theta[0] != 1.0
    assert all(np.all(np.isfinite(v.numpy())) for v in opt.variables)


# Δθ = 0.01 · (0.03 + 0.43 · tanh(−0.45 · sinh(3.95 · (0.011 + m̃))))   (SymbolicRP's shipped form: sinh, tanh)
RULE_SINH = Rule.from_dict(rule_dict(
    ["add", 0.03, ["mul", 0.43, ["tanh", ["mul", -0.45, ["sinh", ["mul", 3.95, ["add", 0.011, "mt_0"]]]]]]],
    "mt+gt", output_scale=0.01))


def test_fused_update_starts_with_its_own_gradients():
    """Outside tf.distribute, no cluster of the fused update waits on a barrier over all gradients (Keras'
    one-replica all-reduce adds an IdentityN over every gradient, which XLA cluster calls would wait for): each
    cluster's gradient inputs come straight from the backward pass. Under a strategy the all-reduce stays."""
    def optimizer_inputs(strategy):
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
            opt = SymbolicOptimizer(RULE_A)
            opt.build(model.trainable_variables)

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(x) - y) ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))

        args = (tf.ones((2, 4)), tf.ones((2, 1)))
        graph = (step.get_concrete_function(*args).graph if strategy is None else
                 tf.function(lambda *a: strategy.run(step, args=a)).get_concrete_function(*args).graph)
        calls = [op for op in graph.get_operations() if op.type in ("StatefulPartitionedCall", "PartitionedCall")
                 and op.name.startswith(opt.name)]
        return graph, calls

    graph, calls = optimizer_inputs(None)
    assert len(calls) == 1  # 4 variables: one cluster
    sources = {t.op.type for op in calls for t in op.inputs}
    assert "IdentityN" not in sources, sources
    assert not [op for op in graph.get_operations() if op.type == "IdentityN" and op.name.startswith("symbolic")]
    base = keras.optimizers.Optimizer  # Keras' all-reduce, which SymbolicOptimizer skips or calls
    with mock.patch.object(base, "_all_reduce_sum_gradients", autospec=True,
                           side_effect=base._all_reduce_sum_gradients) as all_reduce:
        optimizer_inputs(None)
        assert all_reduce.call_count == 0
        optimizer_inputs(tf.distribute.OneDeviceStrategy("/cpu:0"))  # under a strategy the all-reduce stays
        assert all_reduce.call_count == 1


@pytest.mark.parametrize("rule", [RULE_A, RULE_B, RULE_SINH], ids=["A", "B", "sinh"])
def test_fused_and_unfused_steps_agree(rule):
    """The three execution paths give the same trajectory on several variables: groups of variables in one XLA
    cluster (default, no strategy), one XLA cluster per variable (under a tf.distribute strategy) and plain graph
    ops."""
    rng = np.random.default_rng(3)
    shapes = [(4, 3), (7,), (2, 2, 3)] + [(k,) for k in range(1, 11)]  # 13 variables: clusters of 10 and 3
    grads = [[rng.normal(size=s).astype("float32") for s in shapes] for _ in range(5)]
    grads[2][0][0, 1] = np.inf  # the finiteness guard behaves the same
    results = {}
    paths = [("grouped", True, None), ("per-variable", True, tf.distribute.OneDeviceStrategy("/cpu:0")),
             ("unfused", False, None)]
    for path, fused, strategy in paths:
        with strategy.scope() if strategy else contextlib.nullcontext():
            variables = [tf.Variable(np.ones(s, "float32")) for s in shapes]
            opt = SymbolicOptimizer(rule, fused=fused)
        assert opt.get_config()["fused"] is fused
        calls = {"group": 0, "one": 0}

        def counting(key, fn):
            def wrapped(*args):
                calls[key] += 1
                return fn(*args)
            return wrapped

        opt._update_group, opt._update = counting("group", opt._update_group), counting("one", opt._update)
        if fused:
            opt._fused_update_group = tf.function(opt._update_group, jit_compile=True)
            opt._fused_update = tf.function(opt._update, jit_compile=True)
        step = tf.function(lambda g: opt.apply_gradients(zip(g, variables)))
        with strategy.scope() if strategy else contextlib.nullcontext():
            for g in grads:
                (strategy.run(step, args=([tf.constant(x) for x in g],)) if strategy
                 else step([tf.constant(x) for x in g]))
        results[path] = [v.numpy() for v in variables]
        # which path ran (counted at trace time: the step function is traced once)
        assert calls["group"] == (2 if path == "grouped" else 0), (path, calls)
        assert calls["one"] > 0
    assert all(np.all(np.isfinite(v)) for v in results["grouped"])
    assert results["grouped"][0][0, 1] != 1.0 and np.any(results["grouped"][1] != 1.0)
    for path in ("per-variable", "unfused"):
        for a, b in zip(results["grouped"], results[path]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
