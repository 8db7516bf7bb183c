"""Benchmark suites: tasks in tiers, each with a fixed step budget, a selection/final data split, and the seeds and
learning-rate grids of the protocol.

Tiers of the ``full`` suite:

=================  ====================  ===========================================================  =====
tier               task                  what                                                          steps
=================  ====================  ===========================================================  =====
sanity             ``rosenbrock``        2-D Rosenbrock from (−1.5, 2) + N(0, 0.1²)                     300
sanity             ``quadratic_ill``     ‖Wθ − y‖², 20-D Gaussian W (problem seed 1: κ(WᵀW) = 2.4e5)  200
sanity             ``quadratic_noisy``   ‖Wθ − (y + ε)‖², 10-D, ε ~ N(0, 0.5²) per step                  200
meta_train_family  ``mlp_mnist``         the paper's MLP 784-30-20-10 on the offline MNIST subset        200
generalisation     ``mlp_deep``          deeper ReLU MLP 784-50-40-30-20-10 (Glorot), MNIST subset       300
generalisation     ``cnn_mnist``         the paper's small CNN on the MNIST subset at 32×32×3            200
generalisation     ``logreg_digits``     logistic regression (MLP with no hidden layer) on digits        200
different_domain   ``autoencoder``       dense autoencoder 64-32-8-32-64 on digits, MSE                  300
=================  ====================  ===========================================================  =====

Protocol: learning rates are tuned on the *selection* seeds on the ``tune_split`` of the data (``meta_train``),
and the reported runs use disjoint *final* seeds on the ``final_split`` (``eval``: the held-out half of the train
set, never seen in meta-training). Test metrics come from the test set. Synthetic tasks have no split.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

from tf_symbolic_l2o.benchmark.optimizers import PRESET_LR_GRID, TUNED_PRESETS, is_tunable, known_optimizer
from tf_symbolic_l2o.tasks.base import Task

TIERS = ("sanity", "meta_train_family", "generalisation", "different_domain")

DEFAULT_LR_GRIDS: dict[str, tuple[float, ...]] = {
    "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    "adamw": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    "rmsprop": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    "momentum": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    "lion": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    **{name: PRESET_LR_GRID for name in TUNED_PRESETS},  # multipliers of the presets' native steps
}
FULL_OPTIMIZERS = ("adam", "adamw", "momentum", "rmsprop", "lion",
                   "rp_mnist_mlp", "symbolic_rp_gain", "symbolic_rp_ema_family", "symbolic_rp_ema",
                   "symbolic_rp_family", "symbolic_rp", "symbolic_rp_small", "symbolic_psi_tuned",
                   "symbolic_rp_si_gain", "symbolic_rp_si", "symbolic_dm_gain", "symbolic_dm", *TUNED_PRESETS)


@functools.lru_cache(maxsize=1)
def _default_family() -> dict:
    """The ``default`` task family, normalised once (every run's fingerprint asks which member a task is)."""
    from tf_symbolic_l2o.tasks.registry import normalize_task_spec

    return normalize_task_spec({"name": "family", "family": "default"})


@dataclasses.dataclass(frozen=True)
class BenchmarkTask:
    """One task of a suite.

    Args:
        name: unique name in the suite (used in paths and tables).
        tier: one of :data:`TIERS`.
        spec: a :func:`~tf_symbolic_l2o.tasks.registry.make_task` spec, or ``{"name": "rosenbrock", …}`` for the
            benchmark's own task.
        steps: the fixed step budget of every run.
        description: one line for the report.
    """

    name: str
    tier: str
    spec: dict
    steps: int
    description: str = ""

    def __post_init__(self):
        if self.tier not in TIERS:
            raise ValueError(f"unknown tier {self.tier!r} for task {self.name!r}; use one of {TIERS}")
        if int(self.steps) <= 0:
            raise ValueError(f"task {self.name!r}: steps must be positive, got {self.steps}")

    @property
    def has_split(self) -> bool:
        """Whether the task draws data from a dataset split (synthetic tasks do not)."""
        return self.spec.get("name") not in ("rosenbrock", "quadratic")

    def build(self, split: str = "meta_train") -> Task:
        """The functional task on ``split``."""
        spec = dict(self.spec)
        kind = spec.pop("name")
        if kind == "rosenbrock":
            from tf_symbolic_l2o.benchmark.tasks import RosenbrockTask

            return RosenbrockTask(name=self.name, **spec)
        from tf_symbolic_l2o.tasks.registry import make_task

        return make_task({"name": kind, **spec}, split=split)

    @property
    def trained_on(self) -> str | None:
        """The member of the ``default`` task family with this task's optimizee and data (the shipped optimizers
        were meta-trained on it), or ``None``: held out."""
        from tf_symbolic_l2o.tasks.family import family_contains
        from tf_symbolic_l2o.tasks.registry import normalize_task_spec

        if self.spec.get("name") == "rosenbrock":
            return None
        return family_contains(_default_family(), normalize_task_spec(self.spec))

    def config(self) -> dict:
        return {"name": self.name, "tier": self.tier, "spec": dict(self.spec), "steps": int(self.steps),
                "default_family_member": self.trained_on}


@dataclasses.dataclass(frozen=True)
class Suite:
    """A benchmark suite.

    Args:
        name: ``smoke`` or ``full`` (or your own).
        tasks: the tasks.
        optimizers: names understood by :func:`~tf_symbolic_l2o.benchmark.optimizers.make_optimizer`.
        selection_seeds: seeds of the learning-rate tuning runs.
        final_seeds: seeds of the reported runs (disjoint from ``selection_seeds``).
        lr_grids: learning-rate grid per tunable optimizer.
        tune_split, final_split: data splits of the tuning and the final runs.
    """

    name: str
    tasks: tuple[BenchmarkTask, ...]
    optimizers: tuple[str, ...]
    selection_seeds: tuple[int, ...] = (1000, 1001)
    final_seeds: tuple[int, ...] = (0, 1, 2)
    lr_grids: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_LR_GRIDS))
    tune_split: str = "meta_train"
    final_split: str = "eval"

    def __post_init__(self):
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        if not self.tasks or not self.optimizers:
            raise ValueError("a suite needs at least one task and one optimizer")
        if not self.selection_seeds or not self.final_seeds:
            raise ValueError("a suite needs at least one selection seed and one final seed")
        overlap = set(self.selection_seeds) & set(self.final_seeds)
        if overlap:
            raise ValueError(f"selection and final seeds must be disjoint; both contain {sorted(overlap)}")
        for name in self.optimizers:
            known_optimizer(name)
            if is_tunable(name) and not self.lr_grids.get(name):
                raise ValueError(f"optimizer {name!r} is tuned but the suite has no learning-rate grid for it")

    def task(self, name: str) -> BenchmarkTask:
        for t in self.tasks:
            if t.name == name:
                return t
        raise ValueError(f"suite {self.name!r} has no task {name!r}; it has {[t.name for t in self.tasks]}")

    def with_final_seeds(self, seeds: Sequence[int]) -> "Suite":
        return dataclasses.replace(self, final_seeds=tuple(int(s) for s in seeds))

    def with_horizon_scale(self, scale: int) -> "Suite":
        """The suite at ``scale`` × every task's step budget (named ``<name>_x<scale>``): do the optimizers keep
        working past the horizon they were meta-trained at? The baselines' learning rates are tuned at the new
        budget too."""
        if isinstance(scale, bool) or int(scale) != scale or scale < 1:
            raise ValueError(f"the horizon scale must be a positive integer, got {scale!r}")
        if scale == 1:
            return self
        tasks = tuple(dataclasses.replace(t, steps=int(t.steps) * int(scale)) for t in self.tasks)
        return dataclasses.replace(self, name=f"{self.name}_x{int(scale)}", tasks=tasks)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "tasks": [t.config() for t in self.tasks], "optimizers": list(self.optimizers),
                "selection_seeds": list(self.selection_seeds), "final_seeds": list(self.final_seeds),
                "lr_grids": {k: list(v) for k, v in self.lr_grids.items()}, "tune_split": self.tune_split,
                "final_split": self.final_split}


