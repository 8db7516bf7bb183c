"""``tfl2o pipeline``: every stage on a tiny real run, the report's figures against the stages' own files, stages
skipped when current and re-run when their inputs change, a killed run continued, and one-line errors."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from test_cli import assert_one_line_error

runner = CliRunner()

# seconds per stage: a 98-parameter MLP (64-8-10) on the 8×8 digits, one epoch of two 5-step windows
TINY = ["--task", "mlp", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--epoch-len", "10", "--unroll",
        "5", "--samples", "300", "--memlen", "2", "--eval-runs", "2", "--baselines", "adam", "--fit-epochs", "1",
        "--fit-seeds", "2", "--no-progress"]
STAGES = ("train", "record", "distill", "evaluate", "fit", "export", "report")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def tiny_config(**changes):
    from tf_symbolic_l2o.pipeline import PipelineConfig

    options = dict(task={"name": "mlp", "dataset": "digits", "hidden": [8]}, epochs=1, epoch_len=10, unroll=5,
                   samples=300, memlen=2, eval_runs=2, baselines=("adam",), fit_epochs=1, fit_seeds=2)
    return PipelineConfig(**{**options, **changes})


def statuses(result) -> dict:
    return {stage: r["status"] for stage, r in result.stages.items()}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The CLI run twice into one directory: stopped after ``record``, then to the end (a continued pipeline)."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    first = invoke("pipeline", "--out", out, *TINY, "--until", "record")
    assert first.exit_code == 0, first.output
    second = invoke("pipeline", "--out", out, *TINY)
    assert second.exit_code == 0, second.output
    return out, first, second


def test_until_stops_and_the_next_run_continues(pipeline_run):
    out, first, second = pipeline_run
    assert "stopped after record" in first.output
    assert "train: running" in first.output and "record: running" in first.output
    assert "distill" not in first.output.replace("--until", "")
    for stage in ("train", "record"):
        assert f"{stage}: up to date, skipped" in second.output
    for stage in STAGES[2:]:
        assert f"{stage}: running" in second.output
    assert (out / "report.md").is_file()


def test_every_stage_writes_its_outputs(pipeline_run):
    import keras

    from tf_symbolic_l2o.export import signatures_summary
    from tf_symbolic_l2o.optimizers import SymbolicOptimizer
    from tf_symbolic_l2o.rules.rule import Rule

    out, _, _ = pipeline_run
    for path in ("train/l2o", "train/metrics.csv", "record/behaviour.npy", "record/behaviour.json",
                 "distill/rule.json", "distill/pareto.png", "evaluate/summary.csv", "evaluate/loss_curves.png",
                 "fit/fit.csv", "fit/fit_curves.png", "fit/model.keras", "export/rule", "export/model",
                 "meta_training.png", "report.md"):
        assert (out / path).exists(), path
    state = json.loads((out / "pipeline.json").read_text())
    assert sorted(state["stages"]) == sorted(STAGES)
    data = np.load(out / "record" / "behaviour.npy", allow_pickle=False)
    assert data.shape == (300, 2 * 2 + 1)  # 2 features (m̃, g̃) × 2 lags + the output
    rule = Rule.load(out / "distill" / "rule.json")
    assert all(inv["passed"] for inv in rule.metadata["invariants"].values())
    model = keras.saving.load_model(out / "fit" / "model.keras", safe_mode=True)
    assert isinstance(model.optimizer, SymbolicOptimizer)
    assert int(model.optimizer.iterations.numpy()) > 0  # saved after training, with its state
    assert set(signatures_summary(out / "export" / "rule")) == {"init_state", "update"}
    assert "serving_default" in signatures_summary(out / "export" / "model")


def test_report_figures_match_the_stages_files(pipeline_run):
    """The headline ratios and R² in report.md, recomputed with pandas from the stages' own outputs."""
    out, _, second = pipeline_run
    report = (out / "report.md").read_text()
    summary = pd.read_csv(out / "evaluate" / "summary.csv").set_index("optimizer")["final_loss_mean"]
    rule_row = next(name for name in summary.index if name.startswith("rule:"))
    closed_loop = summary[rule_row] / summary["rp"]
    lstm_vs_adam = summary["rp"] / summary[[n for n in summary.index if n.startswith("adam")][0]]
    assert f"**{closed_loop:.3g}×** the LSTM's" in report
    assert f"ratio **{lstm_vs_adam:.3g}**" in report
    assert "(rp reaches" not in report  # the report states the figure, not the CLI's verdict line
    r2 = json.loads((out / "distill" / "report.json").read_text())["metrics"]["r2_test"]
    assert f"test R² **{r2:.4f}**" in report
    assert f"rule test R² {r2:.4f}" in second.output
    fit = pd.read_csv(out / "fit" / "fit.csv")
    assert len(fit) == 2 * 2  # 2 optimizers × 2 seeds × 1 epoch
    rule_loss = fit[fit.optimizer == "rule"].train_loss
    assert f"training loss {rule_loss.mean():.4f} ± {rule_loss.std():.2g}" in report
    assert "$$\\Delta\\theta = " in report and "![meta-training](meta_training.png)" in report


