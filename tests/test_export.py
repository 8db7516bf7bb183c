"""SavedModel export of symbolic rules and trained Keras models (``tf_symbolic_l2o.export``).

The exported rule is checked against :class:`RuleOptimizer` (the semantics it must reproduce), against NumPy written
here from the feature definitions, and through ``saved_model_cli`` (a TensorFlow runtime that knows nothing of this
library). All ``saved_model_cli`` calls start together in one module fixture to keep the file fast.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o import export as export_mod
from tf_symbolic_l2o.export import export_model, export_rule, load_exported_rule, signatures_summary
from tf_symbolic_l2o.optimizers import SymbolicOptimizer
from tf_symbolic_l2o.rules import Rule, parse_infix
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer

# The paper's RP rule (memlen 1, features m̃, g̃; only m̃ used): state m, v.
RP = Rule(parse_infix("tanh(tanh(0.024803324 + sinh(cube(-1.9923366 * mt_0))))"), features="mt+gt", memlen=1)
# memlen 3: lags 1 and 2 of g̃ and a momentum: state v, mom9 and a [2, n, 2] history.
LAG3 = Rule.from_dict({"format": "tfl2o-rule/1", "output_scale": 0.1, "memlen": 3, "features": {"names": "gt+mom9"},
                       "expression": ["tanh", ["add", ["mul", -2.0, "mom9_0"],
                                               ["add", ["mul", -0.5, "gt_1"], ["mul", 0.3, "gt_2"]]]]})

SMCLI = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
RUN_INPUTS = "grad=[0.1,-0.2];step=1;m=[0.,0.];v=[0.,0.]"
# t = 2 from the state that RUN_INPUTS returns (m = 0.05·g₁, v = 0.05·g₁²): here |m̃| ≈ 0.29, 0.22 < 1, so the
# rule is not saturated and the printed delta depends on every constant of the expression.
RUN2_STATE = {"m": [0.005, -0.01], "v": [0.0005, 0.002]}
RUN2_GRAD = [-0.05, 0.3]
RUN2_INPUTS = f"grad={RUN2_GRAD};step=2;m={RUN2_STATE['m']};v={RUN2_STATE['v']}".replace(" ", "")
X_SERVE = [[0.5, -1.0, 2.0, 0.25], [1.0, 0.0, -0.5, 3.0]]
MARK = "@@CMD@@"
# Several saved_model_cli command lines through its own main() in ONE interpreter (one TensorFlow import instead
# of one per command; the flags are reset between commands). Output blocks are separated by MARK lines.
DRIVER = f"""
import json, sys
from absl import flags
from tensorflow.python.tools import saved_model_cli
for argv in json.loads(sys.argv[1]):
    print("{MARK}", flush=True)
    if flags.FLAGS.is_parsed():
        flags.FLAGS.unparse_flags()
    sys.argv = ["saved_model_cli", *argv]
    try:
        saved_model_cli.main()
    except SystemExit as e:
        if e.code:
            raise
