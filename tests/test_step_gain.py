"""The per-coordinate step gain (``FeatureSet(gain=StepGain(...))``) against a NumPy implementation written from its
definition, through the functional rule optimizer and the Keras optimizer; its config, its errors and its invariants."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.features import FeatureSet, StepGain
from tf_symbolic_l2o.optimizers import SymbolicOptimizer
from tf_symbolic_l2o.rules import Rule
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer

GAIN = {"up": 1.25, "down": 0.5, "low": 0.1, "high": 4.0}


def gain_rule(gain=GAIN):
    """Δθ = 0.01 · gain · (−tanh(m̃)), an Adam-like rule with the step gain."""
    return Rule.from_dict({"format": "tfl2o-rule/1", "expression": ["mul", -1.0, ["tanh", "mt_0"]],
                           "features": {"names": "mt", "gain": gain}, "memlen": 1, "output_scale": 0.01})


def numpy_steps(grads, gain=GAIN, b=0.95, eps=1e-12):
    """The steps and gains from the definition: lgain moves by log up / log down / 0 as g·m_{t−1} is > 0 / < 0 / 0,
    clipped to [log low, log high]; Δθ = 0.01 · exp(lgain) · (−tanh(m̂ / (√v̂ + ε)))."""
    m = v = lgain = np.zeros(grads.shape[1])
    steps, gains = [], []
    for i, g in enumerate(grads):
        t = i + 1
        agree = g * m
        lgain = np.clip(lgain + np.where(agree > 0, np.log(gain["up"]), np.where(agree < 0, np.log(gain["down"]), 0)),
                        np.log(gain["low"]), np.log(gain["high"]))
        m, v = b * m + (1 - b) * g, b * v + (1 - b) * g * g
        mt = (m / (1 - b ** t)) / (np.sqrt(v / (1 - b ** t)) + eps)
        steps.append(0.01 * np.exp(lgain) * -np.tanh(mt))
        gains.append(np.exp(lgain))
    return np.array(steps), np.array(gains)


def _grads():
    """Coordinate 0 keeps its sign (its gain grows to the top), 1 alternates (shrinks to the bottom), 2 is noise,
    3 is zero at every step (its gain stays 1), 4 flips once."""
    rng = np.random.default_rng(0)
    T = 40
    g = np.stack([np.full(T, 0.3), 0.2 * (-1.0) ** np.arange(T), rng.normal(size=T), np.zeros(T),
                  np.where(np.arange(T) < 20, 1.0, -1.0)], axis=1)
    return g


def test_functional_steps_match_numpy():
    grads = _grads()
    ref_steps, ref_gains = numpy_steps(grads)
    opt = RuleOptimizer(gain_rule())
    state = opt.init_state(5)
    for i, g in enumerate(grads):
        delta, state = opt.update(tf.constant(g, tf.float32), state, tf.constant(float(i + 1)))
        np.testing.assert_allclose(delta.numpy(), ref_steps[i], rtol=2e-5, atol=1e-9)
    gains = np.exp(state[0]["lgain"].numpy())
    np.testing.assert_allclose(gains, ref_gains[-1], rtol=1e-5)
    assert gains[0] == pytest.approx(4.0) and gains[1] == pytest.approx(0.1) and gains[3] == 1.0


@pytest.mark.parametrize("fused", [True, False])
def test_keras_optimizer_matches_numpy(fused):
    grads = _grads()
    ref_steps, _ = numpy_steps(grads)
    var = keras.Variable(np.zeros(5, "float32"))
    opt = SymbolicOptimizer(gain_rule(), fused=fused)
    opt.build([var])
    assert [v.name.rsplit("_", 1)[-1] for v in opt.variables][-3:] == ["m", "v", "lgain"]
    for g in grads:
        opt.apply_gradients([(tf.constant(g, tf.float32), var)])
    np.testing.assert_allclose(var.numpy(), ref_steps.sum(0), rtol=1e-4, atol=1e-7)


def test_non_finite_gradient_keeps_the_gain():
    opt = RuleOptimizer(gain_rule())
    state = opt.init_state(2)
    for t in range(1, 4):
        _, state = opt.update(tf.constant([1.0, 1.0]), state, tf.constant(float(t)))
    before = state[0]["lgain"].numpy()
    var = keras.Variable(np.zeros(2, "float32"))
    k = SymbolicOptimizer(gain_rule())
    k.build([var])
    for t in range(3):
        k.apply_gradients([(tf.constant([1.0, 1.0]), var)])
    k.apply_gradients([(tf.constant([np.inf, 1.0]), var)])
    lgain = k.variables[-1].numpy()
    assert lgain[0] == pytest.approx(before[0]) and lgain[1] > before[1]
    assert np.all(np.isfinite(var.numpy()))


def test_rule_json_round_trip_and_minimal_keep_the_gain(tmp_path):
    rule = gain_rule()
    assert rule.feature_set.gain == StepGain(**GAIN)
    assert rule.feature_set.state_names() == ("m", "v", "lgain")
    path = tmp_path / "rule.json"
    path.write_text(rule.to_json())
    loaded = Rule.load(path)
    assert loaded.features["gain"] == GAIN and loaded.minimal().feature_set.gain == StepGain(**GAIN)
    config = SymbolicOptimizer(loaded).get_config()
    assert SymbolicOptimizer.from_config(json.loads(json.dumps(config))).rule.feature_set.gain == StepGain(**GAIN)
    assert "gain" not in Rule.from_dict({**rule.to_dict(), "features": {"names": "mt"}}).features
    assert FeatureSet("gt", gain={}).state_names() == ("m", "v", "lgain")  # defaults; the gain reads m


@pytest.mark.parametrize("gain, match", [
    ({"up": 0.9}, "up >= 1"), ({"down": 1.5}, "0 < down <= 1"), ({"low": 2.0}, "low <= 1"),
    ({"high": 0.5}, "1 <= high"),
    ({"up": float("nan")}, "finite"), ({"up": "fast"}, "finite"), ({"speed": 1.0}, "unknown key"),
    ([1.05, 0.95], "must be a dict"),
])
def test_bad_gains_fail_with_one_line_errors(gain, match):
    with pytest.raises(ValueError, match=match) as err:
        gain_rule(gain)
    assert "\n" not in str(err.value)


def test_invariants_hold_with_the_gain():
    from tf_symbolic_l2o.invariants import check_invariants

    report = check_invariants(RuleOptimizer(gain_rule()))
    assert report.passed and len(report.results) == 3, str(report)


def test_tunable_rule_jacobian_carries_the_gain():
    """First-order meta-tuning's per-coordinate ∂Δ/∂constants (update_and_jacobian) equals a tape's through update(),
    gain included, after a few steps in which the gain has moved."""
    from tf_symbolic_l2o.tune.tunable import TunableRule

    rule = Rule.from_dict({"format": "tfl2o-rule/1", "expression": ["mul", -0.8, ["tanh", ["mul", 1.5, "mt_0"]]],
                           "features": {"names": "mt", "gain": GAIN}, "memlen": 1, "output_scale": 0.01})
    tunable = TunableRule(rule)
    grads = _grads()
    state = tunable.init_state(5)
    for i, g in enumerate(grads[:6]):
        _, state = tunable.update(tf.constant(g, tf.float32), state, tf.constant(float(i + 1)))
    g, step = tf.constant(grads[6], tf.float32), tf.constant(7.0)
    delta, jac, _ = tunable.update_and_jacobian(g, state, step)
    with tf.GradientTape(persistent=True) as tape:
        ref, new_state = tunable.update(g, state, step)
        coords = tf.unstack(ref)
    expected = np.stack([tape.gradient(c, tunable.params).numpy() for c in coords])
    np.testing.assert_allclose(delta.numpy(), ref.numpy(), rtol=1e-6)
    np.testing.assert_allclose(jac.numpy(), expected, rtol=1e-5, atol=1e-9)
    assert not np.allclose(np.exp(new_state[0]["lgain"].numpy()), 1.0)  # the gain did move