def test_a_second_run_skips_every_stage_and_writes_nothing(pipeline_run, tmp_path):
    out, _, _ = pipeline_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    result = invoke("pipeline", "--out", copy, *TINY)
    assert result.exit_code == 0, result.output
    assert result.output.count("up to date, skipped") == len(STAGES)
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()} == before


def test_changed_options_rerun_only_the_stages_that_read_them(pipeline_run, tmp_path):
    from tf_symbolic_l2o.pipeline import run_pipeline

    out, _, _ = pipeline_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    rule = (copy / "distill" / "rule.json").read_text()
    result = run_pipeline(copy, tiny_config(eval_runs=3))
    assert statuses(result) == {"train": "skipped", "record": "skipped", "distill": "skipped", "evaluate": "ran",
                                "fit": "skipped", "export": "skipped", "report": "ran"}
    assert pd.read_csv(copy / "evaluate" / "summary.csv")["runs"].eq(3).all()
    assert (copy / "distill" / "rule.json").read_text() == rule
    result = run_pipeline(copy, tiny_config(eval_runs=3, fit_seeds=3), until="fit")
    assert statuses(result) == {"train": "skipped", "record": "skipped", "distill": "skipped",
                                "evaluate": "skipped", "fit": "ran"}
    assert result.report is None


def test_a_run_killed_before_the_optimizer_was_saved_continues_from_its_checkpoint(pipeline_run, tmp_path):
    """Meta-training stopped after its last checkpoint but before ``l2o/`` was written: the pipeline resumes the
    run (no epoch repeated), writes the same optimizer, and the stages after it stay current."""
    from tf_symbolic_l2o.pipeline import run_pipeline

    out, _, _ = pipeline_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    weights = sorted((copy / "train" / "l2o").glob("weights.*"))
    saved = [p.read_bytes() for p in weights]
    shutil.rmtree(copy / "train" / "l2o")
    result = run_pipeline(copy, tiny_config())
    assert statuses(result)["train"] == "ran"
    assert all(s == "skipped" for stage, s in statuses(result).items() if stage != "train")
    assert len(pd.read_csv(copy / "train" / "metrics.csv")) == 1
    assert [p.read_bytes() for p in weights] == saved


def test_more_epochs_extend_meta_training_and_other_options_are_refused(pipeline_run, tmp_path):
    from tf_symbolic_l2o.pipeline import run_pipeline

    out, _, _ = pipeline_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    state = (copy / "pipeline.json").read_text()
    with pytest.raises(ValueError, match="other options \\(unroll\\)"):
        run_pipeline(copy, tiny_config(unroll=10))
    assert (copy / "pipeline.json").read_text() == state
    result = run_pipeline(copy, tiny_config(epochs=2), until="train")
    assert statuses(result) == {"train": "ran"}
    assert len(pd.read_csv(copy / "train" / "metrics.csv")) == 2  # epoch 2 was added to the same run
    with pytest.raises(ValueError, match="more than the 1 asked"):
        run_pipeline(copy, tiny_config(epochs=1), until="train")


@pytest.mark.parametrize("args, fragment", [
    (["--until", "nope"], "unknown stage 'nope'"),
    (["--size", "huge"], "unknown size 'huge'"),
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--meta-lr", "nan"], "--meta-lr must be a finite number"),
    (["--optimizer", "adam"], "adam"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path, args, fragment):
    out = tmp_path / "run"
    result = invoke("pipeline", "--out", out, *args)
    assert result.exit_code == 2
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    result = invoke("pipeline", "--out", path, "--epochs", "1")
    assert result.exit_code == 2
    assert_one_line_error(result, "is not a directory")
    assert path.read_text() == "x"
