"""A rule's size scale: the step of an optimizer that updates n coordinates is multiplied by
min(1, (reference / n) ** power) (``Rule.size_factor``), the same in the Keras optimizer, the functional
``RuleOptimizer`` (also when first-order meta-tuning cuts the vector into blocks) and on the shipped presets."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.optimizers import SymbolicOptimizer, SymbolicRP, SymbolicRPsi, SymbolicDM
from tf_symbolic_l2o.rules import Rule
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
from tf_symbolic_l2o.tasks.family import FAMILIES
from tf_symbolic_l2o.tasks.registry import make_task

BASE = Rule.load("saved_models/symbolic_rp_gain/rule.json").replace(size_scale=None)


def sized(reference, power=0.5):
    return BASE.replace(size_scale={"reference": reference, "power": power})


def test_size_factor_by_hand_and_json_round_trip():
    rule = sized(100)
    assert rule.size_factor(100) == 1.0 and rule.size_factor(7) == 1.0  # up to the reference: the tuned step
    assert math.isclose(rule.size_factor(400), 0.5) and math.isclose(rule.size_factor(10_000), 0.1)
    assert math.isclose(sized(100, power=1.0).size_factor(400), 0.25)
    assert math.isclose(float(rule.size_factor(tf.constant(400))), 0.5, rel_tol=1e-6)  # the tensor form
    assert BASE.size_factor(10 ** 9) == 1.0  # no size scale
    assert Rule.from_json(rule.to_json()) == rule
    assert "size_scale" not in BASE.to_dict()  # rule files without one are written as before


@pytest.mark.parametrize("bad, fragment", [
    ({"reference": 0, "power": 0.5}, "must be >= 1"),
    ({"reference": 10}, "exactly the keys"),
    ({"reference": 10, "power": 0.5, "width": 3}, "exactly the keys"),
    ({"reference": 10, "power": float("nan")}, "must be finite"),
    ({"reference": 10, "power": 3}, "must be in [0, 2]"),
    ("272474", "exactly the keys"),
])
def test_bad_size_scales_are_refused(bad, fragment):
    layout = {**BASE.to_dict(), "size_scale": bad}
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Rule.from_dict(json.loads(json.dumps(layout)))


def _gradients(shapes, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    return [[(rng.normal(size=s) * 10.0 ** rng.integers(-3, 1)).astype(np.float32) for s in shapes]
            for _ in range(steps)]


def _initial(shape):
    """The weights every run starts from: evenly spaced in [-1, 1]."""
    return np.linspace(-1, 1, math.prod(shape), dtype=np.float32).reshape(shape)


def _weights_after(optimizer, grads):
    variables = [keras.Variable(_initial(g.shape)) for g in grads[0]]
    optimizer.build(variables)
    for step in grads:
        optimizer.apply_gradients(zip([tf.constant(g) for g in step], variables))
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("fused", [True, False])
def test_keras_step_is_the_unscaled_rule_at_the_factor_as_learning_rate(fused):
    """A [30, 20] kernel and a [20] bias: 620 coordinates; with reference 100 the factor is √(100/620) (by hand)."""
    grads = _gradients([(30, 20), (20,)])
    factor = math.sqrt(100 / 620)
    scaled = _weights_after(SymbolicOptimizer(sized(100), fused=fused), grads)
    plain = _weights_after(SymbolicOptimizer(BASE, learning_rate=factor, fused=fused), grads)
    full = _weights_after(SymbolicOptimizer(BASE, fused=fused), grads)
    for a, b, c, w0 in zip(scaled, plain, full, [_initial(g.shape) for g in grads[0]]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
        assert np.abs(a - w0).max() < 0.5 * np.abs(c - w0).max()  # the scaled steps are the smaller ones
    # on a model no larger than the reference the step is the rule's own, to the bit
    for a, b in zip(_weights_after(SymbolicOptimizer(sized(620), fused=fused), grads), full):
        np.testing.assert_array_equal(a, b)


def test_functional_rule_optimizer_matches_keras_and_meta_tuning_blocks_use_the_whole_size():
    from tf_symbolic_l2o.tune.tunable import TunableRule

    grads = _gradients([(30, 20), (20,)])
    keras_weights = _weights_after(SymbolicOptimizer(sized(100)), grads)
    flat = [np.concatenate([g.ravel() for g in step]) for step in grads]
    theta0 = np.concatenate([_initial(g.shape).ravel() for g in grads[0]])
    opt, tunable = RuleOptimizer(sized(100)), TunableRule(sized(100))
    theta, state = tf.constant(theta0), opt.init_state(620)
    blocks = tunable.split_state(tunable.init_state(620), [256, 256, 108])
    theta_blocks = tf.constant(theta0)
    for t, g in enumerate(flat):
        step = tf.constant(float(t + 1))
        delta, state = opt.update(tf.constant(g), state, step)
        theta = theta + delta
        parts = []
        for i, (gb, sb) in enumerate(zip(tf.split(tf.constant(g), [256, 256, 108]), blocks)):
            d, _, blocks[i] = tunable.update_and_jacobian(gb, sb, step, num_coords=620)
            parts.append(d)
        theta_blocks = theta_blocks + tf.concat(parts, 0)
    expected = np.concatenate([w.ravel() for w in keras_weights])
    np.testing.assert_allclose(theta.numpy(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(theta_blocks.numpy(), expected, rtol=1e-6, atol=1e-7)
    # up to the reference the functional step is the rule's own, to the bit (the benchmark's tasks, the family)
    g, step = tf.constant(flat[0]), tf.constant(1.0)
    small, _ = RuleOptimizer(sized(620)).update(g, RuleOptimizer(sized(620)).init_state(620), step)
    plain, _ = RuleOptimizer(BASE).update(g, RuleOptimizer(BASE).init_state(620), step)
    np.testing.assert_array_equal(small.numpy(), plain.numpy())


def test_the_presets_reference_is_the_default_familys_largest_member():
    """The shipped rules keep their tuned step up to the largest model their gain was chosen on (ResNet-20 of the
    ``default`` family: 272,474 parameters) and shrink it by √(N/n) above; ResNet-50's 23.6 M parameters get
    about 0.108."""
    largest = max(make_task(m["task"], split="meta_train").num_params for m in FAMILIES["default"])
    assert largest == 272_474
    for cls in (SymbolicRP, SymbolicRPsi, SymbolicDM):
        assert cls().rule.size_scale == {"reference": 272_474.0, "power": 0.5}
    assert math.isclose(SymbolicRP().rule.size_factor(23_555_082), math.sqrt(272_474 / 23_555_082))


def test_show_prints_the_size_factor():
    from test_cli import invoke

    result = invoke("show", "saved_models/symbolic_rp_gain/rule.json", "--no-simplify", "--no-check")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "· size factor" in text and "min(1, (272,474 / n)^0.5)" in text


def test_a_sized_rule_saves_to_keras_and_continues_like_the_uninterrupted_run(tmp_path):
    """The factor is the model's (recomputed when the loaded optimizer is built): fit 2 epochs, or 1, save, load with
    safe_mode=True, 1 more: the same weights."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 30)).astype("float32"), rng.normal(size=(64, 20)).astype("float32")

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((30,)), keras.layers.Dense(20)])
        m.compile(optimizer=SymbolicOptimizer(sized(100)), loss="mse")
        return m

    whole, half = model(), model()
    whole.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    half.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    half.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    back.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert back.optimizer.rule.size_scale == {"reference": 100.0, "power": 0.5}
    assert math.isclose(back.optimizer._size_factor, math.sqrt(100 / 620))
    for a, b in zip(whole.get_weights(), back.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
