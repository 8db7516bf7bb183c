"""Task families: spec validation, the per-epoch draw, loss scales, normalised meta-gradients, resume, the CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tf_symbolic_l2o.benchmark.suite import full_suite
from tf_symbolic_l2o.meta.config import TrainConfig
from tf_symbolic_l2o.meta.trainer import NORM_LR_GRID, MetaTrainer
from tf_symbolic_l2o.rules import Rule, parse_infix
from tf_symbolic_l2o.seeds import INIT, LR_TUNING, TRAINING, step_seed
from tf_symbolic_l2o.tasks.family import FAMILIES, draw_member, family_contains, load_family
from tf_symbolic_l2o.tasks.registry import make_task, normalize_task_spec
from tf_symbolic_l2o.tune import MetaTuner, TuneConfig, load_tuned_rule

QUAD_A = {"name": "quadratic", "dim": 5, "problem_seed": 3}
QUAD_B = {"name": "quadratic", "dim": 8, "problem_seed": 4, "noise_std": 0.1}


def _family(**member_overrides):
    members = [{"label": "a", "task": QUAD_A, "weight": 1.0, "horizons": [8, 16]},
               {"label": "b", "task": QUAD_B, "weight": 3.0, "horizons": [8]}]
    for m in members:
        m.update(member_overrides.get(m["label"], {}))
    return {"name": "family", "family": "test", "members": members}


def _rule():
    return Rule(parse_infix("0.5 * tanh(1.5 * mt_0) + 0.1 * gt_0"), features="mt+gt", output_scale=0.01)


def _tune(task, **kw):
    base = dict(rule=_rule().to_dict(), task=task, epochs=4, epoch_len=8, unroll=4, val_every=2, val_runs=1, seed=1,
                meta_lr=0.01, second_order=False)
    base.update(kw)
    return TuneConfig(**base)


# ------------------------------------------------------------------------------------------------- the spec


def test_named_families_expand_and_hold_no_held_out_benchmark_task():
    spec = normalize_task_spec({"name": "family", "family": "default"})
    assert [m["label"] for m in spec["members"]] == [m["label"] for m in FAMILIES["default"]]
    assert all(m["norm"] is None and m["weight"] > 0 for m in spec["members"])
    horizons = sorted({h for m in spec["members"] for h in m["horizons"]})
    assert horizons[0] == 100 and horizons[-1] == 1000
    kinds = {m["task"]["name"] for m in spec["members"]}
    assert {"mlp", "cnn", "resnet", "keras", "autoencoder"} <= kinds
    assert normalize_task_spec(spec) == spec  # idempotent: config.json round-trips
    # the benchmark's held-out tiers are never meta-trained on; the paper's MLP task is
    for task in full_suite().tasks:
        if task.tier == "sanity" or task.name == "logreg_digits":
            assert task.trained_on is None, task.name
    assert family_contains(spec, normalize_task_spec({"name": "mlp", "dataset": "mnist_subset"})) == "mlp_paper"
    # the suite says which of its tasks are training tasks, and its report says it under each task
    members = {t["name"]: t["default_family_member"] for t in full_suite().config()["tasks"]}
    assert members == {"rosenbrock": None, "quadratic_ill": None, "quadratic_noisy": None, "mlp_mnist": "mlp_paper",
                       "mlp_deep": None, "cnn_mnist": "cnn_paper", "logreg_digits": None, "autoencoder": None}
    from tf_symbolic_l2o.benchmark.report import _family_note

    assert "`mlp_paper` member" in _family_note(members, "mlp_mnist")[0]
    assert _family_note(members, "mlp_deep")[0].startswith("Held out")


@pytest.mark.parametrize("change, message", [
    ({"members": []}, "no members"),
    ({"extra": 1}, "takes"),
    ({"normaliser": "median"}, "unknown normaliser"),
    ({"members": [{"task": QUAD_A, "weight": float("nan")}]}, "weight .* positive finite"),
    ({"members": [{"task": QUAD_A, "weight": 0}]}, "weight .* positive finite"),
    ({"members": [{"task": QUAD_A, "norm": -1.0}]}, "norm .* positive finite"),
    ({"members": [{"task": QUAD_A, "horizons": [8, 16], "norm": {"8": 1.0}}]}, r"no value for its horizon\(s\) \[16\]"),
    ({"members": [{"task": QUAD_A, "horizons": [8], "norm": {"8": "x"}}]}, "positive finite"),
    ({"members": [{"task": QUAD_A, "horizons": [10, 0]}]}, "horizons must be"),
    ({"members": [{"task": QUAD_A, "horizons": []}]}, "horizons must be"),
    ({"members": [{"task": QUAD_A, "label": "x"}, {"task": QUAD_B, "label": "x"}]}, "used twice"),
    ({"members": [{"task": {"name": "family", "family": "small"}}]}, "cannot contain a family"),
    ({"members": [{"task": {"name": "mlp", "depth": 3}}]}, "does not take"),
    ({"members": [{"task": QUAD_A, "speed": 2}]}, "unknown key"),
    ({"family": "nope", "members": None}, "unknown task family"),
])
def test_bad_family_specs_are_refused(change, message):
    spec = {"name": "family", "family": "t", "members": [{"task": QUAD_A}], **change}
    with pytest.raises(ValueError, match=message):
        normalize_task_spec(spec)


def test_family_files_and_their_errors(tmp_path):
    path = tmp_path / "fam.json"
    path.write_text(json.dumps({"name": "mine", "normaliser": "none", "tasks": [{"task": QUAD_A, "horizons": [8]}]}))
    spec = normalize_task_spec(load_family(path))
    assert spec["family"] == "mine" and spec["members"][0]["label"] == "quadratic_0"
    assert spec["members"][0]["norm"] == 1.0  # normaliser none
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_family(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="'tasks' list"):
        load_family(tmp_path / "list.json")
    with pytest.raises(ValueError, match="unknown task family 'missing.json'"):
        load_family("missing.json")
    with pytest.raises(ValueError, match="a family cannot contain|is several tasks"):
        make_task({"name": "family", "family": "small"})
    with pytest.raises(ValueError, match="multiples of unroll 5"):
        TrainConfig(task=_family(), unroll=5)
    with pytest.raises(ValueError, match="drop the curriculum"):
        TrainConfig(task=_family(), unroll=4, curriculum=[8, 16])


def test_the_draw_follows_the_weights_and_horizons_and_is_stateless():
    spec = normalize_task_spec(_family())
    draws = [draw_member(spec, step_seed(7, TRAINING, e), [99]) for e in range(1, 1001)]
    assert draws == [draw_member(spec, step_seed(7, TRAINING, e), [99]) for e in range(1, 1001)]
    members = np.array([i for i, _ in draws])
    assert abs(np.mean(members == 1) - 0.75) < 0.04  # weights 1 : 3
    horizons_a = [h for i, h in draws if i == 0]
    assert set(horizons_a) == {8, 16} and abs(np.mean(np.array(horizons_a) == 8) - 0.5) < 0.08
    assert {h for i, h in draws if i == 1} == {8}
    no_horizons = normalize_task_spec(_family(b={"horizons": None}))
    assert {h for i, h in (draw_member(no_horizons, step_seed(7, TRAINING, e), [12]) for e in range(200))
            if i == 1} == {12}


# ------------------------------------------------------------------------------------------ meta-training


def _adam_losses(task, lr, steps, run_seed):
    """Adam (Keras's ε placement) on the deterministic quadratic, in NumPy: the loss before each step."""
    w, y = task.w.numpy().astype(np.float64), task.y.numpy().astype(np.float64)
    theta = task.init_params(step_seed(run_seed, INIT))[0].numpy().astype(np.float64)
    m, v, losses = np.zeros_like(theta), np.zeros_like(theta), []
    for t in range(1, steps + 1):
        r = w @ theta - y
        losses.append(r @ r)
        g = 2 * w.T @ r
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        theta = theta - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
    return np.array(losses)


def test_loss_scales_are_tuned_adams_mean_loss(tmp_path):
    family = _family(b={"task": {**QUAD_B, "noise_std": 0.0}, "norm": 2.5})
    trainer = MetaTuner(_tune(family, epochs=1), tmp_path / "run")
    members = trainer.config.task["members"]
    task_a = make_task(QUAD_A)
    curves = [_adam_losses(task_a, lr, 16, step_seed(1, LR_TUNING, 0)) for lr in NORM_LR_GRID]
    best = curves[int(np.argmin([c.mean() for c in curves]))]  # the learning rate with the lowest mean loss
    assert set(members[0]["norm"]) == {"8", "16"}  # one scale per horizon: the mean of the first h losses
    np.testing.assert_allclose([members[0]["norm"]["8"], members[0]["norm"]["16"]],
                               [best[:8].mean(), best.mean()], rtol=1e-4)
    assert members[0]["norm"]["8"] > members[0]["norm"]["16"]  # early losses are larger
    assert members[1]["norm"] == 2.5  # given, not measured


def test_one_member_family_scales_the_meta_gradient_by_its_norm(tmp_path):
    """A family of one member with loss scale c trains on the same runs as the single task, with 1/c times the
    meta-gradient: plain SGD without clipping moves the constants 1/c as far (one window, so that both windows
    start from the same constants)."""
    c = 4.0
    options = dict(epochs=1, epoch_len=4, unroll=4, meta_optimizer="sgd", meta_momentum=0.0, meta_clip_norm=None,
                   val_every=0)
    single = MetaTuner(_tune(QUAD_A, **options), tmp_path / "single")
    family = MetaTuner(_tune({"name": "family", "family": "one",
                              "members": [{"task": QUAD_A, "norm": c, "label": "q"}]}, **options), tmp_path / "fam")
    start = single.learned.params.numpy().copy()
    single.run()
    family.run()
    step_single = single.learned.params.numpy() - start
    step_family = family.learned.params.numpy() - start
    assert np.max(np.abs(step_single)) > 1e-4
    # c = 4 scales exactly; what is left is float32 rounding of the constants (≈ 1) when the step is added
    np.testing.assert_allclose(step_family, step_single / c, rtol=1e-5, atol=2e-7)
    m_single = pd.read_csv(tmp_path / "single" / "metrics.csv")
    m_family = pd.read_csv(tmp_path / "fam" / "metrics.csv")
    assert list(m_family["task"]) == ["q"]
    np.testing.assert_allclose(m_family["meta_loss"] * c, m_single["meta_loss"], rtol=1e-5)
    np.testing.assert_allclose(m_family["final_loss"] * c, m_single["final_loss"], rtol=1e-5)


def test_family_run_draws_its_tasks_validates_on_all_and_resumes_exactly(tmp_path):
    cfg = _tune(_family(), epochs=6, val_every=3)
    logs = []
    full = MetaTuner(cfg, tmp_path / "full", log=logs.append)
    full.run()
    assert sum(m.startswith("loss scale of") for m in logs) == 2
    metrics = pd.read_csv(tmp_path / "full" / "metrics.csv")
    spec = full.config.task
    drawn = [draw_member(spec, step_seed(1, TRAINING, e), [8]) for e in range(1, 7)]
    assert list(metrics["task"]) == [spec["members"][i]["label"] for i, _ in drawn]
    assert list(metrics["horizon"]) == [h for _, h in drawn]
    assert set(metrics["task"]) == {"a", "b"}  # this seed draws both
    # validation = mean over members of (final loss at the member's longest horizon) / its loss scale
    expected = np.mean([full._validate_task(i, max(m["horizons"])) / m["norm"][str(max(m["horizons"]))]
                        for i, m in enumerate(spec["members"])])
    np.testing.assert_allclose(full.validate(), expected, rtol=1e-6)
    # the saved config holds the measured scales: a resumed run does not measure them again
    saved = json.loads((tmp_path / "full" / "config.json").read_text())
    assert all(min(m["norm"].values()) > 0 for m in saved["task"]["members"])
    # each epoch's losses are in units of its member's scale at its horizon
    assert metrics["final_loss"].notna().all()
    MetaTuner(cfg, tmp_path / "part", stop_after_epoch=2).run()
    logs = []
    MetaTuner(None, tmp_path / "part", resume=True, log=logs.append).run()
    assert not any(m.startswith("loss scale of") for m in logs) and any("at epoch 2" in m for m in logs)
    assert load_tuned_rule(tmp_path / "part").constants == load_tuned_rule(tmp_path / "full").constants
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "part" / "metrics.csv").drop(columns="seconds"),
                                  metrics.drop(columns="seconds"))


