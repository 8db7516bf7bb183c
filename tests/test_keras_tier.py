"""The benchmark's Keras tier: data, deterministic model.fit runs, the tuning protocol, verdicts, the script."""

import numpy as np
import pandas as pd
import pytest

from tf_symbolic_l2o.benchmark import keras_tier as kt


def test_tier_data_is_offline_disjoint_and_deterministic():
    for name in ("regression_mlp", "embedding", "lstm"):
        spec = kt.MODELS[name]
        a, b = spec.data(), spec.data()
        np.testing.assert_array_equal(a.train[0], b.train[0])
        rows = {p: {x.tobytes() for x in getattr(a, p)[0]} for p in ("train", "val", "test")}
        n = {p: len(getattr(a, p)[0]) for p in rows}
        assert min(n.values()) > 0
        # no example in two parts (digits has a few duplicate images, so compare counts of distinct rows)
        assert len(rows["train"] | rows["val"] | rows["test"]) == len(rows["train"]) + len(rows["val"]) + len(
            rows["test"])
    reg = kt.MODELS["regression_mlp"].data()
    np.testing.assert_allclose(reg.train[0].mean(0), 0, atol=1e-5)  # standardised by the training part's statistics
    np.testing.assert_allclose([reg.train[1].mean(), reg.train[1].std()], [0, 1], atol=1e-5)
    tokens = kt.MODELS["embedding"].data()
    assert tokens.train[0].dtype == np.int32 and 0.3 < tokens.train[1].mean() < 0.7


def test_fit_is_deterministic_per_seed_and_sparse_gradients_train():
    spec = kt.MODELS["embedding"]
    data = spec.data()
    runs = [kt.fit(spec, data, kt.make_optimizer(label), seed, epochs=1)
            for label, seed in (("SymbolicRP()", 0), ("SymbolicRP()", 0), ("SymbolicRP()", 1))]
    assert runs[0]["train_loss"] == runs[1]["train_loss"] and runs[0]["test_loss"] == runs[1]["test_loss"]
    assert runs[0]["train_loss"] != runs[2]["train_loss"]
    assert all(np.isfinite(r["train_loss"]) and r["train_loss"] < np.log(2) for r in runs)  # below chance


def test_run_model_tunes_adam_and_symbolic_rp_on_validation_and_runs_every_optimizer():
    spec = kt.MODELS["regression_mlp"]
    grid, symbolic_grid = (1e-3, 3e-2), (0.1, 1.0)
    logs = []
    runs, lrs = kt.run_model(spec, seeds=(0, 1), grid=grid, epochs=1, log=logs.append, symbolic_grid=symbolic_grid)
    data = spec.data()
    for label, candidates in (("Adam (LR tuned)", grid), ("SymbolicRP (LR tuned)", symbolic_grid)):
        val = [kt.fit(spec, data, kt.make_optimizer(label, g), kt.TUNE_SEED, 1, "val")["val_loss"] for g in candidates]
        assert lrs[label] == candidates[int(np.argmin(val))]
        assert set(runs.loc[runs["optimizer"] == label, "learning_rate"]) == {lrs[label]}
    assert list(runs["optimizer"]) == [o for o in kt.OPTIMIZERS for _ in (0, 1)]
    assert list(runs["seed"]) == [0, 1] * 4
    assert runs.loc[~runs["optimizer"].isin(kt.TUNED), "learning_rate"].isna().all()
    # the test metric of the regression is the test MSE, which Keras's loss also is
    np.testing.assert_allclose(runs["test_metric"], runs["test_loss"], rtol=1e-5)
    assert sum("validation loss" in m for m in logs) == len(grid) + len(symbolic_grid)
    # the multiplier 1 is SymbolicRP() itself: the same run, step for step
    unit = kt.fit(spec, data, kt.make_optimizer("SymbolicRP (LR tuned)", 1.0), 0, 1)
    default = runs[(runs["optimizer"] == "SymbolicRP()") & (runs["seed"] == 0)].iloc[0]
    assert unit["train_loss"] == default["train_loss"] and unit["test_loss"] == default["test_loss"]
    # reusing these Adam rows runs only the SymbolicRP rows: the same rows (fit is deterministic per seed), and only
    # SymbolicRP's multiplier is tuned
    logs.clear()
    again, lrs_again = kt.run_model(spec, seeds=(0, 1), grid=grid, epochs=1, log=logs.append, reuse=runs,
                                    symbolic_grid=symbolic_grid)
    assert lrs_again == lrs and not any("Adam (LR tuned) lr" in m for m in logs)
    assert sum("validation loss" in m for m in logs) == len(symbolic_grid)
    cols = ["optimizer", "seed", "train_loss", "test_loss"]
    pd.testing.assert_frame_equal(again[cols], runs[cols], rtol=1e-6)
    # a runs.csv is reused only when it holds both Adam rows for every seed asked for; otherwise everything runs
    assert len(kt._reused_adam_rows(runs, spec.name, (0, 1))) == 4
    assert kt._reused_adam_rows(runs, spec.name, (0, 2)) is None
    assert kt._reused_adam_rows(runs[runs["optimizer"] != "Adam()"], spec.name, (0, 1)) is None
    assert kt._reused_adam_rows(runs, "convnet", (0, 1)) is None


