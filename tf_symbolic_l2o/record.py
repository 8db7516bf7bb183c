"""Stage 2 of Symbolic L2O, behaviour recording: run an optimizer on fresh optimizee runs and write a
symbolic-regression dataset.

For each run, ``coords_per_tensor`` coordinates are sampled from every parameter tensor and followed for ``steps``
steps; at every step their feature vector (F values, :mod:`tf_symbolic_l2o.features`) and the optimizer's *raw*
output are recorded. The raw output is the network output before the ×``output_scale`` (for an L2O: its tanh or
linear head; for a hand-designed teacher: Δθ / ``output_scale``).

Each coordinate's trajectory is cut into non-overlapping windows of ``memlen`` steps; a window whose newest step has
a zero gradient is dropped (e.g. a dead ReLU unit). A window becomes one row, newest step first:

    row = [f_0@lag0, …, f_{F-1}@lag0, f_0@lag1, …, f_{F-1}@lag(memlen-1), y@lag0]        shape [N, memlen·F + 1]

The columns are named ``<feature>_<lag>`` (``mt_0``, ``gt_0``, ``mt_1``, …) and ``y``; these are the variable names
symbolic rules use. Next to ``DATASET.npy`` the recorder writes ``DATASET.json``, the manifest: format version,
columns, feature set, memlen, the source optimizer and its config, the teacher's raw output at rest (zero gradients
from the zero state: 0 for a sound teacher), the task, seeds, counts and the SHA-256 of the ``.npy`` (so a
truncated or swapped file is detected on load).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from tf_symbolic_l2o.artifacts import resolve_artifact
from tf_symbolic_l2o.baselines import BASELINES
from tf_symbolic_l2o.features import FeatureSet
from tf_symbolic_l2o.functional.registry import make_optimizer
from tf_symbolic_l2o.io import atomic_write_json, read_json
from tf_symbolic_l2o.meta.unroll import loss_and_grad
from tf_symbolic_l2o.seeds import BATCHES, INIT, RECORDING, step_seed
from tf_symbolic_l2o.tasks.base import Task

FORMAT = "tfl2o-behaviour/1"


def column_names(features: FeatureSet, memlen: int) -> list[str]:
    """Input column names in dataset order (lag-major), without the target ``y``."""
    return [f"{name}_{lag}" for lag in range(memlen) for name in features.names]


@dataclasses.dataclass
class RecordConfig:
    """What to record.

    Args:
        samples: rows wanted in the dataset (runs are added until there are enough, then rows are subsampled).
        memlen: lags per row (1–2 suffice for RNNprop; 20 in the paper for DM).
        steps: steps per optimizee run.
        coords_per_tensor: coordinates sampled per parameter tensor per run.
        seed: base seed (runs, coordinates, shuffling).
        max_runs: give up (with an error) after this many runs without enough rows.
    """

    samples: int = 10_000
    memlen: int = 1
    steps: int = 200
    coords_per_tensor: int = 10
    seed: int = 0
    max_runs: int = 1000

    def __post_init__(self):
        for name in ("samples", "memlen", "steps", "coords_per_tensor", "max_runs"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.memlen > self.steps:
            raise ValueError(f"memlen ({self.memlen}) cannot exceed steps ({self.steps})")


def raw_output_fn(optimizer, output_scale: float):
    """``(grad, state, step, params) -> (raw, delta, state)`` for an L2O (``forward``) or any other optimizer
    (``update``, which gets θ as ``params``)."""
    if hasattr(optimizer, "forward"):
        def step(grad, state, t, params):
            del params
            raw, _, state = optimizer.forward(grad, state, t)
            scale = optimizer.step_scale(state) if hasattr(optimizer, "step_scale") else output_scale
            return raw, scale * raw, state
    else:
        def step(grad, state, t, params):
            delta, state = optimizer.update(grad, state, t, params=params)
            return delta / output_scale, delta, state
    return step


def make_recording_rollout(task: Task, optimizer, features: FeatureSet, output_scale: float):
    """A compiled ``(theta, state, seed, coords, steps) -> (features [T,K,F], raw [T,K], grads [T,K])``."""
    step_fn = raw_output_fn(optimizer, output_scale)

    def rollout(theta, state, seed, coords, num_steps):
        feat_state = features.init_state([tf.shape(coords)[0]])
        ones = tf.ones_like(theta)
        fa = tf.TensorArray(tf.float32, size=num_steps)
        ya = tf.TensorArray(tf.float32, size=num_steps)
        ga = tf.TensorArray(tf.float32, size=num_steps)
        for k in tf.range(num_steps):
            batch = task.sample_batch(step_seed(seed, k))
            _, grad = loss_and_grad(task, theta, ones, batch)
            raw, delta, state = step_fn(grad, state, k + 1, theta)
            g_sel = tf.gather(grad, coords)
            feats, feat_state = features.update(feat_state, g_sel, k + 1)
            fa = fa.write(k, feats)
            ya = ya.write(k, tf.gather(raw, coords))
            ga = ga.write(k, g_sel)
            theta = theta + delta
        return fa.stack(), ya.stack(), ga.stack()

    return tf.function(rollout)


def rest_output(optimizer, output_scale: float, steps: int) -> dict[str, float]:
    """The optimizer's raw output at rest: zero gradients from the zero state (at θ = 0) for ``steps`` steps. A
    sound teacher gives exactly 0; a drifting one shows the bias a distilled rule must not copy."""
    step_fn = raw_output_fn(optimizer, output_scale)

    @tf.function
    def run():
        state = optimizer.init_state(1)
        out = tf.TensorArray(tf.float32, size=steps)
        for k in tf.range(steps):
            raw, _, state = step_fn(tf.zeros([1]), state, k + 1, tf.zeros([1]))
            out = out.write(k, raw[0])
        return out.stack()

    raw = run().numpy().astype(np.float64)
    return {"rest_raw_step1": float(raw[0]), "rest_raw_max": float(np.max(np.abs(raw))),
            "rest_raw_mean": float(np.mean(raw)), "rest_steps": int(steps)}


def windows_to_rows(feats: np.ndarray, raw: np.ndarray, grads: np.ndarray, memlen: int) -> tuple[np.ndarray, int]:
    """Cut ``[T, K, F]`` trajectories into rows ``[N, memlen·F + 1]``; returns (rows, windows dropped)."""
    T, K, F = feats.shape
    n_win = T // memlen
    rows, dropped = [], 0
    for j in range(n_win):
        newest = (j + 1) * memlen - 1
        keep = grads[newest] != 0.0
        dropped += int(np.sum(~keep))
        lags = [feats[newest - lag][keep] for lag in range(memlen)]  # each [k, F], lag 0 first
        x = np.concatenate(lags, axis=1) if lags else np.zeros((int(keep.sum()), 0))
        rows.append(np.concatenate([x, raw[newest][keep][:, None]], axis=1))
    return (np.concatenate(rows, axis=0) if rows else np.zeros((0, memlen * F + 1))), dropped


def record_behaviour(task: Task, optimizer, features: FeatureSet, config: RecordConfig, output_scale: float = 0.01,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict]:
    """Record ``optimizer`` on fresh runs of ``task``. Returns ``(rows, counts)``."""
    rng = np.random.default_rng(config.seed)
    specs = task.param_specs()
    offsets = np.cumsum([0] + [s.size for s in specs])
    rollout = make_recording_rollout(task, optimizer, features, output_scale)
    n = task.num_params
    chunks, total, runs, dropped = [], 0, 0, 0
    while total < config.samples:
        if runs >= config.max_runs:
            raise ValueError(f"only {total} rows after {runs} runs (max_runs); lower samples or raise max_runs")
        coords = np.concatenate([offsets[i] + rng.choice(s.size, min(config.coords_per_tensor, s.size),
                                                         replace=False) for i, s in enumerate(specs)])
        seed = step_seed(config.seed, RECORDING, runs)
        theta = task.flatten(task.init_params(step_seed(seed, INIT)))
        feats, raw, grads = rollout(theta, optimizer.init_state(n), step_seed(seed, BATCHES),
                                    tf.constant(coords, tf.int32), tf.constant(config.steps))
        rows, d = windows_to_rows(feats.numpy(), raw.numpy(), grads.numpy(), config.memlen)
        chunks.append(rows)
        total += len(rows)
        dropped += d
        runs += 1
        if progress is not None:
            progress(min(total, config.samples), config.samples)
    data = np.concatenate(chunks, axis=0)
    if not np.all(np.isfinite(data)):
        bad = int(np.sum(~np.all(np.isfinite(data), axis=1)))
        raise ValueError(f"{bad} recorded rows are not finite: the optimizer diverged on this task")
    before = len(data)
    data = data[rng.permutation(before)[:config.samples]].astype(np.float32)
    counts = {"runs": runs, "steps_per_run": config.steps, "coordinates_per_run": int(len(coords)),
              "rows_recorded": before, "windows_dropped_zero_gradient": dropped, "rows": int(len(data))}
    return data, counts


def save_behaviour(path: str | Path, data: np.ndarray, manifest: dict) -> Path:
    """Write ``data`` as ``path`` (.npy) and its manifest ``path.json``, each atomically."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"behaviour datasets are .npy files, got {path}")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(data, dtype=np.float32), allow_pickle=False)
    payload = buf.getvalue()
    manifest = {**manifest, "format": FORMAT, "shape": list(data.shape),
                "sha256": hashlib.sha256(payload).hexdigest()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(payload)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_json(manifest_path(path), manifest)
    return path


def manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix(".json")


def load_behaviour(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load and validate a behaviour dataset. Returns ``(X, y, manifest)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"behaviour dataset not found: {path}")
    man_path = manifest_path(path)
    if not man_path.is_file():
        raise FileNotFoundError(f"manifest {man_path} is missing; record the dataset with `tfl2o record`")
    manifest = read_json(man_path, "behaviour manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{man_path} is not a {FORMAT} manifest")
    payload = path.read_bytes()
    if hashlib.sha256(payload).hexdigest() != manifest.get("sha256"):
        raise ValueError(f"{path} does not match its manifest (truncated, modified or swapped); record it again")
    try:
        data = np.load(io.BytesIO(payload), allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path} is not a plain numeric .npy array ({e})") from None
    columns = manifest.get("columns")
    if data.ndim != 2 or not isinstance(columns, list) or data.shape[1] != len(columns) + 1 or \
            list(data.shape) != manifest.get("shape"):
        raise ValueError(f"{path} has shape {data.shape}, its manifest says {manifest.get('shape')} with "
                         f"{len(columns) if isinstance(columns, list) else '?'} input columns")
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"{path} holds {data.dtype}, expected floats")
    finite = np.all(np.isfinite(data), axis=1)
    if not finite.all():
        raise ValueError(f"{path} has {int((~finite).sum())} rows with NaN/inf; record it again")
    return data[:, :-1].astype(np.float64), data[:, -1].astype(np.float64), manifest