def full_suite() -> Suite:
    tasks = (
        BenchmarkTask("rosenbrock", "sanity", {"name": "rosenbrock"}, 300, "2-D Rosenbrock, start (−1.5, 2) + noise"),
        BenchmarkTask("quadratic_ill", "sanity", {"name": "quadratic", "dim": 20, "problem_seed": 1}, 200,
                      "‖Wθ − y‖², 20-D Gaussian W (ill-conditioned: κ(WᵀW) = 2.4e5)"),
        BenchmarkTask("quadratic_noisy", "sanity", {"name": "quadratic", "dim": 10, "noise_std": 0.5}, 200,
                      "‖Wθ − (y + ε)‖², 10-D, ε ~ N(0, 0.5²) per step"),
        BenchmarkTask("mlp_mnist", "meta_train_family", {"name": "mlp"}, 200,
                      "MLP 784-30-20-10 (ReLU) on the MNIST subset (the L2O's training task)"),
        BenchmarkTask("mlp_deep", "generalisation",
                      {"name": "mlp", "hidden": [50, 40, 30, 20], "activation": "relu", "init": "keras"}, 300,
                      "deeper ReLU MLP 784-50-40-30-20-10 (Glorot init) on the MNIST subset"),
        BenchmarkTask("cnn_mnist", "generalisation", {"name": "cnn"}, 200, "small CNN on the MNIST subset (32×32×3)"),
        BenchmarkTask("logreg_digits", "generalisation", {"name": "mlp", "dataset": "digits", "hidden": []}, 200,
                      "logistic regression on scikit-learn digits"),
        BenchmarkTask("autoencoder", "different_domain", {"name": "autoencoder", "dataset": "digits"}, 300,
                      "dense autoencoder 64-32-8-32-64 on digits (MSE)"),
    )
    return Suite("full", tasks, FULL_OPTIMIZERS)


