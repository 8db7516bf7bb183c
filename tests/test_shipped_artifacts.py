"""Every artifact in ``saved_models/`` loads the way its manifest says, steps, and trains.

* every folder is in ``MANIFEST.json`` and every manifest entry has its folder;
* every ``symbolic_*`` rule loads through :class:`SymbolicOptimizer` and keeps the state bytes per parameter its
  manifest entry states (slots + lag history);
* every learned optimizer loads by :func:`load_l2o` and through :class:`LearnedOptimizer`; both give the same
  first steps, and the Keras optimizer trains a small Keras model.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.data import load_dataset
from tf_symbolic_l2o.learned.io import load_l2o
from tf_symbolic_l2o.optimizers import LearnedOptimizer, SymbolicOptimizer
from tf_symbolic_l2o.artifacts import saved_models_dir

SAVED = saved_models_dir()
MANIFEST = json.loads((SAVED / "MANIFEST.json").read_text())
RULES = sorted(p.parent.name for p in SAVED.glob("symbolic_*/rule.json"))
L2OS = sorted(p.parent.name for p in SAVED.glob("*/l2o.json"))


def test_manifest_covers_every_artifact():
    folders = sorted(p.name for p in SAVED.iterdir() if p.is_dir())
    assert sorted(MANIFEST) == folders
    assert sorted(RULES + L2OS) == folders  # each folder is a rule or a learned optimizer


@pytest.mark.parametrize("name", RULES)
def test_shipped_rule_state_bytes_match_the_manifest(name):
    """The Keras optimizer keeps exactly the state its manifest entry states (slots + lag history)."""
    var = keras.Variable(np.zeros((10,), np.float32))
    opt = SymbolicOptimizer(SAVED / name / "rule.json")
    opt.build([var])
    floats = sum(int(np.prod(v.shape)) for v in opt.variables if len(v.shape) >= 1)
    assert floats * 4 / 10 == MANIFEST[name]["state_bytes_per_parameter"]
    meta = json.loads((SAVED / name / "rule.json").read_text())["metadata"]
    if "r2_test" in MANIFEST[name]:
        assert MANIFEST[name]["r2_test"] == pytest.approx(meta["r2_test"], abs=1e-4)


@pytest.mark.parametrize("name", L2OS)
def test_shipped_l2o_loads_both_ways_and_steps_alike(name):
    """``load_l2o`` (functional) and ``LearnedOptimizer`` (Keras) give the same three steps on one variable."""
    l2o = load_l2o(SAVED / name)
    assert bool(l2o.odd) == bool(MANIFEST[name]["odd"])
    rng = np.random.default_rng(1)
    grads = [rng.normal(0, 10.0 ** rng.uniform(-4, 0, 12), 12).astype(np.float32) for _ in range(3)]
    theta = np.zeros(12, np.float32)
    state = l2o.init_state(12)
    for t, g in enumerate(grads, start=1):
        delta, state = l2o.update(tf.constant(g), state, t)
        theta = theta + delta.numpy()
    var = tf.Variable(np.zeros(12, np.float32))
    opt = LearnedOptimizer(SAVED / name)
    for g in grads:
        opt.apply_gradients([(tf.constant(g), var)])
    np.testing.assert_allclose(var.numpy(), theta, rtol=1e-5, atol=1e-7)
    assert np.max(np.abs(theta)) > 1e-4


@pytest.mark.parametrize("name", L2OS)
def test_shipped_l2o_trains_a_keras_model(name):
    """A softmax regression on scikit-learn's digits, 60 steps of ``model.fit``: the training loss falls to < 0.6× (measured 2.52 → 0.47 … 1.15, DM the slowest)."""
    ds = load_dataset("digits")
    x, y = ds.x_train[:512], ds.y_train[:512]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(10)])
    model.compile(optimizer=LearnedOptimizer(SAVED / name),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=64, epochs=8, shuffle=False, verbose=0)  # 8 × 8 = 64 steps
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < 0.6 * before, (before, after)
