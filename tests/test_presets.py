"""The ready-made symbolic optimizers and their shipped default rules."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tf_symbolic_l2o.optimizers.presets import SymbolicDM, SymbolicRP, SymbolicRPsi, default_rule_path
from tf_symbolic_l2o.rules import Rule

PRESETS = [(SymbolicRP, "symbolic_rp_gain"), (SymbolicRPsi, "symbolic_rp_si_gain"), (SymbolicDM, "symbolic_dm_gain")]
MANIFEST = Path(__file__).resolve().parents[1] / "saved_models" / "MANIFEST.json"


@pytest.mark.parametrize("cls, folder", PRESETS)
def test_default_rules_ship_with_provenance(cls, folder):
    rule = Rule.load(default_rule_path(folder))
    entry = json.loads(MANIFEST.read_text())[folder]
    assert entry["produced_by"].startswith("tfl2o")  # made by this project's pipeline
    if entry["produced_by"].startswith("tfl2o tune-gain"):  # a step gain chosen on a family: the grid is recorded
        scores = entry["selection"]["candidates"]
        assert rule.features["gain"] == entry["step_gain"] and len(scores) >= 2
        assert rule.size_scale == entry["size_scale"]
        assert entry["selection"]["family_score"] == min(scores.values()) < entry["selection"]["without_gain"]
    elif entry.get("family"):  # meta-tuned on a task family after distillation: its validation is recorded
        assert entry["produced_by"].startswith("tfl2o tune") and entry["validation_loss"]["start"] > 0
    else:
        assert "r2_test" in entry and 0.0 < entry["r2_test"] <= 1.0
    opt = cls()
    assert opt.rule == rule.minimal()
    assert float(opt.learning_rate.numpy()) == 1.0


@pytest.mark.parametrize("cls, folder", PRESETS)
def test_presets_train_a_keras_model_and_round_trip(cls, folder, tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=cls(), loss="mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=32, verbose=0, shuffle=False)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before
    config = model.optimizer.get_config()
    assert type(model.optimizer).from_config(config).get_config() == config
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert type(back.optimizer) is cls
    for a, b in zip(model.optimizer.variables, back.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_shipped_rule_is_chosen_by_name_or_folder():
    """rule= takes a shipped rule's name or folder as well as a rule.json path; an unknown name is FileNotFoundError."""
    small = Rule.load(default_rule_path("symbolic_rp_small")).minimal()
    assert small.memlen == 1
    assert SymbolicRP(rule="symbolic_rp_small").rule == small
    assert SymbolicRP(rule=default_rule_path("symbolic_rp_small").parent).rule == small
    with pytest.raises(FileNotFoundError, match="no_such_rule"):
        SymbolicRP(rule="no_such_rule")
