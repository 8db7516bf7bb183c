"""A fast, deterministic symbolic-regression backend: sparse regression over a library of *odd* basis functions.

:class:`SparseBackend` (``get_backend("sparse")``, ``tfl2o distill --backend sparse``) does not search over
expression trees. It builds a fixed library of basis functions of the standardised columns, every one of them
**odd** in the sign-carrying inputs (it changes sign when every odd column is negated; the even columns, features
``t`` and ``s``, are left alone), and selects a few of them by forward stepwise least squares. A linear combination
of odd functions without an intercept is odd, so every rule it returns gives a zero step at zero gradient and the
negated step for the negated gradient sequence *by construction*: :func:`~tf_symbolic_l2o.distill.distill` never
has to replace it by its odd part (which would double its size).

Basis (``families``; ``x_i`` the odd columns, ``e_j`` the even ones, all standardised by the caller):

===========  ===================================  ==================================================================
family       terms                                tree
===========  ===================================  ==================================================================
``linear``   ``x_i``                              ``x_i``
``pairs``    ``x_i·|x_j|`` for every ordered      ``mul(x_i, abs(x_j))`` (the sign of ``x_i`` and the size of
             pair ``(i, j)``, ``i = j`` included  ``x_j``; ``i = j`` is the signed square ``x_i·|x_i|``)
``cube``     ``x_i³``                             ``cube(x_i)``
``tanh``     ``tanh(x_i)``                        ``tanh(x_i)``
``asinh``    ``asinh(x_i)``                       ``asinh(x_i)`` (a signed log of the magnitude: DM's LogAndSign view
                                                  of the raw gradient; grows slowly far from the data)
``tanhpairs``  ``tanh(x_i)·|tanh(x_j)|``          ``mul(tanh(x_i), abs(tanh(x_j)))``: the bounded form of ``pairs``,
                                                  for raw-gradient columns whose far values must not blow up
``even``     ``x_i·e_j``                          ``mul(x_i, e_j)``
===========  ===================================  ==================================================================

With 8 lags of two odd features (16 columns) the default library has 16 + 256 + 16 + 16 = 304 terms.

Selection: **forward stepwise least squares with backward steps** (FoBa, Zhang 2011). Starting from no term, each
step adds the term that lowers the training MSE most given the terms already chosen (computed for all terms at once
from each term's part orthogonal to the chosen ones; a term that is, to 1e-6, a combination of the chosen ones is
never picked) and refits the coefficients; then, while dropping one of the chosen terms gives a better model than
the best one found so far with that many terms, it is dropped. The best model found with ``k`` terms is the
candidate ``k``, ``k = 1 .. max_terms``; there is no intercept. The path stops early once the target is explained
(a step would lower the MSE by less than 1e-12 of the mean of y²), and a candidate no better than a shorter one is
not returned.

Output link (``link``):

* ``"linear"``: ``y ≈ Σ c_k·φ_k``, origin ``"sparse-k<k>"``;
* ``"tanh"``: ``y ≈ a·tanh(Σ w_k·φ_k)`` for teachers whose output is a tanh (the RNNprop family), still odd, origin
  ``"sparse-tanh-k<k>"``. The forward step is the same, applied to the Gauss–Newton linearisation of the model at
  the current fit (the term whose Jacobian column best explains the residual, orthogonal to the Jacobian of the
  parameters already fitted); after every step all weights and ``a`` are refined by Levenberg–Marquardt (at most
  ``refine_iterations`` iterations), starting from the previous fit; ``a`` starts at ``1.1·max|y|`` (a tanh
  teacher's output bound). A backward step is tried on the term the linearisation says costs least and kept only if
  the refined model is better;
* ``"auto"`` (default): both paths; the caller's Pareto selection (complexity vs test R²) chooses.

``loss`` is the training MSE in standardised space; ``complexity`` the number of nodes of the tree. The fit is
deterministic (no random search, single-threaded BLAS by default); ``seed`` only chooses the subsample when there
are more than ``max_rows`` rows.

Speed. Because every model is odd, a row ``(x, y)`` and its mirror ``(P·x, −y)`` have the same squared residual:
when the second half of the training rows is exactly the mirror of the first (the symmetrised rows
:func:`~tf_symbolic_l2o.distill.distill` builds with ``odd=True``), the mirror half is dropped, which changes no fit
and halves the work. BLAS is limited to one thread during the fit (``threads``): the matrices are small, and
several BLAS threads competing with other work for the cores slow the fit down (timings in benchmarks/README.md,
"Design measurements behind the code").
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import numpy as np

from tf_symbolic_l2o.distill.base import Candidate, SRBackend, check_fit_inputs, subsample
from tf_symbolic_l2o.rules import Const, Node, Op, Var, size
from tf_symbolic_l2o.rules.expression import split_var

__all__ = ["SparseBackend", "SPARSE_FAMILIES", "SPARSE_LINKS"]

SPARSE_FAMILIES = ("linear", "pairs", "cube", "tanh", "asinh", "tanhpairs", "even")
"""The basis families :class:`SparseBackend` knows (see the module docstring)."""
SPARSE_LINKS = ("auto", "linear", "tanh")
"""The output links: ``auto`` fits both ``linear`` and ``tanh``."""

_COLLINEAR = 1e-6  # a term whose part orthogonal to the chosen ones has < this fraction of its norm² is skipped
_CHUNK = 8192  # rows per block when squaring the basis


def _is_even_column(name: str) -> bool:
    from tf_symbolic_l2o.features import EVEN_FEATURES

    return split_var(name)[0] in EVEN_FEATURES


def _blas_threads(n: int | None):
    """Limit the BLAS thread pool to ``n`` threads during the fit (``None``: leave it as it is)."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


