"""The sparse backend: sparse regression over odd basis functions (exact recovery, oddness, tanh link, pipeline)."""

import json

import numpy as np
import pytest

from tf_symbolic_l2o.distill import available_backends, distill, get_backend
from tf_symbolic_l2o.distill.sparse import SPARSE_FAMILIES, SparseBackend
from tf_symbolic_l2o.record import RecordConfig, load_behaviour, record_to_file
from tf_symbolic_l2o.rules import Const, evaluate_numpy, size, to_infix, variables

NAMES = ["mt_0", "gt_0", "t_0", "mt_1", "s_1"]  # t and s are even, the others odd
PARITY = np.array([-1.0, -1.0, 1.0, -1.0, 1.0])
DIGITS = {"name": "mlp", "dataset": "digits", "hidden": [8], "batch_size": 32}


def _data(n, seed):
    return np.random.default_rng(seed).normal(size=(n, len(NAMES)))


def _predict(node, X):
    env = {v: X[:, NAMES.index(v)] for v in variables(node)}
    return np.broadcast_to(evaluate_numpy(node, env, dtype=np.float64), X.shape[:1])


def _r2(y, pred):
    return 1.0 - np.mean((y - pred) ** 2) / np.var(y)


def _terms(node):
    """``{infix of φ: c}`` for a candidate ``c1·φ1 + c2·φ2 + …``."""
    if node.name == "add":
        return {**_terms(node.args[0]), **_terms(node.args[1])}
    assert node.name == "mul" and isinstance(node.args[0], Const), to_infix(node)
    return {to_infix(node.args[1]): node.args[0].value}


def test_recovers_a_known_odd_formula_exactly():
    X, X_test = _data(2000, 0), _data(1000, 1)

    def truth(X):
        return 0.7 * X[:, 0] - 0.2 * X[:, 1] * np.abs(X[:, 0])

    cands = SparseBackend(max_terms=4, link="linear").fit(X, truth(X), NAMES)
    by_origin = {c.origin: c for c in cands}
    two = by_origin["sparse-k2"]
    assert _terms(two.node) == pytest.approx({"mt_0": 0.7, "gt_0 * abs(mt_0)": -0.2}, abs=1e-6)
    assert _r2(truth(X_test), _predict(two.node, X_test)) >= 0.999
    assert two.complexity == size(two.node) and two.loss < 1e-20
    # the path stops once the target is explained: no candidate of noise-sized extra terms
    assert [c.origin for c in cands] == ["sparse-k1", "sparse-k2"]
    # the 1-term candidate is the least-squares fit of y on mt_0 alone (independent NumPy computation)
    x0, y = X[:, 0], truth(X)
    assert _terms(by_origin["sparse-k1"].node)["mt_0"] == pytest.approx(x0 @ y / (x0 @ x0), rel=1e-10)
    assert by_origin["sparse-k1"].loss == pytest.approx(np.mean((y - x0 * (x0 @ y / (x0 @ x0))) ** 2), rel=1e-9)


def test_every_candidate_is_odd():
    X = _data(3000, 2)
    rng = np.random.default_rng(3)
    y = np.tanh(X[:, 0]) * (1.0 + 0.5 * X[:, 2]) - 0.3 * X[:, 1] * np.abs(X[:, 3]) + 0.2 * X[:, 3] * X[:, 4] \
        + 0.05 * rng.normal(size=len(X))
    cands = SparseBackend(max_terms=8).fit(X, y, NAMES)
    assert {c.origin.startswith("sparse-tanh") for c in cands} == {True, False}  # link="auto": both families
    rest = X * (PARITY > 0)  # odd columns zero, even columns arbitrary
    used_even = False
    for c in cands:
        h, h_flip = _predict(c.node, X), _predict(c.node, X * PARITY)
        np.testing.assert_allclose(h_flip, -h, rtol=1e-12, atol=1e-12, err_msg=to_infix(c.node))
        np.testing.assert_array_equal(_predict(c.node, rest), 0.0)
        used_even |= bool({"t_0", "s_1"} & set(variables(c.node)))
        np.testing.assert_allclose(c.loss, np.mean((h - y) ** 2), rtol=1e-9)
    assert used_even  # the x·e terms are in the library and chosen for this target
    best = min(c.loss for c in cands)
    assert 1.0 - best / np.var(y) > 0.98


