"""``tfl2o tune-gain``: the step gain chosen by a grid search on a task family, scored against tuned Adam."""

import json

import numpy as np
import pandas as pd

from tf_symbolic_l2o.harness import Harness
from tf_symbolic_l2o.rules import Rule, parse_infix
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
from tf_symbolic_l2o.seeds import step_seed
from tf_symbolic_l2o.tasks.registry import make_task
from tf_symbolic_l2o.tune.gain import member_steps, parse_candidates, with_gain

from test_cli import assert_one_line_error, invoke
from test_family import QUAD_A, QUAD_B
STEPS = 30
LONG = 60  # qa's longest horizon: 'max' runs qa at 60 steps, qb (no horizons) at the largest number given


def _files(tmp_path):
    rule = Rule(parse_infix("-1.0 * tanh(mt_0)"), features="mt", output_scale=0.01)
    rule_path = tmp_path / "rule.json"
    rule.save(rule_path)
    family = tmp_path / "fam.json"
    family.write_text(json.dumps({"name": "quads", "tasks": [
        {"task": QUAD_A, "label": "qa", "weight": 2.0, "horizons": [10, LONG]},
        {"task": QUAD_B, "label": "qb", "weight": 1.0}]}))
    return rule, rule_path, family


def test_tune_gain_scores_candidates_and_writes_the_winner(tmp_path):
    rule, rule_path, family = _files(tmp_path)
    out = tmp_path / "gain"
    result = invoke("tune-gain", rule_path, "--task-family", family, "--candidates", "1/1,1.2/0.9,1.3/0.8/3",
                    "--low", 0.01, "--horizons", f"{STEPS},max", "--ratio-floor", 0.5, "--seeds", "1000", "--out", out)
    assert result.exit_code == 0, result.output
    ratios, scores = pd.read_csv(out / "ratios.csv"), pd.read_csv(out / "scores.csv")
    # qa runs at 30 and at its longest horizon (60); qb declares none, so 'max' is the largest number given (30);
    # three candidates and the reference (-1, the rule without a gain) on each
    assert len(ratios) == 12 and sorted(set(zip(ratios.member, ratios.steps))) == [("qa", 30), ("qa", LONG),
                                                                                    ("qb", 30)]
    assert sorted(set(ratios.candidate)) == [-1, 0, 1, 2]
    # a gain that never moves (up = down = 1) is the rule itself, and so is the reference: their final losses,
    # recomputed without the gain
    for member, spec, steps in (("qa", QUAD_A, STEPS), ("qa", QUAD_A, LONG), ("qb", QUAD_B, STEPS)):
        losses = Harness(make_task(spec, split="meta_train"), RuleOptimizer(rule)).run(step_seed(1000), steps).losses
        for candidate in (0, -1):
            row = ratios[(ratios.candidate == candidate) & (ratios.member == member) & (ratios.steps == steps)].iloc[0]
            assert np.isclose(row.final_loss, np.mean(losses[-(steps // 10):]), rtol=1e-6)
            assert np.isclose(row.ratio, row.final_loss / row.adam_final_loss)
    # the family score is the weighted geometric mean of the ratios floored at 0.5 (qa's weight 2 split over its two
    # horizons, qb's 1), best first
    for _, s in scores.iterrows():
        r = ratios[ratios.candidate == s.candidate].set_index(["member", "steps"])["ratio"].clip(lower=0.5)
        assert np.isclose(s.family_score, (r["qa", STEPS] * r["qa", LONG] * r["qb", STEPS]) ** (1 / 3))
        assert np.isclose(s.worst_ratio, ratios[ratios.candidate == s.candidate].ratio.max())
    assert list(scores.family_score) == sorted(scores.family_score)
    reference = scores[scores.candidate == -1].iloc[0]
    assert np.isnan(reference.up) and np.isnan(reference.low)  # no gain constants
    best = int(scores.candidate[scores.candidate >= 0].iloc[0])  # the reference is never chosen
    candidates = parse_candidates("1/1,1.2/0.9,1.3/0.8/3")
    written = Rule.load(out / "rule.json")
    assert written.to_dict()["features"] == with_gain(rule, candidates[best]).features
    # the size scale's reference is the family's largest member: the quadratics have 5 and 8 parameters (their dims)
    assert written.size_scale == {"reference": 8.0, "power": 0.5}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["family"] == "quads" and summary["members"] == 2 and summary["candidates"] == 3
    assert summary["horizons"] == f"{STEPS},max" and summary["ratio_floor"] == 0.5
    assert np.isclose(summary["family_score"], scores.set_index("candidate").family_score[best])
    assert np.isclose(summary["without_gain"], reference.family_score)
    assert np.isclose(summary["without_gain_worst_ratio"], reference.worst_ratio)


def test_lower_bounds_multiply_the_candidates_and_max_is_the_longest_horizon():
    grid = parse_candidates("1.05/0.95,1.1/0.9/2", low=[0.01, 1e-4], high=10.0)
    assert [(c["up"], c["down"], c["low"], c.get("start")) for c in grid] == [
        (1.05, 0.95, 0.01, None), (1.05, 0.95, 1e-4, None), (1.1, 0.9, 0.01, 2.0), (1.1, 0.9, 1e-4, 2.0)]
    assert all(c["high"] == 10.0 for c in grid)
    assert member_steps({"horizons": [100, 1000, 500]}, [200, "max"]) == [200, 1000]
    assert member_steps({"horizons": [100, 200]}, [200, "max"]) == [200]
    assert member_steps({}, ["max", 50, 20]) == [20, 50]


def test_start_scales_the_step_and_keeps_the_range_relative_to_the_native_step():
    rule = Rule(parse_infix("-1.0 * tanh(mt_0)"), features="mt", output_scale=0.01)
    started = with_gain(rule, {"up": 1.1, "down": 0.9, "low": 0.01, "high": 30.0, "start": 0.5})
    assert started.output_scale == 0.005
    assert started.features["gain"] == {"up": 1.1, "down": 0.9, "low": 0.02, "high": 60.0}
    assert "gain" not in with_gain(started, None).features


def test_bad_candidates_exit_2_and_write_nothing(tmp_path):
    _, rule_path, family = _files(tmp_path)
    for candidates, fragment in (("1.05", "UP/DOWN"), ("fast/slow", "UP/DOWN"), ("0.9/0.95", "up >= 1"),
                                 ("1.05/0.95/-1", "start must be a positive")):
        result = invoke("tune-gain", rule_path, "--task-family", family, "--candidates", candidates,
                        "--out", tmp_path / "never")
        assert_one_line_error(result, fragment)
        assert not (tmp_path / "never").exists()


def test_bad_horizons_or_floor_exit_2_and_write_nothing(tmp_path):
    _, rule_path, family = _files(tmp_path)
    for option, value, fragment in (("--horizons", "0", "positive step counts or 'max'"),
                                    ("--horizons", "200,longest", "positive step counts or 'max'"),
                                    ("--ratio-floor", "1.5", "ratio floor must be a number in [0, 1)"),
                                    ("--ratio-floor", "nan", "--ratio-floor must be a finite number"),
                                    ("--size-power", "-1", "size power must be a number in [0, 2]"),
                                    ("--low", "0.01,tiny", "--low")):
        result = invoke("tune-gain", rule_path, "--task-family", family, option, value, "--out", tmp_path / "never")
        assert_one_line_error(result, fragment)
        assert not (tmp_path / "never").exists()


def test_reused_adam_losses_normalise_instead_of_tuning_adam_again(tmp_path):
    _, rule_path, family = _files(tmp_path)
    first = tmp_path / "first"
    args = ("--task-family", family, "--candidates", "1.2/0.9", "--low", 0.01, "--horizons", STEPS, "--seeds", "1000",
            "--no-reference")
    assert invoke("tune-gain", rule_path, *args, "--out", first).exit_code == 0
    ratios = pd.read_csv(first / "ratios.csv")
    assert set(ratios.candidate) == {0}  # --no-reference: the rule without a gain did not run
    assert "without_gain" not in json.loads((first / "summary.json").read_text())
    doctored = ratios.assign(adam_final_loss=ratios.adam_final_loss * 4.0)  # values Adam would never give
    doctored.to_csv(tmp_path / "doctored.csv", index=False)
    again = tmp_path / "again"
    result = invoke("tune-gain", rule_path, *args, "--reuse-adam", tmp_path / "doctored.csv", "--out", again)
    assert result.exit_code == 0, result.output
    reused = pd.read_csv(again / "ratios.csv").set_index("member")
    for _, row in ratios.iterrows():
        assert np.isclose(reused.loc[row.member, "adam_final_loss"], 4.0 * row.adam_final_loss)
        assert np.isclose(reused.loc[row.member, "ratio"], row.ratio / 4.0)
    # a file without a needed (member, horizon), or not a ratios.csv: one line, nothing written
    doctored[doctored.member == "qa"].to_csv(tmp_path / "partial.csv", index=False)
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    for path, fragment in (("partial.csv", "lack qb@30"), ("junk.csv", "not a tune-gain ratios.csv")):
        result = invoke("tune-gain", rule_path, *args, "--reuse-adam", tmp_path / path, "--out", tmp_path / "never")
        assert_one_line_error(result, fragment)
        assert not (tmp_path / "never").exists()


def test_the_help_shows_the_library_defaults():
    """The CLI states its defaults as literals (it does not import the library to show --help); they must be the
    library's."""
    import inspect
    import typing

    from cli.tune_cmd import tune_gain
    from tf_symbolic_l2o.tune.gain import DEFAULT_CANDIDATES, DEFAULT_HORIZONS, DEFAULT_LOWS, DEFAULT_RATIO_FLOOR

    hints = typing.get_type_hints(tune_gain, include_extras=True)
    shown = {name: hints[name].__metadata__[0].show_default for name in ("candidates", "low")}
    assert shown["candidates"] == DEFAULT_CANDIDATES
    assert [float(v) for v in shown["low"].split(",")] == list(DEFAULT_LOWS)
    defaults = {name: p.default for name, p in inspect.signature(tune_gain).parameters.items()}
    assert defaults["horizons"] == ",".join(str(h) for h in DEFAULT_HORIZONS)
    assert defaults["ratio_floor"] == DEFAULT_RATIO_FLOOR
