"""Symbolic rules: operators, trees, parser, JSON files, converters and importers.

Protected operators are checked against independently written expectations (gplearn's closure rules, the
original code's PySR operators); hostile inputs must fail with a one-line ValueError, never be evaluated.
"""

import json
import math
import pickle

import numpy as np
import pytest
import sympy as sp
import tensorflow as tf

from tf_symbolic_l2o.rules import (MAX_DEPTH, OPS, Const, Op, Rule, Var, constants, evaluate_numpy, evaluate_tf,
                                   from_gplearn, from_prefix, from_pysr_equation, gplearn_function_set,
                                   latex_symbol, load_pysr_hall_of_fame, parse_infix, size, substitute, to_infix,
                                   to_prefix, to_sympy, variables, with_constants)

PAPER_RULE = "tanh(tanh(0.024803324 + sinh(cube(-1.9923366 * mt_0))))"
VARS = ["mt_0", "gt_0", "g_0", "mt_1", "gt_1", "g_1"]


def random_tree(rng, depth, ops=tuple(OPS), names=VARS, wild_constants=True):
    if depth == 0 or rng.random() < 0.25:
        if rng.random() < 0.55:
            return Var(str(rng.choice(names)))
        if wild_constants:
            c = [rng.normal(), -abs(rng.normal()) * 1e-5, rng.normal() * 1e20, 0.0, -0.0, 2.0, -1.5,
                 float(rng.integers(-5, 5)), 1 / 3, -2.5e-300][rng.integers(10)]
        else:
            c = round(float(rng.normal()), 3)
        return Const(float(c))
    name = str(rng.choice(ops))
    return Op(name, tuple(random_tree(rng, depth - 1, ops, names, wild_constants) for _ in range(OPS[name].arity)))


# ----------------------------------------------------------------------------------------------- operators

GRID = np.array([-1e3, -60.0, -50.5, -3.0, -1.0, -0.5, -0.0011, -0.001, -0.0009, -1e-5, 0.0, 1e-5, 0.0009, 0.001,
                 0.0011, 0.5, 1.0, 3.0, 50.5, 60.0, 1e3])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(OPS))
def test_numpy_and_tf_implementations_agree(name, dtype):
    spec = OPS[name]
    if spec.arity == 1:
        args = [GRID.astype(dtype)]
    else:
        a, b = np.meshgrid(GRID, GRID, indexing="ij")
        args = [a.ravel().astype(dtype), b.ravel().astype(dtype)]
    ref = spec.numpy(*args)
    got = spec.tf(*[tf.constant(x) for x in args]).numpy()
    assert got.dtype == dtype and np.asarray(ref).dtype == dtype
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=0, equal_nan=True, err_msg=name)


def test_protected_operators_match_independent_expectations():
    expected = [  # (op, args, value): gplearn closure rules and the original code's PySR operators
        ("div", (1.0, 0.0005), 1.0), ("div", (1.0, -0.001), 1.0), ("div", (3.0, 0.0), 1.0),
        ("div", (1.0, 0.002), 500.0),
        ("inv", (0.0005,), 0.0), ("inv", (-0.001,), 0.0), ("inv", (0.002,), 500.0),
        ("log", (0.0001,), 0.0), ("log", (-0.0001,), 0.0), ("log", (0.0,), 0.0), ("log", (-math.e,), 1.0),
        ("sqrt", (-4.0,), 2.0), ("sqrtm", (-9.0,), 3.0), ("sqrt", (0.0,), 0.0),
        ("logm", (0.0,), math.log(1e-8)), ("logm", (-1.0,), math.log(1.0 + 1e-8)),
        ("pow", (-8.0, 1 / 3), -2.0), ("pow", (0.0, -1.0), 0.0), ("pow", (0.0, 0.0), 0.0), ("pow", (4.0, 0.5), 2.0),
        ("pow", (-2.0, 2.0), -4.0), ("exp", (100.0,), math.exp(50.0)), ("exp", (-100.0,), math.exp(-50.0)),
        ("sinh", (-100.0,), math.sinh(-50.0)), ("greater", (1.0, 0.0), 1.0), ("greater", (0.0, 0.0), 0.0),
        ("greater", (-1.0, 0.0), 0.0), ("relu", (-1.0,), 0.0), ("relu", (2.0,), 2.0), ("sign", (0.0,), 0.0),
        ("cube", (-2.0,), -8.0), ("square", (-3.0,), 9.0), ("erfc", (0.0,), 1.0), ("tan", (0.5,), math.tan(0.5)),
        ("cos", (0.5,), math.cos(0.5)), ("max", (1.0, 2.0), 2.0), ("min", (1.0, 2.0), 1.0), ("neg", (2.0,), -2.0),
    ]
    for name, args, value in expected:
        np_val = float(OPS[name].numpy(*[np.float64(a) for a in args]))
        tf_val = float(OPS[name].tf(*[tf.constant(a, tf.float64) for a in args]))
        assert np_val == pytest.approx(value, rel=1e-12, abs=1e-300), (name, args, np_val)
        assert tf_val == pytest.approx(value, rel=1e-12, abs=1e-300), (name, args, tf_val)