"""


def _start(args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(proc, timeout=180):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _printed(out: str, key: str) -> np.ndarray:
    """The array saved_model_cli prints after ``Result for output key <key>:``."""
    m = re.search(rf"Result for output key {key}:\n(\[[^\]]*\](?:\s*\[[^\]]*\])*\]?)", out)
    assert m, out[-2000:]
    return np.array([float(v) for v in re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", m.group(1))])


def _tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(inputs))
    model.compile(optimizer=SymbolicOptimizer(RP), loss="mse", jit_compile=False)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    for _ in range(2):
        model.train_on_batch(x, y)
    assert model.optimizer.iterations.numpy() == 2
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    return model


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    rp_dir, lag_dir, model_dir = root / "rp", root / "lag3", root / "model"
    export_rule(RP, rp_dir)
    export_rule(LAG3, lag_dir)
    # the headline command as its own process: saved_model_cli run on the exported rule
    cli_run = _start(SMCLI + ["run", "--dir", str(rp_dir), "--tag_set", "serve", "--signature_def", "update",
                              "--input_exprs", RUN_INPUTS, "--outdir", str(root / "rule_out")])
    try:
        model = _tiny_model()
        export_model(model, model_dir)
        commands = [["show", "--dir", str(rp_dir), "--all"],
                    ["show", "--dir", str(model_dir), "--all"],
                    ["run", "--dir", str(model_dir), "--tag_set", "serve", "--signature_def", "serving_default",
                     "--input_exprs", f"x={X_SERVE}", "--outdir", str(root / "model_out")],
                    ["run", "--dir", str(rp_dir), "--tag_set", "serve", "--signature_def", "update",
                     "--input_exprs", RUN2_INPUTS, "--outdir", str(root / "rule_out_t2")]]
        driver = _start([sys.executable, "-c", DRIVER, json.dumps(commands)])
        try:
            blocks = _finish(driver).split(MARK + "\n")[1:]
        finally:
            if driver.poll() is None:
                driver.kill()
        assert len(blocks) == 4, blocks
        outputs = {"rule_run": _finish(cli_run), "rule_show": blocks[0], "model_show": blocks[1],
                   "model_run": blocks[2], "rule_run_t2": blocks[3]}
    finally:
        if cli_run.poll() is None:
            cli_run.kill()
    return {"root": root, "rp": rp_dir, "lag3": lag_dir, "model_dir": model_dir, "model": model, **outputs}


# ------------------------------------------------------------------------------------------------ semantics


@pytest.mark.parametrize("name, rule", [("rp", RP), ("lag3", LAG3)])
def test_reloaded_signatures_equal_rule_optimizer(artifacts, name, rule):
    loaded = tf.saved_model.load(str(artifacts[name]))
    update, init = loaded.signatures["update"], loaded.signatures["init_state"]
    n = 7
    opt = RuleOptimizer(rule)
    ref_state = opt.init_state(n)
    state = dict(init(n=tf.constant(n)))
    expected_names = {"rp": {"m", "v"}, "lag3": {"v", "mom9", "history"}}[name]
    assert set(state) == expected_names
    rng = np.random.default_rng(1)
    for t in range(1, 6):
        g = tf.constant(rng.normal(scale=0.3, size=n).astype(np.float32))
        ref_raw, _, _ = opt.forward(g, ref_state, tf.constant(t))
        ref_delta, ref_state = opt.update(g, ref_state, tf.constant(t))
        out = dict(update(grad=g, step=tf.constant(t, tf.int32), **state))
        np.testing.assert_allclose(out.pop("delta").numpy(), ref_delta.numpy(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(out.pop("raw").numpy(), ref_raw.numpy(), rtol=1e-6, atol=1e-8)
        assert set(out) == expected_names
        state = out
        feat_state, history = ref_state
        for k, v in feat_state.items():
            np.testing.assert_allclose(state[k].numpy(), v.numpy(), rtol=1e-6, atol=1e-8)
        if rule.memlen > 1:
            assert state["history"].shape == (rule.memlen - 1, n, 2)
            np.testing.assert_allclose(state["history"].numpy(), history.numpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name, rule", [("rp", RP), ("lag3", LAG3)])
def test_load_exported_rule_steps_like_rule_optimizer(artifacts, name, rule):
    step = load_exported_rule(artifacts[name])
    assert step.rule == rule
    assert step.state_names == export_mod.rule_state_names(rule)
    opt = RuleOptimizer(rule)
    ref_state, state = opt.init_state(5), step.init_state(5)
    theta_ref = theta = np.linspace(-1, 1, 5).astype(np.float32)
    for t in range(1, 6):  # closed loop on f(θ) = θ²/2: the gradient depends on the previous deltas
        d_ref, ref_state = opt.update(tf.constant(theta_ref), ref_state, t)
        d, state = step(theta, state, t)
        theta_ref, theta = theta_ref + d_ref.numpy(), theta + d.numpy()
        np.testing.assert_allclose(theta, theta_ref, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="state must have exactly"):
        step(theta, {"m": state.get("m", theta)}, 6)
    with pytest.raises(ValueError, match="vector"):
        step(theta[None], state, 6)


def test_unused_features_and_lags_are_not_exported(tmp_path):
    # declares mt+gt+mom9 and memlen 4 but uses m̃ at lag 0 and g̃ at lag 2: state m, v and a [2, n, 2] history
    wide = Rule.from_dict({"format": "tfl2o-rule/1", "memlen": 4, "features": {"names": "mt+gt+mom9"},
                           "expression": ["add", ["mul", -0.5, "mt_0"], ["mul", -0.2, "gt_2"]]})
    export_rule(wide, tmp_path / "wide")
    sig = signatures_summary(tmp_path / "wide")["update"]["inputs"]
    assert set(sig) == {"grad", "step", "m", "v", "history"}
    assert sig["history"]["shape"] == [2, None, 2]
    assert Rule.load(tmp_path / "wide" / "rule.json") == wide  # rule.json keeps the rule as given
    step = load_exported_rule(tmp_path / "wide")
    assert step.state_names == ("m", "v", "history") == export_mod.rule_state_names(wide)
    opt, rng = RuleOptimizer(wide), np.random.default_rng(2)
    ref, state = opt.init_state(3), step.init_state(3)
    for t in range(1, 6):
        g = rng.normal(size=3).astype(np.float32)
        d_ref, ref = opt.update(tf.constant(g), ref, t)
        d, state = step(g, state, t)
        np.testing.assert_allclose(d.numpy(), d_ref.numpy(), rtol=1e-6, atol=1e-8)


def test_signatures_and_rule_json(artifacts):
    assert Rule.load(artifacts["rp"] / "rule.json") == RP
    rp = signatures_summary(artifacts["rp"])
    assert set(rp) == {"update", "init_state"}
    assert rp["init_state"]["inputs"] == {"n": {"dtype": "int32", "shape": []}}
    assert rp["update"]["inputs"] == {"grad": {"dtype": "float32", "shape": [None]},
                                      "step": {"dtype": "int32", "shape": []},
                                      "m": {"dtype": "float32", "shape": [None]},
                                      "v": {"dtype": "float32", "shape": [None]}}
    assert set(rp["update"]["outputs"]) == {"delta", "raw", "m", "v"}
    lag = signatures_summary(artifacts["lag3"])
    assert lag["update"]["inputs"]["history"] == {"dtype": "float32", "shape": [2, None, 2]}
    assert set(lag["update"]["outputs"]) == {"delta", "raw", "v", "mom9", "history"}
    assert set(lag["init_state"]["outputs"]) == {"v", "mom9", "history"}


# ------------------------------------------------------------------------------------------- saved_model_cli


def test_saved_model_cli_show_lists_update_signature(artifacts):
    out = artifacts["rule_show"]
    for text in ("signature_def['update']", "signature_def['init_state']", "inputs['grad']", "inputs['step']",
                 "inputs['m']", "inputs['v']", "outputs['delta']", "outputs['raw']", "inputs['n']", "DT_INT32"):
        assert text in out, text


def test_saved_model_cli_run_prints_delta_checked_against_numpy(artifacts):
    g = np.array([0.1, -0.2])
    b1 = b2 = 0.95
    m, v = (1 - b1) * g, (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1), v / (1 - b2)  # t = 1: m̂ = g, v̂ = g²
    np.testing.assert_allclose(m_hat, g)
    mt = m_hat / (np.sqrt(v_hat) + 1e-12)  # = g / (|g| + 1e-12) = sign(g)
    np.testing.assert_allclose(mt, np.sign(g))
    raw = np.tanh(np.tanh(0.024803324 + np.sinh((-1.9923366 * mt) ** 3)))
    delta = 0.01 * raw  # ≈ ∓0.0076159 = 0.01·tanh(±1)
    np.testing.assert_allclose(delta, [-0.01 * np.tanh(1.0), 0.01 * np.tanh(1.0)], rtol=1e-6)

    out = artifacts["rule_run"]
    np.testing.assert_allclose(_printed(out, "delta"), delta, rtol=1e-5)
    np.testing.assert_allclose(_printed(out, "m"), m, rtol=1e-5)
    np.testing.assert_allclose(_printed(out, "v"), v, rtol=1e-5)
    saved = artifacts["root"] / "rule_out"
    np.testing.assert_allclose(np.load(saved / "delta.npy"), delta, rtol=1e-6)
    np.testing.assert_allclose(np.load(saved / "raw.npy"), raw, rtol=1e-6)

    np.testing.assert_allclose([m, v], [RUN2_STATE["m"], RUN2_STATE["v"]], rtol=1e-12)  # t = 2 continues from here
    # t = 2 (NumPy, float64): Adam moments with bias correction, then the RP expression, output scale 0.01.
    g2 = np.array(RUN2_GRAD)
    m2 = b1 * np.array(RUN2_STATE["m"]) + (1 - b1) * g2
    v2 = b2 * np.array(RUN2_STATE["v"]) + (1 - b2) * g2 ** 2
    mt2 = (m2 / (1 - b1 ** 2)) / (np.sqrt(v2 / (1 - b2 ** 2)) + 1e-12)
    assert np.all(np.abs(mt2) < 0.5)  # far from saturation
    raw2 = np.tanh(np.tanh(0.024803324 + np.sinh((-1.9923366 * mt2) ** 3)))
    # the rule is sensitive to its constants here (unlike at t = 1): ±1 % on the inner constant moves raw > 1 %
    raw2_off = np.tanh(np.tanh(0.024803324 + np.sinh((-1.01 * 1.9923366 * mt2) ** 3)))
    assert np.all(np.abs(raw2_off / raw2 - 1) > 1e-2)
    delta2 = 0.01 * raw2
    out2 = artifacts["rule_run_t2"]
    np.testing.assert_allclose(_printed(out2, "delta"), delta2, rtol=1e-5)
    np.testing.assert_allclose(_printed(out2, "m"), m2, rtol=1e-5)
    np.testing.assert_allclose(_printed(out2, "v"), v2, rtol=1e-5)
    np.testing.assert_allclose(np.load(artifacts["root"] / "rule_out_t2" / "delta.npy"), delta2, rtol=1e-5)


def test_exported_keras_model_serves_like_predict(artifacts):
    assert "signature_def['serving_default']" in artifacts["model_show"]
    assert "inputs['x']" in artifacts["model_show"]
    expected = artifacts["model"].predict(np.array(X_SERVE, np.float32), verbose=0)
    saved = artifacts["root"] / "model_out"
    (npy,) = list(saved.glob("*.npy"))
    np.testing.assert_allclose(np.load(npy), expected, rtol=1e-5, atol=1e-6)
    assert "Result for output key" in artifacts["model_run"]
    served = tf.saved_model.load(str(artifacts["model_dir"]))
    np.testing.assert_allclose(served.serve(tf.constant(X_SERVE)).numpy(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not an exported rule"):
        load_exported_rule(artifacts["model_dir"])


# ---------------------------------------------------------------------------------------------------- atomic


def _boom(*args, **kwargs):
    path = Path(args[1] if len(args) > 1 else args[0]) if args else None
    if path is not None and path.is_dir():
        (path / "saved_model.pb").write_bytes(b"partial")
    raise RuntimeError("disk full")


def test_failed_exports_leave_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "rule_sm"
    monkeypatch.setattr(export_mod.tf.saved_model, "save", _boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_rule(RP, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder either

    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        export_rule(RP, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]  # an existing export survives a failed one
    monkeypatch.undo()

    class Broken(keras.Model):
        def export(self, filepath, **kwargs):
            _boom(None, filepath)

    model = Broken()
    model.built = True
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(model, tmp_path / "model_sm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rule_sm"]


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_exported_rule(tmp_path / "missing")
    with pytest.raises(ValueError, match="not built"):
        export_model(keras.Sequential([keras.layers.Dense(1)]), tmp_path / "m")
    with pytest.raises(ValueError, match="rule must be"):
        export_rule(42, tmp_path / "r")
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()
