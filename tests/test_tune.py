"""Meta-tuning rules: trainable/tied constants, the ψ family, the tuner (learning, resume, export), tf.distribute."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tf_symbolic_l2o.features import FeatureSet
from tf_symbolic_l2o.optimizers import SymbolicOptimizer
from tf_symbolic_l2o.rules import Rule, parse_infix
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
from tf_symbolic_l2o.tune import MetaTuner, TunableRule, TuneConfig, load_tuned_rule, psi_rule, resolve_rule

REPO = Path(__file__).resolve().parents[1]
QUAD = {"name": "quadratic", "dim": 6, "noise_std": 0.1}
SMALL_MLP = {"name": "mlp", "dataset": "digits", "hidden": [8], "batch_size": 16}


def _rule(text="0.5 * tanh(1.5 * mt_0) + 0.1 * gt_0", features="mt+gt", scale=0.01):
    return Rule(parse_infix(text), features=features, output_scale=scale)


def _cfg(**kw):
    base = dict(rule=_rule().to_dict(), task=QUAD, epochs=4, epoch_len=8, unroll=4, val_every=2, val_runs=1, seed=1,
                meta_lr=0.01)
    base.update(kw)
    return TuneConfig(**base)


# ------------------------------------------------------------------------------------------- the ψ family


def test_psi_rule_matches_the_paper_formula_in_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3))
    gamma = 0.7
    rule = psi_rule("mt+gt+g", lags=2, gamma=gamma, weights=w)
    assert rule.memlen == 3 and rule.inputs[:3] == ["mt_0", "gt_0", "g_0"]
    x = rng.normal(size=(50, 9)) * 2  # lag-major: [mt_0, gt_0, g_0, mt_1, …]
    expected = np.zeros(50)
    for i in range(3):          # feature
        for tau in range(3):    # lag
            expected -= w[i, tau] * gamma * np.tanh(x[:, tau * 3 + i] / gamma)
    np.testing.assert_allclose(rule.numpy_fn()(x), expected, rtol=1e-12, atol=1e-12)
    tunable = TunableRule(rule)
    assert tunable.params.shape == (10,)  # 9 weights + one shared γ
    assert tunable.parameter_names[-1] == "gamma" and tunable.parameter_names[0] == "W[mt,0]"
    # the one γ parameter feeds all 18 γ occurrences: moving it changes every term
    np.testing.assert_allclose(tunable.values(), list(w.ravel()) + [gamma], rtol=1e-6)
    tunable.params.assign(tf.concat([tunable.params[:-1], [2.0 / tunable.scale[-1]]], 0))
    moved = tunable.tuned_rule()
    expected2 = sum(-w[i, t] * 2.0 * np.tanh(x[:, t * 3 + i] / 2.0) for i in range(3) for t in range(3))
    np.testing.assert_allclose(moved.numpy_fn()(x), expected2, rtol=1e-6, atol=1e-6)


def test_psi_rule_default_is_a_clipped_adam_like_step_and_validates():
    rule = psi_rule()
    x = np.array([[2.0, 5.0, 0.0, 0.0]])  # mt_0, gt_0, mt_1, gt_1
    np.testing.assert_allclose(rule.numpy_fn()(x), [-np.tanh(2.0)])
    assert rule.output_scale == 0.01
    with pytest.raises(ValueError, match="gamma"):
        psi_rule(gamma=0.0)
    with pytest.raises(ValueError, match="shape"):
        psi_rule("mt+gt", lags=1, weights=[[1.0]])
    with pytest.raises(ValueError, match="lags"):
        psi_rule(lags=-1)
    with pytest.raises(ValueError):
        psi_rule("mt+bogus")


# -------------------------------------------------------------------------------------- tunable constants


def test_tunable_rule_updates_like_the_rule_and_gets_gradients():
    rule = _rule()
    tunable, plain = TunableRule(rule), RuleOptimizer(rule)
    g = tf.constant(np.random.default_rng(1).normal(size=20), tf.float32)
    s1, s2 = tunable.init_state(20), plain.init_state(20)
    for step in (1, 2, 3):
        (d1, s1), (d2, s2) = tunable.update(g * step, s1, step), plain.update(g * step, s2, step)
        np.testing.assert_allclose(d1.numpy(), d2.numpy(), rtol=1e-6)
    # ∂Δ/∂(constant multiplying gt_0) = output_scale · gt_0 (computed by hand from the formula)
    feats = FeatureSet("mt+gt", beta1=0.95, beta2=0.95)
    f, _ = feats.update(feats.init_state([20]), g, 1)
    with tf.GradientTape() as tape:
        delta, _ = tunable.update(g, tunable.init_state(20), 1)
        total = tf.reduce_sum(delta)
    grad = tape.gradient(total, tunable.params).numpy()
    # parameters are constants relative to their start (constant = |start| · parameter): the chain rule adds |0.1|
    np.testing.assert_allclose(grad[2], 0.1 * 0.01 * float(tf.reduce_sum(f[:, 1])), rtol=1e-5)


def test_tunable_rule_refuses_rules_without_constants_and_bad_ties():
    with pytest.raises(ValueError, match="no constants to tune"):
        TunableRule(_rule("tanh(mt_0)"))
    rule = _rule("0.5 * tanh(0.5 * mt_0)")
    for tie, match in (([0], "one parameter index"), ([0, 2], "every parameter index"),
                       (["a", 0], "one parameter index")):
        with pytest.raises(ValueError, match=match):
            TunableRule(rule.replace(metadata={"tied_constants": tie}))
    with pytest.raises(ValueError, match="tied .* but differ"):
        TunableRule(_rule("0.5 * tanh(0.7 * mt_0)").replace(metadata={"tied_constants": [0, 0]}))
    tied = TunableRule(rule.replace(metadata={"tied_constants": [0, 0]}))
    assert tied.params.shape == (1,)


def test_resolve_rule():
    assert resolve_rule("psi:mt+gt+g:0").memlen == 1
    assert resolve_rule("psi").memlen == 2
    assert resolve_rule("symbolic_rp").constants  # a shipped rule
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        resolve_rule("nope")
    with pytest.raises(ValueError, match="LAGS"):
        resolve_rule("psi:mt:x")
    with pytest.raises(FileNotFoundError):
        resolve_rule("missing/rule.json")


# ------------------------------------------------------------------------------------------------ the tuner


def test_tuning_improves_a_rule_and_writes_the_tuned_rule(tmp_path):
    # an RMSprop-like rule with a far too small step: tuning must grow its constant
    cfg = _cfg(rule=_rule("-0.01 * gt_0").to_dict(), epochs=12, epoch_len=16, val_every=4, meta_optimizer="adam",
               meta_lr=6.0)  # relative: a meta-step changes the constant by up to ~6× its start value
    summary = MetaTuner(cfg, tmp_path / "run").run()
    run = tmp_path / "run"
    for name in ("config.json", "metrics.csv", "summary.json", "rule.json", "checkpoints"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").iterdir())
    metrics = pd.read_csv(run / "metrics.csv")
    assert "c0" in metrics.columns and metrics["c0"].iloc[-1] < -0.02
    tuned = load_tuned_rule(run)
    assert tuned.metadata["tuned"]["initial_constants"] == [-0.01]
    assert tuned.metadata["source"] == "tfl2o tune"
    assert tuned.constants[0] == pytest.approx(summary["constants"]["c0"], rel=1e-6)
    # the tuned rule optimizes the quadratic better than the untuned one, over 3 seeds
    from tf_symbolic_l2o.meta.evaluate import Evaluator
    from tf_symbolic_l2o.tasks.registry import make_task

    ev = Evaluator(make_task(QUAD, "eval"), steps=16)
    before = ev.run(RuleOptimizer(cfg.start_rule), 3, metrics=False).finals.mean()
    after = ev.run(RuleOptimizer(tuned), 3, metrics=False).finals.mean()
    assert after < 0.7 * before
    # it is an ordinary rule: the Keras optimizer takes it
    var = tf.Variable([1.0, -2.0])
    SymbolicOptimizer(tuned).apply_gradients([(tf.constant([1.0, -1.0]), var)])
    assert np.all(np.isfinite(var.numpy()))


def test_a_tuned_rule_keeps_its_form_and_files_the_starts_measurements_apart():
    """A distilled start's R² (to its teacher) must not read as the tuned rule's: it moves under distilled_start;
    ψ's ties, names and family stay, since tuning changes values, not form."""
    from tf_symbolic_l2o.tune.tunable import tuned_metadata

    distilled = {"source": "distill", "r2_test": 0.98, "odd": True, "dataset": {"path": "d.npy"}}
    meta = tuned_metadata(distilled, {"seed": 0})
    assert meta == {"odd": True, "source": "tfl2o tune", "tuned": {"seed": 0},
                    "distilled_start": {"source": "distill", "r2_test": 0.98, "dataset": {"path": "d.npy"}}}
    psi = {"family": "psi", "tied_constants": [0, 1, 1], "parameter_names": ["W", "gamma"], "description": "ψ",
           "note": "x"}
    meta = tuned_metadata(psi, {"seed": 1})
    assert {k: meta[k] for k in ("family", "tied_constants", "parameter_names", "description")} == \
        {"family": "psi", "tied_constants": [0, 1, 1], "parameter_names": ["W", "gamma"], "description": "ψ"}
    assert meta["start_metadata"] == {"note": "x"} and "r2_test" not in meta
    assert tuned_metadata({}, {"seed": 2}) == {"source": "tfl2o tune", "tuned": {"seed": 2}}