def test_float32_sinh_from_one_exp_is_accurate():
    """float32 sinh is computed from one exp (Taylor series below |x| = ½): within 5e-7 relative of the exact
    float64 sinh over the whole clipped range, the branch point and tiny arguments included; gradient cosh."""
    x = np.concatenate([np.linspace(-60.0, 60.0, 100001), np.geomspace(1e-30, 50.0, 5001),
                        -np.geomspace(1e-30, 50.0, 5001), [0.0, 0.5, -0.5]]).astype(np.float32)
    got = OPS["sinh"].tf(tf.constant(x)).numpy()
    want = np.sinh(np.clip(x.astype(np.float64), -50.0, 50.0))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=5e-7, atol=0.0)
    xs = tf.constant([-3.0, -0.4, 0.0, 0.3, 0.6, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = tf.reduce_sum(OPS["sinh"].tf(xs))
    np.testing.assert_allclose(tape.gradient(y, xs).numpy(), np.cosh(xs.numpy().astype(np.float64)), rtol=1e-6)


def test_protected_operators_have_finite_gradients():
    x = tf.Variable([0.0, 0.0005, -2.0, 3.0], dtype=tf.float32)
    for expr in ["div(1.5, x_0)", "inv(x_0)", "log(x_0)", "sqrt(x_0)", "sqrtm(x_0)", "pow(x_0, 0.5)",
                 "pow(2.0, x_0)", "logm(x_0)", "exp(x_0 * 100.0)"]:
        node = parse_infix(expr)
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(evaluate_tf(node, {"x_0": x}))
        grad = tape.gradient(y, x)
        assert np.all(np.isfinite(grad.numpy())), (expr, grad.numpy())


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32])
def test_every_op_runs_under_xla_in_low_precision(dtype):
    x = np.linspace(-2.0, 2.0, 17)
    x = x[np.abs(x) > 0.05]  # away from protection thresholds
    y = np.linspace(0.7, 1.9, x.size)
    names = sorted(OPS)

    @tf.function(jit_compile=True)
    def all_ops(a, b):
        return tf.stack([OPS[n].tf(a) if OPS[n].arity == 1 else OPS[n].tf(a, b) for n in names])

    a, b = tf.constant(x, dtype), tf.constant(y, dtype)
    got = all_ops(a, b)
    assert got.dtype == dtype
    # The float64 reference is evaluated at the inputs as ``dtype`` holds them, so only the op's own error is
    # measured (input rounding amplified by cancellation, e.g. in add/sub, is not). Measured worst relative error
    # (CPU XLA): ≤ 0.5 ulp of the result for every op and dtype (float16 4.7e-4, bfloat16 3.9e-3, float32 9.4e-8),
    # i.e. each op is computed at least in ``dtype`` and rounded once. rtol is ~2 ulps for the half types
    # (eps 9.8e-4, 7.8e-3) and ~8 ulps for float32 (eps 1.2e-7: room for other backends' approximations of the
    # transcendental functions); atol 1e-7 only covers logm(±1) = log(1 + 1e-8) = 1e-8, which rounds to 0.
    rtol = {tf.float16: 2e-3, tf.bfloat16: 2e-2, tf.float32: 1e-6}[dtype]
    xr, yr = tf.cast(a, tf.float64).numpy(), tf.cast(b, tf.float64).numpy()
    ref = np.stack([OPS[n].numpy(xr) if OPS[n].arity == 1 else OPS[n].numpy(xr, yr) for n in names])
    np.testing.assert_allclose(tf.cast(got, tf.float64).numpy(), ref, rtol=rtol, atol=1e-7)


