"""The benchmark harness: AdamW/Lion formulas, the smoke suite end to end, the run cache, comparability checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tf_symbolic_l2o.benchmark import (AdamW, BenchmarkRunner, Lion, build_report, check_comparable, get_suite,
                                       load_records, make_optimizer, performance_profile, run_benchmark,
                                       task_metrics)
from tf_symbolic_l2o.benchmark.optimizers import state_bytes_per_param
from tf_symbolic_l2o.benchmark.report import REPORT_FILES
from tf_symbolic_l2o.benchmark.suite import BenchmarkTask, Suite

# ------------------------------------------------------------------------------------------------------ formulas


def _numpy_adamw(theta, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-7):
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t, g in enumerate(grads, start=1):
        theta = theta - theta * wd * lr                      # decoupled weight decay first (Keras order)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        theta = theta - alpha * m / (np.sqrt(v) + eps)
        out.append(theta.copy())
    return np.stack(out)


def _numpy_lion(theta, grads, lr, wd=0.0, b1=0.9, b2=0.99):
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    out = []
    for g in grads:
        theta = theta - theta * wd * lr
        theta = theta - lr * np.sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
        out.append(theta.copy())
    return np.stack(out)


def _functional(opt, theta0, grads):
    theta = tf.constant(theta0, tf.float32)
    state = opt.init_state(theta.shape[0])
    out = []
    for t, g in enumerate(grads, start=1):
        delta, state = opt.update(tf.constant(g, tf.float32), state, tf.constant(t), params=theta)
        theta = theta + delta
        out.append(theta.numpy())
    return np.stack(out)


def _keras(opt, theta0, grads):
    var = tf.Variable(theta0.astype(np.float32))
    out = []
    for g in grads:
        opt.apply_gradients([(tf.constant(g, tf.float32), var)])
        out.append(var.numpy().copy())
    return np.stack(out)


@pytest.fixture(scope="module")
def traj():
    rng = np.random.default_rng(0)
    return rng.normal(size=7), rng.normal(size=(6, 7))


def test_adamw_matches_numpy_and_keras(traj):
    import keras

    theta0, grads = traj
    ref = _numpy_adamw(theta0, grads, lr=0.05, wd=0.3)
    np.testing.assert_allclose(_functional(AdamW(0.05, weight_decay=0.3), theta0, grads), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_keras(keras.optimizers.AdamW(0.05, weight_decay=0.3), theta0, grads), ref,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wd", [0.0, 0.2])
def test_lion_matches_numpy_and_keras(traj, wd):
    import keras

    theta0, grads = traj
    ref = _numpy_lion(theta0, grads, lr=0.01, wd=wd)
    np.testing.assert_allclose(_functional(Lion(0.01, weight_decay=wd), theta0, grads), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_keras(keras.optimizers.Lion(0.01, weight_decay=wd or None), theta0, grads), ref,
                               rtol=1e-5, atol=1e-6)


def test_horizon_scale_multiplies_every_budget():
    base, long = get_suite("full"), get_suite("full", horizon_scale=5)
    assert long.name == "full_x5" and [t.steps for t in long.tasks] == [5 * t.steps for t in base.tasks]
    assert long.final_seeds == base.final_seeds and long.optimizers == base.optimizers
    assert get_suite("full", horizon_scale=1) == base
    few = get_suite("smoke", optimizers=["adam", "symbolic_dm_gain+lr"])
    assert few.optimizers == ("adam", "symbolic_dm_gain+lr")
    assert few.lr_grids["symbolic_dm_gain+lr"] == (0.03, 0.1, 0.3, 1.0, 3.0)
    assert few.lr_grids["adam"] == get_suite("smoke").lr_grids["adam"]  # the suite's own grid is kept
    with pytest.raises(ValueError, match="unknown benchmark optimizer"):
        get_suite("smoke", optimizers=["adam", "sgd9"])
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            get_suite("smoke", horizon_scale=bad)


def test_optimizer_errors_and_state_size():
    with pytest.raises(ValueError, match="needs the parameters"):
        AdamW(1e-3).update(tf.ones([4]), AdamW(1e-3).init_state(4), 1)  # weight decay without θ
    with pytest.raises(ValueError, match="needs the parameters"):
        Lion(1e-3, weight_decay=0.1).update(tf.ones([4]), Lion(1e-3).init_state(4), 1)
    Lion(1e-3).update(tf.ones([4]), Lion(1e-3).init_state(4), 1)  # no weight decay: θ not needed
    with pytest.raises(ValueError, match="unknown benchmark optimizer"):
        make_optimizer("adagrad", 0.1)
    with pytest.raises(ValueError, match="untuned"):
        make_optimizer("symbolic_rp", 0.1)
    with pytest.raises(ValueError, match="needs a learning rate"):
        make_optimizer("symbolic_rp_gain+lr")
    # a preset's tuned twin: the same rule, its step times the multiplier, the same state
    plain, scaled = make_optimizer("symbolic_rp_gain"), make_optimizer("symbolic_rp_gain+lr",
                                                                              tf.Variable(0.25))
    g = tf.constant([0.3, -1.2, 0.0, 2.0])
    sp, ss = plain.init_state(4), scaled.init_state(4)
    for t in range(1, 4):
        dp, sp = plain.update(g * t, sp, t)
        ds, ss = scaled.update(g * t, ss, t)
        np.testing.assert_allclose(ds.numpy(), 0.25 * dp.numpy(), rtol=1e-6, atol=1e-12)
    assert np.any(dp.numpy() != 0)
    assert state_bytes_per_param(scaled, 10) == state_bytes_per_param(plain, 10)
    assert state_bytes_per_param(AdamW(1e-3), 10) == 8.0  # m and v
    assert state_bytes_per_param(Lion(1e-3), 10) == 4.0


# ------------------------------------------------------------------------------------------------------ smoke suite


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import shutil

    out = tmp_path_factory.mktemp("bench") / "smoke"
    runner = run_benchmark(get_suite("smoke"), out)
    # the report as the run wrote it (later tests rebuild out/report in place with --report-only)
    shutil.copytree(out / "report", out.parent / ORIGINAL_REPORT)
    return out, runner


ORIGINAL_REPORT = "report_as_run"
TEXT_REPORT_FILES = ("metrics.csv", "profile.csv", "results.md")  # the PNGs may differ byte for byte


def test_smoke_runs_end_to_end(smoke):
    out, runner = smoke
    suite = get_suite("smoke")
    assert runner.reused == 0 and runner.executed == len(runner.records) > 0
    for name in REPORT_FILES:
        assert (out / "report" / name).stat().st_size > 0, name
    assert (out / "tuning.csv").is_file()
    finals = [r for r in runner.records if r.phase == "final"]
    assert {(r.task, r.optimizer) for r in finals} == {(t.name, o) for t in suite.tasks for o in suite.optimizers}
    for r in runner.records:  # a curve and a manifest per (task, optimizer, lr, seed)
        manifest = json.loads(open(r.path + ".json").read())
        assert manifest["steps"] == len(np.load(r.path + ".npz")["losses"]) == suite.task(r.task).steps
        assert manifest["fingerprint"] == r.fingerprint
    selection = {r.seed for r in runner.records if r.phase == "selection"}
    assert selection.isdisjoint({r.seed for r in finals})
    # tuned optimizers ran their final seeds at a grid learning rate; shipped ones untuned
    profile_columns = pd.read_csv(out / "report" / "profile.csv").columns
    assert {"SymbolicRP()", "SymbolicRP(learning_rate tuned)"} <= set(profile_columns)  # named as users call them
    assert "symbolic_rp_gain" not in profile_columns
    for r in finals:
        if r.optimizer in suite.lr_grids and r.optimizer != "symbolic_rp_gain":
            assert r.learning_rate in suite.lr_grids[r.optimizer]
        else:
            assert r.learning_rate is None
    metrics = task_metrics(runner.records)
    adam = metrics[metrics["optimizer"] == "adam"]
    assert np.allclose(adam["speedup_vs_adam"], 1.0) and (adam["steps_to_adam100"] <= adam["steps"]).all()
    # one final seed: the per-seed spread is zero and Adam's seed reaches its own targets
    assert (adam["steps_to_adam100_reached"] == 1).all() and np.allclose(adam["steps_to_adam100_std"], 0.0)
    assert (metrics["ms_per_step_std"] == 0).all() and (metrics["ms_per_step"] > 0).all()
    digits = metrics[metrics["task"] == "logreg_digits"]
    assert (digits["test_metric"] == "test_accuracy").all() and (digits["test_metric_mean"] > 0.5).all()
    md = (out / "report" / "results.md").read_text()
    assert "logreg_digits" in md and "Performance profile" in md


def _speedups_from_saved_curves(out):
    """Speed-up vs Adam re-derived in NumPy/pandas from the saved ``.npz`` curves and ``.json`` manifests, per the
    definition in benchmark/metrics.py: smooth = trailing mean over max(1, steps // 10) steps; Adam's target = its
    smoothed mean-over-seeds curve at the last step; steps to a target = first index where the smoothed curve is
    ≤ it, plus one; speed-up (per seed) = Adam's steps to its own target ÷ the run's; mean over the seeds that reach
    it (NaN when none does)."""
    import pandas as pd

    curves = {}  # (task, optimizer) -> {seed: losses}, final runs only
    for stem in json.loads((out / "index.json").read_text())["runs"]:
        manifest = json.loads((out / (stem + ".json")).read_text())
        if manifest["phase"] != "final":
            continue
        with np.load(out / (stem + ".npz")) as z:
            curves.setdefault((manifest["task"], manifest["optimizer"]), {})[manifest["seed"]] = \
                np.asarray(z["losses"], dtype=np.float64)

    def smooth(c):
        return pd.Series(c).rolling(max(1, len(c) // 10), min_periods=1).mean().to_numpy()

    def first_reach(c, target):
        hit = np.flatnonzero(c <= target)
        return hit[0] + 1.0 if hit.size else np.nan

    speedups = {}
    for (task, opt), by_seed in curves.items():
        adam = smooth(np.mean([c for _, c in sorted(curves[(task, "adam")].items())], axis=0))
        adam_steps = first_reach(adam, adam[-1])
        per_seed = np.array([adam_steps / first_reach(smooth(c), adam[-1]) if np.all(np.isfinite(c)) else np.nan
                             for _, c in sorted(by_seed.items())])
        ok = np.isfinite(per_seed)
        speedups[(task, opt)] = (per_seed[ok].mean() if ok.any() else np.nan, int(ok.sum()))
    return speedups


def test_speedup_vs_adam_matches_the_saved_curves(smoke):
    import pandas as pd

    out, _ = smoke
    expected = _speedups_from_saved_curves(out)
    metrics = pd.read_csv(out.parent / ORIGINAL_REPORT / "metrics.csv")
    assert len(metrics) == len(expected)
    checked = 0
    for row in metrics.itertuples():
        value, reached = expected[(row.task, row.optimizer)]
        assert row.speedup_vs_adam_reached == reached, (row.task, row.optimizer)
        if np.isnan(value):
            assert np.isnan(row.speedup_vs_adam), (row.task, row.optimizer)
        else:
            np.testing.assert_allclose(row.speedup_vs_adam, value, rtol=1e-9, err_msg=f"{row.task} {row.optimizer}")
            checked += row.optimizer != "adam" and not np.isclose(value, 1.0)
    assert checked > 0  # at least one non-Adam optimizer with a speed-up other than 1 was compared


def test_second_call_reuses_the_cache(smoke):
    out, first = smoke
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.npz")}
    again = BenchmarkRunner(get_suite("smoke"), out)
    records = again.run()
    assert again.executed == 0 and again.reused == len(records) == len(first.records)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.npz")} == mtimes
    for a, b in zip(first.records, records):
        np.testing.assert_array_equal(a.losses, b.losses)


def test_changed_budget_reruns_only_what_changed(smoke, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(smoke[0], out)
    base = get_suite("smoke")
    task = dataclasses.replace(base.task("rosenbrock"), steps=30)
    suite = dataclasses.replace(base, tasks=(task,), optimizers=("adam",))
    runner = BenchmarkRunner(suite, out)
    runner.run()
    assert runner.executed == len(base.lr_grids["adam"]) * len(base.selection_seeds) + len(base.final_seeds)
    assert runner.reused == 0
    again = dataclasses.replace(suite, tasks=(base.task("logreg_digits"),))  # unchanged task: all cached
    runner = BenchmarkRunner(again, out)
    runner.run()
    assert runner.executed == 0 and runner.reused > 0


def test_report_rebuilds_from_saved_curves(smoke, tmp_path):
    out, _ = smoke
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "report")
    build_report(copy)  # nothing is run: only the saved curves are read
    for name in REPORT_FILES:
        assert (copy / "report" / name).is_file()
    assert set(TEXT_REPORT_FILES) <= set(REPORT_FILES)
    for name in TEXT_REPORT_FILES:  # the rebuilt text outputs equal those the run wrote, byte for byte
        original = (out.parent / ORIGINAL_REPORT / name).read_bytes()
        assert len(original) > 0 and (copy / "report" / name).read_bytes() == original, name
    records, suite = load_records(copy)
    assert suite["name"] == "smoke" and len(records) > 0


def test_refuses_mismatched_budgets_and_seeds(smoke):
    out, runner = smoke
    records = list(runner.records)
    i = next(k for k, r in enumerate(records) if r.phase == "final" and r.optimizer == "lion")
    longer = dataclasses.replace(records[i], steps=records[i].steps + 10)
    with pytest.raises(ValueError, match="step budgets differ") as e:
        check_comparable(records[:i] + [longer] + records[i + 1:])
    assert "\n" not in str(e.value)
    other_seed = dataclasses.replace(records[i], seed=records[i].seed + 7)
    with pytest.raises(ValueError, match="final seeds differ"):
        task_metrics(records[:i] + [other_seed] + records[i + 1:])
    with pytest.raises(ValueError, match="disjoint"):
        dataclasses.replace(get_suite("smoke"), final_seeds=(1000,))


def test_performance_profile_basic():
    import pandas as pd

    m = pd.DataFrame({"task": ["a", "a", "b", "b"], "optimizer": ["x", "y", "x", "y"],
                      "final_loss_mean": [1.0, 2.0, 4.0, 1.0], "divergence_rate": [0.0, 0.0, 1.0, 0.0]})
    prof = performance_profile(m, taus=[1.0, 2.0, 10.0])
    assert list(prof["x"]) == [0.5, 0.5, 0.5]  # diverged on b: never solves it
    assert list(prof["y"]) == [0.5, 1.0, 1.0]


def test_cli_benchmark(smoke, tmp_path):
    import typer
    from typer.testing import CliRunner

    from test_cli import assert_one_line_error

    from cli.benchmark_cmd import benchmark
    from cli.main import cli_errors

    app = typer.Typer()
    app.command()(cli_errors(benchmark))
    out, _ = smoke
    res = CliRunner().invoke(app, ["--out", str(out), "--report-only"])
    assert res.exit_code == 0, res.output
    assert "report written" in res.output
    res = CliRunner().invoke(app, ["--out", str(out), "--suite", "huge"])
    assert res.exit_code == 2
    assert_one_line_error(res, "--suite", "smoke or full", "'huge'")
    res = CliRunner().invoke(app, ["--out", str(tmp_path / "nothing"), "--report-only"])
    assert res.exit_code == 2
    assert_one_line_error(res, "benchmark index", "not found", str(tmp_path / "nothing" / "index.json"))
    assert not (tmp_path / "nothing").exists()
    res = CliRunner().invoke(app, ["--out", str(out), "--no-progress"])  # everything cached: fast
    assert res.exit_code == 0, res.output
    assert "0 runs computed" in res.output


def test_rosenbrock_and_autoencoder_tasks():
    from tf_symbolic_l2o.benchmark.suite import full_suite

    suite = full_suite()
    ros = suite.task("rosenbrock").build()
    assert float(ros.loss([tf.constant([1.0, 1.0])])) == 0.0
    ae = suite.task("autoencoder").build("eval")
    params = ae.init_params(tf.constant([1, 2]))
    batch = ae.sample_batch(tf.constant([3, 4]))
    assert ae.loss(params, batch).shape == () and np.isfinite(ae.evaluate(params)["test_loss"])
    assert ae.num_params == sum(int(np.prod(p.shape)) for p in params)
    assert [t.tier for t in suite.tasks].count("generalisation") == 3
    assert isinstance(suite, Suite) and all(isinstance(t, BenchmarkTask) for t in suite.tasks)


def test_readme_table_is_generated_from_saved_curves(smoke, tmp_path):
    """`tfl2o benchmark --report-only --readme README` replaces exactly the marked block with the report's table."""
    from typer.testing import CliRunner

    from cli.main import app
    from tf_symbolic_l2o.benchmark.report import README_END, README_START

    out, _ = smoke
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{README_START}\nold typed table\n{README_END}\n\nafter\n")
    res = CliRunner().invoke(app, ["benchmark", "--out", str(out), "--report-only", "--readme", str(readme)])
    assert res.exit_code == 0, res.output
    text = readme.read_text()
    table = (out / "report" / "results.md").read_text().strip()
    assert "old typed table" not in text and table in text
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith(f"{README_END}\n\nafter\n")
    assert "loss_curves.png" in text
    # a rule's fidelity comes from its own rule.json (R² written by `tfl2o distill`); SymbolicRP()'s default was
    # meta-tuned after distillation, so it has none of its own (its start's is kept under distilled_start)
    import json

    from tf_symbolic_l2o.artifacts import saved_models_dir

    metadata = json.loads((saved_models_dir() / "symbolic_rp_gain" / "rule.json").read_text())["metadata"]
    assert "r2_test" not in metadata and metadata["distilled_start"]["r2_test"] > 0.95
    assert "R² vs teacher" in table and "| SymbolicRP() | — |" in table
    readme.write_text("no block here\n")
    res = CliRunner().invoke(app, ["benchmark", "--out", str(out), "--report-only", "--readme", str(readme)])
    assert res.exit_code == 2 and readme.read_text() == "no block here\n"  # left untouched
    assert "error:" in res.output and "needs one" in res.output
