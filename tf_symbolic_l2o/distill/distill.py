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

:func:`write_distill_report` writes ``rule.json``, ``report.json``, ``pareto.csv`` and ``pareto.png``;
:func:`distill_file` is the one-call version used by the CLI.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tf_symbolic_l2o.distill.backends import Candidate, SRBackend, get_backend, pareto_indices
from tf_symbolic_l2o.distill.refit import refit_constants as _refit
from tf_symbolic_l2o.distill.simplify import simplify as _simplify
from tf_symbolic_l2o.distill.standardize import Standardizer, _check_matrix, _check_vector
from tf_symbolic_l2o.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from tf_symbolic_l2o.rules import Const, Node, Op, Rule, size, to_infix

__all__ = ["CandidateResult", "DistillResult", "UnsoundRuleError", "distill", "distill_file",
           "write_distill_report", "odd_part", "parity_vector", "REPORT_FORMAT", "SELECTION_TOLERANCE"]

REPORT_FORMAT = "tfl2o-distill-report/1"
SELECTION_TOLERANCE = 0.005
"""Default: pick the simplest Pareto rule within this much test R² of the best."""


@dataclasses.dataclass(frozen=True)
class CandidateResult:
    """One candidate rule and its scores.

    Attributes:
        rule: the rule over the raw dataset columns.
        standardized: the expression the backend found, over standardised variables.
        complexity: nodes of ``standardized``.
        r2_train, r2_test, mse_train, mse_test: scores on the raw rows (NaN if the rule is not finite there).
        origin: ``"best"`` / ``"pareto"`` (backend) or ``"refit"``.
        pareto: on the complexity–test-R² Pareto front.
    """

    rule: Rule
    standardized: Node
    complexity: int
    r2_train: float
    r2_test: float
    mse_train: float
    mse_test: float
    origin: str = ""
    pareto: bool = False

    @property
    def infix(self) -> str:
        return self.rule.infix

    def metrics(self) -> dict:
        return {"r2_train": _num(self.r2_train), "r2_test": _num(self.r2_test), "mse_train": _num(self.mse_train),
                "mse_test": _num(self.mse_test), "complexity": self.complexity}


@dataclasses.dataclass
class DistillResult:
    """What :func:`distill` returns.

    Attributes:
        rule: the chosen rule (refitted if asked), with the scores and settings in ``rule.metadata``.
        chosen: its :class:`CandidateResult`.
        candidates: every candidate, in the backend's order (plus the refitted one, if any).
        pareto: the Pareto front (complexity vs test R²), by increasing complexity.
        standardizer: the standardisation fitted on the training rows.
        settings: backend name and settings, seed, split and selection settings.
        timings: seconds per phase and in total.
        dataset: path, SHA-256, source and task from the manifest.
        refit_history: the MSE history of the refit (standardised space), or ``None``.
        before_refit: the chosen candidate before the refit, or ``None``.
    """

    rule: Rule
    chosen: CandidateResult
    candidates: list
    pareto: list
    standardizer: Standardizer
    settings: dict
    timings: dict
    dataset: dict
    refit_history: list | None = None
    before_refit: CandidateResult | None = None

    @property
    def metrics(self) -> dict:
        return self.chosen.metrics()

    @property
    def r2_test(self) -> float:
        return self.chosen.r2_test

    def summary(self) -> str:
        m = self.chosen
        return (f"{self.rule}  [complexity {m.complexity}, R² train {m.r2_train:.4f}, test {m.r2_test:.4f}, "
                f"{self.timings.get('total_s', float('nan')):.1f} s]")


class UnsoundRuleError(ValueError):
    """No candidate rule passed the invariant checks (rest, sign symmetry, descent)."""


def parity_vector(features: Mapping, memlen: int) -> np.ndarray:
    """Per dataset column (lag-major), −1 for odd features and +1 for even ones (``t``, ``s``)."""
    from tf_symbolic_l2o.features import FeatureSet

    fs = FeatureSet(features["names"])
    return np.tile(np.asarray(fs.parity(), np.float64), int(memlen))


def odd_part(node: Node, columns: Sequence[str], parity: np.ndarray) -> Node:
    """``½·(h(x) − h(P·x))``: the odd part of ``h`` under the column parities ``parity`` (−1: the variable is
    negated)."""
    from tf_symbolic_l2o.rules import Var, substitute, variables

    flip = {c: Op("neg", (Var(c),)) for c, p in zip(columns, parity) if p < 0 and c in variables(node)}
    if not flip:  # only even variables: the odd part is zero
        return Const(0.0)
    return Op("mul", (Const(0.5), Op("sub", (node, substitute(node, flip)))))


