"""Build tasks from a small JSON-able spec, e.g. ``{"name": "mlp", "dataset": "mnist_subset"}``.

=============  ======================================================================  =========================
name           optimizee                                                               default dataset
=============  ======================================================================  =========================
``mlp``        MLP, hidden (30, 20), ReLU — the paper's 784→30→20→10 on MNIST           ``mnist_subset`` (offline)
``cnn``        the paper's small CNN (conv 6, conv 12, dense)                          ``mnist_subset_32``
``resnet``     CIFAR-style ResNet (``depth`` 8/20/32/44/56 or 18)                       ``mnist_subset_32``
``quadratic``  random quadratic ‖Wθ − y‖²                                               — (generated)
``autoencoder``  dense autoencoder ``D → hidden → code → hidden → D``, MSE (``code``,  ``digits`` (offline)
               ``hidden``, ``activation``)
``keras``      any Keras 3 model (:mod:`.keras_task`): ``model`` is a ``.keras`` file  ``mnist_subset_32``
               or a ``keras.applications`` name (``resnet50``, ``mobilenetv2``, …),
               built for the dataset's classes and ``input_shape``
=============  ======================================================================  =========================

A *task family* (``{"name": "family", …}``, :mod:`~tf_symbolic_l2o.tasks.family`) is several of these with
weights and horizons: a meta-training run draws one per epoch. It is a spec, not one task: :func:`make_task`
refuses it.

A model object (rather than a file or a name) goes to :class:`~tf_symbolic_l2o.tasks.keras_task.KerasModelTask`
directly: a spec holds JSON only.
"""

from __future__ import annotations

from typing import Any

from tf_symbolic_l2o.tasks.base import ClassificationTask, Task

TASKS = ("mlp", "cnn", "resnet", "quadratic", "keras", "autoencoder")
DEFAULT_TASK: dict[str, Any] = {"name": "mlp", "dataset": "mnist_subset", "hidden": [30, 20],
                                "activation": "relu", "batch_size": 128, "init": "paper"}
_DEFAULT_DATASET = {"mlp": "mnist_subset", "cnn": "mnist_subset_32", "resnet": "mnist_subset_32",
                    "keras": "mnist_subset_32", "autoencoder": "digits"}
_KEYS = {
    "mlp": {"hidden", "activation"},
    "cnn": {"channels"},
    "resnet": {"depth", "width_multiplier", "norm"},
    "quadratic": {"dim", "noise_std", "problem_seed"},
    "keras": {"model", "input_shape"},
    "autoencoder": {"code", "hidden", "activation"},
}
_COMMON = {"name", "dataset", "batch_size", "init", "data_dir", "seed"}


def task_keys(name: str | None) -> set[str]:
    """The keys a spec of task ``name`` takes."""
    if name == "family":
        from tf_symbolic_l2o.tasks.family import FAMILY_KEYS

        return set(FAMILY_KEYS)
    return _COMMON | _KEYS.get(name, set())


def available_tasks() -> list[str]:
    return list(TASKS)


def task_spec(name: str | None = None, default: dict | None = None, family: str | None = None,
              **options: Any) -> dict[str, Any] | None:
    """A task spec from command-line style options: options given as ``None`` are dropped.

    ``family`` (a family name or JSON file, :func:`~tf_symbolic_l2o.tasks.family.load_family`) gives a task family
    instead; it cannot be combined with a task ``name`` or task options.

    Returns ``None`` when neither ``name`` nor any option is given (the caller's default task is meant); a ``model``
    without a ``name`` means the ``keras`` task.
    ``default`` (e.g. the meta-tuner's CNN) is the base spec when ``name`` is ``None`` or names the same task;
    without it the task is ``name`` or ``"mlp"``. Paths (``data_dir``) are stored as strings.
    """
    given = {k: (str(v) if k == "data_dir" else v) for k, v in options.items() if v is not None}
    if family is not None:
        if name is not None or given:
            raise ValueError(f"a task family replaces the single-task options; drop "
                             f"{', '.join(sorted(({'task'} if name is not None else set()) | set(given)))} or the "
                             f"family")
        from tf_symbolic_l2o.tasks.family import load_family

        return load_family(family)
    if name is None and not given:
        return None
    if name is None and "model" in given:  # a Keras model is the optimizee
        name = "keras"
    base = dict(default) if default is not None and name in (None, default["name"]) else {}
    return {**base, "name": name or (default or {"name": "mlp"})["name"], **given}


