"""The ``tfl2o`` command line: help, train → evaluate on a tiny run, resume, and one-line errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from _replay import assert_rows_replay_the_l2o
from cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# a run that takes seconds: 610-parameter MLP on the 8×8 digits, two epochs of two 5-step windows
TINY_TRAIN = ["--task", "mlp", "--dataset", "digits", "--hidden", "8", "--epochs", "2", "--epoch-len", "10",
              "--unroll", "5", "--val-every", "1", "--val-runs", "1", "--batch-size", "32", "--no-progress"]
TINY_EVAL = ["--runs", "2", "--steps", "10", "--tune-runs", "1", "--lr-grid", "0.01,0.1", "--baselines", "adam"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def checkpoint_l2o_weights(path):
    """The L2O weights stored in one checkpoint (``…/ckpt-N``), in variable order."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(path))
    keys = sorted((k for k in reader.get_variable_to_shape_map() if k.startswith("l2o_weights/")),
                  key=lambda k: int(k.split("/")[1]))
    assert keys, f"no l2o weights in {path}"
    return [reader.get_tensor(k) for k in keys]


def assert_one_line_error(result, *fragments):
    """Exit code ≠ 0, no traceback, and exactly one ``error:`` line that holds every fragment."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], result.output
    return errors[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", *TINY_TRAIN, "--out", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir, result


@pytest.fixture(scope="module")
def evaluated_run(trained_run):
    run_dir, _ = trained_run
    result = invoke("evaluate", run_dir, *TINY_EVAL)
    assert result.exit_code == 0, result.output
    return run_dir, result


# -- help and start-up ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["pipeline"], ["train"], ["evaluate"], ["record"], ["distill"]])
def test_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_is_listed_and_does_not_import_tensorflow():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from cli.main import app\n"
            "for cmd in ([], ['pipeline'], ['train'], ['evaluate']):\n"
            "    r = CliRunner().invoke(app, [*cmd, '--help'])\n"
            "    assert r.exit_code == 0, r.output\n"
            "assert 'tensorflow' not in sys.modules, 'tfl2o --help imported tensorflow'\n"
            "assert not any(m.startswith('tf_symbolic_l2o') for m in sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=60)
    out = subprocess.run([sys.executable, "-m", "cli", "--help"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "evaluate" in out.stdout


def test_tensorflow_start_up_lines_are_hidden_unless_verbose():
    """TensorFlow's C++ start-up lines (absl's pre-InitializeLog notice, oneDNN, CUDA stubs) never reach the
    console of a command, whatever TF_CPP_MIN_LOG_LEVEL says; --verbose lets them through."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    rule = str(ROOT / "saved_models" / "symbolic_rp_small" / "rule.json")  # any shipped rule; this one shows fast
    quiet = subprocess.run([sys.executable, "-m", "cli", "show", rule], env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "rest" in quiet.stdout  # the rule and its invariants were shown
    markers = ("InitializeLog", "I0000", "E0000", "oneDNN", "cuda")
    assert not [m for m in markers if m in quiet.stderr or m in quiet.stdout], quiet.stderr
    help_run = subprocess.run([sys.executable, "-m", "cli", "pipeline", "--help"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert help_run.returncode == 0 and "--until" in help_run.stdout, help_run.stderr
    assert not [m for m in markers if m in help_run.stderr or m in help_run.stdout], help_run.stderr
    # a command that fails at once, quiet and with --verbose: one error line either way; --verbose lets through
    # whatever TensorFlow prints at start-up (on this CPU machine the absl notice; elsewhere it may print nothing,
    # so only the quiet run is asserted strictly)
    runs = [subprocess.run([sys.executable, "-m", "cli", *flag, "record", "no_such_source", "--out", "x.npy"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
            for flag in ([], ["--verbose"])]
    for run in runs:
        assert run.returncode == 2 and "error: source 'no_such_source'" in run.stderr, run.stderr
    assert [ln for ln in runs[0].stderr.splitlines() if ln.strip()] == [
        ln for ln in runs[0].stderr.splitlines() if ln.startswith("error:")]
    assert not (ROOT / "x.npy").exists()


@pytest.mark.parametrize("args, option", [
    (["train", "--meta-lr", "nan"], "--meta-lr"),
    (["train", "--random-scale", "inf"], "--random-scale"),
    (["train", "--imitation-prob", "-inf"], "--imitation-prob"),
    (["tune", "psi", "--meta-lr", "inf"], "--meta-lr"),
    (["evaluate", "RUN", "--lr-grid", "1e-3,nan"], "--lr-grid"),
])
def test_cli_numbers_refuse_nan_and_inf(tmp_path, args, option):
    out = tmp_path / "run"
    result = invoke(*[str(tmp_path) if a == "RUN" else a for a in args], "--out", out)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and option in lines[0] and "finite" in lines[0], result.output
    assert not out.exists()


def test_configs_refuse_nan_and_inf():
    from tf_symbolic_l2o.meta.config import TrainConfig
    from tf_symbolic_l2o.tune import TuneConfig, psi_rule

    for field in ("meta_lr", "meta_clip_norm", "random_scale", "imitation_lr"):
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{field} must be a finite number"):
                TrainConfig(**{field: bad})
    with pytest.raises(ValueError, match="meta_momentum must be a finite number"):
        TuneConfig(rule=psi_rule().to_dict(), meta_momentum=float("nan"))


def test_no_arguments_shows_help():
    result = invoke()
    assert "Usage" in result.output
    assert "train" in result.output


# -- train / evaluate / resume -------------------------------------------------------------------------------------


def test_train_writes_a_run(trained_run):
    run_dir, result = trained_run
    for name in ("config.json", "metrics.csv", "summary.json", "l2o/l2o.json"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "checkpoints").iterdir())
    assert any((run_dir / "tensorboard").iterdir())
    assert (run_dir / "l2o" / "saved_model" / "saved_model.pb").is_file()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    assert set(metrics["horizon"]) == {10}
    config = json.loads((run_dir / "config.json").read_text())
    assert config["optimizer"] == "rp"
    assert config["task"]["dataset"] == "digits" and config["task"]["hidden"] == [8]
    assert config["task"]["batch_size"] == 32
    assert config["meta_lr"] == 1e-3  # not given on the command line: the TrainConfig default
    assert "meta-training of rp" in result.output
    assert "written" in result.output
    assert np.all(np.isfinite(metrics["meta_loss"])) and np.all(metrics["meta_loss"] > 0)
    # meta-training moved the weights: the exported L2O differs from the same preset built with the run's seed
    # (the trainer's starting point; building it twice gives the same weights), and epoch 2 moved them again
    from tf_symbolic_l2o.learned.io import load_l2o
    from tf_symbolic_l2o.learned.registry import make_l2o

    init = make_l2o(config["optimizer"], seed=config["seed"], **config["l2o"]).get_weights()
    for a, b in zip(init, make_l2o(config["optimizer"], seed=config["seed"], **config["l2o"]).get_weights()):
        np.testing.assert_array_equal(a, b)
    saved = load_l2o(run_dir / "l2o").get_weights()
    assert [w.shape for w in saved] == [w.shape for w in init]
    assert all(np.all(np.isfinite(w)) for w in saved)
    assert any(not np.array_equal(a, b) for a, b in zip(saved, init))
    epoch1, epoch2 = (checkpoint_l2o_weights(run_dir / "checkpoints" / f"ckpt-{e}") for e in (1, 2))
    assert [w.shape for w in epoch1] == [w.shape for w in init]
    assert any(not np.array_equal(a, b) for a, b in zip(epoch1, init))
    assert any(not np.array_equal(a, b) for a, b in zip(epoch2, epoch1))


def test_evaluate_writes_report_and_prints_table(evaluated_run):
    run_dir, result = evaluated_run
    out = run_dir / "eval"
    for name in ("summary.csv", "curves.csv", "loss_curves.png", "tuning.csv"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["optimizer"]) == ["rp", "adam(lr=0.01)"] or list(summary["optimizer"]) == [
        "rp", "adam(lr=0.1)"]
    assert set(summary["runs"]) == {2}
    curves = pd.read_csv(out / "curves.csv")
    assert curves["step"].max() == 9  # --steps 10
    # final loss = mean over runs of each run's mean over its last 10 % of steps: with 10 steps, the last step;
    # curves.csv holds the mean over runs per step, so the two agree
    last = curves[curves["step"] == 9].set_index("optimizer")["mean"]
    assert set(last.index) == set(summary["optimizer"])
    for row in summary.itertuples():
        assert np.isfinite(row.final_loss_mean) and row.final_loss_mean > 0, row.optimizer
        np.testing.assert_allclose(row.final_loss_mean, last[row.optimizer], rtol=1e-5, err_msg=row.optimizer)
    assert "adam(lr=" in result.output
    assert "best baseline" in result.output
    assert "final loss" in result.output


def test_evaluate_custom_out_and_default_steps(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = invoke("evaluate", run_dir, "--runs", "1", "--baselines", "", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(tmp_path / "report" / "curves.csv")
    assert curves["step"].max() == 9  # default steps: the run's training horizon (epoch_len 10)
    assert set(curves["optimizer"]) == {"rp"}


def test_train_options_reach_the_config(tmp_path):
    run_dir = tmp_path / "quad"
    result = invoke("train", "-o", "rp_s", "--task", "quadratic", "--curriculum", "5,10", "--unroll", "5",
                    "--epochs", "1", "--features", "mt+g", "--meta-clip-norm", "none", "--jit-compile", "false",
                    "--val-every", "0", "--meta-lr", "0.01", "--seed", "3", "--no-progress", "-d", run_dir)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["optimizer"] == "rp_s" and config["task"]["name"] == "quadratic"
    assert config["curriculum"] == [5, 10] and config["unroll"] == 5 and config["epochs"] == 1
    assert config["l2o"] == {"features": "mt+g"}
    assert config["meta_clip_norm"] is None and config["jit_compile"] is False
    assert config["meta_lr"] == 0.01 and config["seed"] == 3 and config["val_every"] == 0
    assert json.loads((run_dir / "l2o" / "l2o.json").read_text())["config"]["features"] == "mt+g"
    # evaluate without baselines; default steps = the last curriculum horizon; no test accuracy on a quadratic
    result = invoke("evaluate", run_dir, "--runs", "1", "--baselines", "")
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(run_dir / "eval" / "curves.csv")
    assert curves["step"].max() == 9 and set(curves["optimizer"]) == {"rp_s"}


def test_resume_finished_run(trained_run, tmp_path):
    run_dir, _ = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    result = invoke("train", "--resume", "--out", copy, "--no-progress", "--unroll", "2")
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output
    assert "ignoring unroll" in result.output  # the saved config wins
    assert list(pd.read_csv(copy / "metrics.csv")["epoch"]) == [1, 2]
    before = pd.read_csv(run_dir / "metrics.csv")  # the first session's rows
    pd.testing.assert_frame_equal(pd.read_csv(copy / "metrics.csv"), before, check_exact=True)
    # --epochs extends a finished run
    result = invoke("train", "--resume", "--out", copy, "--epochs", "3", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output and "at epoch 2" in result.output
    after = pd.read_csv(copy / "metrics.csv")
    assert list(after["epoch"]) == [1, 2, 3]
    assert json.loads((copy / "config.json").read_text())["epochs"] == 3
    # the rows of the first session survive unchanged, wall time included (epochs 1–2 were not re-run)
    pd.testing.assert_frame_equal(after.iloc[:2], before, check_exact=True)
    # … and it continued from the checkpointed weights: the same as one uninterrupted 3-epoch run
    straight = tmp_path / "straight"
    i = TINY_TRAIN.index("--epochs")
    result = invoke("train", *TINY_TRAIN[:i], "--epochs", "3", *TINY_TRAIN[i + 2:], "--out", straight)
    assert result.exit_code == 0, result.output
    for a, b in zip(checkpoint_l2o_weights(straight / "checkpoints" / "ckpt-3"),
                    checkpoint_l2o_weights(copy / "checkpoints" / "ckpt-3")):
        np.testing.assert_array_equal(a, b)
    from tf_symbolic_l2o.learned.io import load_l2o

    for a, b in zip(load_l2o(straight / "l2o").get_weights(), load_l2o(copy / "l2o").get_weights()):
        np.testing.assert_array_equal(a, b)
    cols = [c for c in after.columns if c != "seconds"]
    pd.testing.assert_frame_equal(after[cols], pd.read_csv(straight / "metrics.csv")[cols], check_exact=True)


# -- errors --------------------------------------------------------------------------------------------------------


def test_train_twice_into_the_same_directory_fails(trained_run):
    run_dir, _ = trained_run
    before = (run_dir / "metrics.csv").read_bytes()
    result = invoke("train", *TINY_TRAIN, "--out", run_dir)
    assert result.exit_code == 2
    assert_one_line_error(result, "already holds a run", "resume")
    assert (run_dir / "metrics.csv").read_bytes() == before


def test_resume_missing_run_fails(tmp_path):
    result = invoke("train", "--resume", "--out", tmp_path / "nothing")
    assert result.exit_code == 2
    assert_one_line_error(result, "no run to resume")


def test_resume_corrupt_checkpoint_fails(trained_run, tmp_path):
    run_dir, _ = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    data_files = list((copy / "checkpoints").glob("ckpt-*.data-*"))
    assert data_files
    for f in data_files:
        f.write_bytes(b"\x00garbage")
    result = invoke("train", "--resume", "--out", copy, "--no-progress")
    assert result.exit_code == 2
    assert_one_line_error(result, "cannot be restored")


@pytest.mark.parametrize("args, fragments", [
    (["train", "--optimizer", "adamw"], ["unknown optimizer 'adamw'", "dm, rp, rp_s, rp_si"]),
    (["train", "-o", "lstm"], ["unknown optimizer"]),
    (["train", "--task", "transformer"], ["unknown task 'transformer'", "mlp, cnn, resnet, quadratic"]),
    (["train", "--epochs", "0"], ["epochs"]),
    (["train", "--unroll", "-1"], ["unroll"]),
    (["train", "--epoch-len", "10", "--unroll", "4"], ["multiple of unroll"]),
    (["train", "--hidden", "a,b"], ["--hidden"]),
    (["train", "--task", "mlp", "--depth", "8"], ["does not take", "depth"]),
    (["train", "--dataset", "no_such_data"], ["unknown dataset", "mnist_subset"]),
    (["train", "--jit-compile", "maybe"], ["--jit-compile"]),
    (["evaluate", "definitely/not/a/run"], ["no run directory"]),
    (["evaluate", ".", "--runs", "0"], ["--runs"]),
    (["evaluate", ".", "--lr-grid", "fast"], ["--lr-grid"]),
    (["record", "lstm:0.1"], ["neither a run directory nor a teacher"]),
    (["record", "adam:fast"], ["not a number"]),
    (["record", "adam:0.01", "--samples", "0"], ["samples"]),
    (["record", "adam:0.01", "--out", "data.csv"], [".npy"]),
    (["distill", "missing.npy"], ["not found"]),
    (["distill", "missing.npy", "--generations", "0"], ["--generations"]),
])
def test_bad_arguments_give_one_line(args, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the repository
    result = invoke(*args)
    assert result.exit_code == 2
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "runs").exists()


def test_evaluate_unfinished_or_broken_run(trained_run, tmp_path):
    run_dir, _ = trained_run
    assert_one_line_error(invoke("evaluate", tmp_path), "no trained optimizer")
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "config.json").write_text("{not json")
    assert_one_line_error(invoke("evaluate", copy, *TINY_EVAL), "not valid JSON")
    (copy / "config.json").write_text('{"optimizer": "rp", "warp_drive": 1}')
    assert_one_line_error(invoke("evaluate", copy, *TINY_EVAL), "unknown training option")
    (copy / "config.json").unlink()
    assert_one_line_error(invoke("evaluate", copy, *TINY_EVAL), "config.json missing")


def test_evaluate_unknown_baseline(trained_run):
    run_dir, _ = trained_run
    assert_one_line_error(invoke("evaluate", run_dir, *TINY_EVAL[:-2], "--baselines", "adamw"),
                          "unknown baseline 'adamw'")


def test_train_help_defaults_match_the_library():
    """The defaults shown by ``tfl2o train --help`` are written out in the CLI (to keep --help instant):
    they must equal TrainConfig's."""
    import dataclasses

    import typer.main

    from tf_symbolic_l2o.meta.trainer import TrainConfig

    command = typer.main.get_command(app).commands["train"]
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    checked = 0
    for param in command.params:
        if param.name in defaults and isinstance(param.show_default, str):
            expected = defaults[param.name]
            shown = param.show_default
            if isinstance(expected, bool) or expected is None:
                continue
            if isinstance(expected, (int, float)):
                assert float(shown) == float(expected), param.name
            else:
                assert shown == str(expected), param.name
            checked += 1
    assert checked >= 8


def test_record_then_evaluate_a_rule_closed_loop(trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "b.npy"
    result = invoke("record", run_dir, "--out", out, "--samples", "200", "--steps", "10", "--memlen", "2",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    assert out.exists() and out.with_suffix(".json").exists()
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["shape"] == [200, 5] and manifest["task"]["dataset"] == "digits"
    assert manifest["columns"] == ["mt_0", "gt_0", "mt_1", "gt_1"]
    assert_rows_replay_the_l2o(run_dir, np.load(out), manifest)
    # a hand-written rule (SGD-like on m̃) runs closed-loop beside the L2O from the same inits
    from tf_symbolic_l2o.rules import Rule, parse_infix

    Rule(parse_infix("-0.5 * mt_0"), features="mt+gt", memlen=1).save(tmp_path / "r" / "rule.json")
    result = invoke("evaluate", run_dir, *TINY_EVAL, "--rule", tmp_path / "r" / "rule.json", "--out", tmp_path / "e")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "e" / "summary.csv")
    assert "rule:r" in set(summary["optimizer"])
    final = summary.set_index("optimizer")["final_loss_mean"]
    assert np.isfinite(final["rule:r"]) and final["rule:r"] > 0
    assert final["rule:r"] != final["rp"]  # the rule ran, not a copy of the L2O's curve
    assert "rule:r / rp final loss" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "tfl2o-rule/1", "expression": ["__import__", "os"], "features": {"names": "mt"}, '
                   '"memlen": 1}')
    assert_one_line_error(invoke("evaluate", run_dir, *TINY_EVAL, "--rule", bad), "bad.json")


def test_record_then_distill_sgd_teacher(tmp_path):
    data = tmp_path / "sgd.npy"
    result = invoke("record", "sgd:0.02", "--out", data, "--samples", "600", "--steps", "30", "--dataset", "digits",
                    "--features", "g+mt", "--no-progress")
    assert result.exit_code == 0, result.output
    result = invoke("distill", data, "--population-size", "200", "--generations", "4", "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["metrics"]["r2_test"] > 0.999  # y = −2·g exactly
    # options of the other backend are refused, one line, nothing written
    assert_one_line_error(invoke("distill", data, "--max-length", "40", "--out", tmp_path / "x"), "operon")
    assert_one_line_error(invoke("distill", data, "--backend", "sparse", "--generations", "3",
                                 "--out", tmp_path / "x"), "gplearn and operon", "not of the sparse backend")
    assert_one_line_error(invoke("distill", data, "--backend", "operon", "--fit-rows", "0",
                                 "--out", tmp_path / "x"), "--fit-rows")
    assert not (tmp_path / "x").exists()
    from tf_symbolic_l2o.rules import Rule

    rule = Rule.load(tmp_path / "d" / "rule.json")
    assert rule.variables == ["g_0"]
    # a hostile rule file is refused when used
    (tmp_path / "d" / "rule.json").write_text((tmp_path / "d" / "rule.json").read_text().replace('"g_0"', '"os.system"'))
    with pytest.raises(ValueError):
        Rule.load(tmp_path / "d" / "rule.json")


def test_train_on_a_keras_model_file(tmp_path):
    """``--model`` makes any Keras model the optimizee (task ``keras``); bad models are one-line errors."""
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(10)])
    model.save(tmp_path / "mlp.keras")
    run_dir = tmp_path / "run"
    tiny = ["--dataset", "digits", "--epochs", "1", "--epoch-len", "10", "--unroll", "5", "--val-every", "0",
            "--batch-size", "32", "--no-progress"]
    result = invoke("train", "--optimizer", "rp_s", "--model", tmp_path / "mlp.keras", *tiny, "--out", run_dir)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"]["name"] == "keras" and config["task"]["model"] == str(tmp_path / "mlp.keras")
    assert np.isfinite(pd.read_csv(run_dir / "metrics.csv")["meta_loss"]).all()
    assert "610 optimizee parameters" in result.output  # 64·8 + 8 + 8·10 + 10
    bad = {"resnet51": ("train", "resnet51"), tmp_path / "not.keras": ("train", "not.keras"),
           tmp_path / "three.keras": ("train", "does not fit dataset 'digits'"),
           tmp_path / "unbuilt.keras": ("tune", "--input-shape")}
    (tmp_path / "not.keras").write_text("not a model")
    keras.Sequential([keras.Input((64,)), keras.layers.Dense(3)]).save(tmp_path / "three.keras")
    with pytest.warns(UserWarning, match="not yet been built"):  # Keras saves it, weightless
        keras.Sequential([keras.layers.Dense(10)]).save(tmp_path / "unbuilt.keras")
    for model, (command, fragment) in bad.items():
        args = [command, "psi"] if command == "tune" else [command]
        result = invoke(*args, "--model", model, *tiny, "--out", tmp_path / "x")
        assert result.exit_code == 2, result.output
        assert_one_line_error(result, fragment)
        assert not (tmp_path / "x").exists(), (model, sorted(p.name for p in (tmp_path / "x").rglob("*")))
    assert not (tmp_path / "x").exists()
