"""Symbolic-regression backends: one interface, gplearn by default, pyoperon as an optional extra.

A backend fits ``y ≈ f(X)`` on data that is **already standardised** (:mod:`.standardize`) and returns
candidates: expression trees (:mod:`tf_symbolic_l2o.rules`) over the given feature names, with their complexity
(number of nodes) and training loss, both in standardised space::

    backend.fit(X, y, feature_names, seed) -> list[Candidate]

Backends never produce text that is evaluated: gplearn programs are walked with
:func:`~tf_symbolic_l2o.rules.from_gplearn`; pyoperon's infix strings are read by the whitelisted parser
:func:`~tf_symbolic_l2o.rules.parse_infix` (never ``sympify``/``eval``).

**gplearn** (:class:`GplearnBackend`, the default). The function set is built from this package's own operator
implementations with :func:`~tf_symbolic_l2o.rules.gplearn_function_set` (``tanh``, ``sinh``, ``asinh``,
``square``, ``cube`` as custom functions; ``add sub mul div neg`` are gplearn's built-ins, whose protected
semantics equal ours), so a program means exactly what its imported tree means. ``n_jobs=1``: gplearn's process
parallelism costs more than it saves on runs of this size. Candidates are the run's best program plus the Pareto
front (length vs raw training MSE) of the final generation, which gives the caller a choice of simpler rules.

Default budget: population 2000 × 20 generations, every training row (``max_samples=1.0``) up to ``max_rows``
(50 000; larger training sets are subsampled, seeded), and **linear scaling** on (the fitness is the MSE of the
least-squares ``a + b·program``; the candidates are ``a + b·program``): gplearn never tunes its constants, so
without it a rule that is right up to scale loses to a linear one and evolution stalls there. The measurements
behind these defaults are in benchmarks/README.md ("Design measurements behind the code").

**pyoperon** (:class:`OperonBackend`, ``pip install tf-symbolic-l2o[operon]``). Operon fits real-valued
constants with Levenberg–Marquardt and adds a linear scale and offset. It is imported only when a fit starts.
Defaults: NSGA-II on (R², length), 50 000 evaluations, ``max_length=25``, 5 LM iterations, one thread, a seeded
10 000-row subsample of the training rows. The model strings (``get_model_string``; operon names the columns X1,
X2, … from 1) are parsed with operon's operator names mapped to ours:

===========================  ===================================================================================
operon (printed as)          tree
===========================  ===================================================================================
``+ - * /``                  ``add sub mul div`` (our ``div`` is protected: it differs from operon's plain
                             division only where |denominator| ≤ 0.001)
``a ^ n`` (n = 2, 3)         ``square``, ``cube``; other even integers ``pow(abs(a), n)``
``a ^ b``                    signed ``pow`` (the real power wherever operon's is defined, a > 0)
``sqrt``, ``log``            ``sqrt`` (√|x|), ``log`` (log|x|): equal to operon's where operon's is finite
                             (``sqrtabs``/``logabs`` print as ``sqrt(abs(x))``/``log(abs(x))``; ``aq`` as
                             ``x / (sqrt(1 + y ^ 2))``, a denominator ≥ 1, so exact)
``max``, ``min``, ``abs``,   the operators of the same name
``exp tanh sinh sin cos tan``
===========================  ===================================================================================

``allowed_symbols`` is therefore restricted to operon symbols with a counterpart
(:data:`OPERON_SUPPORTED_SYMBOLS`); ``cbrt``, ``acos``, ``cosh``, ``floor``, … are refused up front.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tf_symbolic_l2o.rules import Const, Node, Op, Var, from_gplearn, gplearn_function_set, parse_infix, size, \
    to_infix
from tf_symbolic_l2o.distill.base import Candidate, SRBackend, check_fit_inputs, pareto_indices, subsample
from tf_symbolic_l2o.distill.sparse import SparseBackend
from tf_symbolic_l2o.rules.importers import real_power

__all__ = ["GplearnBackend", "OperonBackend", "get_backend", "available_backends", "parse_operon_model",
           "OPERON_SUPPORTED_SYMBOLS", "OPERON_INSTALL_HINT"]

OPERON_INSTALL_HINT = "pip install tf-symbolic-l2o[operon]"
"""How to get the optional pyoperon backend."""


def _affine_fit(pred: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares ``a, b`` of ``y ≈ a + b·pred`` (weights ``w``); ``b = 0`` when ``pred`` is constant or not
    finite."""
    pred = np.asarray(pred, dtype=np.float64)
    if w is None:
        w = np.ones_like(y)
    total = float(np.sum(w))
    if total <= 0:
        return 0.0, 0.0
    with np.errstate(all="ignore"):
        my = float(np.sum(w * y)) / total
        if not np.all(np.isfinite(pred)):
            return my, 0.0
        mp = float(np.sum(w * pred)) / total
        dp = pred - mp
        var = float(np.sum(w * dp * dp)) / total
        if not (math.isfinite(var) and var > 1e-300):
            return my, 0.0
        b = float(np.sum(w * dp * (y - my))) / total / var
    if not math.isfinite(b):
        return my, 0.0
    return my - b * mp, b