def test_tanh_link_recovers_a_tanh_teacher():
    X, X_test = _data(3000, 4), _data(1000, 5)

    def truth(X):
        return 0.9 * np.tanh(1.5 * X[:, 0] - 0.5 * X[:, 1])

    cands = SparseBackend(max_terms=4, link="tanh").fit(X, truth(X), NAMES)
    assert all(c.origin.startswith("sparse-tanh-k") for c in cands)
    two = {c.origin: c for c in cands}["sparse-tanh-k2"]
    assert _r2(truth(X_test), _predict(two.node, X_test)) >= 0.999
    assert two.node.name == "mul" and two.node.args[0].value == pytest.approx(0.9, abs=1e-6)
    assert _terms(two.node.args[1].args[0]) == pytest.approx({"mt_0": 1.5, "gt_0": -0.5}, abs=1e-6)
    # the linear family alone cannot do as well with two terms
    lin = {c.origin: c for c in SparseBackend(max_terms=2, link="linear").fit(X, truth(X), NAMES)}["sparse-k2"]
    assert lin.loss > 100 * two.loss


@pytest.fixture(scope="module")
def momentum_data(tmp_path_factory):
    """SGD-momentum(0.01) recorded with 2 lags of m̃, g̃, mom9 and t (t even): y = −10·mom9_0."""
    data = tmp_path_factory.mktemp("sparse") / "m.npy"
    record_to_file("momentum:0.01", data, RecordConfig(samples=2000, steps=40, memlen=2), task_spec=DIGITS,
                   features="mt+gt+mom9+t")
    return data


def test_distill_a_recorded_teacher(momentum_data, monkeypatch):
    import tf_symbolic_l2o.distill.sparse as sparse

    X, y, manifest = load_behaviour(momentum_data)
    seen, drop = [], sparse._drop_mirror_half

    def spy(X, y, names):
        out = drop(X, y, names)
        seen.append((len(X), len(out[0])))
        return out

    monkeypatch.setattr(sparse, "_drop_mirror_half", spy)
    res = distill(X, y, manifest, backend="sparse")
    # distill hands over the symmetrised training rows; the backend fits on the first half only
    assert seen == [(2 * res.settings["n_train"], res.settings["n_train"])]
    assert res.r2_test >= 0.99, res.summary()
    assert res.rule.variables == ["mom9_0"]
    assert res.settings["backend"] == "sparse" and res.settings["backend_settings"] == SparseBackend().settings()
    inv = res.rule.metadata["invariants"]
    assert inv and all(v["passed"] for v in inv.values()), inv
    # candidates are odd already: distill did not replace any by its odd part ½(h(x) − h(P·x))
    assert not any(c.standardized.name == "mul" and c.standardized.args[0] == Const(0.5) for c in res.candidates)
    # the folded rule reproduces the teacher: y = −10·mom9_0 (lr 0.01, output scale 0.01, Keras momentum 0.9)
    pred = res.rule.numpy_fn()(X)
    np.testing.assert_allclose(pred, -10.0 * X[:, manifest["columns"].index("mom9_0")], rtol=1e-3, atol=1e-6)


