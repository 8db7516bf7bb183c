"""The evaluation harness: runs from a run seed (the evaluator's and the benchmark's), NaN test metrics after a
divergence, and the learning-rate grid search's tie and divergence policies."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.functional import make_optimizer
from tf_symbolic_l2o.harness import Harness, grid_search, held_out_metrics
from tf_symbolic_l2o.meta.evaluate import Evaluator, tune_learning_rate
from tf_symbolic_l2o.seeds import BATCHES, EVALUATION, INIT, step_seed
from tf_symbolic_l2o.tasks.quadratic import QuadraticTask
from tf_symbolic_l2o.tasks.registry import make_task

# ---------------------------------------------------------------------------------------------------- grid search


def test_grid_search_lowest_finite_score_wins_ties_to_the_first():
    scores = {1e-3: 2.0, 1e-2: 0.5, 1e-1: 0.5, 1.0: float("nan"), 10.0: float("inf")}
    seen = []

    def score(lr):
        seen.append(lr)
        return scores[lr]

    s = grid_search(list(scores), score)
    assert seen == list(scores)  # every point scored, in grid order
    assert (s.index, s.learning_rate, s.diverged, s.at_edge) == (1, 1e-2, False, False)
    assert s.scores[:3] == [2.0, 0.5, 0.5] and math.isnan(s.scores[3]) and s.scores[4] == math.inf
    assert grid_search([1e-3, 1e-2], lambda lr: lr).at_edge  # the winner is the first point


def test_grid_search_every_point_diverged():
    grid = [1e-1, 1e-3, 1e-2]
    with pytest.raises(ValueError, match="diverged"):
        grid_search(grid, lambda lr: float("inf"))
    with pytest.raises(ValueError, match="^try smaller$"):
        grid_search(grid, lambda lr: float("nan"), if_all_diverged="raise", error="try smaller")
    s = grid_search(grid, lambda lr: float("inf"), if_all_diverged="smallest")
    assert (s.index, s.learning_rate, s.diverged, s.at_edge) == (1, 1e-3, True, False)  # the smallest, not the first
    with pytest.raises(ValueError, match="if_all_diverged"):
        grid_search(grid, lambda lr: 1.0, if_all_diverged="largest")
    with pytest.raises(ValueError, match="empty"):
        grid_search([], lambda lr: 1.0)


def test_tune_learning_rate_policies():
    task = QuadraticTask(dim=6, noise_std=0.1)
    with pytest.raises(ValueError, match="every learning rate of the grid diverged for momentum"):
        tune_learning_rate(task, "momentum", 30, grid=(1e3, 1e4), runs=1)
    lr, table = tune_learning_rate(task, "adam", 10, grid=(1e-2, 1e-2, 1e-1), runs=1)
    assert table["mean_final_loss"].iloc[0] == table["mean_final_loss"].iloc[1]  # the same runs: a tie
    best = table["learning_rate"].iloc[int(np.argmin(table["mean_final_loss"]))]
    assert lr == best and list(table["learning_rate"]) == [1e-2, 1e-2, 1e-1]


# ---------------------------------------------------------------------------------------------------------- runs


def test_run_draws_from_the_run_seed_streams():
    """θ₀ from ``step_seed(run, INIT)``, step k's minibatch from ``step_seed(step_seed(run, BATCHES), k)``."""
    task = QuadraticTask(dim=6, noise_std=0.1)
    run_seed = step_seed(5, EVALUATION, 1)
    out = Harness(task, make_optimizer("sgd", 0.01)).run(run_seed, 3)
    theta = task.flatten(task.init_params(step_seed(run_seed, INIT)))
    batches = step_seed(run_seed, BATCHES)
    expected = []
    for k in range(3):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            loss = task.loss(task.unflatten(theta), task.sample_batch(step_seed(batches, k)))
        expected.append(float(loss))
        theta = theta - 0.01 * tape.gradient(loss, theta)
    np.testing.assert_allclose(out.losses, expected, rtol=1e-6)
    np.testing.assert_allclose(out.theta.numpy(), theta.numpy(), rtol=1e-6)
    assert out.test == {} and out.seconds > 0
    # the evaluator's run i is the harness's run from step_seed(seed, stream, i)
    res = Evaluator(task, 3, seed=5).run(make_optimizer("sgd", 0.01), 2, metrics=False)
    np.testing.assert_array_equal(res.losses[1], out.losses)


def test_diverged_run_has_nan_test_metrics():
    task = make_task({"name": "mlp", "dataset": "digits", "hidden": []}, split="meta_train")
    h = Harness(task, make_optimizer("momentum", 1e38))  # overflows float32
    h.warm_up()
    out = h.run(step_seed(0), 40, test=True)
    assert not np.all(np.isfinite(out.theta.numpy()))
    assert set(out.test) == {"test_loss", "test_accuracy"} and all(math.isnan(v) for v in out.test.values())
    fine = Harness(task, make_optimizer("adam", 1e-2)).run(step_seed(0), 5, test=True)
    assert fine.test == held_out_metrics(task, fine.theta) and 0 <= fine.test["test_accuracy"] <= 1
    quad = QuadraticTask(dim=4)
    assert list(held_out_metrics(quad, tf.fill([4], float("nan")))) == ["test_loss"]  # no accuracy on a quadratic