def _scaled_mse(y, y_pred, w):
    """gplearn fitness with linear scaling (Keijzer 2003): the MSE of the best ``a + b·program``."""
    a, b = _affine_fit(y_pred, y, w)
    with np.errstate(all="ignore"):
        err = np.average((a + b * y_pred - y) ** 2, weights=w) if b != 0.0 else np.average((a - y) ** 2,
                                                                                           weights=w)
    return float(err) if math.isfinite(err) else float(np.finfo(np.float64).max)


class GplearnBackend(SRBackend):
    """gplearn's ``SymbolicRegressor`` with this package's operators (see the module docstring).

    Args:
        population_size, generations, tournament_size, parsimony_coefficient, const_range, init_depth,
        max_samples, n_jobs, metric, p_crossover, p_subtree_mutation, p_hoist_mutation, p_point_mutation,
        p_point_replace, stopping_criteria, init_method, verbose: passed to gplearn.
        function_set: operator names (:data:`~tf_symbolic_l2o.rules.OPS`).
        max_rows: fit on at most this many training rows (seeded subsample; ``None``: all rows). The default
            50 000 is sized so that the default budget fits in two minutes on 2 CPU cores (benchmarks/README.md).
        pareto: also return the Pareto front of the final generation (else only the best program).
        linear_scaling: evolve with the MSE of ``a + b·program`` (least-squares ``a, b``, Keijzer 2003) instead of
            the MSE of the program, and return ``a + b·program``. gplearn draws constants from
            ``const_range`` and never tunes them, so without scaling a rule that is right up to scale (e.g. a
            tanh with the wrong amplitude) scores worse than a linear one and evolution stalls there.
            ``metric`` must be ``"mse"`` then.
    """

    name = "gplearn"

    def __init__(self, population_size: int = 2000, generations: int = 20, tournament_size: int = 20,
                 parsimony_coefficient: float = 0.001,
                 function_set: Sequence[str] = ("add", "sub", "mul", "div", "tanh", "sinh", "asinh", "square",
                                                "cube", "neg"),
                 const_range: tuple[float, float] | None = (-1.0, 1.0), init_depth: tuple[int, int] = (2, 5),
                 max_samples: float = 1.0, n_jobs: int = 1, metric: str = "mse", p_crossover: float = 0.7,
                 p_subtree_mutation: float = 0.1, p_hoist_mutation: float = 0.05, p_point_mutation: float = 0.1,
                 p_point_replace: float = 0.05, stopping_criteria: float = 0.0,
                 init_method: str = "half and half", max_rows: int | None = 50_000, pareto: bool = True,
                 linear_scaling: bool = True, verbose: int = 0):
        self.population_size = int(population_size)
        self.generations = int(generations)
        self.tournament_size = int(tournament_size)
        self.parsimony_coefficient = parsimony_coefficient
        self.function_set = tuple(function_set)
        self.const_range = None if const_range is None else tuple(float(c) for c in const_range)
        self.init_depth = tuple(int(d) for d in init_depth)
        self.max_samples = float(max_samples)
        self.n_jobs = int(n_jobs)
        self.metric = metric
        self.p_crossover = float(p_crossover)
        self.p_subtree_mutation = float(p_subtree_mutation)
        self.p_hoist_mutation = float(p_hoist_mutation)
        self.p_point_mutation = float(p_point_mutation)
        self.p_point_replace = float(p_point_replace)
        self.stopping_criteria = float(stopping_criteria)
        self.init_method = init_method
        self.max_rows = None if max_rows is None else int(max_rows)
        self.pareto = bool(pareto)
        self.linear_scaling = bool(linear_scaling)
        self.verbose = int(verbose)
        if self.linear_scaling and self.metric != "mse":
            raise ValueError(f"linear_scaling needs metric='mse', got {metric!r}")
        if self.population_size < 2 or self.generations < 1:
            raise ValueError("population_size must be >= 2 and generations >= 1")
        if self.max_rows is not None and self.max_rows < 2:
            raise ValueError(f"max_rows must be >= 2 or None, got {max_rows}")
        if not self.function_set:
            raise ValueError("function_set is empty")
        gplearn_function_set(self.function_set)  # validates the names now, not after a long fit

    def settings(self) -> dict:
        return {"population_size": self.population_size, "generations": self.generations,
                "tournament_size": self.tournament_size, "parsimony_coefficient": self.parsimony_coefficient,
                "function_set": list(self.function_set),
                "const_range": None if self.const_range is None else list(self.const_range),
                "init_depth": list(self.init_depth), "max_samples": self.max_samples, "n_jobs": self.n_jobs,
                "metric": self.metric, "p_crossover": self.p_crossover,
                "p_subtree_mutation": self.p_subtree_mutation, "p_hoist_mutation": self.p_hoist_mutation,
                "p_point_mutation": self.p_point_mutation, "p_point_replace": self.p_point_replace,
                "stopping_criteria": self.stopping_criteria, "init_method": self.init_method,
                "max_rows": self.max_rows, "pareto": self.pareto, "linear_scaling": self.linear_scaling}

    def make_estimator(self, seed: int):
        from gplearn.fitness import make_fitness
        from gplearn.genetic import SymbolicRegressor

        wrap = self.n_jobs != 1  # process workers must pickle the custom functions
        metric = make_fitness(function=_scaled_mse, greater_is_better=False, wrap=wrap) \
            if self.linear_scaling else self.metric
        return SymbolicRegressor(
            population_size=self.population_size, generations=self.generations,
            tournament_size=self.tournament_size, stopping_criteria=self.stopping_criteria,
            const_range=self.const_range, init_depth=self.init_depth, init_method=self.init_method,
            function_set=gplearn_function_set(self.function_set, wrap=wrap), metric=metric,
            parsimony_coefficient=self.parsimony_coefficient, p_crossover=self.p_crossover,
            p_subtree_mutation=self.p_subtree_mutation, p_hoist_mutation=self.p_hoist_mutation,
            p_point_mutation=self.p_point_mutation, p_point_replace=self.p_point_replace,
            max_samples=self.max_samples, n_jobs=self.n_jobs, verbose=self.verbose, random_state=int(seed),
            low_memory=True)

    def fit(self, X, y, feature_names: Sequence[str], seed: int = 0) -> list[Candidate]:
        X, y, names = check_fit_inputs(X, y, feature_names)
        X, y = subsample(X, y, self.max_rows, seed)
        est = self.make_estimator(seed)
        est.fit(X, y)

        def candidate(program, origin):
            node = from_gplearn(program, names)
            if self.linear_scaling:
                a, b = _affine_fit(program.execute(X), y)
                node = Op("add", (Const(a), Op("mul", (Const(b), node)))) if b != 0.0 else Const(a)
            return Candidate(node, size(node), float(program.raw_fitness_), origin)

        best = est._program
        out = [candidate(best, "best")]
        if self.pareto:
            last = [p for p in (est._programs[-1] or []) if p is not None]
            front = pareto_indices([p.length_ for p in last], [p.raw_fitness_ for p in last],
                                   higher_is_better=False)
            seen = {str(best)}
            for i in front:
                p = last[i]
                key = str(p)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    out.append(candidate(p, "pareto"))
                except ValueError:  # pragma: no cover - every function of our set has a counterpart
                    continue
        return out