# ---------------------------------------------------------------------------------------- trees and text


def test_tree_helpers():
    n = parse_infix("tanh(0.5 + mom5_3 * -2.0) / (mt_0 - 1e-3) + mt_10 + mt_2")
    assert variables(n) == ["mom5_3", "mt_0", "mt_2", "mt_10"]
    assert constants(n) == [0.5, -2.0, 1e-3]
    assert size(n) == 14
    m = with_constants(n, [1.0, 2.0, 3.0])
    assert constants(m) == [1.0, 2.0, 3.0] and variables(m) == variables(n)
    s = substitute(n, {"mt_0": Op("neg", (Var("gt_0"),))})
    assert "gt_0" in variables(s) and "mt_0" not in variables(s)
    assert to_prefix(parse_infix("tanh(0.0248 + -1.992 * mt_0)")) == ["tanh", ["add", 0.0248, ["mul", -1.992, "mt_0"]]]
    with pytest.raises(ValueError, match="constant"):
        with_constants(n, [1.0])


def test_parser_precedence_and_signs():
    assert parse_infix("-x_0^2") == Op("neg", (Op("pow", (Var("x_0"), Const(2.0))),))
    assert parse_infix("2 ** 3 ^ 2") == Op("pow", (Const(2.0), Op("pow", (Const(3.0), Const(2.0)))))
    assert parse_infix("a_0 - b_0 - c_0") == Op("sub", (Op("sub", (Var("a_0"), Var("b_0"))), Var("c_0")))
    assert parse_infix("-1.5") == Const(-1.5)
    assert parse_infix("-(1.5)") == Op("neg", (Const(1.5),))
    assert parse_infix("a_0 * -1e-3") == Op("mul", (Var("a_0"), Const(-0.001)))
    assert parse_infix("1 + 2 * 3") == Op("add", (Const(1.0), Op("mul", (Const(2.0), Const(3.0)))))
    assert parse_infix(" add( x_0 ,\n.5 ) ") == Op("add", (Var("x_0"), Const(0.5)))


@pytest.mark.parametrize("tree", [
    Op("neg", (Const(1.5),)), Op("neg", (Const(-0.0),)), Op("pow", (Const(-1.5), Const(-2.0))),
    Op("pow", (Op("neg", (Var("x_0"),)), Op("neg", (Const(2.0),)))),
    Op("sub", (Const(-1.0), Op("neg", (Const(-1.0),)))),
    Op("mul", (Op("neg", (Var("x_0"),)), Op("neg", (Var("x_0"),)))),
    Op("pow", (Op("pow", (Var("x_0"), Var("x_0"))), Var("x_0"))),
    Op("neg", (Op("pow", (Const(1.5), Var("x_0"))),)), Op("neg", (Op("neg", (Var("x_0"),)),)),
    Op("div", (Var("x_0"), Op("div", (Var("x_0"), Var("x_0"))))), Const(1e-300), Const(-1e300), Const(0.1 + 0.2),
])
def test_infix_round_trip_tricky_cases(tree):
    assert parse_infix(to_infix(tree)) == tree
    assert pickle.loads(pickle.dumps(tree)) == tree


