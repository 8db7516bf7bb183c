"""The functional optimizer layer: the registry, the protocol every optimizer follows, ``Baseline`` compatibility."""

import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.baselines import BASELINES, Baseline
from tf_symbolic_l2o.functional import (OPTIMIZERS, SGD, Adam, AdamW, CoordinateOptimizer, Lion, Momentum, RMSprop,
                                        available_optimizers, make_optimizer, state_bytes_per_param)
from tf_symbolic_l2o.learned.registry import make_l2o
from tf_symbolic_l2o.rules import Rule, parse_infix
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer


def test_registry_builds_every_optimizer_by_name():
    expected = {"sgd": SGD, "momentum": Momentum, "adam": Adam, "rmsprop": RMSprop, "adamw": AdamW, "lion": Lion}
    assert available_optimizers() == tuple(expected) and OPTIMIZERS == expected
    state_floats = {"sgd": 0, "momentum": 1, "adam": 2, "rmsprop": 1, "adamw": 2, "lion": 1}
    theta, grad = tf.constant([1.0, -2.0, 3.0]), tf.constant([0.5, -0.25, 2.0])
    for name, cls in expected.items():
        opt = make_optimizer(name, 0.01)
        assert type(opt) is cls and opt.kind == name and isinstance(opt, CoordinateOptimizer)
        assert opt.name == f"{name}(lr=0.01)" and opt.config()["kind"] == name
        assert opt.config()["learning_rate"] == 0.01
        assert state_bytes_per_param(opt, 3) == 4.0 * state_floats[name]
        delta, state = opt.update(grad, opt.init_state(3), tf.constant(1), params=theta)
        assert delta.shape == (3,) and np.all(np.isfinite(delta.numpy()))
        # one step against the gradient, whatever the rule (every coordinate here has |g| large enough)
        assert np.all(np.sign(delta.numpy()) == -np.sign(grad.numpy()))
        assert tf.nest.map_structure(lambda t: t.shape, state) == \
            tf.nest.map_structure(lambda t: t.shape, opt.init_state(3))
    assert make_optimizer("momentum", 0.1, momentum=0.5).momentum == 0.5
    assert make_optimizer("adamw", 0.1, weight_decay=0.0).update(grad, AdamW(0.1).init_state(3), 1)[0].shape == (3,)
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        make_optimizer("adagrad", 0.1)
    for bad in (0.0, -1e-3):
        with pytest.raises(ValueError, match="learning_rate must be positive"):
            make_optimizer("adam", bad)


def test_learning_rate_variable_is_read_at_every_step():
    lr = tf.Variable(0.1)
    opt = make_optimizer("sgd", lr)
    g = tf.constant([1.0, -1.0])
    np.testing.assert_array_equal(opt.update(g, (), 1)[0].numpy(), np.float32([-0.1, 0.1]))
    lr.assign(0.5)
    np.testing.assert_array_equal(opt.update(g, (), 1)[0].numpy(), np.float32([-0.5, 0.5]))
    assert opt.name == "sgd(lr=0.5)"


def test_weight_decay_reads_params():
    """AdamW and Lion decay the θ they are given: Δ(θ) − Δ(0) = −lr·wd·θ."""
    g, theta = tf.constant([0.3, -0.7]), tf.constant([2.0, -4.0])
    for opt in (AdamW(0.1, weight_decay=0.5), Lion(0.1, weight_decay=0.5)):
        at_theta, _ = opt.update(g, opt.init_state(2), 1, params=theta)
        at_zero, _ = opt.update(g, opt.init_state(2), 1, params=tf.zeros([2]))
        np.testing.assert_allclose((at_theta - at_zero).numpy(), -0.1 * 0.5 * theta.numpy(), rtol=1e-6)


def test_every_optimizer_is_a_peer_under_one_protocol():
    """The LSTM and a rule take ``params`` too (and ignore it), like the hand-designed optimizers."""
    rule = Rule(parse_infix("-0.5 * tanh(mt_0)"), features="mt", output_scale=0.01)
    grad, theta = tf.constant([0.5, -1.0, 2.0]), tf.constant([1.0, 2.0, 3.0])
    for opt in (make_l2o("rp_s", seed=0), RuleOptimizer(rule), Baseline("adam", 0.01)):
        assert isinstance(opt, CoordinateOptimizer)
        state = opt.init_state(3)
        without, _ = opt.update(grad, state, 1)
        with_params, _ = opt.update(grad, state, 1, params=theta)
        np.testing.assert_array_equal(without.numpy(), with_params.numpy())


def test_baseline_is_the_registry_with_its_old_signature():
    assert BASELINES == ("sgd", "momentum", "adam", "rmsprop")
    assert type(Baseline("sgd", 0.1)) is SGD
    m = Baseline("momentum", 0.1, momentum=0.5, beta1=0.1, rho=0.2)  # other kinds' hyperparameters are ignored
    assert type(m) is Momentum and m.config() == {"kind": "momentum", "learning_rate": 0.1, "momentum": 0.5}
    a = Baseline("adam", 1e-3, beta1=0.8, beta2=0.99, epsilon=1e-8)
    assert type(a) is Adam and (a.beta1, a.beta2, a.epsilon) == (0.8, 0.99, 1e-8)
    r = Baseline("rmsprop", 1e-3, rho=0.95)
    assert type(r) is RMSprop and r.rho == 0.95
    assert Baseline("adam").learning_rate == 1e-3
    with pytest.raises(ValueError, match="unknown baseline 'adamw'"):
        Baseline("adamw", 1e-3)
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        Baseline("adam", 0)
