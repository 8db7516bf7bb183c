"""The optimizer invariants (rest, sign symmetry, descent) and the distillation that respects them."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from tf_symbolic_l2o.distill import distill
from tf_symbolic_l2o.distill.distill import UnsoundRuleError, odd_part, parity_vector
from tf_symbolic_l2o.distill.synthetic import synthetic_behaviour
from tf_symbolic_l2o.features import FeatureSet
from tf_symbolic_l2o.invariants import check_invariants
from tf_symbolic_l2o.learned.registry import make_l2o
from tf_symbolic_l2o.rules import Rule, evaluate_numpy, parse_infix

SMALL = {"population_size": 500, "generations": 10}


def _rule(text, features="mt+gt+t", memlen=1):
    return Rule(parse_infix(text), features=features, memlen=memlen)


def test_parity_of_features():
    assert FeatureSet("mt+gt+g+mom9+t+s+mp2").parity() == (-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, -1.0)
    np.testing.assert_array_equal(parity_vector({"names": "mt+t"}, 2), [-1, 1, -1, 1])


@pytest.mark.parametrize("text,fails", [
    ("-1.0 * mt_0", []),                                  # Adam-like: sound
    ("-tanh(2.0 * mt_1 + gt_0 * t_0)", []),               # odd in mt, gt with an even factor t, and a lag
    ("0.02 - 1.0 * mt_0", ["rest", "sign"]),              # a free intercept moves weights at rest
    ("-1.0 * mt_0 - 0.5 * abs(gt_0)", ["sign"]),          # zero at rest, but g and -g do not mirror
    ("1.0 * mt_0", ["descent"]),                          # odd, but uphill
])
def test_rules_invariants(text, fails):
    report = check_invariants(_rule(text, memlen=2))
    assert report.failed == fails, str(report)
    assert report.passed == (not fails)


def test_invariant_figures_are_measured():
    """The measured numbers match a hand computation: an intercept c gives |Δθ| = 0.01·c at rest."""
    report = check_invariants(_rule("0.02 - 1.0 * mt_0"))
    assert report["rest"].value == pytest.approx(0.01 * 0.02, rel=1e-5)
    assert report["sign"].value == pytest.approx(2 * 0.01 * 0.02, rel=1e-4)  # Δ(g) + Δ(−g) = 2·0.01·c
    sound = check_invariants(_rule("-1.0 * mt_0"))
    assert sound["rest"].value == 0.0 and sound["sign"].value <= 1e-9
    assert 0.0 < sound["descent"].value < 1.0
    assert json.loads(json.dumps(sound.to_dict()))["descent"]["passed"] is True


@pytest.mark.parametrize("name", ["rp_s", "dm"])
def test_odd_lstm_holds_rest_and_sign_plain_does_not(name):
    rng = np.random.default_rng(0)
    odd = make_l2o(name, seed=1)
    odd.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in odd.get_weights()])
    plain = make_l2o(name, seed=1, odd=False)
    plain.set_weights(odd.get_weights())
    r_odd, r_plain = check_invariants(odd, steps=60), check_invariants(plain, steps=60)
    assert r_odd["rest"].passed and r_odd["sign"].passed and r_odd["rest"].value == 0.0
    assert not r_plain["rest"].passed and not r_plain["sign"].passed


def test_check_invariants_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        check_invariants(_rule("-1.0 * mt_0"), steps=0)
    with pytest.raises(ValueError, match="atol"):
        check_invariants(_rule("-1.0 * mt_0"), atol=float("nan"))


# ------------------------------------------------------------------------------------ odd distillation


def test_odd_part_by_hand():
    node = parse_infix("0.3 + tanh(mt_0 - 0.5) * t_0")
    odd = odd_part(node, ["mt_0", "t_0"], np.array([-1.0, 1.0]))
    x = np.random.default_rng(1).normal(size=(50, 2))
    got = evaluate_numpy(odd, {"mt_0": x[:, 0], "t_0": x[:, 1]}, dtype=np.float64)
    ref = 0.5 * (np.tanh(x[:, 0] - 0.5) - np.tanh(-x[:, 0] - 0.5)) * x[:, 1]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_distill_of_a_biased_teacher_is_odd_and_reports_the_bias():
    """The teacher steps −m̃ plus a drift of 0.05: the rule keeps the slope, drops the drift."""
    X, y, manifest = synthetic_behaviour(3000, "0.05 - 1.0 * mt_0", features="mt+gt", seed=2)
    res = distill(X, y, manifest, **SMALL)
    inv = res.rule.metadata["invariants"]
    assert all(v["passed"] for v in inv.values()), inv
    assert inv["rest"]["value"] == 0.0
    f = res.rule.numpy_fn()
    np.testing.assert_allclose(f(X * -1.0), -f(X), atol=1e-9)
    np.testing.assert_allclose(f(X) - (-X[:, 0]), 0.0, atol=0.02)  # the odd part of the teacher is −m̃
    assert res.rule.metadata["teacher"]["y_mean"] == pytest.approx(float(np.mean(y)))
    assert res.settings["odd"] is True
    # the opt-out fits the drift as it is
    free = distill(X, y, manifest, odd=False, check=False, **SMALL)
    assert free.r2_test > 0.999
    assert free.rule.numpy_fn()(np.zeros((1, 2)))[0] == pytest.approx(0.05, abs=1e-3)
    assert not free.rule.metadata["invariants"]["rest"]["passed"]


def test_distill_refuses_an_uphill_teacher_unless_unconstrained(tmp_path):
    X, y, manifest = synthetic_behaviour(1500, "1.0 * mt_0", features="mt+gt", seed=3)
    with pytest.raises(UnsoundRuleError, match="--unconstrained"):
        distill(X, y, manifest, **SMALL)
    res = distill(X, y, manifest, check=False, **SMALL)
    assert res.r2_test > 0.99 and not res.rule.metadata["invariants"]["descent"]["passed"]


def test_cli_show_reports_invariants_and_distill_refuses(tmp_path):
    from tf_symbolic_l2o.record import save_behaviour

    bad = _rule("0.02 - 1.0 * mt_0")
    bad.save(tmp_path / "bad.json")  # a rule that breaks the invariants still loads and shows
    result = CliRunner().invoke(app, ["show", str(tmp_path / "bad.json"), "--no-simplify"])
    assert result.exit_code == 0, result.output
    assert "invariant: rest" in result.output and "FAILS" in result.output
    good = _rule("-1.0 * mt_0")
    good.save(tmp_path / "good.json")
    result = CliRunner().invoke(app, ["show", str(tmp_path / "good.json"), "--no-simplify"])
    assert result.exit_code == 0 and "FAILS" not in result.output

    X, y, manifest = synthetic_behaviour(1500, "1.0 * mt_0", features="mt+gt", seed=3)
    save_behaviour(tmp_path / "up.npy", np.concatenate([X, y[:, None]], axis=1), manifest)
    out = tmp_path / "up_distill"
    result = CliRunner().invoke(app, ["distill", str(tmp_path / "up.npy"), "--out", str(out),
                                      "--population-size", "500", "--generations", "10"])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    assert not (out / "rule.json").exists()
    result = CliRunner().invoke(app, ["distill", str(tmp_path / "up.npy"), "--out", str(out), "--unconstrained",
                                      "--population-size", "500", "--generations", "10"])
    assert result.exit_code == 0, result.output
    assert (out / "rule.json").exists() and "FAILS" in result.output