# --------------------------------------------------------------------------------------------- pyoperon

OPERON_SUPPORTED_SYMBOLS = ("add", "sub", "mul", "div", "aq", "pow", "powabs", "abs", "exp", "log", "logabs",
                            "sin", "cos", "tan", "tanh", "sinh", "sqrt", "sqrtabs", "square", "fmin", "fmax",
                            "constant", "variable")
"""Operon symbols whose printed form has an exact counterpart among our operators."""

OPERON_FUNCTIONS: Mapping[str, str] = {
    "exp": "exp", "log": "log", "sqrt": "sqrt", "abs": "abs", "sin": "sin", "cos": "cos", "tan": "tan",
    "tanh": "tanh", "sinh": "sinh", "max": "max", "min": "min", "fmax": "max", "fmin": "min",
    "logabs": "log", "sqrtabs": "sqrt", "square": "square",
}
"""Function names in operon's infix output → operators."""


def parse_operon_model(text: str, feature_names: Sequence[str]) -> Node:
    """Parse an operon infix model string (variables ``X1``, ``X2``, … numbered from 1) into a tree.

    ``ValueError`` on anything outside the whitelisted grammar (unknown function, ``nan`` constant, …).
    """
    names = [Var(n).name for n in feature_names]
    mapping = {f"X{i + 1}": n for i, n in enumerate(names)}

    def rename(name: str) -> str:
        if name not in mapping:
            raise ValueError(f"unknown operon variable {name!r}; expected X1..X{len(names)}")
        return mapping[name]

    return parse_infix(text, functions=OPERON_FUNCTIONS, rename=rename, power=real_power)


