"""tf.distribute helpers and multi-replica training with tf_symbolic_l2o.keras_training.

* ``parse_tf_config`` / ``make_strategy`` / ``is_chief`` / ``worker_dir`` on valid and malformed inputs (in-process;
  no MultiWorkerMirroredStrategy is created here, it would reconfigure this process's TensorFlow context).
* ``MirroredStrategy`` over 2 logical CPU devices: in a subprocess, because the devices of this pytest process may
  already be initialised by other test modules (the approach of ``test_keras_optimizers.py``).
* ``MultiWorkerMirroredStrategy``: two worker processes on the loopback interface; the chief's weights are compared
  with a single-process run computed here.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o import distribute
from tf_symbolic_l2o.distribute import is_chief, make_strategy, parse_tf_config, split_cpu, worker_dir

REPO = Path(__file__).resolve().parents[1]


def tf_config(workers=("localhost:2222", "localhost:2223"), task_type="worker", index=0, chief=None, **extra):
    cluster = {"worker": list(workers)}
    if chief is not None:
        cluster["chief"] = list(chief)
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}, **extra})


def subprocess_env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------- parse_tf_config


def test_parse_tf_config_unset_or_empty_is_none(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert parse_tf_config() is None
    monkeypatch.setenv("TF_CONFIG", "   ")
    assert parse_tf_config() is None
    assert parse_tf_config("") is None


def test_parse_tf_config_valid(monkeypatch):
    config = parse_tf_config(tf_config(index=1))
    assert config["cluster"]["worker"] == ["localhost:2222", "localhost:2223"]
    assert config["task"] == {"type": "worker", "index": 1}
    with_chief = parse_tf_config(tf_config(chief=["10.0.0.1:5000"], task_type="chief", index=0,
                                           rpc_layer="grpc"))
    assert with_chief["cluster"]["chief"] == ["10.0.0.1:5000"]
    assert parse_tf_config(tf_config(workers=["[::1]:2222"]))["cluster"]["worker"] == ["[::1]:2222"]
    monkeypatch.setenv("TF_CONFIG", tf_config(workers=["host-a.example:1"]))
    assert parse_tf_config()["cluster"]["worker"] == ["host-a.example:1"]


@pytest.mark.parametrize("text, words", [
    ('{"cluster": {"worker": ["a:1"]}, "task": ', ["not valid JSON", "set TF_CONFIG"]),
    ('["a:1"]', ["must be a JSON object", "list"]),
    ('{"task": {"type": "worker", "index": 0}}', ["no \"cluster\""]),
    ('{"cluster": {"chief": ["a:1"]}, "task": {"type": "chief", "index": 0}}', ["\"worker\" list"]),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', ["\"worker\" list"]),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}', ["\"worker\" list"]),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}', ["cluster.worker[1]", "'b'"]),
    ('{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker", "index": 0}}', ["host:port"]),
    ('{"cluster": {"worker": ["a:1"], "chief": ["c:1", "d:1"]}, "task": {"type": "chief", "index": 0}}',
     ["exactly one"]),
    ('{"cluster": {"worker": ["a:1"]}}', ["no \"task\""]),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', ["'ps'", "not a job", "'worker'"]),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', ["must be an integer"]),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": true}}', ["must be an integer"]),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     ["out of range", "use 0 to 1"]),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}}', ["out of range"]),
])
def test_parse_tf_config_malformed(text, words):
    with pytest.raises(ValueError) as info:
        parse_tf_config(text)
    message = str(info.value)
    assert "\n" not in message and message.startswith("TF_CONFIG")
    for word in words:
        assert word in message, message


def test_parse_tf_config_reads_environment(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_tf_config()


# ------------------------------------------------------------------------------------- make_strategy, is_chief


def test_make_strategy_kinds(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert make_strategy("default") is tf.distribute.get_strategy()
    assert make_strategy("none") is tf.distribute.get_strategy()
    if not tf.config.list_physical_devices("GPU"):
        assert make_strategy("auto") is tf.distribute.get_strategy()
        mirrored = make_strategy(" Mirrored ")
        assert isinstance(mirrored, tf.distribute.MirroredStrategy)
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        assert mirrored.num_replicas_in_sync == len(cpus)
    with pytest.raises(ValueError) as info:
        make_strategy("horovod")
    assert "\n" not in str(info.value)
    for kind in distribute.STRATEGY_KINDS:
        assert kind in str(info.value)


def test_make_strategy_multiworker_needs_valid_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG, which is not set"):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", tf_config(index=5))
    for kind in ("multiworker", "auto"):  # validated before TensorFlow sees it
        with pytest.raises(ValueError, match="out of range"):
            make_strategy(kind)


class FakeResolver:
    def __init__(self, task_type, task_id, jobs):
        self.task_type, self.task_id = task_type, task_id
        self._spec = tf.train.ClusterSpec({j: [f"h{j}{i}:1" for i in range(2)] if j == "worker" else [f"h{j}:1"]
                                           for j in jobs})

    def cluster_spec(self):
        return self._spec


@pytest.mark.parametrize("task_type, index, jobs, chief", [
    ("worker", 0, ["worker"], True),
    ("worker", 1, ["worker"], False),
    ("chief", 0, ["chief", "worker"], True),
    ("worker", 0, ["chief", "worker"], False),
    ("evaluator", 0, ["worker", "evaluator"], False),
])
def test_is_chief_and_worker_dir(tmp_path, monkeypatch, task_type, index, jobs, chief):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = SimpleNamespace(cluster_resolver=FakeResolver(task_type, index, jobs))
    assert is_chief(strategy) is chief
    out = worker_dir(tmp_path / "results", strategy)
    expected = tmp_path / "results" if chief else tmp_path / "results" / ".workers" / f"{task_type}_{index}"
    assert out == expected and out.is_dir()
    # The same answer from TF_CONFIG when no strategy is given.
    cluster = {j: ([f"h{i}:1" for i in range(2)] if j == "worker" else ["c:1"]) for j in jobs}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))
    assert is_chief() is chief
    assert worker_dir(tmp_path / "env") == (tmp_path / "env" if chief else
                                            tmp_path / "env" / ".workers" / f"{task_type}_{index}")


def test_single_process_is_chief(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief() and is_chief(tf.distribute.get_strategy())
    assert is_chief(SimpleNamespace(cluster_resolver=FakeResolver(None, None, ["worker"])))
    assert worker_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()


def test_split_cpu_rejects_bad_counts():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            split_cpu(bad)


# ----------------------------------------------------------------------------- MirroredStrategy, 2 logical CPUs

MIRRORED_SCRIPT = textwrap.dedent("""
    import json
    from tf_symbolic_l2o.distribute import make_strategy, split_cpu
    split_cpu(2)
    split_cpu(2)                       # idempotent
    import numpy as np
    import tensorflow as tf
    from tf_symbolic_l2o.image_data import ImageData
    from tf_symbolic_l2o.keras_training import train
    from tf_symbolic_l2o.tasks.keras_models import make_model

    rng = np.random.default_rng(7)
    def part(n):
        return rng.normal(size=(n, 12, 12, 3)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)
    (xt, yt), (xv, yv), (xs, ys) = part(72), part(20), part(20)
    data = ImageData("toy", xt, yt, xv, yv, xs, ys, 4)

    mirrored = make_strategy("mirrored")
    out = {"replicas": mirrored.num_replicas_in_sync,
           "devices": list(mirrored.extended.worker_devices)}
    import keras
    keras.utils.set_random_seed(5)
    out["init"] = [w.tolist() for w in make_model("cnn", (12, 12, 3), 4).get_weights()]
    try:
        split_cpu(3)
    except RuntimeError as e:
        out["split_error"] = str(e)
    runs = {}
    for label, strategy in (("mirrored", mirrored), ("single", tf.distribute.get_strategy())):
        r = train("cnn", "symbolic_rp", None, epochs=2, batch_size=16, seed=5, strategy=strategy, data=data)
        runs[label] = {"weights": [w.tolist() for w in r.model.get_weights()],
                       "train_loss": r.history["train_loss"].tolist(), "test_loss": r.history["test_loss"].tolist(),
                       "replicas": r.replicas, "loop": r.loop,
                       "slot": type(r.model.optimizer.variables[2].value).__name__}
    out["runs"] = runs
    try:
        train("cnn", "adam", epochs=1, batch_size=15, strategy=mirrored, data=data)
    except ValueError as e:
        out["batch_error"] = str(e)
    print(json.dumps(out))