def build_manifest(features: FeatureSet, memlen: int, source: dict, task_spec: dict, config: RecordConfig,
                   counts: dict) -> dict[str, Any]:
    return {"columns": column_names(features, memlen), "target": "y", "features": features.config(),
            "memlen": memlen, "source": source, "task": task_spec, "record_config": dataclasses.asdict(config),
            "counts": counts, "layout": "row = [feature_f at lag tau for tau in 0..memlen-1 for f] + [y at lag 0]",
            "created_with": "tf_symbolic_l2o " + _version()}


def _version() -> str:
    from tf_symbolic_l2o import __version__

    return __version__



TEACHER_DEFAULT_FEATURES = "mt+gt+g+mom5+mom9+mom99"


def resolve_source(source: str) -> dict[str, Any]:
    """Turn a ``--source`` into an optimizer.

    ``source`` is a trained L2O (a run directory, an ``l2o/`` folder or a shipped one's name such as
    ``rp_mnist_mlp``) or a hand-designed teacher written
    ``KIND:LR`` (``sgd:0.01``, ``momentum:0.01``, ``adam:0.001``, ``rmsprop:0.001``). Returns a dict with the
    ``optimizer``, its ``output_scale``, the default ``features`` (the L2O's own), the default ``task`` spec
    (the run's, or ``None``) and a JSON ``description`` for the manifest.
    """
    kind, _, lr = source.partition(":")
    if kind in BASELINES:
        try:
            rate = float(lr) if lr else 0.01
        except ValueError:
            raise ValueError(f"teacher learning rate {lr!r} is not a number (write e.g. {kind}:0.01)") from None
        teacher = make_optimizer(kind, rate)
        return {"optimizer": teacher, "output_scale": 0.01, "features": FeatureSet(TEACHER_DEFAULT_FEATURES),
                "task": None, "description": {"kind": "teacher", **teacher.config()}}
    from tf_symbolic_l2o.learned.io import load_l2o

    path = resolve_artifact(source)  # a shipped optimizer may be named: rp_mnist_mlp
    if not path.exists():
        raise FileNotFoundError(f"source {source!r} is neither a run directory nor a teacher "
                                f"({', '.join(f'{b}:LR' for b in BASELINES)})")
    l2o = load_l2o(path)
    task = None
    run_config = path / "config.json"
    if run_config.is_file():
        task = read_json(run_config, "run config").get("task")
    return {"optimizer": l2o, "output_scale": l2o.output_scale, "features": l2o.feature_set, "task": task,
            "description": {"kind": "l2o", "path": str(path.resolve()), "config": l2o.get_config()}}