def test_tune_resume_is_exact(tmp_path):
    cfg = _cfg(rule=psi_rule().to_dict(), epochs=4)
    MetaTuner(cfg, tmp_path / "full").run()
    MetaTuner(cfg, tmp_path / "part", stop_after_epoch=2).run()
    assert not (tmp_path / "part" / "rule.json").exists()
    before = pd.read_csv(tmp_path / "part" / "metrics.csv")
    assert list(before["epoch"]) == [1, 2]
    logs = []
    MetaTuner(None, tmp_path / "part", resume=True, log=logs.append).run()
    assert any(m.startswith("resumed from") and m.endswith("at epoch 2") for m in logs), logs
    # the part run's rows, timings included, survive the resume (a silent restart would rewrite them)
    after = pd.read_csv(tmp_path / "part" / "metrics.csv")
    pd.testing.assert_frame_equal(after.iloc[:2].reset_index(drop=True), before)
    a, b = load_tuned_rule(tmp_path / "full"), load_tuned_rule(tmp_path / "part")
    assert a.constants == b.constants and a.constants != psi_rule().constants
    ma, mb = pd.read_csv(tmp_path / "full" / "metrics.csv"), pd.read_csv(tmp_path / "part" / "metrics.csv")
    pd.testing.assert_frame_equal(ma.drop(columns="seconds"), mb.drop(columns="seconds"))


