"""Task families: meta-training on a distribution of optimizees instead of one.

A family is a task spec ``{"name": "family", "family": LABEL, "members": [...], "normaliser": "adam"}`` whose
members each hold

* ``task``: a :mod:`~tf_symbolic_l2o.tasks.registry` spec (MLPs, the CNN, ResNets, Keras models, the autoencoder);
* ``label``: a unique name (the ``task`` column of ``metrics.csv``);
* ``weight``: its relative probability of being drawn for an epoch (> 0);
* ``horizons``: the training horizons an epoch on it draws from (uniformly); ``None``: the run's ``epoch_len``;
* ``norm``: the member's loss scale, by which its meta-loss and validation loss are divided so that no task
  dominates: a positive number (every horizon), ``{horizon: number}`` for each of its horizons, or ``None`` until
  the meta-trainer measures it (``normaliser``: ``"adam"``, the mean training loss of learning-rate-tuned Adam over
  the first h steps, for each horizon h; ``"none"``: 1).

Every epoch of a run draws its member and horizon from ``step_seed(run's epoch seed, FAMILY)``, so a resumed run
draws what an uninterrupted one does. A family is given by name (:data:`FAMILIES`) or as a JSON file
(:func:`load_family`) ``{"name": ..., "normaliser": ..., "tasks": [{"task": {...}, "weight": 1, "horizons": [...],
"label": ...}]}``; :func:`normalize_family_spec` expands either into the explicit spec that ``config.json`` keeps, so
a run never depends on a named family staying the same.

The benchmark's held-out problems (its ``sanity`` tier, logistic regression) are never members of a shipped family
(:func:`family_contains` lets the benchmark say which of its tasks a family trains on).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import tensorflow as tf

from tf_symbolic_l2o.seeds import FAMILY, step_seed

FAMILY_KEYS = ("name", "family", "members", "normaliser")
MEMBER_KEYS = ("task", "label", "weight", "horizons", "norm")
NORMALISERS = ("adam", "none")

_MNIST = {"dataset": "mnist_subset", "batch_size": 128, "init": "keras"}
_IMAGES = {"dataset": "mnist_subset_32", "batch_size": 64}

#: The named families. ``default`` spans widths, depths and activations of MLPs, the paper's CNN, a ResNet-20, a
#: Keras model and an autoencoder, at horizons from 100 to 1,000 steps; ``small`` is its four cheapest members at
#: short horizons (tests and quick runs).
FAMILIES: dict[str, list[dict[str, Any]]] = {
    "default": [
        {"label": "mlp_paper", "task": {"name": "mlp", "hidden": [30, 20], "activation": "relu", "init": "paper",
                                        "dataset": "mnist_subset", "batch_size": 128},
         "weight": 2.0, "horizons": [100, 200, 500, 1000]},
        {"label": "mlp_wide_tanh", "task": {"name": "mlp", "hidden": [128], "activation": "tanh", **_MNIST},
         "weight": 1.0, "horizons": [100, 200, 500, 1000]},
        {"label": "mlp_deep_sigmoid", "task": {"name": "mlp", "hidden": [64, 64, 64], "activation": "sigmoid",
                                               **_MNIST},
         "weight": 1.0, "horizons": [200, 500, 1000]},
        {"label": "mlp_digits_elu", "task": {"name": "mlp", "hidden": [32, 32], "activation": "elu",
                                             "dataset": "digits", "batch_size": 64, "init": "keras"},
         "weight": 1.0, "horizons": [100, 200, 500, 1000]},
        {"label": "cnn_paper", "task": {"name": "cnn", **_IMAGES, "init": "paper"},
         "weight": 1.0, "horizons": [100, 200, 500]},
        {"label": "resnet20", "task": {"name": "resnet", "depth": 20, **_IMAGES, "init": "keras"},
         "weight": 0.5, "horizons": [100, 200]},
        {"label": "keras_cnn", "task": {"name": "keras", "model": "cnn", **_IMAGES, "init": "keras"},
         "weight": 0.5, "horizons": [100, 200, 500]},
        {"label": "autoencoder_relu", "task": {"name": "autoencoder", "code": 16, "hidden": [48],
                                               "activation": "relu", "dataset": "digits", "batch_size": 64},
         "weight": 1.0, "horizons": [100, 200, 500, 1000]},
    ],
}
FAMILIES["small"] = [dict(m, horizons=[h for h in m["horizons"] if h <= 200] or [100])
                     for m in FAMILIES["default"] if m["label"] in ("mlp_paper", "mlp_wide_tanh", "mlp_digits_elu",
                                                                    "autoencoder_relu")]


def available_families() -> list[str]:
    return list(FAMILIES)


def is_family(spec: Any) -> bool:
    return isinstance(spec, dict) and spec.get("name") == "family"


def load_family(ref: str | Path) -> dict[str, Any]:
    """A family spec from a name of :data:`FAMILIES` or a JSON file (see the module docstring), not yet normalised.

    Raises:
        ValueError: an unknown name, a file that is not JSON or not a family.
    """
    if str(ref) in FAMILIES:
        return {"name": "family", "family": str(ref), "members": FAMILIES[str(ref)]}
    path = Path(ref)
    if not path.is_file():
        raise ValueError(f"unknown task family {str(ref)!r}: not a file, and not one of {', '.join(FAMILIES)}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"task family file {path} is not readable JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise ValueError(f"task family file {path} must hold an object with a 'tasks' list, e.g. "
                         f'{{"tasks": [{{"task": {{"name": "mlp"}}, "weight": 1, "horizons": [100, 200]}}]}}')
    unknown = set(data) - {"name", "normaliser", "tasks"}
    if unknown:
        raise ValueError(f"task family file {path}: unknown key(s) {sorted(unknown)}; use name, normaliser, tasks")
    return {"name": "family", "family": str(data.get("name") or path.stem), "members": data["tasks"],
            **({"normaliser": data["normaliser"]} if "normaliser" in data else {})}


def _positive_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")
    return float(value)


def normalize_family_spec(spec: dict, normalize_task_spec: Callable[[Any], dict]) -> dict[str, Any]:
    """The explicit, validated family spec (members' task specs normalised by ``normalize_task_spec``, the
    registry's, labels unique, weights and norms positive, horizons positive integers).
    ``{"name": "family", "family": NAME}`` alone expands the named family. Called through
    :func:`~tf_symbolic_l2o.tasks.registry.normalize_task_spec`."""
    unknown = set(spec) - set(FAMILY_KEYS)
    if unknown:
        raise ValueError(f"a task family takes {list(FAMILY_KEYS)}, not {sorted(unknown)}")
    label = str(spec.get("family") or "custom")
    members = spec.get("members")
    if members is None:
        if label not in FAMILIES:
            raise ValueError(f"unknown task family {label!r}; use one of {', '.join(FAMILIES)} or give its members")
        members = FAMILIES[label]
    if not isinstance(members, list) or not members:
        raise ValueError(f"task family {label!r} has no members; give a non-empty list of tasks")
    normaliser = spec.get("normaliser", "adam")
    if normaliser not in NORMALISERS:
        raise ValueError(f"unknown normaliser {normaliser!r}; use one of {', '.join(NORMALISERS)}")
    out, labels = [], set()
    for i, member in enumerate(members):
        if not isinstance(member, dict) or "task" not in member:
            raise ValueError(f"task family {label!r}, member {i}: give an object with a 'task' spec")
        extra = set(member) - set(MEMBER_KEYS)
        if extra:
            raise ValueError(f"task family {label!r}, member {i}: unknown key(s) {sorted(extra)}; use "
                             f"{', '.join(MEMBER_KEYS)}")
        task = member["task"]
        if is_family(task if isinstance(task, dict) else {"name": task}):
            raise ValueError(f"task family {label!r}, member {i}: a family cannot contain a family")
        task = normalize_task_spec(task)
        name = str(member.get("label") or f"{task['name']}_{i}")
        if name in labels:
            raise ValueError(f"task family {label!r}: the label {name!r} is used twice; labels must be unique")
        labels.add(name)
        horizons = member.get("horizons")
        if horizons is not None:
            if not isinstance(horizons, (list, tuple)) or not horizons or any(
                    isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in horizons):
                raise ValueError(f"task family {label!r}, member {name!r}: horizons must be a non-empty list of "
                                 f"positive integers, got {horizons!r}")
            horizons = [int(h) for h in horizons]
        out.append({"label": name, "task": task,
                    "weight": _positive_number(member.get("weight", 1.0), f"the weight of member {name!r}"),
                    "horizons": horizons, "norm": _norm(member.get("norm"), name, horizons)})
    if normaliser == "none":
        out = [dict(m, norm=1.0 if m["norm"] is None else m["norm"]) for m in out]
    return {"name": "family", "family": label, "members": out, "normaliser": normaliser}


def _norm(norm, name: str, horizons: list[int] | None):
    """A member's ``norm``, validated: ``None``, a positive number, or ``{horizon: positive number}`` (keys as
    strings, as JSON keeps them) covering the member's horizons."""
    if norm is None or not isinstance(norm, dict):
        return None if norm is None else _positive_number(norm, f"the norm of member {name!r}")
    try:
        out = {str(int(h)): _positive_number(v, f"the norm of member {name!r} at horizon {h}") for h, v in norm.items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"the norm of member {name!r} must be a number or {{horizon: number}}: {e}") from None
    missing = [h for h in horizons or [] if str(h) not in out]
    if missing:
        raise ValueError(f"the norm of member {name!r} has no value for its horizon(s) {missing}")
    return out