def record_to_file(source: str, out: str | Path, config: RecordConfig, task_spec: dict | str | None = None,
                   features: str | None = None, beta1: float | None = None, beta2: float | None = None,
                   split: str = "meta_train", progress: Callable[[int, int], None] | None = None) -> dict:
    """Record ``source`` (see :func:`resolve_source`) and write ``out`` + manifest. Returns the manifest."""
    from tf_symbolic_l2o.tasks.family import primary_task
    from tf_symbolic_l2o.tasks.registry import make_task, normalize_task_spec

    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"the output must be a .npy file, got {out}")
    src = resolve_source(source)
    spec = primary_task(normalize_task_spec(task_spec if task_spec is not None else src["task"]))
    fs = src["features"]
    if features is not None or beta1 is not None or beta2 is not None:
        fs = FeatureSet(features or fs.spec, fs.beta1 if beta1 is None else beta1,
                        fs.beta2 if beta2 is None else beta2, fs.eps)
    task = make_task(spec, split=split)
    data, counts = record_behaviour(task, src["optimizer"], fs, config, src["output_scale"], progress)
    manifest = build_manifest(fs, config.memlen, {**src["description"], "output_scale": src["output_scale"]},
                              {**spec, "split": split}, config, counts)
    manifest["teacher"] = rest_output(src["optimizer"], src["output_scale"], config.steps)
    save_behaviour(out, data, manifest)
    return {**manifest, "shape": list(data.shape)}