class OperonBackend(SRBackend):
    """pyoperon's ``SymbolicRegressor`` (multi-objective: R² and length), read through :func:`parse_operon_model`.

    Args:
        allowed_symbols: operon symbols (comma-separated), a subset of :data:`OPERON_SUPPORTED_SYMBOLS`.
        population_size, generations, max_evaluations, max_length, max_depth, tournament_size,
        optimizer_iterations, objectives, n_threads, max_time: passed to pyoperon (``objectives`` with two
            entries runs NSGA-II and returns a whole front).
        max_rows: fit on at most this many training rows (seeded subsample).
        precision: decimals of the constants in the model strings (operon computes in float32).
        **extra: any other ``pyoperon.sklearn.SymbolicRegressor`` argument.
    """

    name = "operon"

    def __init__(self, allowed_symbols: str = "add,sub,mul,div,tanh,sinh,square,constant,variable",
                 population_size: int = 1000, generations: int = 1000, max_evaluations: int = 50_000,
                 max_length: int = 25, max_depth: int = 10, tournament_size: int = 5,
                 optimizer_iterations: int = 5, objectives: Sequence[str] = ("r2", "length"), n_threads: int = 1,
                 max_time: int | None = None, max_rows: int | None = 10_000, precision: int = 17, **extra):
        symbols = [s.strip() for s in str(allowed_symbols).split(",") if s.strip()]
        bad = [s for s in symbols if s not in OPERON_SUPPORTED_SYMBOLS]
        if bad:
            raise ValueError(f"operon symbol(s) {bad} have no counterpart among the rule operators; use "
                             f"{', '.join(OPERON_SUPPORTED_SYMBOLS)}")
        for needed in ("constant", "variable"):
            if needed not in symbols:
                symbols.append(needed)
        self.allowed_symbols = ",".join(symbols)
        self.population_size = int(population_size)
        self.generations = int(generations)
        self.max_evaluations = int(max_evaluations)
        self.max_length = int(max_length)
        self.max_depth = int(max_depth)
        self.tournament_size = int(tournament_size)
        self.optimizer_iterations = int(optimizer_iterations)
        self.objectives = tuple(objectives)
        self.n_threads = int(n_threads)
        self.max_time = None if max_time is None else int(max_time)
        self.max_rows = None if max_rows is None else int(max_rows)
        self.precision = int(precision)
        self.extra = dict(extra)

    def settings(self) -> dict:
        return {"allowed_symbols": self.allowed_symbols, "population_size": self.population_size,
                "generations": self.generations, "max_evaluations": self.max_evaluations,
                "max_length": self.max_length, "max_depth": self.max_depth,
                "tournament_size": self.tournament_size, "optimizer_iterations": self.optimizer_iterations,
                "objectives": list(self.objectives), "n_threads": self.n_threads, "max_time": self.max_time,
                "max_rows": self.max_rows, "precision": self.precision, **self.extra}

    @staticmethod
    def _import():
        try:
            from pyoperon.sklearn import SymbolicRegressor
        except ImportError as e:
            raise ImportError(f"the operon backend needs pyoperon, which is not installed: {OPERON_INSTALL_HINT} "
                              f"(or pip install pyoperon) [{e}]") from None
        return SymbolicRegressor

    def fit(self, X, y, feature_names: Sequence[str], seed: int = 0) -> list[Candidate]:
        SymbolicRegressor = self._import()
        X, y, names = check_fit_inputs(X, y, feature_names)
        X, y = subsample(X, y, self.max_rows, seed)
        kwargs = dict(allowed_symbols=self.allowed_symbols, population_size=self.population_size,
                      generations=self.generations, max_evaluations=self.max_evaluations,
                      max_length=self.max_length, max_depth=self.max_depth, tournament_size=self.tournament_size,
                      optimizer_iterations=self.optimizer_iterations, objectives=list(self.objectives),
                      n_threads=self.n_threads, random_state=int(seed), **self.extra)
        if self.max_time is not None:
            kwargs["max_time"] = self.max_time
        est = SymbolicRegressor(**kwargs)
        est.fit(X, y)
        out, seen = [], set()
        models = [("best", est.model_, float("nan"))]
        models += [("pareto", m["tree"], float(m.get("mean_squared_error", float("nan"))))
                   for m in getattr(est, "pareto_front_", [])]
        for origin, tree, loss in models:
            text = est.get_model_string(tree, self.precision)
            try:
                node = parse_operon_model(text, names)
            except ValueError:
                continue  # e.g. a nan constant: not a usable rule
            key = to_infix(node)
            if key in seen:
                continue
            seen.add(key)
            out.append(Candidate(node, size(node), loss, origin))
        if not out:
            raise RuntimeError("pyoperon returned no model that could be converted to a rule")
        return out