def _is_odd(node: Node, columns: Sequence[str], parity: np.ndarray, X: np.ndarray) -> bool:
    """Whether ``h(P·x) = −h(x)`` (relative 1e-9) on the rows ``X`` and on the same rows with the odd columns
    zeroed (the rest condition)."""
    from tf_symbolic_l2o.rules import evaluate_numpy, variables

    used = variables(node)
    index = {c: i for i, c in enumerate(columns)}
    rest = X * (parity > 0)
    for rows in (X, rest):
        with np.errstate(all="ignore"):
            a = evaluate_numpy(node, {v: rows[:, index[v]] for v in used}, dtype=np.float64)
            b = evaluate_numpy(node, {v: parity[index[v]] * rows[:, index[v]] for v in used}, dtype=np.float64)
        a, b = np.broadcast_to(a, rows.shape[:1]), np.broadcast_to(b, rows.shape[:1])
        if not (np.all(np.isfinite(a)) and np.all(np.abs(a + b) <= 1e-9 * (1.0 + np.abs(a)))):
            return False
    return True


def teacher_symmetry(y: np.ndarray, manifest: Mapping) -> dict:
    """What the report says of the teacher's own soundness: the mean and std of its recorded output (an odd teacher
    on a symmetric task averages near zero) and, when the recorder measured them (``manifest["teacher"]``), its
    raw output at rest (zero gradients from the zero state) at step 1, the largest and the mean over the steps."""
    out = {"y_mean": float(np.mean(y)), "y_std": float(np.std(y))}
    teacher = manifest.get("teacher") if isinstance(manifest.get("teacher"), Mapping) else {}
    for key in ("rest_raw_step1", "rest_raw_max", "rest_raw_mean"):
        if key in teacher:
            out[key] = teacher[key]
    return out


