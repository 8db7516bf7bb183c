"""Distill a behaviour dataset into a symbolic rule: split, standardise, symbolic regression, fold back, select.

:func:`distill` runs the whole stage 3 of the pipeline on ``(X, y, manifest)`` (what
:func:`tf_symbolic_l2o.record.load_behaviour` returns):

1. **split** the rows into train and test with a seeded shuffle (``test_fraction``; ``max_train_rows`` caps the
   training rows);
   with ``odd=True`` (the default) the training rows are **symmetrised**: every row ``(x, y)`` is joined by
   ``(P·x, −y)``, where ``P`` negates the odd columns (every feature but ``t`` and ``s``, at every lag);
2. **standardise** X and y with the training rows' mean and std (:class:`.Standardizer`); with ``odd=True`` the
   odd columns and y are scaled but not centred (their mean is zero on symmetrised rows), so standardising keeps
   the parity of every variable and adds no intercept;
3. run the **backend** (:mod:`.backends`; gplearn by default) on the standardised training rows; it returns
   candidates (its best program and a Pareto front);
4. with ``odd=True``, every candidate ``h`` that is not already odd (checked numerically on the training rows)
   is replaced by its **odd part** ``½·(h(x) − h(P·x))``: the rule then gives a zero step from a zero gradient
   history and the negated steps for the negated gradient sequence *by construction*, whatever the backend found
   (:func:`odd_part`). **fold** the standardisation back into every candidate, so each one becomes a
   :class:`~tf_symbolic_l2o.rules.Rule` over the raw dataset columns. With ``simplify=True`` (default) redundant constant structure is removed
   (:func:`.simplify`: constant sub-trees evaluated, nested constant factors and offsets merged, ``neg`` absorbed;
   the value changes by rounding only) — in standardised space before the fold, and again after it (there
   without distributing, so the ``(x − μ)·(1/σ)`` form that float32 evaluates well is kept);
5. **score** every candidate on the raw train and test rows (sklearn ``r2_score`` and MSE, the rule evaluated
   with its own NumPy implementation) and keep the **Pareto front** of complexity vs test R²;
6. **select**: the *simplest* front member whose test R² is within ``selection_tolerance`` (0.005) of the best
   test R². A rule that is 0.001 worse but half the size is the better rule to read, to meta-tune and to run; use
   ``selection_tolerance=0`` for "highest test R², ties → lower complexity". (As in the paper, the held-out rows
   both select and score the rule, so with many candidates the reported test R² is slightly optimistic);
7. optionally **refit** the chosen rule's constants by Adam on the standardised training rows
   (:func:`.refit_constants`, never worse on the training rows) and fold again (with ``odd=True`` the backend's
   expression is refitted on the symmetrised rows and projected again);
8. with ``check=True`` (default) the chosen rule must pass :func:`~tf_symbolic_l2o.invariants.check_invariants`
   (rest, sign symmetry, descent on the sanity quadratics): the simplest front member within the tolerance that
   passes is chosen, and :class:`UnsoundRuleError` is raised when none does. ``odd=False, check=False`` is the
   explicit opt-out (``tfl2o distill --unconstrained``) that fits and writes whatever the search finds.

The report also states the teacher's own soundness (:func:`teacher_symmetry`): its mean output and, when the
recorder measured it, its output at rest — a bias that the rule does not copy.

Complexity is the number of nodes of the (simplified) expression in standardised space, so it does not count the
nodes the fold adds (the folded rule's own size is ``complexity_rule`` in the metadata).

Each step is one private function below, and :func:`distill` calls them in order. :func:`distill_file` is the
one-call version used by the CLI: it loads a dataset, distills it and writes the files of
:func:`~tf_symbolic_l2o.distill.report.write_distill_report`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tf_symbolic_l2o.distill.backends import get_backend
from tf_symbolic_l2o.distill.base import Candidate, SRBackend, pareto_indices
from tf_symbolic_l2o.distill.refit import refit_constants as _refit
from tf_symbolic_l2o.distill.report import write_distill_report
from tf_symbolic_l2o.distill.result import CandidateResult, DistillResult
from tf_symbolic_l2o.distill.simplify import simplify as _simplify
from tf_symbolic_l2o.distill.standardize import Standardizer, check_matrix, check_vector
from tf_symbolic_l2o.distill.symmetry import is_odd, odd_part, parity_vector, teacher_symmetry
from tf_symbolic_l2o.invariants import InvariantReport, check_invariants
from tf_symbolic_l2o.rules import Const, Node, Rule, size, to_infix

__all__ = ["SELECTION_TOLERANCE", "UnsoundRuleError", "distill", "distill_file"]

SELECTION_TOLERANCE = 0.005
"""Default: pick the simplest Pareto rule within this much test R² of the best."""


class UnsoundRuleError(ValueError):
    """No candidate rule passed the invariant checks (rest, sign symmetry, descent)."""


def distill(X, y, manifest: Mapping, backend: str | SRBackend = "gplearn", test_fraction: float = 0.2,
            seed: int = 0, max_train_rows: int | None = None, refit_constants: bool = False, *,
            selection_tolerance: float = SELECTION_TOLERANCE, simplify: bool = True,
            refit_options: Mapping | None = None, dataset_path: str | os.PathLike | None = None,
            odd: bool = True, check: bool = True, **backend_kwargs) -> DistillResult:
    """Distill ``y ≈ f(X)`` into a :class:`Rule` (see the module docstring for the steps).

    Args:
        X: ``[N, C]`` inputs in the manifest's column order; y: ``[N]`` raw outputs.
        manifest: the dataset manifest (``columns``, ``features``, ``memlen``, ``source.output_scale``, …).
        backend: ``"gplearn"`` (default), ``"operon"`` or an :class:`SRBackend`; ``backend_kwargs`` configure it.
        test_fraction: held-out fraction in (0, 1) for the test R².
        seed: seeds the split and the backend.
        max_train_rows: use at most this many training rows (``None``: all).
        refit_constants: refit the chosen rule's constants by gradient descent (the second phase of distillation,
            :func:`.refit_constants`).
        selection_tolerance: choose the simplest Pareto rule within this test R² of the best.
        simplify: remove redundant constant structure (:func:`.simplify`; value unchanged up to rounding).
        refit_options: keyword arguments of :func:`.refit_constants`.
        dataset_path: recorded in the metadata.
        odd: search among rules that are odd in the gradient (symmetrised rows, no intercept, odd-part
            projection; see the module docstring). ``False`` fits the raw rows as they are.
        check: choose only a rule that passes the invariant checks; raise :class:`UnsoundRuleError` if none does.

    Raises:
        ValueError: unknown backend, NaN/inf in X or y, constant y, shapes that do not match the manifest, too
            few rows.
    """
    opts = _Options(seed, test_fraction, max_train_rows, refit_constants, refit_options, selection_tolerance,
                    simplify, odd, check)
    watch = _Stopwatch()
    sr = get_backend(backend, **backend_kwargs)
    X, y, info, n_test = _check_inputs(X, y, manifest, opts)
    split = _split(X, y, info, n_test, opts)
    watch.lap("split")
    std, Xs_fit, ys_fit = _standardise(split, info["columns"], odd)
    watch.lap("standardize")
    raw_candidates = _search(sr, Xs_fit, ys_fit, info["columns"], seed)
    watch.lap("backend")
    builder = _CandidateBuilder(std, info, split, Xs_fit, opts)
    candidates = _evaluate_candidates(raw_candidates, builder)
    watch.lap("evaluate")
    checks = _InvariantChecks()
    ci = _select(candidates, float(selection_tolerance), checks if check else None)
    refit = None
    if refit_constants:
        candidates, ci, refit = _refit_chosen(candidates, ci, builder, Xs_fit, ys_fit, opts,
                                              checks if check else None)
    watch.lap("refit")
    invariants = checks.report(candidates, ci)
    watch.lap("invariants")
    return _result(candidates, ci, sr, opts, split, std, watch.timings(), invariants, refit,
                   _dataset_info(manifest, dataset_path, split.n_rows), teacher_symmetry(y, manifest))


def distill_file(dataset_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 backend: str | SRBackend = "gplearn", **kwargs: Any) -> DistillResult:
    """Load a behaviour dataset (:func:`~tf_symbolic_l2o.record.load_behaviour`), :func:`distill` it and, when
    ``out_dir`` is given, write the report there. ``kwargs`` go to :func:`distill`."""
    from tf_symbolic_l2o.record import load_behaviour

    X, y, manifest = load_behaviour(dataset_path)
    result = distill(X, y, manifest, backend=backend, dataset_path=Path(dataset_path).resolve(), **kwargs)
    if out_dir is not None:
        write_distill_report(result, out_dir)
    return result


# ------------------------------------------------------------------------------------ the phases of distill


@dataclasses.dataclass(frozen=True)
class _Options:
    """The settings of one :func:`distill` call, as given (each phase converts what it reads)."""

    seed: int
    test_fraction: float
    max_train_rows: int | None
    refit_constants: bool
    refit_options: Mapping | None
    selection_tolerance: float
    simplify: bool
    odd: bool
    check: bool

    def settings(self, sr: SRBackend, split: _Split, n_candidates: int) -> dict:
        """:attr:`DistillResult.settings`: the backend, these settings, the row counts and the candidates."""
        return {"backend": sr.name, "backend_settings": sr.settings(), "seed": int(self.seed),
                "test_fraction": float(self.test_fraction), "max_train_rows": self.max_train_rows,
                "refit_constants": bool(self.refit_constants), "refit_options": dict(self.refit_options or {}),
                "selection": "simplest Pareto rule within selection_tolerance of the best test R2",
                "selection_tolerance": float(self.selection_tolerance), "simplify": bool(self.simplify),
                "n_rows": int(split.n_rows), "n_train": int(split.n_train), "n_test": int(split.n_test),
                "n_candidates": n_candidates, "odd": bool(self.odd), "check": bool(self.check)}


class _Stopwatch:
    """Seconds per phase (``<phase>_s``, each since the end of the previous one) and in total (``total_s``)."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[f"{phase}_s"] = now - self.last
        self.last = now

    def timings(self) -> dict[str, float]:
        return {**self.laps, "total_s": self.last - self.start}


