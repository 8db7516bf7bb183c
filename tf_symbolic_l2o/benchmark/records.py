"""Saved benchmark runs: one ``.npz`` (the loss curve) and one ``.json`` manifest per run, and the ``index.json``
that lists the runs of the last benchmark call (what the report is rebuilt from).

A run lives at ``OUT/runs/<task>/<optimizer>/<phase>/lr=<lr>/seed=<s>`` (:func:`run_path`, without extension).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tf_symbolic_l2o.benchmark.metrics import final_loss, is_diverged
from tf_symbolic_l2o.io import read_json

INDEX = "index.json"


@dataclasses.dataclass
class RunRecord:
    """One saved run (the manifest's fields plus the loss curve)."""

    task: str
    tier: str
    optimizer: str
    phase: str
    learning_rate: float | None
    seed: int
    steps: int
    split: str
    losses: np.ndarray
    test: dict
    test_metric_name: str
    seconds: float
    seconds_per_step: float
    state_bytes_per_param: float
    num_params: int
    fingerprint: str
    path: str = ""

    @property
    def final_loss(self) -> float:
        return final_loss(self.losses)

    @property
    def diverged(self) -> bool:
        return is_diverged(self.losses)

    def manifest(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("losses")
        d.pop("path")
        d.update(final_loss=self.final_loss, diverged=self.diverged)
        return d


def _lr_dir(lr: float | None) -> str:
    return "lr=untuned" if lr is None else f"lr={lr:.3g}"


def run_path(out_dir: str | Path, task: str, optimizer: str, phase: str, lr: float | None, seed: int) -> Path:
    """Where a run's curve (``.npz``) and manifest (``.json``, same stem) live."""
    return Path(out_dir) / "runs" / task / optimizer / phase / _lr_dir(lr) / f"seed={int(seed)}"


def load_record(stem: str | Path) -> RunRecord:
    """A saved run from its path stem (without extension)."""
    stem = Path(stem)
    m = read_json(stem.with_suffix(".json"), "run manifest")
    try:
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
            losses = np.asarray(z["losses"])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read run curve {stem.with_suffix('.npz')} ({e}); delete it to re-run") from None
    fields = {f.name for f in dataclasses.fields(RunRecord)} - {"losses", "path"}
    missing = fields - set(m)
    if missing:
        raise ValueError(f"run manifest {stem.with_suffix('.json')} lacks {sorted(missing)}; delete it to re-run")
    return RunRecord(losses=losses, path=str(stem), **{k: m[k] for k in fields})


def load_records(out_dir: str | Path) -> tuple[list[RunRecord], dict]:
    """The runs listed in ``out_dir/index.json`` (relative stems) and the suite configuration stored there."""
    out_dir = Path(out_dir)
    index = read_json(out_dir / INDEX, "benchmark index (run the benchmark first)")
    try:
        stems, suite = index["runs"], index["suite"]
    except (KeyError, TypeError):
        raise ValueError(f"{out_dir / INDEX} is not a benchmark index; delete it and re-run") from None
    return [load_record(out_dir / s) for s in stems], suite
