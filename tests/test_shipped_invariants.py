"""Every optimizer the project ships holds the invariants of an optimizer, through its Keras optimizer.

For every preset (``SymbolicRP``, ``SymbolicRPsi``, ``SymbolicDM``), every ``saved_models/symbolic_*`` rule and every
shipped learned optimizer (``LearnedOptimizer``):

* rest: 100 ``apply_gradients`` steps with a zero gradient leave the weights unchanged (atol 1e-7);
* sign symmetry: 20 steps with a gradient sequence g and 20 with −g give opposite weight changes (atol 1e-6);
* descent: under a constant gradient the weights move against it, coordinate by coordinate.
"""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.optimizers import LearnedOptimizer, SymbolicDM, SymbolicOptimizer, SymbolicRP, SymbolicRPsi
from tf_symbolic_l2o.artifacts import saved_models_dir

SAVED = saved_models_dir()
RULES = sorted(p.parent.name for p in SAVED.glob("symbolic_*/rule.json"))
L2OS = sorted(p.parent.name for p in SAVED.glob("*/l2o.json"))


def _factories():
    out = {"SymbolicRP": SymbolicRP, "SymbolicRPsi": SymbolicRPsi, "SymbolicDM": SymbolicDM}
    out.update({name: (lambda p=SAVED / name / "rule.json": SymbolicOptimizer(p)) for name in RULES})
    out.update({name: (lambda p=SAVED / name: LearnedOptimizer(p)) for name in L2OS})
    return out


FACTORIES = _factories()


def test_something_ships():
    assert len(RULES) >= 3 and len(L2OS) >= 4, (RULES, L2OS)


def _run(make, grads, w0):
    var = tf.Variable(w0)
    opt = make()
    for g in grads:
        opt.apply_gradients([(tf.constant(g), var)])
    return var.numpy() - w0


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_shipped_optimizer_invariants(name):
    make = FACTORIES[name]
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 6)).astype(np.float32)

    moved = _run(make, [np.zeros_like(w0)] * 100, w0)
    np.testing.assert_allclose(moved, 0.0, atol=1e-7, rtol=0, err_msg=f"{name} moves at rest")

    # a sequence with varying magnitudes (1e-5 … 1e1 per coordinate) and occasional sign flips
    scale = np.logspace(-5, 1, w0.size).reshape(w0.shape)
    seq = [(scale * (rng.normal(size=w0.shape) + 0.5)).astype(np.float32) for _ in range(20)]
    up, down = _run(make, seq, w0), _run(make, [-g for g in seq], w0)
    np.testing.assert_allclose(up, -down, atol=1e-6, rtol=0, err_msg=f"{name}: g and −g do not mirror")
    assert np.max(np.abs(up)) > 1e-4, f"{name} hardly moves"

    const = (np.sign(rng.normal(size=w0.shape)) * scale).astype(np.float32)
    moved = _run(make, [const] * 20, w0)
    assert np.all(moved * const < 0), f"{name} does not move against a constant gradient: {moved[moved * const >= 0]}"