def test_summary_verdicts_by_hand():
    def lr(optimizer):
        return 0.01 if optimizer in kt.TUNED else None

    runs = pd.DataFrame([
        # model a: SymbolicRP() 1.0, 1.2 (mean 1.1) < Adam() 2, 2 ; tuned 1.0, 1.2 (mean 1.1, std 0.141) → within;
        # SymbolicRP tuned 1.24 (≤ 1.1 + 0.141) → within
        *[{"model": "a", "optimizer": o, "learning_rate": lr(o), "seed": s, "metric": "mse", "train_loss": v,
           "test_loss": v, "test_metric": v, "seconds": 1.0}
          for o, vals in (("SymbolicRP()", (1.0, 1.2)), ("Adam()", (2.0, 2.0)), ("Adam (LR tuned)", (1.0, 1.2)),
                          ("SymbolicRP (LR tuned)", (1.24, 1.24)))
          for s, v in enumerate(vals)],
        # model b: SymbolicRP() 3 > Adam() 2; tuned 1 ± 0 → not within; SymbolicRP tuned 0.5 → within (better)
        *[{"model": "b", "optimizer": o, "learning_rate": lr(o), "seed": s, "metric": "mse", "train_loss": v,
           "test_loss": v, "test_metric": v, "seconds": 1.0}
          for o, vals in (("SymbolicRP()", (3.0, 3.0)), ("Adam()", (2.0, 2.0)), ("Adam (LR tuned)", (1.0, 1.0)),
                          ("SymbolicRP (LR tuned)", (0.5, 0.5)))
          for s, v in enumerate(vals)],
        # model c: SymbolicRP tuned 1.3 > 1.1 + 0.141 → not within
        *[{"model": "c", "optimizer": o, "learning_rate": lr(o), "seed": s, "metric": "mse", "train_loss": v,
           "test_loss": v, "test_metric": v, "seconds": 1.0}
          for o, vals in (("SymbolicRP()", (1.0, 1.2)), ("Adam()", (2.0, 2.0)), ("Adam (LR tuned)", (1.0, 1.2)),
                          ("SymbolicRP (LR tuned)", (1.3, 1.3)))
          for s, v in enumerate(vals)],
    ])
    summary = kt.summarize(runs)
    verdict = summary.drop_duplicates("model").set_index("model")
    assert verdict.loc["a", "beats_adam_default"] and verdict.loc["a", "within_1std_of_tuned_adam"]
    assert not verdict.loc["b", "beats_adam_default"] and not verdict.loc["b", "within_1std_of_tuned_adam"]
    assert list(verdict["tuned_within_1std_of_tuned_adam"]) == [True, True, False]
    row = summary[(summary.model == "a") & (summary.optimizer == "Adam (LR tuned)")].iloc[0]
    np.testing.assert_allclose([row.train_loss_mean, row.train_loss_std], [1.1, np.std([1.0, 1.2], ddof=1)])
    table = kt.markdown(summary)
    assert "beats `Adam()` (final training loss) on 2 of 3 models" in table
    assert "LR-tuned Adam or better on 2 of 3. With its learning rate tuned" in table and table.endswith("on 2 of 3.")
    assert "| a | SymbolicRP (LR tuned) | 0.01 | 1.24 ± 0 |" in table
    with pytest.raises(ValueError, match="unknown optimizer"):
        kt.make_optimizer("SGD()")


def test_script_writes_its_results_and_refuses_bad_arguments(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "keras_tier.py"
    module_spec = importlib.util.spec_from_file_location("keras_tier_script", path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    not_runs = tmp_path / "other.csv"
    not_runs.write_text("a,b\n1,2\n")
    for bad in (["--models", "vgg"], ["--seeds", "0,x"], ["--seeds", "1000"], ["--epochs", "0"],
                ["--reuse-adam", str(tmp_path / "missing.csv")], ["--reuse-adam", str(not_runs)]):
        with pytest.raises(SystemExit) as exit_info:
            script.main([*bad, "--out", str(tmp_path / "bad")])
        assert exit_info.value.code == 2
    assert not (tmp_path / "bad").exists()
    assert script.main(["--models", "regression_mlp", "--seeds", "0", "--epochs", "1", "--out",
                        str(tmp_path / "out")]) == 0
    for name in ("runs.csv", "summary.csv", "results.md", "keras_tier.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "| regression_mlp | SymbolicRP() | default |" in (tmp_path / "out" / "results.md").read_text()
