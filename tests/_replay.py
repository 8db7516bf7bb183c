"""Replay of a recorded L2O run, shared by the recorder tests (library and CLI)."""

import numpy as np
import tensorflow as tf

from tf_symbolic_l2o.learned.io import load_l2o
from tf_symbolic_l2o.seeds import BATCHES, INIT, RECORDING, step_seed
from tf_symbolic_l2o.tasks.registry import make_task


def assert_rows_replay_the_l2o(run_dir, data, manifest):
    """Replay the recorded runs in a plain eager loop (GradientTape gradients, ``l2o.update``, θ += Δ, features
    of every coordinate), cut every coordinate's trajectory into windows of ``memlen`` steps (newest first), and
    find each recorded row among them: the features must match and ``y`` must be the L2O's raw output
    (Δθ / output_scale) on that coordinate at the window's newest step."""
    l2o = load_l2o(run_dir)
    spec = {k: v for k, v in manifest["task"].items() if k != "split"}
    task = make_task(spec, split=manifest["task"]["split"])
    feats = l2o.feature_set  # by default the recorder tracks the L2O's own features
    assert manifest["features"] == feats.config()
    rc, memlen, n = manifest["record_config"], manifest["memlen"], task.num_params
    assert manifest["source"]["output_scale"] == l2o.output_scale
    windows = []
    for run in range(manifest["counts"]["runs"]):
        seed = step_seed(rc["seed"], RECORDING, run)
        theta = task.flatten(task.init_params(step_seed(seed, INIT)))
        state, fstate = l2o.init_state(n), feats.init_state([n])
        f_hist, y_hist = [], []
        for k in range(rc["steps"]):
            batch = task.sample_batch(step_seed(step_seed(seed, BATCHES), k))
            with tf.GradientTape() as tape:
                tape.watch(theta)
                loss = task.loss(task.unflatten(theta), batch)
            g = tape.gradient(loss, theta)
            delta, state = l2o.update(g, state, k + 1)
            f, fstate = feats.update(fstate, g, k + 1)
            f_hist.append(f.numpy())
            y_hist.append(delta.numpy() / l2o.output_scale)
            theta = theta + delta
        for newest in range(memlen - 1, rc["steps"], memlen):
            x = np.concatenate([f_hist[newest - lag] for lag in range(memlen)], axis=1)
            windows.append(np.concatenate([x, y_hist[newest][:, None]], axis=1))
    windows = np.concatenate(windows)
    X, y = data[:, :-1], data[:, -1]
    for row, target in zip(X, y):
        i = np.argmin(np.sum((windows[:, :-1] - row) ** 2, axis=1))
        np.testing.assert_allclose(windows[i, :-1], row, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(target, windows[i, -1], rtol=1e-3, atol=1e-5)
    assert np.std(y) > 1e-3 and (y > 0).any() and (y < 0).any()  # real outputs of both signs, not zeros