def normalize_task_spec(spec: dict | str | None) -> dict[str, Any]:
    """Fill defaults and validate keys; returns a new dict."""
    if spec is None:
        return dict(DEFAULT_TASK)
    if isinstance(spec, str):
        spec = {"name": spec}
    name = spec.get("name", "mlp")
    if name == "family":
        from tf_symbolic_l2o.tasks.family import normalize_family_spec

        return normalize_family_spec(spec, normalize_task_spec)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; use one of {', '.join(TASKS)} (or a task family)")
    unknown = set(spec) - _COMMON - _KEYS[name]
    if unknown:
        raise ValueError(f"task {name!r} does not take {sorted(unknown)}; it takes {sorted(_KEYS[name] | _COMMON)}")
    if name == "keras" and not spec.get("model"):
        raise ValueError("task 'keras' needs a model: a .keras file or a keras.applications name such as resnet50")
    out = dict(DEFAULT_TASK) if name == "mlp" else {"name": name, "batch_size": 64 if name == "autoencoder" else 128,
                                                    "init": "keras" if name == "keras" else "paper"}
    if name in _DEFAULT_DATASET:
        out.setdefault("dataset", _DEFAULT_DATASET[name])
    out.update({k: v for k, v in spec.items() if v is not None})
    if name == "quadratic":
        out.pop("dataset", None)
    if name == "autoencoder":
        out.pop("init", None)  # Glorot kernels, zero biases: the autoencoder has one initialisation
    if int(out.get("batch_size", 1)) <= 0:
        raise ValueError(f"batch_size must be positive, got {out['batch_size']}")
    return out


def make_task(spec: dict | str | None = None, split: str = "meta_train") -> Task:
    """Build the task described by ``spec`` on the given data split (``meta_train``, ``eval`` or ``train``)."""
    spec = normalize_task_spec(spec)
    name = spec["name"]
    if name == "family":
        raise ValueError(f"a task family ({spec.get('family')}) is several tasks, not one: meta-train on it, or "
                         f"build one member with make_task(spec['members'][i]['task'])")
    if name == "quadratic":
        from tf_symbolic_l2o.tasks.quadratic import QuadraticTask

        kwargs = {k: spec[k] for k in ("dim", "noise_std", "problem_seed") if k in spec}
        return QuadraticTask(**kwargs)
    from tf_symbolic_l2o.data import load_dataset

    flatten = True if name in ("mlp", "autoencoder") else None if name == "keras" else False
    ds = load_dataset(spec["dataset"], data_dir=spec.get("data_dir"), seed=int(spec.get("seed", 0)),
                      flatten=flatten)
    if name == "autoencoder":
        from tf_symbolic_l2o.tasks.autoencoder import AutoencoderTask

        kwargs = {k: spec[k] for k in ("code", "hidden", "activation") if k in spec}
        return AutoencoderTask(ds, split=split, batch_size=int(spec["batch_size"]), **kwargs)
    if name == "keras":
        from tf_symbolic_l2o.tasks.keras_task import KerasModelTask

        return KerasModelTask(spec["model"], ds, split=split, batch_size=int(spec["batch_size"]),
                              input_shape=spec.get("input_shape"), init=spec["init"])
    if name == "mlp":
        from tf_symbolic_l2o.tasks.mlp import MLP

        net = MLP(int(ds.x_train.shape[1]), tuple(spec.get("hidden", (30, 20))), ds.num_classes,
                  spec.get("activation", "relu"))
    elif name == "cnn":
        from tf_symbolic_l2o.tasks.cnn import SmallCNN

        kwargs = {"channels": tuple(spec["channels"])} if "channels" in spec else {}
        net = SmallCNN(input_shape=tuple(ds.input_shape), num_classes=ds.num_classes, **kwargs)
    else:
        from tf_symbolic_l2o.tasks.resnet import ResNet

        kwargs = {k: spec[k] for k in ("depth", "width_multiplier", "norm") if k in spec}
        net = ResNet(input_shape=tuple(ds.input_shape), num_classes=ds.num_classes, **kwargs)
    return ClassificationTask(net, ds, split=split, batch_size=int(spec["batch_size"]), init=spec["init"],
                              name=name)