# --------------------------------------------------------------------------------------------- registry

# imported here, below the names it uses (Candidate, SRBackend, _check_fit_inputs, _subsample): no import cycle

_BACKENDS: dict[str, Callable[..., SRBackend]] = {"gplearn": GplearnBackend, "operon": OperonBackend,
                                                  "sparse": SparseBackend}


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str | SRBackend = "gplearn", **kwargs: Any) -> SRBackend:
    """Build the backend ``name`` (``"gplearn"``, the default, ``"operon"`` or ``"sparse"``) with ``kwargs``.

    An :class:`SRBackend` instance is returned as it is (``kwargs`` must then be empty).
    """
    if isinstance(name, SRBackend):
        if kwargs:
            raise ValueError("backend options cannot be given together with a backend instance")
        return name
    if not isinstance(name, str) or name.lower() not in _BACKENDS:
        raise ValueError(f"unknown symbolic-regression backend {name!r}; available: "
                         f"{', '.join(available_backends())}")
    name = name.lower()
    options = {n: set(inspect.signature(c.__init__).parameters) - {"self"} for n, c in _BACKENDS.items()}
    unknown = sorted(set(kwargs) - options[name])
    if unknown:
        owners = sorted({n for n, opts in options.items() for k in unknown if k in opts})
        where = f"an option of {' and '.join(owners)}" if owners else "no backend's option"
        raise ValueError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} {where}, not of the {name} "
                         f"backend (its options: {', '.join(sorted(options[name]))})")
    return _BACKENDS[name](**kwargs)
