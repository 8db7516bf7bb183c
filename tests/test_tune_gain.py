"""``tfl2o tune-gain``: the step gain chosen by a grid search on a task family, scored against tuned Adam."""

import json

import numpy as np
import pandas as pd

from tf_symbolic_l2o.harness import Harness
from tf_symbolic_l2o.rules import Rule, parse_infix
from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
from tf_symbolic_l2o.seeds import step_seed
from tf_symbolic_l2o.tasks.registry import make_task
from tf_symbolic_l2o.tune.gain import parse_candidates, with_gain

from test_cli import assert_one_line_error, invoke
from test_family import QUAD_A, QUAD_B
STEPS = 30


def _files(tmp_path):
    rule = Rule(parse_infix("-1.0 * tanh(mt_0)"), features="mt", output_scale=0.01)
    rule_path = tmp_path / "rule.json"
    rule.save(rule_path)
    family = tmp_path / "fam.json"
    family.write_text(json.dumps({"name": "quads", "tasks": [{"task": QUAD_A, "label": "qa", "weight": 2.0},
                                                             {"task": QUAD_B, "label": "qb", "weight": 1.0}]}))
    return rule, rule_path, family


def test_tune_gain_scores_candidates_and_writes_the_winner(tmp_path):
    rule, rule_path, family = _files(tmp_path)
    out = tmp_path / "gain"
    result = invoke("tune-gain", rule_path, "--task-family", family, "--candidates", "1/1,1.2/0.9,1.3/0.8/3",
                    "--steps", STEPS, "--seeds", "1000", "--out", out)
    assert result.exit_code == 0, result.output
    ratios, scores = pd.read_csv(out / "ratios.csv"), pd.read_csv(out / "scores.csv")
    assert len(ratios) == 6 and set(ratios["member"]) == {"qa", "qb"}
    # a gain that never moves (up = down = 1) is the rule itself: its final loss, recomputed without the gain
    for member, spec in (("qa", QUAD_A), ("qb", QUAD_B)):
        losses = Harness(make_task(spec, split="meta_train"), RuleOptimizer(rule)).run(step_seed(1000), STEPS).losses
        row = ratios[(ratios.candidate == 0) & (ratios.member == member)].iloc[0]
        assert np.isclose(row.final_loss, np.mean(losses[-3:]), rtol=1e-6)
        assert np.isclose(row.ratio, row.final_loss / row.adam_final_loss)
    # the family score is the weighted geometric mean of the ratios (weights 2 and 1), best first
    for _, s in scores.iterrows():
        r = ratios[ratios.candidate == s.candidate].set_index("member")["ratio"]
        assert np.isclose(s.family_score, (r["qa"] ** 2 * r["qb"]) ** (1 / 3))
    assert list(scores.family_score) == sorted(scores.family_score)
    best = int(scores.candidate.iloc[0])
    candidates = parse_candidates("1/1,1.2/0.9,1.3/0.8/3")
    assert Rule.load(out / "rule.json").to_dict()["features"] == with_gain(rule, candidates[best]).features
    summary = json.loads((out / "summary.json").read_text())
    assert summary["family"] == "quads" and summary["members"] == 2 and summary["candidates"] == 3


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
