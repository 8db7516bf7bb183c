"""``tf.distribute`` helpers: pick a strategy, split the CPU into logical devices, and tell the chief from the
other workers.

Training code is the same under every strategy: build and compile the model under ``strategy.scope()`` and pass the
**global** batch size; each replica gets ``batch_size / num_replicas_in_sync`` examples of every batch and the
gradients are summed across replicas, so one step equals one single-device step on the whole batch.
:func:`tf_symbolic_l2o.keras_training.train` does exactly that, with any optimizer of this library.

One machine, several GPUs (``MirroredStrategy``, all visible GPUs)::

    python benchmarks/resnet50_train.py --strategy mirrored

On a CPU-only machine ``"mirrored"`` replicates over the logical CPU devices; :func:`split_cpu` creates them
(``--cpu-replicas 2`` in the benchmark). That is how the tests check multi-replica numerics without a GPU.

Several hosts (``MultiWorkerMirroredStrategy``): start the SAME command on every host, each with its own
``TF_CONFIG`` — the same ``cluster``, and that host's ``task``::

    # host A (worker 0, the chief: it writes the results)
    export TF_CONFIG='{"cluster": {"worker": ["hostA:12345", "hostB:12345"]}, "task": {"type": "worker", "index": 0}}'
    python benchmarks/resnet50_train.py --strategy multiworker
    # host B (worker 1)
    export TF_CONFIG='{"cluster": {"worker": ["hostA:12345", "hostB:12345"]}, "task": {"type": "worker", "index": 1}}'
    python benchmarks/resnet50_train.py --strategy multiworker

The workers wait for each other at start-up, so start them within a minute or so. The ports must be reachable
between the hosts; every worker needs the same data (here it is generated or read from the same local files).
An optional ``"chief": ["hostC:12345"]`` job adds a dedicated chief; without one, worker 0 is the chief
(:func:`is_chief`). Only the chief's files are the real output: :func:`worker_dir` sends the other workers' files
to a private folder (the convention of the TensorFlow multi-worker tutorials for checkpoints).
``MultiWorkerMirroredStrategy`` must be created before any other TensorFlow operation runs, so call
:func:`make_strategy` at the top of the program. Several worker processes on ONE host (``localhost:PORT1``,
``localhost:PORT2``) work too; the tests do that on the loopback interface.

Keras 3 (up to at least 3.15) cannot run ``model.fit`` / ``model.evaluate`` under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585: ``_maybe_symbolic_build`` and ``reduce_per_replica`` call ``strategy.reduce`` in ways the
collective strategy rejects). :func:`tf_symbolic_l2o.keras_training.train` therefore uses an equivalent custom training loop
(``strategy.run`` on the model and its compiled optimizer) under that strategy; a test checks that it gives the
same weights as ``model.fit`` on one device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import tensorflow as tf

__all__ = ["STRATEGY_KINDS", "is_chief", "make_strategy", "parse_tf_config", "split_cpu", "worker_dir"]

#: Valid arguments of :func:`make_strategy`.
STRATEGY_KINDS = ("auto", "default", "none", "mirrored", "multiworker")

_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')
_FIX = f"set TF_CONFIG to a JSON object like {_EXAMPLE}"


def parse_tf_config(text: str | None = None) -> dict | None:
    """Parse and validate a ``TF_CONFIG`` (by default the ``TF_CONFIG`` environment variable).

    Returns ``None`` when it is unset or empty, else the parsed object. It must be a JSON object whose
    ``"cluster"`` maps job names to non-empty lists of ``"host:port"`` strings, with a ``"worker"`` job (an optional
    ``"chief"`` job has exactly one address), and whose ``"task"`` has a ``"type"`` that is a job of the cluster
    and an integer ``"index"`` within that job.

    Raises:
        ValueError: one line naming the problem and the fix.
    """
    if text is None:
        text = os.environ.get("TF_CONFIG")
    if text is None or not str(text).strip():
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}); {_FIX}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}; {_FIX}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG has no \"cluster\" object; {_FIX}")
    workers = cluster.get("worker")
    if not isinstance(workers, list) or not workers:
        raise ValueError(f"TF_CONFIG \"cluster\" has no non-empty \"worker\" list of \"host:port\" addresses; {_FIX}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(f"TF_CONFIG cluster job {job!r} must be a non-empty list of \"host:port\" addresses, "
                             f"got {addresses!r}; {_FIX}")
        for i, address in enumerate(addresses):
            if not _is_address(address):
                raise ValueError(f"TF_CONFIG cluster.{job}[{i}] = {address!r} is not a \"host:port\" address "
                                 f"(port 1-65535); {_FIX}")
    if "chief" in cluster and len(cluster["chief"]) != 1:
        raise ValueError(f"TF_CONFIG cluster \"chief\" must list exactly one address, got {len(cluster['chief'])}; "
                         f"remove the extra ones or make them workers")
    task = config.get("task")
    if not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG has no \"task\" object (e.g. {{\"type\": \"worker\", \"index\": 0}}); {_FIX}")
    task_type = task.get("type")
    if not isinstance(task_type, str) or task_type not in cluster:
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not a job of the cluster "
                         f"({', '.join(map(repr, cluster))}); set \"task\": {{\"type\": one of them, \"index\": ...}}")
    index = task.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"TF_CONFIG task index must be an integer, got {index!r}; set \"index\" to this "
                         f"process's position in cluster.{task_type}")
    if not 0 <= index < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task index {index} is out of range for cluster.{task_type} "
                         f"({len(cluster[task_type])} address(es)); use 0 to {len(cluster[task_type]) - 1}")
    return config


def _is_address(address) -> bool:
    if not isinstance(address, str):
        return False
    host, sep, port = address.rpartition(":")
    if not sep or not host.strip() or any(c.isspace() for c in address) or not port.isdigit():
        return False
    return 1 <= int(port) <= 65535


def split_cpu(n: int) -> None:
    """Make TensorFlow see ``n`` logical CPU devices (``/device:CPU:0`` … ``CPU:n-1``) on the first physical CPU.

    Call it before any TensorFlow operation runs: device configuration is fixed once TensorFlow initialises its
    devices. Calling it again with the same ``n`` does nothing.

    Raises:
        ValueError: ``n`` is not a positive integer.
        RuntimeError: the devices were already initialised with a different number of logical CPUs.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"split_cpu needs a positive integer number of devices, got {n!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have == n:
            return
        raise RuntimeError(f"cannot split the CPU into {n} logical devices: TensorFlow already initialised its "
                           f"devices with {have}; call split_cpu({n}) before any TensorFlow operation runs "
                           f"(at the top of the program)") from None


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name.

    * ``"default"`` / ``"none"``: the current (default) strategy, ``tf.distribute.get_strategy()``: one device.
    * ``"mirrored"``: ``MirroredStrategy`` over all GPUs, or over all logical CPU devices when there is no GPU
      (see :func:`split_cpu`).
    * ``"multiworker"``: ``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG`` (validated first by
      :func:`parse_tf_config`; it must be set). Create it before any other TensorFlow operation runs.
    * ``"auto"``: ``"multiworker"`` when ``TF_CONFIG`` is set, ``"mirrored"`` when there is more than one GPU,
      else ``"default"``.

    Raises:
        ValueError: an unknown kind, or a missing or malformed ``TF_CONFIG`` for ``"multiworker"``/``"auto"``.
    """
    key = kind.strip().lower() if isinstance(kind, str) else kind
    if key not in STRATEGY_KINDS:
        raise ValueError(f"unknown strategy {kind!r}; use one of {', '.join(STRATEGY_KINDS)}")
    if key == "auto":
        if parse_tf_config() is not None:
            key = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            key = "mirrored"
        else:
            key = "default"
    if key in ("default", "none"):
        return tf.distribute.get_strategy()
    if key == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if parse_tf_config() is None:
        raise ValueError(f"strategy 'multiworker' needs TF_CONFIG, which is not set; {_FIX} on each worker "
                         f"(its own task index on each)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def _task(strategy) -> tuple[str, int, bool] | None:
    """``(task_type, task_index, cluster_has_chief)`` of this process in a multi-worker setup, else ``None``.

    ``strategy=None``: the strategy of the current scope if there is one, else ``TF_CONFIG``.
    """
    if strategy is None:
        if tf.distribute.has_strategy():
            strategy = tf.distribute.get_strategy()
        else:
            config = parse_tf_config()
            if config is None:
                return None
            task = config["task"]
            return task["type"], int(task["index"]), "chief" in config["cluster"]
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None:
        return None
    jobs = resolver.cluster_spec().jobs if hasattr(resolver, "cluster_spec") else []
    return str(task_type), int(resolver.task_id or 0), "chief" in jobs


def is_chief(strategy=None) -> bool:
    """Whether this process writes the real outputs: under ``MultiWorkerMirroredStrategy`` the ``"chief"`` task,
    or worker 0 when the cluster has no chief; ``True`` for single-process strategies.

    ``strategy=None`` uses the strategy of the current ``strategy.scope()``, or ``TF_CONFIG`` outside any scope.
    """
    task = _task(strategy)
    if task is None:
        return True
    task_type, index, has_chief = task
    if task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and not has_chief


def worker_dir(path, strategy=None, create: bool = True) -> Path:
    """Where this process writes the files meant for ``path``: ``path`` itself on the chief (:func:`is_chief`),
    else the private folder ``path/.workers/<type>_<index>``, so only the chief's files are the real output.

    Every worker must still run the same code (including writing, e.g. a checkpoint, which may involve collective
    operations); a non-chief may delete its folder afterwards. The folder is created if missing, unless
    ``create=False`` (for a writer that creates it once its inputs are checked, so bad input leaves nothing).
    """
    path = Path(path)
    task = _task(strategy)
    if task is not None and not is_chief(strategy):
        path = path / ".workers" / f"{task[0]}_{task[1]}"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