def test_prefix_and_infix_round_trips_on_random_trees():
    rng = np.random.default_rng(1234)
    for _ in range(200):
        tree = random_tree(rng, int(rng.integers(1, 7)))
        assert from_prefix(json.loads(json.dumps(to_prefix(tree)))) == tree
        text = to_infix(tree)
        assert parse_infix(text) == tree, text
        assert to_infix(parse_infix(text)) == text


# ------------------------------------------------------------------------------------------- converters


def test_numpy_fn_and_tf_fn_agree_on_random_rules():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(64, 6))
    X[:4, :] = [[0.0, 0.0005, -0.001, 1e-4, 2.0, -3.0]] * 4  # protected regions
    safe_ops = tuple(n for n in OPS if n not in ("sin", "cos", "tan"))  # range reduction differs for huge args
    for _ in range(40):
        rule = Rule(random_tree(rng, 5, safe_ops, wild_constants=False), "mt+gt+g", memlen=2)
        ref = rule.numpy_fn()(X)
        got = rule.tf_fn()(tf.constant(X)).numpy()
        assert got.shape == (64,)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=rule.infix)
        # dict inputs give the same result
        named = {name: tf.constant(X[:, i]) for i, name in enumerate(rule.inputs)}
        np.testing.assert_allclose(rule.tf_fn()(named).numpy(), got, rtol=0, atol=0, equal_nan=True)


def test_tf_fn_under_xla_and_constant_override():
    rule = Rule(parse_infix(PAPER_RULE), "mt+gt", memlen=1)
    assert rule.inputs == ["mt_0", "gt_0"]
    X = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    f = tf.function(rule.tf_fn(), jit_compile=True)
    np.testing.assert_allclose(f(tf.constant(X)).numpy(), rule.numpy_fn()(X.astype(np.float64)), rtol=1e-5, atol=1e-6)
    expected = 0.5 * X[:, 0]  # by hand
    # trainable constants: a tf.Variable vector replaces the constants in pre-order
    coeff = tf.Variable([0.0, 0.5], dtype=tf.float32)
    lin = Rule(parse_infix("0.1 + 7.0 * mt_0"), "mt+gt", 1)
    with tf.GradientTape() as tape:
        out = tf.function(lin.tf_fn(), jit_compile=True)(tf.constant(X), coeff)
        loss = tf.reduce_sum(out)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, coeff).numpy(), [32.0, X[:, 0].sum()], rtol=1e-5)
    np.testing.assert_allclose(lin.numpy_fn()(X, constants=[0.0, 0.5]), expected, rtol=1e-6)
    assert lin.with_constants([0.0, 0.5]).constants == [0.0, 0.5]
    # a constant rule still has the batch shape
    c = Rule(Const(0.25), "mt", 1)
    assert c.numpy_fn()(X[:, :1]).shape == (32,)
    assert tf.function(c.tf_fn(), jit_compile=True)(tf.constant(X[:, :1])).shape == (32,)


def test_inputs_are_lag_major_in_canonical_feature_order():
    rule = Rule(parse_infix("mt_1 - gt_0"), {"names": "gt+mt"}, memlen=2)
    assert rule.inputs == ["mt_0", "gt_0", "mt_1", "gt_1"]
    X = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert rule.numpy_fn()(X).tolist() == [3.0 - 2.0]