def test_lstm_meta_training_on_a_family_and_evaluation_on_its_first_member(tmp_path):
    from tf_symbolic_l2o.runs import evaluate_run

    family = {"name": "family", "family": "mixed", "members": [
        {"label": "mlp", "task": {"name": "mlp", "dataset": "digits", "hidden": [8], "batch_size": 16},
         "horizons": [10]},
        {"label": "ae", "task": {"name": "autoencoder", "hidden": [8], "code": 4, "batch_size": 16},
         "horizons": [10, 20]}]}
    cfg = TrainConfig(optimizer="rp", task=family, epochs=3, unroll=5, val_every=3, val_runs=1, seed=2)
    trainer = MetaTrainer(cfg, tmp_path / "run")
    before = [w.numpy().copy() for w in trainer.learned.weights]
    summary = trainer.run()
    assert summary["family_tasks"] == ["mlp", "ae"]
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, trainer.learned.weights))
    assert (tmp_path / "run" / "l2o").is_dir()
    logs = []
    evaluation = evaluate_run(tmp_path / "run", runs=1, steps=10, baselines=["adam"], lr_grid=[1e-2], tune_runs=1,
                              log=logs.append)
    assert "on mlp / digits" in logs[0], logs
    assert sorted(evaluation.summary["optimizer"]) == ["adam(lr=0.01)", "rp"]
    assert np.all(np.isfinite(evaluation.summary["final_loss_mean"]))