def test_tune_config_errors():
    with pytest.raises(ValueError, match="needs the starting rule"):
        TuneConfig(task=QUAD)
    with pytest.raises(ValueError, match="no constants"):
        _cfg(rule=_rule("tanh(mt_0)").to_dict())
    with pytest.raises(ValueError, match="meta-optimizer"):
        _cfg(meta_optimizer="lbfgs")
    with pytest.raises(ValueError, match="imitation"):
        _cfg(imitation_prob=0.5)
    with pytest.raises(ValueError, match="unknown operator|not allowed|unknown"):
        _cfg(rule={**_rule().to_dict(), "expression": ["__import__", "os"]})


# ----------------------------------------------------------------------------------------- tf.distribute

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_symbolic_l2o.tune import MetaTuner, TuneConfig

    cfg = TuneConfig(**json.loads(sys.argv[1]))
    out = {}
    for name, strategy in (("single", None), ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        tuner = MetaTuner(cfg, tempfile.mkdtemp(), strategy=strategy)
        tuner.run()
        out[name] = {"constants": tuner.learned.values().tolist(), "replicas": tuner.strategy.num_replicas_in_sync}
    print("@@" + json.dumps(out))
""")


def _tiny_mlp_config():
    return dict(rule=psi_rule().to_dict(), task=SMALL_MLP, epochs=2, epoch_len=8, unroll=4, val_every=0,
                meta_optimizer="adam", meta_lr=0.05, seed=2)


@pytest.mark.parametrize("optimizee", ["functional", "keras"])
def test_mirrored_tuning_equals_single_device(optimizee, tmp_path):
    """Two replicas tune the constants as one device does: on the functional MLP (second-order meta-gradients)
    and on a Keras model file (first-order, the forward-mode window)."""
    config = _tiny_mlp_config()
    if optimizee == "keras":
        import keras

        path = tmp_path / "mlp.keras"
        L = keras.layers
        keras.Sequential([keras.Input((64,)), L.Dense(8, activation="tanh"), L.Dense(10)]).save(path)
        config.update(task={"name": "keras", "model": str(path), "dataset": "digits", "batch_size": 16},
                      second_order=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, json.dumps(config)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("@@")[-1])
    assert out["mirrored"]["replicas"] == 2 and out["single"]["replicas"] == 1
    start = np.array(psi_rule().constants)[[0, 3, 6, 9, 1]]
    single, mirrored = np.array(out["single"]["constants"]), np.array(out["mirrored"]["constants"])
    assert np.max(np.abs(single - start)) > 1e-2  # tuning moved the constants
    np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-5)


def test_forward_mode_meta_gradient_equals_reverse_mode():
    """First-order meta-gradients of a nonlinear tunable rule: the forward-mode window (the default for rules), the
    same cut into uneven blocks of coordinates, and the reverse-mode surrogate give the same update, θ and state."""
    import keras

    from tf_symbolic_l2o.meta.unroll import Unroller
    from tf_symbolic_l2o.seeds import step_seed
    from tf_symbolic_l2o.tasks.registry import make_task

    task = make_task(SMALL_MLP, "meta_train")
    n = task.num_params
    theta = task.flatten(task.init_params(step_seed(0, 3)))
    block = n // 3 + 7  # three blocks, the last one shorter
    out = {}
    for mode, forward, kwargs in (("forward", True, {}), ("blocks", True, {"forward_block": block}),
                                  ("reverse", False, {})):
        rule = TunableRule(resolve_rule("symbolic_rp"))
        opt = keras.optimizers.SGD(1.0)
        opt.build(rule.trainable_variables)
        unroller = Unroller(task, rule, opt, 4, jit_compile=False, clip_norm=None, forward_mode=forward, **kwargs)
        assert unroller.forward_mode is forward
        ml, last, norm, th, state = unroller.train_window(theta, rule.init_state(n), tf.constant(0),
                                                          step_seed(0, 4), tf.ones([n]))
        out[mode] = (rule.params.numpy().copy(), float(norm), th.numpy(),
                     np.concatenate([np.ravel(t) for t in tf.nest.flatten(state)]))
    for mode in ("blocks", "reverse"):
        np.testing.assert_allclose(out[mode][0], out["forward"][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out[mode][1], out["forward"][1], rtol=1e-4)
        np.testing.assert_allclose(out[mode][2], out["forward"][2], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(out[mode][3], out["forward"][3], rtol=1e-6, atol=1e-7)
    assert out["forward"][1] > 0
    with pytest.raises(ValueError, match="forward_block"):
        Unroller(task, TunableRule(psi_rule()), keras.optimizers.SGD(1.0), 4, forward_block=0)
    with pytest.raises(ValueError, match="forward-mode"):
        Unroller(task, TunableRule(psi_rule()), keras.optimizers.SGD(1.0), 4, second_order=True, forward_mode=True)