def test_sympy_reading_matches_numpy_away_from_thresholds():
    rng = np.random.default_rng(3)
    names = ["mt_0", "gt_0"]
    X = np.column_stack([rng.uniform(-2, 2, 200), rng.uniform(0.2, 2, 200)])
    syms = [sp.Symbol(n, real=True) for n in names]
    plain = ("add", "sub", "mul", "tanh", "asinh", "square", "cube", "abs", "relu", "erfc", "max", "min", "sin",
             "cos", "neg", "sign", "greater")
    trees = [random_tree(rng, 4, plain, names, wild_constants=False) for _ in range(30)]
    trees += [parse_infix(t) for t in (
        "div(mt_0, gt_0 + 1.0)", "log(gt_0 + 0.5)", "sqrt(mt_0)", "pow(mt_0, 1.5)", "inv(gt_0)", "exp(mt_0)",
        "sinh(mt_0)", "logm(gt_0)", "sqrtm(mt_0 * gt_0)", "pow(mt_0, gt_0)", PAPER_RULE)]
    for tree in trees:
        rule = Rule(tree, "mt+gt", 1)
        ref = rule.numpy_fn()(X)
        for expr in (rule.to_sympy(simplify=False), to_sympy(tree, evaluate=False)):
            fn = sp.lambdify(syms, expr, modules=["scipy", "numpy"])  # test-only: our own expression
            got = np.broadcast_to(np.asarray(fn(X[:, 0], X[:, 1]), dtype=float), ref.shape)
            np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-7, err_msg=rule.infix)
    simple = Rule(parse_infix("mt_0 * 2.0 + mt_0"), "mt", 1).to_sympy()
    assert simple == 3.0 * sp.Symbol("mt_0", real=True)


def test_latex_keeps_full_precision_and_paper_symbols():
    rule = Rule(parse_infix(PAPER_RULE), "mt+gt", 1)
    tex = rule.latex()
    assert "0.024803324" in tex and "1.9923366" in tex and r"\tilde{m}_{t}" in tex
    assert r"\tanh" in tex and r"\sinh" in tex
    assert isinstance(rule.latex(simplify=True), str)
    assert latex_symbol("mt_2") == r"\tilde{m}_{t-2}"
    assert latex_symbol("gt_0") == r"\tilde{g}_{t}"
    assert latex_symbol("g_1") == r"g_{t-1}"
    assert latex_symbol("mom9_0") == r"\mathrm{mom9}_{t}"
    assert "0.30000000000000004" in Rule(parse_infix("0.30000000000000004 * mt_0"), "mt", 1).latex()


# -------------------------------------------------------------------------------------------- rule files


def test_rule_save_load_round_trip_ignores_infix(tmp_path):
    rule = Rule(parse_infix(PAPER_RULE + " + 0.001 * mom9_2"), {"names": "mom9+mt", "beta1": 0.9}, memlen=3,
                output_scale=0.01, metadata={"source": "test", "r2": np.float32(0.5), "lags": (1, 2)})
    path = tmp_path / "rule.json"
    rule.save(path)
    d = json.loads(path.read_text())
    assert d["format"] == "tfl2o-rule/1"
    assert set(d) == {"format", "expression", "infix", "features", "memlen", "output_scale", "metadata"}
    assert d["features"] == {"names": "mt+mom9", "beta1": 0.9, "beta2": 0.95, "eps": 1e-12}
    loaded = Rule.load(path)
    assert loaded == rule and loaded.metadata == {"source": "test", "r2": 0.5, "lags": [1, 2]}
    d["infix"] = "__import__('os').system('rm -rf /')"  # informative only: never parsed
    path.write_text(json.dumps(d))
    assert Rule.load(path) == rule
    assert Rule.from_json(rule.to_json()) == rule
    assert rule.feature_set.names == ("mt", "mom9") and rule.complexity == size(rule.expression)


def _rule_dict(**over):
    d = {"format": "tfl2o-rule/1", "expression": ["mul", -1.0, "mt_0"], "infix": "-1.0 * mt_0",
         "features": {"names": "mt+gt"}, "memlen": 1, "output_scale": 0.01, "metadata": {}}
    d.update(over)
    return d