""")


def test_mirrored_two_logical_cpus_matches_single_device():
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True,
                          env=subprocess_env(), timeout=240, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and len(out["devices"]) == 2 and out["devices"][0] != out["devices"][1]
    assert "already initialised its devices with 2" in out["split_error"] and "\n" not in out["split_error"]
    assert "not a multiple of the 2 replicas" in out["batch_error"]
    runs = out["runs"]
    assert runs["mirrored"]["replicas"] == 2 and runs["single"]["replicas"] == 1
    assert runs["mirrored"]["loop"] == runs["single"]["loop"] == "fit"
    assert "Mirrored" in runs["mirrored"]["slot"] or "Distributed" in runs["mirrored"]["slot"]
    single = [np.asarray(w) for w in runs["single"]["weights"]]
    init = [np.asarray(w) for w in out["init"]]
    moved = max(float(np.max(np.abs(s - w0))) for s, w0 in zip(single, init))
    assert moved > 1e-3, moved  # 8 SymbolicRP steps really changed the weights
    for w, s in zip((np.asarray(w) for w in runs["mirrored"]["weights"]), single):
        np.testing.assert_allclose(w, s, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(runs["mirrored"]["train_loss"], runs["single"]["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(runs["mirrored"]["test_loss"], runs["single"]["test_loss"], rtol=1e-5)


# ------------------------------------------------------------------------ MultiWorkerMirroredStrategy, 2 processes

WORKER_SCRIPT = textwrap.dedent("""
    import json, sys
    from tf_symbolic_l2o import distribute
    strategy = distribute.make_strategy("multiworker")      # before any other TensorFlow op
    import numpy as np
    from tf_symbolic_l2o.image_data import ImageData
    from tf_symbolic_l2o.keras_training import train

    rng = np.random.default_rng(11)
    def part(n):
        return rng.normal(size=(n, 12, 12, 3)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)
    (xt, yt), (xv, yv), (xs, ys) = part(64), part(16), part(16)
    data = ImageData("toy", xt, yt, xv, yv, xs, ys, 3)
    r = train("cnn", "adam", 0.01, epochs=2, batch_size=16, seed=3, strategy=strategy, data=data)
    out = distribute.worker_dir(sys.argv[1], strategy)
    np.savez(out / "weights.npz", *r.model.get_weights())
    print(json.dumps({"chief": distribute.is_chief(strategy), "dir": str(out), "replicas": r.replicas,
                      "loop": r.loop, "train_loss": r.history["train_loss"].tolist()}))
