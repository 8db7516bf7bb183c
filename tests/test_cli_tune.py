"""``tfl2o tune``: tune → evaluate on a tiny run, resume after a kill, and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tf_symbolic_l2o.rules import Rule

from test_cli import assert_one_line_error, invoke

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--task", "mlp", "--dataset", "digits", "--batch-size", "16", "--epochs", "3", "--epoch-len", "8",
        "--unroll", "4", "--val-every", "1", "--val-runs", "1", "--meta-optimizer", "adam", "--meta-lr", "0.05",
        "--no-progress"]


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tune") / "run"
    result = invoke("tune", "psi", *TINY, "--out", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir, result


def test_tune_writes_a_run_and_evaluate_compares_tuned_and_untuned(tuned_run, tmp_path):
    run_dir, result = tuned_run
    for name in ("config.json", "metrics.csv", "checkpoints", "tensorboard", "rule.json", "summary.json"):
        assert (run_dir / name).exists(), name
        assert str(run_dir / name) in result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"]["name"] == "mlp" and config["meta_optimizer"] == "adam" and config["epochs"] == 3
    assert config["rule"]["metadata"]["family"] == "psi"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert {"W[mt,0]", "gamma", "val_loss"} <= set(metrics.columns)
    assert "meta-tuning" in result.output and "next: tfl2o evaluate" in result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"meta_loss", "val_loss", "W[mt,0]", "gamma"} <= set(events.Tags()["tensors"])
    assert len(events.Tensors("gamma")) == 3  # one point per epoch
    result = invoke("evaluate", run_dir, "--runs", "2", "--steps", "8", "--tune-runs", "1", "--lr-grid", "0.01,0.1",
                    "--baselines", "adam", "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "eval" / "summary.csv")
    assert set(summary["optimizer"]) == {"tuned", "untuned", "adam(lr=0.01)"} or \
        set(summary["optimizer"]) == {"tuned", "untuned", "adam(lr=0.1)"}
    assert "untuned / tuned final loss" in result.output


def test_tune_resume_after_a_kill_continues_exactly(tmp_path):
    """Kill a real `tfl2o tune` process mid-run, resume it, and compare with an uninterrupted run."""
    full = invoke("tune", "psi", *TINY, "--epochs", "12", "--out", tmp_path / "full")
    assert full.exit_code == 0, full.output
    run_dir = tmp_path / "killed"
    args = [sys.executable, "-m", "cli", "tune", "psi", *TINY, "--epochs", "12", "--out", str(run_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not list((run_dir / "checkpoints").glob("ckpt-2.index")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "rule.json").exists(), "the run finished before it was killed"
    # what the kill left on disk: the checkpoint the manager's state file names (checkpoint number = epoch; the
    # kill may land after ckpt-2, or between writing a checkpoint and recording it) and the metrics rows up to it
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    assert latest is not None
    epoch = int(latest.rsplit("-", 1)[1])
    assert 1 <= epoch < 12 and latest == str(run_dir / "checkpoints" / f"ckpt-{epoch}")
    done = pd.read_csv(run_dir / "metrics.csv")
    done = done[done["epoch"] <= epoch].reset_index(drop=True)
    assert list(done["epoch"]) == list(range(1, epoch + 1))
    result = invoke("tune", "--resume", "--out", run_dir, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"resumed from {latest} at epoch {epoch}\n" in result.output
    # the epochs done before the kill were not re-run: their rows, wall time included, are unchanged
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "metrics.csv").iloc[:epoch], done, check_exact=True)
    a = json.loads((tmp_path / "full" / "rule.json").read_text())
    b = json.loads((run_dir / "rule.json").read_text())
    assert a["expression"] == b["expression"]
    ma, mb = pd.read_csv(tmp_path / "full" / "metrics.csv"), pd.read_csv(run_dir / "metrics.csv")
    pd.testing.assert_frame_equal(ma.drop(columns="seconds"), mb.drop(columns="seconds"))


@pytest.mark.parametrize("args, fragments", [
    (["nope"], ["unknown rule 'nope'", "psi"]),
    (["psi:mt:x"], ["LAGS must be an integer"]),
    ([], ["give the RULE to tune"]),
    (["psi", "--meta-optimizer", "lbfgs"], ["unknown meta-optimizer 'lbfgs'"]),
    (["psi", "--task", "transformer"], ["unknown task 'transformer'"]),
    (["psi", "--epoch-len", "10", "--unroll", "4"], ["multiple of unroll"]),
    (["psi", "--strategy", "ring"], ["strategy"]),
])
def test_tune_bad_arguments_give_one_line(args, fragments, tmp_path):
    assert_one_line_error(invoke("tune", *args, "--out", tmp_path / "run", "--no-progress"), *fragments)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_tune_rule_without_constants_or_hostile(tmp_path):
    plain = {"format": "tfl2o-rule/1", "expression": ["tanh", "mt_0"], "features": "mt+gt", "memlen": 1}
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    assert_one_line_error(invoke("tune", tmp_path / "plain.json", "--out", tmp_path / "a"), "no constants to tune")
    hostile = {**plain, "expression": ["__import__", "os"]}
    (tmp_path / "hostile.json").write_text(json.dumps(hostile))
    assert_one_line_error(invoke("tune", tmp_path / "hostile.json", "--out", tmp_path / "b"), "hostile.json")
    assert_one_line_error(invoke("tune", tmp_path / "missing.json", "--out", tmp_path / "c"), "missing.json")


def test_tune_broken_tf_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert_one_line_error(invoke("tune", "psi", "--strategy", "multiworker", "--out", tmp_path / "run"), "TF_CONFIG")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    assert_one_line_error(invoke("tune", "psi", "--strategy", "multiworker", "--out", tmp_path / "run"), "index")


def test_tune_resume_missing_run(tmp_path):
    assert_one_line_error(invoke("tune", "--resume", "--out", tmp_path / "none"), "no run to resume")


def _free_ports(n):
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_tuning_on_loopback_equals_one_process(tuned_run, tmp_path):
    """Two `tfl2o tune` worker processes (MultiWorkerMirroredStrategy, TF_CONFIG on localhost) split each minibatch;
    the chief's tuned constants equal the single-process run's."""
    single_dir, _ = tuned_run
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    run_dir = tmp_path / "mw"
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-m", "cli", "tune", "psi", *TINY, "--strategy", "multiworker",
                                       "--out", str(run_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "2 replica(s)" in outs[0][0]  # the chief reports; the other worker prints nothing
    assert outs[1][0].strip() == ""
    single = Rule.from_dict(json.loads((single_dir / "rule.json").read_text()))
    multi = Rule.from_dict(json.loads((run_dir / "rule.json").read_text()))
    np.testing.assert_allclose(multi.constants, single.constants, rtol=1e-4, atol=1e-6)
    assert single.constants != Rule.from_dict(json.loads((single_dir / "config.json").read_text())["rule"]).constants
    assert (run_dir / ".workers" / "worker_1" / "rule.json").is_file()  # the other worker wrote privately


def test_tune_help_defaults_match_the_library():
    """The defaults that `tfl2o tune --help` shows are written out in the CLI: they must equal TuneConfig's."""
    import dataclasses

    import typer.main

    from cli.main import app
    from tf_symbolic_l2o.tune import TuneConfig

    command = typer.main.get_command(app).commands["tune"]
    defaults = {f.name: f.default for f in dataclasses.fields(TuneConfig) if f.default is not dataclasses.MISSING}
    checked = 0
    for param in command.params:
        if param.name in defaults and isinstance(param.show_default, str):
            expected, shown = defaults[param.name], param.show_default
            if isinstance(expected, bool):
                assert shown == ("second-order" if expected else "first-order"), param.name
            elif isinstance(expected, (int, float)):
                assert float(shown) == float(expected), param.name
            elif expected is not None:
                assert shown == str(expected), param.name
            checked += 1
    assert checked >= 8
    assert TuneConfig(rule=__import__("tf_symbolic_l2o").psi_rule().to_dict()).task["batch_size"] == 64


def test_tune_on_a_resnet(tmp_path):
    """The CLI path the README shows for ResNets: a functional CIFAR ResNet-8 with BatchNorm, both meta-gradients."""
    for order in ("--second-order", "--first-order"):
        run_dir = tmp_path / order.strip("-")
        result = invoke("tune", "symbolic_rp", "--task", "resnet", "--depth", "8", "--batch-size", "8", "--epochs",
                        "1", "--epoch-len", "4", "--unroll", "2", "--val-every", "0", order, "--out", run_dir,
                        "--no-progress")
        assert result.exit_code == 0, result.output
        config = json.loads((run_dir / "config.json").read_text())
        assert config["task"]["name"] == "resnet" and config["second_order"] is (order == "--second-order")
        tuned = Rule.from_dict(json.loads((run_dir / "rule.json").read_text()))
        assert np.all(np.isfinite(tuned.constants))
        assert tuned.constants != Rule.from_dict(config["rule"]).constants  # the meta-updates moved them
