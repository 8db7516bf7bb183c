"""Smoke runs of the memory benchmarks that share keras_step.py's worker launcher (benchmarks/tune_memory.py,
benchmarks/memory_scale.py): each runs one tiny configuration end to end in its worker processes and writes its
table, with a measured peak RSS per row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / name), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT, env=env)


def test_tune_memory_measures_training_and_tuning(tmp_path):
    proc = run_script("tune_memory.py", "--models", "cnn", "--jobs", "train,tune", "--rules", "psi", "--unroll", "2",
                      "--batch-size", "8", "--windows", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "tune_memory.csv")
    assert list(table["job"]) == ["train", "tune"] and set(table["status"]) == {"ok"}
    assert (table["peak_rss_mib"] >= table["base_rss_mib"]).all() and (table["base_rss_mib"] > 100).all()
    assert table.loc[table["job"] == "tune", "optimizer_params"].item() == 5  # ψ(m̃, g̃; L=1): 4 weights and γ


def test_memory_scale_measures_one_model(tmp_path):
    proc = run_script("memory_scale.py", "--models", "resnet20", "--optimizers", "adam", "--steps", "1",
                      "--batch-size", "8", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "memory_scale.csv")
    row = table.iloc[0]
    assert (row["optimizer"], row["model"], row["status"]) == ("adam", "resnet20", "measured")
    assert row["state_bytes_per_param"] == 8.0 and row["params"] == 272474  # Adam: m and v in float32
    assert row["peak_rss_mib"] >= row["baseline_rss_mib"] > 100