@pytest.mark.parametrize("changes, match", [
    ({"expression": ["__import__('os').system('x')", "mt_0"]}, "unknown operator"),
    ({"expression": ["tanh", "__import__('os').system('x')"]}, "invalid variable name"),
    ({"expression": ["eval", "mt_0"]}, "unknown operator 'eval'"),
    ({"expression": ["tanh", "mt_1"]}, "lag 1, but memlen is 1"),
    ({"expression": ["tanh", "mom5_0"]}, "not in the feature set"),
    ({"expression": ["add", float("inf"), "mt_0"]}, "finite"),
    ({"expression": ["add", float("nan"), "mt_0"]}, "finite"),
    ({"expression": ["add", True, "mt_0"]}, "boolean"),
    ({"expression": ["add", "mt_0"]}, "takes 2"),
    ({"expression": ["add", None, "mt_0"]}, "invalid expression element"),
    ({"expression": []}, "empty list"),
    ({"expression": [["add"], "mt_0"]}, "first element"),
    ({"format": "tfl2o-rule/2"}, "unsupported rule format"),
    ({"extra": 1}, "unknown key"),
    ({"memlen": True}, "memlen"),
    ({"memlen": 0}, "memlen"),
    ({"output_scale": float("nan")}, "output_scale"),
    ({"features": {"names": "mt+evil"}}, "unknown feature"),
    ({"features": {"names": "mt", "code": "x"}}, "unknown key"),
    ({"features": "mt", "expression": ["tanh", "gt_0"]}, "not in the feature set"),
    ({"metadata": "x"}, "metadata"),
])
def test_hostile_or_malformed_rules_are_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        Rule.from_dict(_rule_dict(**changes))


def test_missing_keys_and_non_objects_are_refused():
    d = _rule_dict()
    del d["expression"]
    with pytest.raises(ValueError, match="missing"):
        Rule.from_dict(d)
    with pytest.raises(ValueError, match="JSON object"):
        Rule.from_dict([1, 2])


def test_deep_nesting_is_a_value_error_not_a_recursion_error(tmp_path):
    deep = "mt_0"
    for _ in range(10_000):
        deep = ["neg", deep]
    with pytest.raises(ValueError, match="deeper"):
        from_prefix(deep)
    path = tmp_path / "deep.json"
    path.write_text('{"format": "tfl2o-rule/1", "features": {"names": "mt"}, "memlen": 1, "expression": '
                    + '["neg", ' * 10_000 + '"mt_0"' + "]" * 10_000 + "}")
    with pytest.raises(ValueError):
        Rule.load(path)
    ok = "mt_0"
    for _ in range(MAX_DEPTH - 1):
        ok = ["neg", ok]
    assert size(from_prefix(ok)) == MAX_DEPTH
    with pytest.raises(ValueError, match="nested"):
        parse_infix("(" * 10_000 + "mt_0" + ")" * 10_000)
    with pytest.raises(ValueError, match="deeper"):
        parse_infix("-" * 10_000 + "mt_0")
    with pytest.raises(ValueError, match="deeper"):
        parse_infix(" + ".join(["mt_0"] * 5000))
    with pytest.raises(ValueError, match="nested"):
        parse_infix("tanh(" * 10_000 + "mt_0" + ")" * 10_000)


def test_broken_rule_file_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_rule_dict(memlen=-3)))
    with pytest.raises(ValueError, match="bad.json"):
        Rule.load(path)
    path.write_text('{"format": ')
    with pytest.raises(ValueError, match="not valid JSON"):
        Rule.load(path)


@pytest.mark.parametrize("text, match", [
    ("__import__('os').system('x')", "unknown function '__import__'"),
    ("os.system('ls')", "unknown function 'os.system'"),
    ("a.b", "attribute access"),
    ("mt_0.real", "attribute access"),
    ("_mt_0", "may not start|not allowed"),
    ("lambda: 1", "unknown name 'lambda'"),
    ("mt_0 if 1 else 2", "unexpected 'if'"),
    ("[mt_0]", "unexpected character"),
    ("eval(mt_0)", "unknown function 'eval'"),
    ("tanh(mt_0, gt_0)", "takes 1"),
    ("tanh", "must be called"),
    ("mt", "unknown name 'mt'"),
    ("1e999 * mt_0", "finite"),
    ("mt_0 +", "unexpected end of input"),
    ("(mt_0", r"expected '\)'"),
    ("", "empty"),
    ("mt_0 " * 30_000, "longer than"),
])
def test_parser_refuses_hostile_text(text, match):
    with pytest.raises(ValueError, match=match):
        parse_infix(text)