def smoke_suite() -> Suite:
    """3 small tasks, short budgets, 1 selection and 1 final seed, 2-point grids: seconds on 2 CPU cores."""
    tasks = (
        BenchmarkTask("rosenbrock", "sanity", {"name": "rosenbrock"}, 40, "2-D Rosenbrock"),
        BenchmarkTask("quadratic_noisy", "sanity", {"name": "quadratic", "dim": 10, "noise_std": 0.5}, 40,
                      "noisy 10-D quadratic"),
        BenchmarkTask("logreg_digits", "generalisation", {"name": "mlp", "dataset": "digits", "hidden": []}, 40,
                      "logistic regression on digits"),
    )
    grids = {"adam": (1e-2, 1e-1), "adamw": (1e-2, 1e-1), "lion": (1e-3, 1e-2), "momentum": (1e-3, 1e-2),
             "rmsprop": (1e-2, 1e-1), "symbolic_rp_gain+lr": (0.3, 1.0)}
    return Suite("smoke", tasks, ("adam", "adamw", "lion", "symbolic_rp_gain", "symbolic_rp_gain+lr"),
                 selection_seeds=(1000,), final_seeds=(0,), lr_grids=grids)


SUITES = {"smoke": smoke_suite, "full": full_suite}


def get_suite(name: str, final_seeds: int | Sequence[int] | None = None, horizon_scale: int = 1,
              optimizers: Sequence[str] | None = None) -> Suite:
    """A named suite; ``final_seeds`` (a count N → seeds 0…N−1, or explicit seeds) overrides its final seeds,
    ``horizon_scale`` multiplies every task's step budget (:meth:`Suite.with_horizon_scale`) and ``optimizers``
    (names of :mod:`~tf_symbolic_l2o.benchmark.optimizers`) replaces its optimizers."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; use one of {', '.join(SUITES)}")
    suite = SUITES[name]()
    if final_seeds is not None:
        if isinstance(final_seeds, int):
            if final_seeds <= 0:
                raise ValueError(f"the number of final seeds must be positive, got {final_seeds}")
            final_seeds = range(final_seeds)
        suite = suite.with_final_seeds(final_seeds)
    if optimizers is not None:
        grids = {**DEFAULT_LR_GRIDS, **suite.lr_grids}  # a tuned optimizer the suite lacked gets the default grid
        suite = dataclasses.replace(suite, optimizers=tuple(optimizers), lr_grids=grids)
    return suite.with_horizon_scale(horizon_scale)