def test_autoencoder_registry_task_is_the_benchmarks():
    from tf_symbolic_l2o.benchmark.suite import full_suite as suite

    bench = next(t for t in suite().tasks if t.name == "autoencoder").build("meta_train")
    task = make_task({"name": "autoencoder"})
    assert task.config() == bench.config()
    params = task.init_params(step_seed(3))
    batch = task.sample_batch(step_seed(4))
    np.testing.assert_array_equal(batch.numpy(), bench.sample_batch(step_seed(4)).numpy())
    assert float(task.loss(params, batch)) == float(bench.loss(params, batch))
    x = batch.numpy()  # NumPy forward pass: tanh hidden, linear code and output
    p = [v.numpy() for v in params]
    h = np.tanh(x @ p[0] + p[1])
    code = h @ p[2] + p[3]
    h2 = np.tanh(code @ p[4] + p[5])
    out = h2 @ p[6] + p[7]
    np.testing.assert_allclose(float(task.loss(params, batch)), np.mean((out - x) ** 2), rtol=1e-5)


# ------------------------------------------------------------------------------------------------- the CLI


def test_cli_task_family_errors_exit_2_and_write_nothing(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    for args, message in [
        (["tune", "psi", "--task-family", "small", "--dataset", "digits"], "task family replaces"),
        (["tune", "psi", "--task-family", "nope"], "unknown task family 'nope'"),
        (["train", "--task-family", "small", "--task", "cnn"], "task family replaces"),
        (["train", "--task-family", str(tmp_path / "x.json")], "unknown task family"),
    ]:
        out = tmp_path / "run"
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], result.output
        assert "Traceback" not in result.output
        assert not out.exists()


def test_cli_tunes_on_a_family_file(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    path = tmp_path / "fam.json"
    path.write_text(json.dumps({"name": "quads", "tasks": [
        {"task": QUAD_A, "horizons": [8], "label": "qa"}, {"task": QUAD_B, "horizons": [8, 16], "label": "qb"}]}))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["tune", "psi", "--task-family", str(path), "--epochs", "3", "--unroll", "4",
                                      "--val-every", "3", "--val-runs", "1", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "task family quads (qa, qb)" in result.output
    assert set(pd.read_csv(out / "metrics.csv")["task"]) <= {"qa", "qb"}
    assert (out / "rule.json").is_file()
    assert Path(out / "config.json").is_file()