def test_nodes_validate_themselves():
    with pytest.raises(ValueError, match="unknown operator"):
        Op("system", (Var("mt_0"),))
    with pytest.raises(ValueError, match="takes 1"):
        Op("tanh", (Var("mt_0"), Var("mt_0")))
    with pytest.raises(ValueError):
        Const(True)
    with pytest.raises(ValueError):
        Const(float("inf"))
    with pytest.raises(ValueError):
        Var("os.system")
    with pytest.raises(ValueError):
        Op("tanh", ("mt_0",))


# ---------------------------------------------------------------------------------------------- importers


def op_names(node):
    return {node.name} | set().union(*map(op_names, node.args)) if isinstance(node, Op) else set()


def _toy_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(200, 3))
    X[:, 2] *= 2e-3  # straddles gplearn's 0.001 protection threshold
    y = np.tanh(2.0 * X[:, 0]) - 0.5 * X[:, 1] + 10.0 * X[:, 2]
    return X, y


def test_from_gplearn_matches_predict_and_every_program():
    from gplearn.genetic import SymbolicRegressor

    X, y = _toy_data()
    names = ["mt_0", "gt_0", "g_0"]
    est = SymbolicRegressor(population_size=200, generations=3, random_state=0, n_jobs=1,
                            function_set=("add", "sub", "mul", "div", "sqrt", "log", "abs", "neg", "inv", "max",
                                          "min"))
    est.fit(X, y)
    node = from_gplearn(est._program, names)
    env = {n: X[:, i] for i, n in enumerate(names)}
    np.testing.assert_allclose(np.broadcast_to(evaluate_numpy(node, env), y.shape), est.predict(X), rtol=0,
                               atol=1e-6)
    used = set()
    for program in est._programs[-1]:  # the whole last generation exercises the protected operators
        if program is None:
            continue
        n = from_gplearn(program, names)
        used |= op_names(n)
        np.testing.assert_allclose(np.broadcast_to(evaluate_numpy(n, env), y.shape), program.execute(X), rtol=1e-12,
                                   atol=1e-9, err_msg=str(program))
    assert {"div", "log", "inv", "sqrt"} <= used


def test_from_gplearn_custom_functions():
    from gplearn.functions import make_function
    from gplearn.genetic import SymbolicRegressor

    def _tanh(x1):
        with np.errstate(over="ignore"):
            return np.tanh(x1)

    X, y = _toy_data()
    names = ["mt_0", "gt_0", "g_0"]
    env = {n: X[:, i] for i, n in enumerate(names)}
    for fset in [("add", "mul", "sub", make_function(function=_tanh, name="tanh", arity=1)),
                 gplearn_function_set(["add", "mul", "div", "tanh", "sinh", "exp", "pow", "greater", "logm",
                                       "cube", "square", "relu", "erfc", "asinh"])]:
        est = SymbolicRegressor(population_size=200, generations=3, random_state=0, n_jobs=1, function_set=fset)
        est.fit(X, y)
        np.testing.assert_allclose(np.broadcast_to(evaluate_numpy(from_gplearn(est, names), env), y.shape),
                                   est.predict(X), rtol=0, atol=1e-6)
        for program in est._programs[-1]:
            if program is not None:
                got = np.broadcast_to(evaluate_numpy(from_gplearn(program, names), env), y.shape)
                np.testing.assert_allclose(got, program.execute(X), rtol=1e-12, atol=1e-9, equal_nan=True)

    class Fake:  # an unknown function name is refused
        name, arity = "evil", 1

    with pytest.raises(ValueError, match="no counterpart"):
        from_gplearn([Fake(), 0], names)
    with pytest.raises(ValueError, match="out of range"):
        from_gplearn([OPS_FN("neg"), 7], names)
    with pytest.raises(ValueError, match="malformed"):
        from_gplearn([OPS_FN("add"), 0], names)
    assert from_gplearn([0.5], names) == Const(0.5)


