"""Behaviour recording: layout, windows, manifest, and refusal of broken datasets."""

import json

import numpy as np
import pytest

from _replay import assert_rows_replay_the_l2o
from tf_symbolic_l2o.features import FeatureSet
from tf_symbolic_l2o.learned.io import save_l2o
from tf_symbolic_l2o.learned.registry import make_l2o
from tf_symbolic_l2o.record import (RecordConfig, column_names, load_behaviour, record_to_file, save_behaviour,
                                    windows_to_rows)

DIGITS = {"name": "mlp", "dataset": "digits", "hidden": [8], "batch_size": 32}


def test_windows_layout_by_hand():
    # T=4 steps, K=2 coordinates, F=2 features; feature value = 10*step + f, y = step
    T, K, F = 4, 2, 2
    feats = np.array([[[10 * t + f for f in range(F)] for _ in range(K)] for t in range(T)], float)
    raw = np.array([[t for _ in range(K)] for t in range(T)], float)
    grads = np.ones((T, K))
    grads[3, 1] = 0.0  # coordinate 1's second window ends on a zero gradient → dropped
    rows, dropped = windows_to_rows(feats, raw, grads, memlen=2)
    assert dropped == 1
    # window 0 ends at step 1: [f@1, f@0], y@1; window 1 ends at step 3
    np.testing.assert_array_equal(rows[0], [10, 11, 0, 1, 1])
    np.testing.assert_array_equal(rows[2], [30, 31, 20, 21, 3])
    assert rows.shape == (3, 5)
    assert column_names(FeatureSet("gt+mt"), 2) == ["mt_0", "gt_0", "mt_1", "gt_1"]


def test_record_teachers_exact_targets(tmp_path):
    """SGD: y = −lr/0.01·g; momentum(0.9): y = −10·lr/0.01·mom9; Adam with matching betas: y ≈ −lr/0.01·m̃."""
    cfg = RecordConfig(samples=600, steps=30, seed=1)
    cases = [("sgd:0.02", None, "g_0", -2.0), ("momentum:0.01", None, "mom9_0", -10.0)]
    for source, feats, column, coeff in cases:
        man = record_to_file(source, tmp_path / "d.npy", cfg, task_spec=DIGITS, features=feats)
        X, y, _ = load_behaviour(tmp_path / "d.npy")
        np.testing.assert_allclose(y, coeff * X[:, man["columns"].index(column)], rtol=1e-4, atol=1e-7)
    man = record_to_file("adam:0.01", tmp_path / "a.npy", cfg, task_spec=DIGITS, features="mt", beta1=0.9,
                         beta2=0.999)
    X, y, _ = load_behaviour(tmp_path / "a.npy")
    assert man["columns"] == ["mt_0"]
    assert np.corrcoef(X[:, 0], y)[0, 1] < -0.999


def test_record_l2o_manifest_and_memlen(tmp_path):
    save_l2o(make_l2o("rp_s", seed=0), tmp_path / "l2o")
    cfg = RecordConfig(samples=300, memlen=3, steps=30, coords_per_tensor=5, seed=2)
    man = record_to_file(str(tmp_path / "l2o"), tmp_path / "rp.npy", cfg, task_spec=DIGITS)
    X, y, m = load_behaviour(tmp_path / "rp.npy")
    assert X.shape == (300, 6) and m["columns"] == ["mt_0", "gt_0", "mt_1", "gt_1", "mt_2", "gt_2"]
    assert np.all(np.abs(y) <= 1.0)  # raw tanh output, before ×0.01
    assert m["source"]["kind"] == "l2o" and m["source"]["output_scale"] == 0.01
    assert m["counts"]["rows"] == 300 and m["counts"]["coordinates_per_run"] == 20
    assert man["task"]["dataset"] == "digits"
    # same seed → same dataset
    record_to_file(str(tmp_path / "l2o"), tmp_path / "rp2.npy", cfg, task_spec=DIGITS)
    np.testing.assert_array_equal(np.load(tmp_path / "rp.npy"), np.load(tmp_path / "rp2.npy"))


def test_recorded_targets_replay_the_l2o(tmp_path):
    """Every recorded row is the L2O's own output on its coordinate, after its own features: the recorded runs
    replayed in a plain loop (GradientTape gradients, ``l2o.update``, θ += Δ) hold every row."""
    save_l2o(make_l2o("rp_s", seed=0), tmp_path / "l2o")
    cfg = RecordConfig(samples=60, memlen=2, steps=12, coords_per_tensor=5, seed=4)
    record_to_file(str(tmp_path / "l2o"), tmp_path / "rp.npy", cfg, task_spec=DIGITS)
    _, _, manifest = load_behaviour(tmp_path / "rp.npy")
    assert_rows_replay_the_l2o(tmp_path / "l2o", np.load(tmp_path / "rp.npy"), manifest)


def _good(tmp_path):
    path = tmp_path / "good.npy"
    save_behaviour(path, np.ones((4, 3), np.float32), {"columns": ["mt_0", "gt_0"]})
    return path


def test_broken_datasets_are_refused(tmp_path):
    path = _good(tmp_path)
    X, y, _ = load_behaviour(path)
    assert X.shape == (4, 2)
    # truncated
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="does not match its manifest"):
        load_behaviour(path)
    # missing manifest
    path = _good(tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_behaviour(path)
    # pickled object array, even with a matching hash
    path = _good(tmp_path)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    man = json.loads(path.with_suffix(".json").read_text())
    import hashlib

    man["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match="not a plain numeric"):
        load_behaviour(path)
    # NaN rows
    nan = tmp_path / "nan.npy"
    data = np.ones((3, 3), np.float32)
    data[1, 0] = np.nan
    save_behaviour(nan, data, {"columns": ["a_0", "b_0"]})
    with pytest.raises(ValueError, match="NaN"):
        load_behaviour(nan)
    # mismatched columns
    bad = tmp_path / "cols.npy"
    save_behaviour(bad, np.ones((3, 3), np.float32), {"columns": ["a_0"]})
    with pytest.raises(ValueError, match="shape"):
        load_behaviour(bad)


def test_record_errors(tmp_path):
    with pytest.raises(ValueError, match="samples"):
        RecordConfig(samples=0)
    with pytest.raises(FileNotFoundError, match="neither a run directory nor a teacher"):
        record_to_file("lstm:0.1", tmp_path / "x.npy", RecordConfig(samples=10))
    with pytest.raises(ValueError, match="not a number"):
        record_to_file("adam:fast", tmp_path / "x.npy", RecordConfig(samples=10))
    with pytest.raises(ValueError, match=".npy"):
        record_to_file("adam:0.1", tmp_path / "x.csv", RecordConfig(samples=10))
    assert not list(tmp_path.iterdir())