def test_cli_distill_sparse(momentum_data, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["distill", str(momentum_data), "--backend", "sparse", "--out",
                                      str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["settings"]["backend"] == "sparse" and report["metrics"]["r2_test"] >= 0.99


def test_mirror_rows_are_dropped_without_changing_the_fit():
    X = _data(1000, 10)
    y = np.tanh(X[:, 0] - 0.5 * X[:, 3]) + 0.3 * X[:, 1] * X[:, 2] + 0.1 * np.random.default_rng(11).normal(size=1000)
    backend = SparseBackend(max_terms=5)
    half = backend.fit(X, y, NAMES)
    both = backend.fit(np.concatenate([X, X * PARITY]), np.concatenate([y, -y]), NAMES)
    assert [(c.node, c.loss) for c in both] == [(c.node, c.loss) for c in half]


def test_registered():
    assert "sparse" in available_backends() and isinstance(get_backend("sparse"), SparseBackend)
    assert get_backend("SPARSE", max_terms=3).settings()["max_terms"] == 3


def test_deterministic():
    X = _data(1500, 6)
    y = np.sinh(0.8 * X[:, 0]) - 0.4 * X[:, 3] + 0.1 * np.random.default_rng(7).normal(size=len(X))
    backend = get_backend("sparse", max_terms=6)
    a, b = backend.fit(X, y, NAMES, seed=0), SparseBackend(max_terms=6).fit(X, y, NAMES, seed=0)
    assert [(c.node, c.loss, c.origin) for c in a] == [(c.node, c.loss, c.origin) for c in b]
    # seed only chooses the subsample of max_rows rows
    c = SparseBackend(max_terms=6, max_rows=1000).fit(X, y, NAMES, seed=0)
    d = SparseBackend(max_terms=6, max_rows=1000).fit(X, y, NAMES, seed=1)
    assert [x.node for x in c] != [x.node for x in d]


def test_families_and_settings():
    X = _data(500, 8)
    y = X[:, 0] + 0.5 * np.tanh(X[:, 3])
    only_linear = SparseBackend(families="linear", link="linear").fit(X, y, NAMES)
    assert all(op not in to_infix(c.node) for c in only_linear for op in ("abs", "tanh", "cube"))
    s = SparseBackend(families=("tanh", "linear"), max_terms=3, link="tanh", max_rows=None).settings()
    assert s == {"max_terms": 3, "link": "tanh", "families": ["linear", "tanh"], "max_rows": None,
                 "refine_iterations": 50, "threads": 1}
    assert SparseBackend().settings()["families"] == ["linear", "pairs", "cube", "tanh", "even"]
    assert set(SparseBackend().settings()["families"]) < set(SPARSE_FAMILIES)


def test_bounded_families_recover_and_stay_odd():
    """asinh and tanh pairs (the bounded basis for raw-gradient columns): an exact formula of them is recovered,
    and every candidate is odd and grows at most like asinh far from the data."""
    X = _data(2000, 9)
    y = 0.8 * np.arcsinh(X[:, 0]) - 0.3 * np.tanh(X[:, 1]) * np.abs(np.tanh(X[:, 3]))
    cands = SparseBackend(families="asinh,tanhpairs", link="linear", max_terms=4).fit(X, y, NAMES)
    best = min(cands, key=lambda c: c.loss)
    assert best.loss < 1e-20
    far = X * 1e6
    for c in cands:
        env = {v: far[:, NAMES.index(v)] for v in variables(c.node)}
        out = np.broadcast_to(evaluate_numpy(c.node, env, dtype=np.float64), far.shape[:1])
        mirrored = {k: PARITY[NAMES.index(k)] * v for k, v in env.items()}
        neg = np.broadcast_to(evaluate_numpy(c.node, mirrored, dtype=np.float64), far.shape[:1])
        np.testing.assert_allclose(neg, -out, rtol=1e-12, atol=1e-12)
        assert np.max(np.abs(out)) < 100.0  # asinh(1e6·x) ≈ 15: no polynomial blow-up


@pytest.mark.parametrize("kwargs, match", [
    ({"max_terms": 0}, "max_terms"), ({"max_terms": 2.5}, "max_terms"), ({"link": "exp"}, "link"),
    ({"families": ()}, "families"), ({"families": ("linear", "sin")}, "families"), ({"max_rows": 1}, "max_rows"),
    ({"refine_iterations": 0}, "refine_iterations"), ({"threads": 0}, "threads"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseBackend(**kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="odd column"):
        SparseBackend().fit(np.ones((10, 2)) * np.arange(10)[:, None], np.arange(10.0), ["t_0", "s_0"])
    with pytest.raises(ValueError, match="even"):  # only x·e terms asked for, and no even column
        SparseBackend(families="even").fit(_data(50, 9)[:, :2], np.arange(50.0), ["mt_0", "gt_0"])
    with pytest.raises(ValueError):
        SparseBackend().fit(np.full((10, 1), np.nan), np.zeros(10), ["mt_0"])