def _check_inputs(X, y, manifest: Mapping, opts: _Options) -> tuple[np.ndarray, np.ndarray, dict, int]:
    """``(X, y, info, n_test)``: X and y as finite float64 arrays, what the manifest says of the columns
    (:func:`_check_manifest`) and the number of test rows; a one-line ValueError for anything :func:`distill`
    cannot use."""
    X = check_matrix(X, "X")
    y = check_vector(y, "y")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    info = _check_manifest(manifest, X.shape[1])
    if y.size and float(np.ptp(y)) == 0.0:
        raise ValueError(f"target y is constant (every row is {y[0]:g}): there is nothing to distill; "
                         f"check that the recorded optimizer actually moved")
    if not 0.0 < float(opts.test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {opts.test_fraction}")
    if not 0.0 <= float(opts.selection_tolerance) < 1.0:
        raise ValueError(f"selection_tolerance must be in [0, 1), got {opts.selection_tolerance}")
    n = X.shape[0]
    n_test = int(round(n * float(opts.test_fraction)))
    if n_test < 2 or n - n_test < 2:
        raise ValueError(f"{n} rows are too few to split into train and test (test_fraction {opts.test_fraction})")
    if opts.max_train_rows is not None and int(opts.max_train_rows) < 2:
        raise ValueError(f"max_train_rows must be >= 2 or None, got {opts.max_train_rows}")
    return X, y, info, n_test


def _check_manifest(manifest: Mapping, n_columns: int) -> dict:
    """The manifest's ``features``, ``memlen``, ``output_scale`` and ``columns``, checked against each other and
    against the ``n_columns`` of X."""
    if not isinstance(manifest, Mapping):
        raise ValueError(f"manifest must be a dict, got {type(manifest).__name__}")
    for key in ("columns", "features", "memlen"):
        if key not in manifest:
            raise ValueError(f"manifest has no {key!r}; use a dataset written by `tfl2o record`")
    columns = manifest["columns"]
    if not isinstance(columns, list) or len(columns) != n_columns:
        raise ValueError(f"X has {n_columns} column(s), the manifest lists "
                         f"{len(columns) if isinstance(columns, list) else '?'}")
    source = manifest.get("source") or {}
    scale = source.get("output_scale", 0.01) if isinstance(source, Mapping) else 0.01
    probe = Rule(Const(0.0), features=manifest["features"], memlen=manifest["memlen"], output_scale=scale)
    if list(columns) != probe.inputs:
        raise ValueError(f"manifest columns {columns} do not match the feature set {probe.features['names']!r} "
                         f"with memlen {probe.memlen} (expected {probe.inputs})")
    return {"features": probe.features, "memlen": probe.memlen, "output_scale": probe.output_scale,
            "columns": list(columns)}


@dataclasses.dataclass(frozen=True)
class _Split:
    """The rows of one distillation.

    Attributes:
        X_tr, y_tr, X_te, y_te: the raw training and test rows (the candidates are scored on them).
        X_fit, y_fit: the rows the backend fits: the training rows, symmetrised with ``odd=True``.
        parity: per column, −1 for an odd feature and +1 for an even one.
        n_rows: rows of the whole dataset.
    """

    X_tr: np.ndarray
    y_tr: np.ndarray
    X_te: np.ndarray
    y_te: np.ndarray
    X_fit: np.ndarray
    y_fit: np.ndarray
    parity: np.ndarray
    n_rows: int

    @property
    def n_train(self) -> int:
        return len(self.y_tr)

    @property
    def n_test(self) -> int:
        return len(self.y_te)


def _split(X: np.ndarray, y: np.ndarray, info: Mapping, n_test: int, opts: _Options) -> _Split:
    """Step 1: a seeded shuffle gives ``n_test`` test rows and the training rows (at most ``max_train_rows``);
    with ``odd=True`` every training row ``(x, y)`` is joined by its mirror ``(P·x, −y)`` in the fitting rows."""
    perm = np.random.default_rng([int(opts.seed), 2022]).permutation(X.shape[0])
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    if opts.max_train_rows is not None:
        train_idx = train_idx[:int(opts.max_train_rows)]
    X_tr, y_tr, X_te, y_te = X[train_idx], y[train_idx], X[test_idx], y[test_idx]
    parity = parity_vector(info["features"], info["memlen"])
    X_fit, y_fit = X_tr, y_tr
    if opts.odd:
        X_fit, y_fit = np.concatenate([X_tr, X_tr * parity]), np.concatenate([y_tr, -y_tr])
    return _Split(X_tr, y_tr, X_te, y_te, X_fit, y_fit, parity, n_rows=X.shape[0])


def _standardise(split: _Split, columns: Sequence[str], odd: bool) -> tuple[Standardizer, np.ndarray, np.ndarray]:
    """Step 2: the standardisation fitted on the fitting rows and those rows standardised; with ``odd=True`` the odd
    columns and y are scaled but not centred."""
    std = Standardizer.fit(split.X_fit, split.y_fit, columns)
    if odd:
        std = dataclasses.replace(std, x_mean=np.where(split.parity < 0, 0.0, std.x_mean), y_mean=0.0)
    return std, std.transform_X(split.X_fit), std.transform_y(split.y_fit)


def _search(sr: SRBackend, Xs: np.ndarray, ys: np.ndarray, columns: Sequence[str], seed: int) -> list[Candidate]:
    """Step 3: the backend's candidates on the standardised fitting rows; RuntimeError when it returns none."""
    raw_candidates: list[Candidate] = sr.fit(Xs, ys, columns, seed=int(seed))
    if not raw_candidates:
        raise RuntimeError(f"the {sr.name} backend returned no candidate")
    return raw_candidates


class _CandidateBuilder:
    """Turns an expression over standardised variables into a scored :class:`CandidateResult` (step 4–5): the
    odd-part projection (:meth:`project`), the fold back into a rule over the raw columns (:meth:`rule`) and the
    scores on the raw training and test rows (:meth:`candidate`).

    ``inner_of`` maps each projected expression to the backend's expression it came from, so that a refit can
    refit ``h`` of ``½·(h(x) − h(P·x))`` and project again.
    """

    def __init__(self, std: Standardizer, info: Mapping, split: _Split, Xs_fit: np.ndarray, opts: _Options):
        self.std, self.info, self.split = std, info, split
        self.simplify, self.odd = opts.simplify, opts.odd
        self.check_rows = Xs_fit[np.random.default_rng([int(opts.seed), 7]).permutation(len(Xs_fit))[:512]]
        self.inner_of: dict[Node, Node] = {}

    def project(self, node_std: Node) -> Node:
        """``node_std`` itself when it is odd on :attr:`check_rows` (or ``odd=False``), else its odd part."""
        columns, parity = self.info["columns"], self.split.parity
        if not self.odd or is_odd(node_std, columns, parity, self.check_rows):
            return node_std
        node_odd = odd_part(node_std, columns, parity)
        node_odd = _simplify(node_odd) if self.simplify else node_odd
        self.inner_of.setdefault(node_odd, node_std)
        return node_odd

    def rule(self, node_std: Node) -> Rule:
        """The rule over the raw columns: the standardisation folded into ``node_std`` (then simplified)."""
        node = self.std.fold(node_std, merge_affine=self.simplify)
        if self.simplify:
            node = _simplify(node)
        return Rule(node, features=self.info["features"], memlen=self.info["memlen"],
                    output_scale=self.info["output_scale"], metadata={})

    def candidate(self, node_std: Node, origin: str) -> CandidateResult:
        """``node_std`` folded into a rule and scored on the raw training and test rows."""
        rule = self.rule(node_std)
        r2_tr, mse_tr = _score(rule, self.split.X_tr, self.split.y_tr)
        r2_te, mse_te = _score(rule, self.split.X_te, self.split.y_te)
        return CandidateResult(rule, node_std, size(node_std), r2_tr, r2_te, mse_tr, mse_te, origin)


def _score(rule: Rule, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(R², MSE)`` of the rule's NumPy implementation on ``(X, y)``; NaNs when a prediction is not finite or
    beyond 1e150."""
    from sklearn.metrics import mean_squared_error, r2_score

    with np.errstate(all="ignore"):
        pred = rule.numpy_fn()(X)
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != y.shape or not np.all(np.isfinite(pred)) or np.any(np.abs(pred) > 1e150):
        return float("nan"), float("nan")
    return float(r2_score(y, pred)), float(mean_squared_error(y, pred))


def _evaluate_candidates(raw_candidates: Sequence[Candidate], builder: _CandidateBuilder) -> list[CandidateResult]:
    """Steps 4–5: every backend candidate simplified in standardised space (with ``simplify=True``), projected,
    folded and scored, once per distinct expression, in the backend's order, with the Pareto front marked;
    RuntimeError when no candidate is finite on the data."""
    candidates: list[CandidateResult] = []
    seen = set()
    for cand in raw_candidates:
        node_std = cand.node
        if builder.simplify:
            node_std = _simplify(node_std, distribute=True, drop_tolerance=1e-12)
        node_std = builder.project(node_std)
        key = to_infix(node_std)
        if key in seen:
            continue
        seen.add(key)
        candidates.append(builder.candidate(node_std, cand.origin))
    candidates = _mark_pareto(candidates)
    if not any(c.pareto for c in candidates):
        raise RuntimeError("no candidate rule is finite on the data; try another seed or a larger budget")
    return candidates


def _mark_pareto(candidates: Sequence[CandidateResult]) -> list[CandidateResult]:
    """The candidates, each with ``pareto`` set when it is on the complexity–test-R² Pareto front."""
    idx = set(pareto_indices([c.complexity for c in candidates], [c.r2_test for c in candidates]))
    return [dataclasses.replace(c, pareto=i in idx) for i, c in enumerate(candidates)]


class _InvariantChecks:
    """:func:`~tf_symbolic_l2o.invariants.check_invariants` of candidate rules by index, each run at most once."""

    def __init__(self):
        self.reports: dict[int, InvariantReport] = {}

    def report(self, candidates: Sequence[CandidateResult], i: int) -> InvariantReport:
        if i not in self.reports:
            self.reports[i] = check_invariants(candidates[i].rule)
        return self.reports[i]

    def passes(self, candidates: Sequence[CandidateResult], i: int) -> bool:
        return self.report(candidates, i).passed


def _select(candidates: Sequence[CandidateResult], tolerance: float, checks: _InvariantChecks | None = None,
            max_checks: int = 12) -> int:
    """Step 6 (and 8): index of the simplest Pareto candidate within ``tolerance`` test R² of the best (ties:
    higher R²).

    With ``checks``, only candidates that pass the invariant checks qualify: the Pareto front is searched in that
    order first, then every finite candidate by test R² (at most ``max_checks`` candidates are checked);
    :class:`UnsoundRuleError` if none qualifies.
    """
    front = [i for i, c in enumerate(candidates) if c.pareto]
    best = max(candidates[i].r2_test for i in front)
    ok = sorted((i for i in front if candidates[i].r2_test >= best - tolerance),
                key=lambda i: (candidates[i].complexity, -candidates[i].r2_test, i))
    if checks is None:
        return ok[0]
    rest = sorted((i for i, c in enumerate(candidates) if i not in ok and math.isfinite(c.r2_test)),
                  key=lambda i: (-candidates[i].r2_test, candidates[i].complexity, i))
    for i in (ok + rest)[:max_checks]:
        if checks.passes(candidates, i):
            return i
    raise UnsoundRuleError(f"none of the {min(len(ok) + len(rest), max_checks)} best candidate rules passes the "
                           f"invariant checks (rest, sign symmetry, descent); distill with a larger budget or "
                           f"another seed, or pass --unconstrained to write an unchecked rule")


@dataclasses.dataclass(frozen=True)
class _Refit:
    """What the refit of step 7 leaves for the result: the MSE history, the chosen candidate before it, and its
    entry of the rule's metadata."""

    history: list
    before: CandidateResult
    metadata: dict


def _refit_chosen(candidates: list[CandidateResult], ci: int, builder: _CandidateBuilder, Xs_fit: np.ndarray,
                  ys_fit: np.ndarray, opts: _Options,
                  checks: _InvariantChecks | None) -> tuple[list[CandidateResult], int, _Refit]:
    """Step 7: refit the constants of the chosen candidate's backend expression on the standardised fitting rows
    and project again. When that changes the expression, the refitted candidate is appended (Pareto front marked
    again) and chosen, provided it passes ``checks``. Returns the candidates, the chosen index and the refit."""
    before = candidates[ci]
    inner = builder.inner_of.get(before.standardized, before.standardized)
    info = builder.info
    std_rule = Rule(inner, features=info["features"], memlen=info["memlen"], output_scale=info["output_scale"])
    refitted, history = _refit(std_rule, Xs_fit, ys_fit, **dict(opts.refit_options or {}))
    node = builder.project(refitted.expression)
    if node != before.standardized:  # unchanged (no constants, no progress): keep it
        candidates = _mark_pareto([*candidates, builder.candidate(node, "refit")])
        if checks is None or checks.passes(candidates, len(candidates) - 1):
            ci = len(candidates) - 1
    metadata = {**refitted.metadata.get("refit", {}), "mse_space": "standardised y",
                "before": before.metrics(), "after": candidates[ci].metrics()}
    return candidates, ci, _Refit(history, before, metadata)


def _dataset_info(manifest: Mapping, dataset_path, n_rows: int) -> dict:
    """:attr:`DistillResult.dataset`: the path, SHA-256, source, task and columns of the dataset and its rows."""
    source = manifest.get("source") if isinstance(manifest.get("source"), Mapping) else {}
    return {"path": None if dataset_path is None else str(dataset_path), "sha256": manifest.get("sha256"),
            "source_kind": source.get("kind"), "source": dict(source), "task": manifest.get("task"),
            "columns": list(manifest.get("columns", [])), "rows": int(n_rows)}


def _metadata(sr: SRBackend, settings: Mapping, chosen: CandidateResult, dataset: Mapping, timings: Mapping,
              invariants: InvariantReport, teacher: dict, refit: _Refit | None) -> dict:
    """The chosen rule's ``metadata``: backend, seed, scores, complexities, split, selection, dataset, time,
    invariant checks, the teacher's symmetry and the refit (if any)."""
    metadata = {
        "source": "distill", "backend": sr.name, "backend_settings": sr.settings(), "seed": settings["seed"],
        **chosen.metrics(), "complexity_rule": chosen.rule.complexity,
        "standardized_infix": to_infix(chosen.standardized), "n_train": settings["n_train"],
        "n_test": settings["n_test"], "test_fraction": settings["test_fraction"],
        "selection_tolerance": settings["selection_tolerance"],
        "dataset": {"path": dataset["path"], "sha256": dataset["sha256"], "source_kind": dataset["source_kind"]},
        "time_s": timings["total_s"], "odd": settings["odd"],
        "invariants": invariants.to_dict(),
        "teacher": teacher,
    }
    if refit is not None:
        metadata["refit"] = refit.metadata
    return metadata


def _result(candidates: list[CandidateResult], ci: int, sr: SRBackend, opts: _Options, split: _Split,
            std: Standardizer, timings: dict, invariants: InvariantReport, refit: _Refit | None, dataset: dict,
            teacher: dict) -> DistillResult:
    """The :class:`DistillResult`: the chosen rule with its metadata (also in ``candidates``), the Pareto front by
    increasing complexity, the settings, timings, dataset and refit."""
    settings = opts.settings(sr, split, len(candidates))
    chosen = candidates[ci]
    rule = chosen.rule.replace(metadata=_metadata(sr, settings, chosen, dataset, timings, invariants, teacher,
                                                  refit))
    chosen = dataclasses.replace(chosen, rule=rule)
    candidates = list(candidates)
    candidates[ci] = chosen
    front = sorted((c for c in candidates if c.pareto), key=lambda c: (c.complexity, -c.r2_test))
    return DistillResult(rule=rule, chosen=chosen, candidates=candidates, pareto=front, standardizer=std,
                         settings=settings, timings=timings, dataset=dataset,
                         refit_history=None if refit is None else refit.history,
                         before_refit=None if refit is None else refit.before)