def OPS_FN(name):
    class F:
        pass

    f = F()
    f.name, f.arity = name, OPS[name].arity
    return f


def test_from_pysr_equation():
    node = from_pysr_equation("mult(plus(mt_0, 0.5), -0.01)")
    x = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(evaluate_numpy(node, {"mt_0": x}), (x + 0.5) * -0.01, rtol=1e-15)
    # the original repository's simplest useful RP surrogate, with its variables renamed
    text = "mult(sinh(plus(tanh(plus(pow(g0, 0.2295922), pow(g1, 0.47301754))), 0.021634165)), -0.005624172)"
    node = from_pysr_equation(text, {"g0": "g_0", "g1": "g_1"})
    a, b = x, x[::-1] * 0.3
    spow = lambda u, p: np.sign(u) * np.abs(u) ** p  # noqa: E731  the original code's pow
    want = np.sinh(np.tanh(spow(a, 0.2295922) + spow(b, 0.47301754)) + 0.021634165) * -0.005624172
    np.testing.assert_allclose(evaluate_numpy(node, {"g_0": a, "g_1": b}), want, rtol=1e-12)
    # sympy-style infix; integer powers keep their real meaning
    node = from_pysr_equation("0.5*x0 + tanh(x1) - x0**2 + x1^3 + Abs(x0)^4", {"x0": "mt_0", "x1": "gt_0"})
    got = evaluate_numpy(node, {"mt_0": a, "gt_0": b})
    np.testing.assert_allclose(got, 0.5 * a + np.tanh(b) - a ** 2 + b ** 3 + a ** 4, rtol=1e-12, atol=1e-15)
    node = from_pysr_equation("greater(mt_0, 0.1) + logm(mt_0) + sqrtm(mt_0) + square(cube(mt_0))")
    want = (a > 0.1) + np.log(np.abs(a) + 1e-8) + np.sqrt(np.abs(a)) + a ** 6
    np.testing.assert_allclose(evaluate_numpy(node, {"mt_0": a}), want, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown function 'system'"):
        from_pysr_equation("system(mt_0)")
    with pytest.raises(ValueError, match="unknown name 'x7'"):
        from_pysr_equation("x7 + 1", {"x0": "mt_0"})


def test_load_pysr_hall_of_fame(tmp_path):
    old = tmp_path / "hall_of_fame_2020-12-30.csv"
    old.write_text("Complexity|MSE|Equation\n1|1.6784e-5|-0.00016443271\n"
                   "5|1.2e-5|mult(tanh(mt_0), -0.0055)\n")
    rows = load_pysr_hall_of_fame(old)
    assert [r["complexity"] for r in rows] == [1, 5]
    assert rows[0]["loss"] == pytest.approx(1.6784e-5) and rows[0]["node"] == Const(-0.00016443271)
    assert rows[1]["node"] == Op("mul", (Op("tanh", (Var("mt_0"),)), Const(-0.0055)))
    new = tmp_path / "hall_of_fame.csv"
    new.write_text('Complexity,Loss,Equation\n1,0.5,"x0"\n3,0.25,"mult(x0, 2.5)"\n4,0.1,"(x0 * 2.5) + -0.1"\n')
    rows = load_pysr_hall_of_fame(new, variable_map={"x0": "mt_0"})
    assert [r["complexity"] for r in rows] == [1, 3, 4]
    assert rows[2]["node"] == parse_infix("mt_0 * 2.5 + -0.1")
    bad = tmp_path / "bad.csv"
    bad.write_text("Complexity|MSE|Equation\n1|0.1|__import__('os')\n")
    with pytest.raises(ValueError, match="row 2"):
        load_pysr_hall_of_fame(bad)
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="column"):
        load_pysr_hall_of_fame(bad)