""")


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tiny_data(seed, n_train, n_other, classes):
    from tf_symbolic_l2o.image_data import ImageData

    rng = np.random.default_rng(seed)

    def part(n):
        return rng.normal(size=(n, 12, 12, 3)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)

    (xt, yt), (xv, yv), (xs, ys) = part(n_train), part(n_other), part(n_other)
    return ImageData("toy", xt, yt, xv, yv, xs, ys, classes)


def test_multiworker_two_processes_match_single_process(tmp_path):
    from tf_symbolic_l2o.keras_training import train

    workers = [f"localhost:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        env = subprocess_env(TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                   "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(tmp_path / "out")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO),
                                      start_new_session=True))
    # Meanwhile, the reference: the same run in this process, one device, model.fit.
    reference = train("cnn", "adam", 0.01, epochs=2, batch_size=16, seed=3, data=tiny_data(11, 64, 16, 3))
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr[-3000:]
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [r["chief"] for r in results] == [True, False]
    assert results[0]["dir"] == str(tmp_path / "out")
    assert results[1]["dir"] == str(tmp_path / "out" / ".workers" / "worker_1")
    assert all(r["replicas"] == 2 and r["loop"] == "custom" for r in results)
    chief = np.load(tmp_path / "out" / "weights.npz")
    other = np.load(tmp_path / "out" / ".workers" / "worker_1" / "weights.npz")
    expected = reference.model.get_weights()
    assert len(chief.files) == len(expected)
    for i, w in enumerate(expected):
        np.testing.assert_allclose(chief[f"arr_{i}"], w, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(chief[f"arr_{i}"], other[f"arr_{i}"])  # replicas stay in sync
    np.testing.assert_allclose(results[0]["train_loss"], reference.history["train_loss"], rtol=1e-5)