def _drop_mirror_half(X: np.ndarray, y: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The first half of the rows when the second half is exactly its mirror ``(P·x, −y)`` (the symmetrised rows
    :func:`~tf_symbolic_l2o.distill.distill` builds with ``odd=True``), else all rows.

    Every model here is odd, so a row and its mirror have the same squared residual and the same (up to sign)
    Jacobian row: dropping the mirror half changes no fit and no loss, and halves the work."""
    n = X.shape[0]
    if n < 2 or n % 2:
        return X, y
    h = n // 2
    flip = np.array([1.0 if _is_even_column(c) else -1.0 for c in names])
    if np.array_equal(y[h:], -y[:h]) and np.array_equal(X[h:], X[:h] * flip):
        return X[:h], y[:h]
    return X, y


def _basis(X: np.ndarray, names: Sequence[str], families: Sequence[str]) -> tuple[list[Node], np.ndarray]:
    """The library: its trees (unit coefficient) and the ``[rows, terms]`` matrix of their values."""
    odd = [i for i, n in enumerate(names) if not _is_even_column(n)]
    even = [i for i, n in enumerate(names) if _is_even_column(n)]
    var = [Var(n) for n in names]
    specs: list[tuple[Node, tuple]] = []
    if "linear" in families:
        specs += [(var[i], ("x", i)) for i in odd]
    if "pairs" in families:
        specs += [(Op("mul", (var[i], Op("abs", (var[j],)))), ("xa", i, j)) for i in odd for j in odd]
    if "cube" in families:
        specs += [(Op("cube", (var[i],)), ("cube", i)) for i in odd]
    if "tanh" in families:
        specs += [(Op("tanh", (var[i],)), ("tanh", i)) for i in odd]
    if "asinh" in families:
        specs += [(Op("asinh", (var[i],)), ("asinh", i)) for i in odd]
    if "tanhpairs" in families:
        specs += [(Op("mul", (Op("tanh", (var[i],)), Op("abs", (Op("tanh", (var[j],)),)))), ("ta", i, j))
                  for i in odd for j in odd]
    if "even" in families:
        specs += [(Op("mul", (var[i], var[j])), ("xe", i, j)) for i in odd for j in even]
    Phi = np.empty((X.shape[0], len(specs)), dtype=np.float64)
    with np.errstate(all="ignore"):
        for k, (_, s) in enumerate(specs):
            if s[0] == "x":
                Phi[:, k] = X[:, s[1]]
            elif s[0] == "xa":
                np.multiply(X[:, s[1]], np.abs(X[:, s[2]]), out=Phi[:, k])
            elif s[0] == "cube":
                np.multiply(X[:, s[1]] * X[:, s[1]], X[:, s[1]], out=Phi[:, k])
            elif s[0] == "tanh":
                np.tanh(X[:, s[1]], out=Phi[:, k])
            elif s[0] == "asinh":
                np.arcsinh(X[:, s[1]], out=Phi[:, k])
            elif s[0] == "ta":
                np.multiply(np.tanh(X[:, s[1]]), np.abs(np.tanh(X[:, s[2]])), out=Phi[:, k])
            else:
                np.multiply(X[:, s[1]], X[:, s[2]], out=Phi[:, k])
    return [n for n, _ in specs], Phi


def _col_sumsq(Phi: np.ndarray) -> np.ndarray:
    """``Σ_rows φ²`` per column, in row blocks (no full-size temporary)."""
    out = np.zeros(Phi.shape[1])
    for s in range(0, Phi.shape[0], _CHUNK):
        block = Phi[s:s + _CHUNK]
        out += np.einsum("ij,ij->j", block, block)
    return out


def _best_term(Phi: np.ndarray, v: np.ndarray | None, J: np.ndarray | None, r: np.ndarray, dd: np.ndarray,
               exclude: Sequence[int]) -> tuple[int, float, float]:
    """The term ``j`` whose column ``v·φ_j``, made orthogonal to the columns of ``J``, explains most of the residual
    ``r``. Returns ``(j, step, gain)``: ``step`` is the least-squares coefficient of that orthogonal part and
    ``gain`` the drop of the residual sum of squares it gives; ``(-1, 0, 0)`` when no term qualifies.

    ``dd`` is ``Σ v²·φ_j²`` per term."""
    vr = r if v is None else v * r
    num = Phi.T @ vr
    den = dd.copy()
    if J is not None and J.shape[1]:
        M = Phi.T @ (J if v is None else J * v[:, None])  # [terms, m]: Jᵀ(v·φ_j)
        P = M @ np.linalg.pinv(J.T @ J)  # projection of v·φ_j on the columns of J: J·P[j]ᵀ
        num -= P @ (J.T @ r)
        den -= np.einsum("ij,ij->i", P, M)
    ok = np.isfinite(num) & np.isfinite(den) & (den > _COLLINEAR * dd) & (dd > 0)
    ok[list(exclude)] = False
    if not ok.any():
        return -1, 0.0, 0.0
    gain = np.where(ok, num * num / np.where(ok, den, 1.0), -np.inf)
    j = int(np.argmax(gain))  # ties: the lowest index
    if not gain[j] > 0:
        return -1, 0.0, 0.0
    return j, float(num[j] / den[j]), float(gain[j])


def _removal_costs(J: np.ndarray, params: np.ndarray, k: int) -> np.ndarray:
    """Increase of the residual sum of squares when parameter ``i < k`` is removed and the others refitted, from
    the (Gauss–Newton) normal matrix ``JᵀJ``: ``θ_i² / [(JᵀJ)⁻¹]_ii`` (exact for a linear model)."""
    C = np.linalg.pinv(J.T @ J)
    d = np.diag(C)[:k]
    with np.errstate(all="ignore"):
        cost = np.where(d > 0, params[:k] ** 2 / np.where(d > 0, d, 1.0), np.inf)
    return np.where(np.isfinite(cost), cost, np.inf)


class _LinearModel:
    """``y ≈ Φ_S·c``: exact forward steps, exact refits."""

    def __init__(self, Phi: np.ndarray, y: np.ndarray):
        self.Phi, self.y, self.dd = Phi, y, _col_sumsq(Phi)

    def start(self) -> np.ndarray:
        return np.zeros(0)

    def fit(self, cols: list[int], init: np.ndarray) -> tuple[np.ndarray, float]:
        A = self.Phi[:, cols]
        coef = np.linalg.lstsq(A, self.y, rcond=None)[0]
        r = self.y - A @ coef
        return coef, float(np.mean(r * r))

    def propose(self, cols: list[int], params: np.ndarray) -> tuple[int, float, float]:
        A = self.Phi[:, cols]
        j, step, gain = _best_term(self.Phi, None, A if cols else None, self.y - A @ params, self.dd, cols)
        return j, step, gain / len(self.y)

    def extend(self, params: np.ndarray, step: float) -> np.ndarray:
        return np.append(params, step)

    def drop(self, params: np.ndarray, i: int) -> np.ndarray:
        return np.delete(params, i)

    def removal_costs(self, cols: list[int], params: np.ndarray) -> np.ndarray:
        return _removal_costs(self.Phi[:, cols], params, len(cols)) / len(self.y)

    def node(self, terms: Sequence[Node], params: np.ndarray) -> Node:
        return _linear_combination(terms, params)


class _TanhModel:
    """``y ≈ a·tanh(Φ_S·w)``, parameters ``[w…, a]``: Gauss–Newton forward steps, Levenberg–Marquardt refits."""

    def __init__(self, Phi: np.ndarray, y: np.ndarray, max_iter: int):
        self.Phi, self.y, self.max_iter = Phi, y, int(max_iter)
        self.Phi2 = Phi * Phi  # for Σ v²·φ_j² at every step

    def start(self) -> np.ndarray:
        return np.array([1.1 * float(np.max(np.abs(self.y)))])

    def _jacobian(self, A: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.tanh(A @ params[:-1])
        v = params[-1] * (1.0 - t * t)
        return np.column_stack([A * v[:, None], t]), t, v

    def fit(self, cols: list[int], init: np.ndarray) -> tuple[np.ndarray, float]:
        """Levenberg–Marquardt (Marquardt's diagonal scaling) on the normal equations, from ``init``."""
        A, y = self.Phi[:, cols], self.y
        p = np.asarray(init, dtype=np.float64)
        with np.errstate(all="ignore"):
            J, t, _ = self._jacobian(A, p)
            r = p[-1] * t - y
            loss = float(r @ r)
            lam = 1e-3
            for _ in range(self.max_iter):
                H, g = J.T @ J, J.T @ r
                D = np.maximum(np.diag(H), 1e-12 * max(float(np.max(np.diag(H))), 1e-300))
                try:
                    delta = -np.linalg.solve(H + lam * np.diag(D), g)
                except np.linalg.LinAlgError:
                    lam *= 10.0
                    continue
                q = p + delta
                tq = np.tanh(A @ q[:-1])
                rq = q[-1] * tq - y
                lq = float(rq @ rq)
                if math.isfinite(lq) and lq < loss:
                    done = loss - lq <= 1e-10 * loss
                    p, r, loss = q, rq, lq
                    J = self._jacobian(A, p)[0]
                    lam = max(lam / 3.0, 1e-12)
                    if done:
                        break
                else:
                    lam *= 4.0
                    if lam > 1e12:
                        break
        return p, loss / len(y)

    def propose(self, cols: list[int], params: np.ndarray) -> tuple[int, float, float]:
        A = self.Phi[:, cols]
        J, t, v = self._jacobian(A, params)
        dd = (v * v) @ self.Phi2
        r = self.y - params[-1] * t
        j, step, gain = _best_term(self.Phi, v, J if cols else None, r, dd, cols)
        return j, step, gain / len(self.y)

    def extend(self, params: np.ndarray, step: float) -> np.ndarray:
        return np.concatenate([params[:-1], [step], params[-1:]])

    def drop(self, params: np.ndarray, i: int) -> np.ndarray:
        return np.delete(params, i)

    def removal_costs(self, cols: list[int], params: np.ndarray) -> np.ndarray:
        J = self._jacobian(self.Phi[:, cols], params)[0]
        return _removal_costs(J, params, len(cols)) / len(self.y)

    def node(self, terms: Sequence[Node], params: np.ndarray) -> Node:
        return Op("mul", (Const(float(params[-1])), Op("tanh", (_linear_combination(terms, params[:-1]),))))


def _path(model, max_terms: int, tiny: float) -> dict[int, tuple[list[int], np.ndarray, float]]:
    """Forward stepwise selection with backward steps (FoBa, Zhang 2011): add the best term; then, while removing
    one of the chosen terms gives a better model than the best one found with that many terms, remove it.

    Returns the best ``(columns, parameters, loss)`` found for every number of terms."""
    best: dict[int, tuple[list[int], np.ndarray, float]] = {}
    cols: list[int] = []
    params = model.start()
    for _ in range(4 * max_terms):  # forward steps; every backward step strictly improves a stored model
        if len(cols) >= max_terms:
            break
        j, step, gain = model.propose(cols, params)
        if j < 0 or not gain > tiny:
            break
        cols = cols + [j]
        params, loss = model.fit(cols, model.extend(params, step))
        if not math.isfinite(loss):
            break
        if len(cols) not in best or loss < best[len(cols)][2]:
            best[len(cols)] = (cols, params, loss)
        while len(cols) > 1:
            costs = model.removal_costs(cols, params)
            i = int(np.argmin(costs))
            target = best[len(cols) - 1][2] * (1.0 - 1e-9)
            if not loss + costs[i] < target:
                break
            trial = cols[:i] + cols[i + 1:]
            trial_params, trial_loss = model.fit(trial, model.drop(params, i))
            if not trial_loss < target:
                break
            cols, params, loss = trial, trial_params, trial_loss
            best[len(cols)] = (cols, params, loss)
    return best


def _linear_combination(nodes: Sequence[Node], coefs: Sequence[float]) -> Node:
    terms = [Op("mul", (Const(float(c)), n)) for c, n in zip(coefs, nodes)]
    out = terms[0]
    for t in terms[1:]:
        out = Op("add", (out, t))
    return out


class SparseBackend(SRBackend):
    """Sparse regression over a library of odd basis functions (see the module docstring).

    Args:
        max_terms: the longest candidate (number of basis terms); one candidate per ``k = 1 .. max_terms`` and link.
        link: ``"auto"`` (both), ``"linear"`` (``Σ c·φ``) or ``"tanh"`` (``a·tanh(Σ w·φ)``).
        families: the basis families to use, a subset of :data:`SPARSE_FAMILIES`; must include at least one that
            exists for the data (``even`` needs an even column).
        max_rows: fit on at most this many training rows, after dropping the mirror half of symmetrised rows
            (seeded subsample; ``None``: all rows).
        refine_iterations: the most Levenberg–Marquardt iterations per refit of the tanh path.
        threads: BLAS threads during the fit (``None``: leave the thread pool as it is).
    """

    name = "sparse"

    def __init__(self, max_terms: int = 16, link: str = "auto",
                 families: Sequence[str] = ("linear", "pairs", "cube", "tanh", "even"),
                 max_rows: int | None = 50_000, refine_iterations: int = 50, threads: int | None = 1):
        if isinstance(max_terms, bool) or not isinstance(max_terms, (int, np.integer)) or not 1 <= max_terms <= 100:
            raise ValueError(f"max_terms must be an integer from 1 to 100, got {max_terms!r}")
        if link not in SPARSE_LINKS:
            raise ValueError(f"unknown link {link!r}; use one of {', '.join(SPARSE_LINKS)}")
        if isinstance(families, str):
            families = [f.strip() for f in families.replace("+", ",").split(",") if f.strip()]
        families = tuple(families)
        bad = [f for f in families if f not in SPARSE_FAMILIES]
        if bad or not families:
            raise ValueError(f"families must be a non-empty subset of {', '.join(SPARSE_FAMILIES)}, "
                             f"got {list(families)!r}")
        if max_rows is not None and (isinstance(max_rows, bool) or int(max_rows) < 2):
            raise ValueError(f"max_rows must be >= 2 or None, got {max_rows!r}")
        if isinstance(refine_iterations, bool) or int(refine_iterations) < 1:
            raise ValueError(f"refine_iterations must be >= 1, got {refine_iterations!r}")
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"threads must be >= 1 or None, got {threads!r}")
        self.max_terms = int(max_terms)
        self.link = link
        self.families = tuple(f for f in SPARSE_FAMILIES if f in families)  # canonical order
        self.max_rows = None if max_rows is None else int(max_rows)
        self.refine_iterations = int(refine_iterations)
        self.threads = None if threads is None else int(threads)

    def settings(self) -> dict:
        return {"max_terms": self.max_terms, "link": self.link, "families": list(self.families),
                "max_rows": self.max_rows, "refine_iterations": self.refine_iterations, "threads": self.threads}

    # ------------------------------------------------------------------------------------------------ fit

    def fit(self, X, y, feature_names: Sequence[str], seed: int = 0) -> list[Candidate]:
        with _blas_threads(self.threads):
            return self._fit(X, y, feature_names, seed)

    def _fit(self, X, y, feature_names: Sequence[str], seed: int) -> list[Candidate]:
        X, y, names = check_fit_inputs(X, y, feature_names)
        if all(_is_even_column(n) for n in names):
            raise ValueError("the sparse backend builds odd rules and needs at least one odd column (a feature "
                             "other than t and s); add one to the feature set")
        X, y = _drop_mirror_half(X, y, names)
        X, y = subsample(X, y, self.max_rows, seed)
        nodes, Phi = _basis(X, names, self.families)
        if not nodes:
            raise ValueError(f"the basis families {list(self.families)} give no term for the columns {names}; "
                             f"add 'linear' to families")
        scale = np.sqrt(_col_sumsq(Phi) / Phi.shape[0])
        keep = np.flatnonzero(np.isfinite(scale) & (scale > 1e-12) & np.all(np.isfinite(Phi), axis=0))
        if keep.size == 0:
            raise ValueError("every basis term is zero or non-finite on the data; check X")
        nodes = [nodes[i] for i in keep]
        Phi = Phi[:, keep] / scale[keep]  # unit RMS columns: conditioning, and coefficients on one scale
        scale = scale[keep]
        out: list[Candidate] = []
        if self.link in ("auto", "linear"):
            out += self._candidates(_LinearModel(Phi, y), Phi, y, nodes, scale, "sparse")
        if self.link in ("auto", "tanh"):
            out += self._candidates(_TanhModel(Phi, y, self.refine_iterations), Phi, y, nodes, scale,
                                    "sparse-tanh")
        if not out:
            raise ValueError("no basis term explains any part of y (is y zero?); check the data")
        return out

    def _candidates(self, model, Phi, y, nodes, scale, prefix: str) -> list[Candidate]:
        tiny = 1e-12 * float(np.mean(y * y))
        out, lowest = [], math.inf
        for k, (cols, params, loss) in sorted(_path(model, min(self.max_terms, Phi.shape[1]), tiny).items()):
            if not loss < lowest:  # no better than a shorter candidate: dominated
                continue
            lowest = loss
            p = np.array(params, dtype=np.float64)
            p[:len(cols)] = p[:len(cols)] / scale[cols]  # back to the unnormalised terms
            node = model.node([nodes[i] for i in cols], p)
            out.append(Candidate(node, size(node), float(loss), f"{prefix}-k{k}"))
        return out