def _num(x) -> float | None:
    """A JSON-safe number: non-finite → None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _score(rule: Rule, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import mean_squared_error, r2_score

    with np.errstate(all="ignore"):
        pred = rule.numpy_fn()(X)
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != y.shape or not np.all(np.isfinite(pred)) or np.any(np.abs(pred) > 1e150):
        return float("nan"), float("nan")
    return float(r2_score(y, pred)), float(mean_squared_error(y, pred))


def _check_manifest(manifest: Mapping, n_columns: int) -> dict:
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


def _dataset_info(manifest: Mapping, dataset_path) -> dict:
    source = manifest.get("source") if isinstance(manifest.get("source"), Mapping) else {}
    return {"path": None if dataset_path is None else str(dataset_path), "sha256": manifest.get("sha256"),
            "source_kind": source.get("kind"), "source": dict(source), "task": manifest.get("task"),
            "columns": list(manifest.get("columns", [])), "rows": None}


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
    t_start = time.perf_counter()
    sr = get_backend(backend, **backend_kwargs)
    X = _check_matrix(X, "X")
    y = _check_vector(y, "y")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    info = _check_manifest(manifest, X.shape[1])
    if y.size and float(np.ptp(y)) == 0.0:
        raise ValueError(f"target y is constant (every row is {y[0]:g}): there is nothing to distill; "
                         f"check that the recorded optimizer actually moved")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 0.0 <= float(selection_tolerance) < 1.0:
        raise ValueError(f"selection_tolerance must be in [0, 1), got {selection_tolerance}")
    n = X.shape[0]
    n_test = int(round(n * float(test_fraction)))
    if n_test < 2 or n - n_test < 2:
        raise ValueError(f"{n} rows are too few to split into train and test (test_fraction {test_fraction})")
    if max_train_rows is not None and int(max_train_rows) < 2:
        raise ValueError(f"max_train_rows must be >= 2 or None, got {max_train_rows}")
    columns = info["columns"]

    # 1. split
    perm = np.random.default_rng([int(seed), 2022]).permutation(n)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    if max_train_rows is not None:
        train_idx = train_idx[:int(max_train_rows)]
    X_tr, y_tr, X_te, y_te = X[train_idx], y[train_idx], X[test_idx], y[test_idx]
    parity = parity_vector(info["features"], info["memlen"])
    X_fit, y_fit = X_tr, y_tr
    if odd:
        X_fit, y_fit = np.concatenate([X_tr, X_tr * parity]), np.concatenate([y_tr, -y_tr])
    t_split = time.perf_counter()

    # 2. standardise
    std = Standardizer.fit(X_fit, y_fit, columns)
    if odd:
        std = dataclasses.replace(std, x_mean=np.where(parity < 0, 0.0, std.x_mean), y_mean=0.0)
    Xs_tr, ys_tr = std.transform_X(X_fit), std.transform_y(y_fit)
    t_std = time.perf_counter()

    # 3. symbolic regression
    raw_candidates: list[Candidate] = sr.fit(Xs_tr, ys_tr, columns, seed=int(seed))
    if not raw_candidates:
        raise RuntimeError(f"the {sr.name} backend returned no candidate")
    t_fit = time.perf_counter()

    # 4–5. fold back, score
    def make_rule(node_std: Node, extra_meta: Mapping | None = None) -> Rule:
        node = std.fold(node_std, merge_affine=simplify)
        if simplify:
            node = _simplify(node)
        return Rule(node, features=info["features"], memlen=info["memlen"], output_scale=info["output_scale"],
                    metadata=dict(extra_meta or {}))

    def evaluate(node_std: Node, origin: str, rule: Rule | None = None) -> CandidateResult:
        rule = rule if rule is not None else make_rule(node_std)
        r2_tr, mse_tr = _score(rule, X_tr, y_tr)
        r2_te, mse_te = _score(rule, X_te, y_te)
        return CandidateResult(rule, node_std, size(node_std), r2_tr, r2_te, mse_tr, mse_te, origin)

    check_rows = Xs_tr[np.random.default_rng([int(seed), 7]).permutation(len(Xs_tr))[:512]]

    inner_of: dict[Node, Node] = {}  # projected expression → the backend's expression it came from

    def project(node_std: Node) -> Node:
        if not odd or _is_odd(node_std, columns, parity, check_rows):
            return node_std
        node_odd = odd_part(node_std, columns, parity)
        node_odd = _simplify(node_odd) if simplify else node_odd
        inner_of.setdefault(node_odd, node_std)
        return node_odd

    candidates: list[CandidateResult] = []
    seen = set()
    for cand in raw_candidates:
        node_std = _simplify(cand.node, distribute=True, drop_tolerance=1e-12) if simplify else cand.node
        node_std = project(node_std)
        key = to_infix(node_std)
        if key in seen:
            continue
        seen.add(key)
        candidates.append(evaluate(node_std, cand.origin))
    candidates, front = _mark_pareto(candidates)
    if not front:
        raise RuntimeError("no candidate rule is finite on the data; try another seed or a larger budget")
    t_eval = time.perf_counter()

    # 6. select
    from tf_symbolic_l2o.invariants import check_invariants

    checked: dict[int, Any] = {}

    def sound(i: int) -> bool:
        if i not in checked:
            checked[i] = check_invariants(candidates[i].rule)
        return checked[i].passed

    ci = _select(candidates, float(selection_tolerance), sound if check else None)

    # 7. refit
    history, before, refit_meta = None, None, None
    if refit_constants:
        before = candidates[ci]
        inner = inner_of.get(before.standardized, before.standardized)  # refit h of ½·(h(x) − h(P·x)), re-project
        std_rule = Rule(inner, features=info["features"], memlen=info["memlen"],
                        output_scale=info["output_scale"])
        refitted, history = _refit(std_rule, Xs_tr, ys_tr, **dict(refit_options or {}))
        node = project(refitted.expression)
        if node != before.standardized:  # unchanged (no constants, no progress): keep it
            candidates.append(evaluate(node, "refit"))
            candidates, front = _mark_pareto(candidates)
            if not check or sound(len(candidates) - 1):
                ci = len(candidates) - 1
        refit_meta = {**refitted.metadata.get("refit", {}), "mse_space": "standardised y",
                      "before": before.metrics(), "after": candidates[ci].metrics()}
    t_refit = time.perf_counter()
    chosen = candidates[ci]
    invariants = checked.get(ci) or check_invariants(chosen.rule)
    t_check = time.perf_counter()

    timings = {"split_s": t_split - t_start, "standardize_s": t_std - t_split, "backend_s": t_fit - t_std,
               "evaluate_s": t_eval - t_fit, "refit_s": t_refit - t_eval, "invariants_s": t_check - t_refit,
               "total_s": t_check - t_start}
    settings = {"backend": sr.name, "backend_settings": sr.settings(), "seed": int(seed),
                "test_fraction": float(test_fraction), "max_train_rows": max_train_rows,
                "refit_constants": bool(refit_constants), "refit_options": dict(refit_options or {}),
                "selection": "simplest Pareto rule within selection_tolerance of the best test R2",
                "selection_tolerance": float(selection_tolerance), "simplify": bool(simplify),
                "n_rows": int(n), "n_train": int(len(train_idx)), "n_test": int(n_test),
                "n_candidates": len(candidates), "odd": bool(odd), "check": bool(check)}
    dataset = _dataset_info(manifest, dataset_path)
    dataset["rows"] = int(n)
    metadata = {
        "source": "distill", "backend": sr.name, "backend_settings": sr.settings(), "seed": int(seed),
        **chosen.metrics(), "complexity_rule": chosen.rule.complexity,
        "standardized_infix": to_infix(chosen.standardized), "n_train": int(len(train_idx)), "n_test": int(n_test),
        "test_fraction": float(test_fraction), "selection_tolerance": float(selection_tolerance),
        "dataset": {"path": dataset["path"], "sha256": dataset["sha256"], "source_kind": dataset["source_kind"]},
        "time_s": timings["total_s"], "odd": bool(odd),
        "invariants": invariants.to_dict(),
        "teacher": teacher_symmetry(y, manifest),
    }
    if refit_meta is not None:
        metadata["refit"] = refit_meta
    rule = chosen.rule.replace(metadata=metadata)
    chosen = dataclasses.replace(chosen, rule=rule)
    candidates[ci] = chosen
    front = sorted((c for c in candidates if c.pareto), key=lambda c: (c.complexity, -c.r2_test))
    return DistillResult(rule=rule, chosen=chosen, candidates=candidates, pareto=front, standardizer=std,
                         settings=settings, timings=timings, dataset=dataset, refit_history=history,
                         before_refit=before)


def _mark_pareto(candidates: Sequence[CandidateResult]) -> tuple[list, list]:
    idx = set(pareto_indices([c.complexity for c in candidates], [c.r2_test for c in candidates]))
    marked = [dataclasses.replace(c, pareto=i in idx) for i, c in enumerate(candidates)]
    front = sorted((c for c in marked if c.pareto), key=lambda c: (c.complexity, -c.r2_test))
    return marked, front


def _select(candidates: Sequence[CandidateResult], tolerance: float, sound=None, max_checks: int = 12) -> int:
    """Index of the simplest Pareto candidate within ``tolerance`` test R² of the best (ties: higher R²).

    With ``sound`` (a predicate on indices), only candidates it accepts qualify: the Pareto front is searched in
    that order first, then every finite candidate by test R² (at most ``max_checks`` predicates are evaluated);
    :class:`UnsoundRuleError` if none qualifies.
    """
    front = [i for i, c in enumerate(candidates) if c.pareto]
    best = max(candidates[i].r2_test for i in front)
    ok = sorted((i for i in front if candidates[i].r2_test >= best - tolerance),
                key=lambda i: (candidates[i].complexity, -candidates[i].r2_test, i))
    if sound is None:
        return ok[0]
    rest = sorted((i for i, c in enumerate(candidates) if i not in ok and math.isfinite(c.r2_test)),
                  key=lambda i: (-candidates[i].r2_test, candidates[i].complexity, i))
    for i in (ok + rest)[:max_checks]:
        if sound(i):
            return i
    raise UnsoundRuleError(f"none of the {min(len(ok) + len(rest), max_checks)} best candidate rules passes the "
                           f"invariant checks (rest, sign symmetry, descent); distill with a larger budget or "
                           f"another seed, or pass --unconstrained to write an unchecked rule")


# ---------------------------------------------------------------------------------------------- reports


def _front_and_chosen(result: DistillResult) -> list:
    """The Pareto front, plus the chosen rule if it is not on it (a refitted rule can fall just off it)."""
    rows = list(result.pareto)
    if not any(c is result.chosen for c in rows):
        rows.append(result.chosen)
        rows.sort(key=lambda c: (c.complexity, -c.r2_test))
    return rows


def _pareto_frame(result: DistillResult):
    import pandas as pd

    rows = [{"complexity": c.complexity, "r2_train": c.r2_train, "r2_test": c.r2_test, "mse_train": c.mse_train,
             "mse_test": c.mse_test, "chosen": c is result.chosen,
             "origin": c.origin, "infix": c.infix, "standardized_infix": to_infix(c.standardized)}
            for c in _front_and_chosen(result)]
    cols = ["complexity", "r2_train", "r2_test", "mse_train", "mse_test", "chosen", "origin", "infix",
            "standardized_infix"]
    return pd.DataFrame(rows, columns=cols)


def _pareto_png(result: DistillResult) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    finite = [c for c in result.candidates if math.isfinite(c.r2_test)]
    if finite:
        ax.scatter([c.complexity for c in finite], [c.r2_test for c in finite], s=14, color="0.7",
                   label="candidates", zorder=1)
    front = result.pareto
    ax.step([c.complexity for c in front], [c.r2_test for c in front], where="post", color="C0", zorder=2)
    ax.scatter([c.complexity for c in front], [c.r2_test for c in front], s=24, color="C0", label="Pareto front",
               zorder=3)
    ch = result.chosen
    ax.scatter([ch.complexity], [ch.r2_test], s=160, marker="*", color="C3", zorder=4,
               label=f"chosen (R² {ch.r2_test:.4f}, {ch.complexity} nodes)")
    lows = [c.r2_test for c in front]
    if lows:  # R² below −0.1 (worse than a constant) is not worth the vertical space
        lo = max(min(lows) - 0.05, -0.1)
        hi = max(lows)
        ax.set_ylim(lo, hi + 0.05 * max(hi - lo, 1e-3))
    ax.set_xlabel("complexity (nodes, standardised expression)")
    ax.set_ylabel("test R²")
    ax.set_title(f"Distillation ({result.settings.get('backend')}): complexity vs test R²", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _report(result: DistillResult) -> dict:
    from tf_symbolic_l2o import __version__

    rule = result.rule
    try:
        latex = rule.latex()
    except Exception as e:  # noqa: BLE001 - a report must not fail on a display form
        latex = f"<unavailable: {type(e).__name__}>"
    try:
        import sympy

        expr = rule.to_sympy(simplify=False)  # sympy's automatic evaluation collects the folded constants
        sympy_text, sympy_latex = str(expr), sympy.latex(expr)
    except Exception as e:  # noqa: BLE001
        sympy_text = sympy_latex = f"<unavailable: {type(e).__name__}>"
    from tf_symbolic_l2o.rules import to_prefix

    report = {
        "format": REPORT_FORMAT,
        "rule": {"infix": rule.infix, "latex": latex, "sympy": sympy_text, "sympy_latex": sympy_latex,
                 "expression": to_prefix(rule.expression),
                 "standardized_infix": to_infix(result.chosen.standardized), "features": rule.features,
                 "memlen": rule.memlen, "output_scale": rule.output_scale, "update": str(rule)},
        "metrics": result.chosen.metrics(),
        "complexity": result.chosen.complexity,
        "complexity_rule": rule.complexity,
        "pareto": [{"complexity": c.complexity, "r2_train": _num(c.r2_train), "r2_test": _num(c.r2_test),
                    "mse_test": _num(c.mse_test), "origin": c.origin, "infix": c.infix, "chosen": c is result.chosen}
                   for c in _front_and_chosen(result)],
        "n_candidates": len(result.candidates),
        "settings": result.settings,
        "timings": result.timings,
        "dataset": result.dataset,
        "standardization": result.standardizer.to_dict(),
        "created_with": f"tf_symbolic_l2o {__version__}",
    }
    if result.before_refit is not None:
        report["before_refit"] = {**result.before_refit.metrics(), "infix": result.before_refit.infix}
        report["refit_history"] = [_num(v) for v in (result.refit_history or [])]
    return report


def write_distill_report(result: DistillResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``rule.json``, ``report.json``, ``pareto.csv`` and ``pareto.png`` into ``out_dir`` (each atomically).

    Returns the paths by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"rule": out / "rule.json", "report": out / "report.json", "pareto_csv": out / "pareto.csv",
             "pareto_png": out / "pareto.png"}
    result.rule.save(paths["rule"])
    atomic_write_json(paths["report"], _report(result))
    atomic_write_text(paths["pareto_csv"], _pareto_frame(result).to_csv(index=False))
    atomic_write_bytes(paths["pareto_png"], _pareto_png(result))
    return paths


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