def member_norm(member: dict, horizon: int) -> float:
    """The loss scale of ``member`` at ``horizon`` (its ``norm`` must be set)."""
    norm = member["norm"]
    if isinstance(norm, dict):
        if str(int(horizon)) not in norm:
            raise ValueError(f"family member {member['label']!r} has no loss scale for horizon {horizon}")
        return float(norm[str(int(horizon))])
    return float(norm)


def member_horizons(member: dict, default: list[int]) -> list[int]:
    """The horizons an epoch on ``member`` draws from (the run's own when the member gives none)."""
    return list(member["horizons"]) if member.get("horizons") else list(default)


def draw_member(spec: dict, epoch_seed: tf.Tensor, default_horizons: list[int]) -> tuple[int, int]:
    """``(member index, horizon)`` of the epoch whose seed is ``epoch_seed``: the member with probability
    proportional to its weight, the horizon uniformly among its horizons (stateless: a function of the seed)."""
    members = spec["members"]
    u_member, u_horizon = tf.random.stateless_uniform([2], step_seed(epoch_seed, FAMILY), dtype=tf.float64).numpy()
    weights = [m["weight"] for m in members]
    threshold, cumulative, index = u_member * sum(weights), 0.0, len(members) - 1
    for i, w in enumerate(weights):
        cumulative += w
        if threshold < cumulative:
            index = i
            break
    horizons = member_horizons(members[index], default_horizons)
    return index, horizons[min(int(u_horizon * len(horizons)), len(horizons) - 1)]


def primary_task(spec: dict) -> dict:
    """The task a run on ``spec`` is evaluated and recorded on by default: the spec itself, or a family's first
    member."""
    return spec["members"][0]["task"] if is_family(spec) else spec


#: Spec keys that do not change which optimizee and data a task is (:func:`family_contains` ignores them).
_RUN_KEYS = ("batch_size", "init", "seed", "data_dir")


def family_contains(family: dict, task_spec: dict) -> str | None:
    """The label of the member of ``family`` that trains on ``task_spec``'s optimizee — the same architecture and
    dataset, whatever the batch size or initialisation; both specs normalised — or ``None`` (then the task is held
    out from that family)."""

    def key(spec):
        return {k: v for k, v in spec.items() if k not in _RUN_KEYS}

    wanted = key(task_spec)
    for member in family["members"]:
        if key(member["task"]) == wanted:
            return member["label"]
    return None
