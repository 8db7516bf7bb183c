"""The library's Keras optimizers (symbolic and learned) on Keras' JAX and PyTorch backends: importing them imports no
TensorFlow, and their steps equal the TensorFlow backend's (the same gradients, the same weights and slots to
float32 rounding), non-finite guard, rest, sign symmetry and Keras' checklist included (weight decay, clipnorm/
clipvalue/global_clipnorm, EMA with overwrites, gradient accumulation, a config round trip, sparse Embedding
gradients); ``model.fit`` and a ``.keras`` round trip work there, and a ``.keras`` file saved on one backend
continues on the other to the uninterrupted weights. The rules as optax transformations follow the TensorFlow
optimizer step for step.

Each JAX or PyTorch check runs in a subprocess (the backend is fixed per process); the TensorFlow side runs here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from _backend_models import FROM_BACKEND, FROM_TENSORFLOW, embedding_model, fit, make_optimizer, small_model
from _backend_steps import INIT, run as run_steps
from tf_symbolic_l2o.artifacts import saved_models_dir
from tf_symbolic_l2o.optimizers import SymbolicRP
from tf_symbolic_l2o.rules import Rule

ROOT = Path(__file__).resolve().parents[1]

# The gradient sequence: 6 steps on two variables (a [3, 4] matrix and a [5] vector), with a zero gradient in
# step 3, an inf and a NaN entry in step 4 (the guard keeps those coordinates), large and tiny values elsewhere.
STEPS = 6


def gradients(seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for t in range(STEPS):
        a = rng.normal(size=(3, 4)).astype(np.float32) * np.float32(10.0 ** rng.integers(-4, 2))
        b = rng.normal(size=(5,)).astype(np.float32)
        if t == 2:
            a, b = np.zeros_like(a), np.zeros_like(b)
        if t == 3:
            a[0, 0], b[1] = np.inf, np.nan
        out.append([a, b])
    return out


# optimizer name → constructor keyword arguments: the three presets, then Keras' base-class arguments (weight decay,
# the three clippings, EMA with overwrites, gradient accumulation) and a JSON config round trip before the steps.
CASES = {
    "SymbolicRP": {},
    "SymbolicRP_unfused": {"fused": False},  # PyTorch: the eager keras.ops step instead of the compiled one
    "SymbolicRPsi": {},
    "SymbolicDM": {"weight_decay": 0.01, "clipnorm": 1.0},
    "SymbolicRP_lr": {"learning_rate": 0.5, "global_clipnorm": 2.0},
    "SymbolicRP_ema": {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 4, "clipvalue": 0.5},
    "SymbolicRPsi_accumulate": {"gradient_accumulation_steps": 2},
    "SymbolicDM_config": {"learning_rate": 0.3, "weight_decay": 0.001, "from_config": True},
    # a size scale whose reference (8) is below the 17 coordinates: every step × √(8/17)
    "SymbolicRP_sized": {"rule": Rule.load(saved_models_dir() / "symbolic_rp_gain" / "rule.json").replace(
        size_scale={"reference": 8, "power": 0.5}).to_dict()},
    "LearnedOptimizer": {"l2o": "rp_s_mnist_mlp"},
    "LearnedOptimizer_dm": {"l2o": "dm_mnist_mlp", "weight_decay": 0.01, "clipnorm": 1.0, "learning_rate": 0.5},
}

def _subprocess(code: str, backend: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    args = ["-m", code[3:]] if code.startswith("-m ") else ["-c", code]
    return subprocess.run([sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


BACKENDS = ["jax", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_importing_the_optimizers_imports_no_tensorflow(tmp_path, backend):
    code = (f"import os; os.environ['KERAS_BACKEND'] = '{backend}'\n"
            "import tf_symbolic_l2o.optimizers, sys\n"
            "from tf_symbolic_l2o.optimizers import SymbolicRP\n"
            "SymbolicRP()\n"
            "assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules if 'tensorflow' in m)[:5]\n"
            "print('ok')")
    run = _subprocess(code, backend, tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


@pytest.fixture(scope="module", params=BACKENDS)
def backend_steps(request, tmp_path_factory):
    """Every case's weights after each step and its final slots, computed under the JAX or the PyTorch backend (and,
    for the sign check, the same gradients negated). The steps import no TensorFlow either."""
    tmp = tmp_path_factory.mktemp(request.param)
    np.savez(tmp / "grads.npz", *[g for step in gradients() for g in step])
    (tmp / "cases.json").write_text(json.dumps(CASES))
    run = _subprocess("-m _backend_steps", request.param, tmp)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == f"{request.param} tensorflow imported: False"
    return dict(np.load(tmp / "out.npz", allow_pickle=False))


@pytest.mark.parametrize("name", list(CASES))
def test_steps_equal_tensorflow_steps(backend_steps, name):
    weights, slots = run_steps(name, CASES[name], gradients())  # this process: the TensorFlow backend
    for t, ws in enumerate(weights):
        for i, w in enumerate(ws):
            np.testing.assert_allclose(backend_steps[f"{name}|1.0|w|{t}|{i}"], w, rtol=2e-5, atol=1e-7,
                                       err_msg=f"{name}: weights after step {t + 1}, variable {i}")
    for i, s in enumerate(slots):
        np.testing.assert_allclose(backend_steps[f"{name}|1.0|s|{i}"], s, rtol=2e-5, atol=1e-7,
                                   err_msg=f"{name}: optimizer variable {i}")


@pytest.mark.parametrize("name", ["SymbolicRP", "SymbolicRPsi", "SymbolicDM", "LearnedOptimizer"])
def test_invariants_rest_guard_and_sign(backend_steps, name):
    """On JAX and PyTorch: three zero gradients from the zero state move nothing; the inf/NaN coordinates of step 4
    keep their weights; every weight is finite; negated gradients give the mirrored steps (no weight decay in these
    cases)."""
    init = INIT
    w = {t: [backend_steps[f"{name}|1.0|w|{t}|{i}"] for i in range(2)] for t in range(STEPS)}
    if name != "SymbolicDM":  # SymbolicDM's case has weight decay and clipping, which act on every coordinate
        for i in range(2):
            np.testing.assert_array_equal(backend_steps[f"{name}|rest|{i}"], init[i])
            steps_pos = [w[t][i] - (w[t - 1][i] if t else init[i]) for t in range(STEPS)]
            steps_neg = [backend_steps[f"{name}|-1.0|w|{t}|{i}"] - (backend_steps[f"{name}|-1.0|w|{t - 1}|{i}"] if t
                                                                 else init[i]) for t in range(STEPS)]
            for p, n in zip(steps_pos, steps_neg):
                np.testing.assert_allclose(p, -n, rtol=1e-5, atol=1e-7)
        assert w[3][0][0, 0] == w[2][0][0, 0] and w[3][1][1] == w[2][1][1]  # the guard (no clipping here)
    assert all(np.all(np.isfinite(x)) for ws in w.values() for x in ws)


@pytest.fixture(scope="module", params=BACKENDS)
def backend_models(request, tmp_path_factory):
    """The Keras-model checks (``_backend_models``) run under JAX or PyTorch in one process, on inputs written here on
    TensorFlow: models trained one epoch with the optimizers of ``FROM_TENSORFLOW`` and saved as ``.keras`` (then
    continued here: the uninterrupted weights), and the Embedding model's data and initial weights."""
    tmp = tmp_path_factory.mktemp(f"models_{request.param}")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6)).astype("float32")
    y = (x @ np.arange(6, dtype="float32") > 0).astype("int32")
    np.savez(tmp / "cross.npz", x=x, y=y)
    uninterrupted = {}
    for key, spec in FROM_TENSORFLOW.items():
        keras.utils.set_random_seed(0)
        model = small_model(6, make_optimizer(spec))
        fit(model, x, y)
        model.save(tmp / f"{key}.keras")
        fit(model, x, y)
        uninterrupted[key] = model.get_weights()
    tokens, labels = rng.integers(0, 40, size=(96, 5)).astype("int32"), rng.integers(0, 2, size=96).astype("int32")
    keras.utils.set_random_seed(1)
    emb = embedding_model()
    np.savez(tmp / "emb.npz", tokens, labels, *emb.get_weights())
    run = _subprocess("-m _backend_models", request.param, tmp)
    assert run.returncode == 0 and run.stdout.split()[-1] == request.param, run.stderr[-3000:]
    return {"dir": tmp, "tf_uninterrupted": uninterrupted, "emb": emb, "emb_data": (tokens, labels),
            "backend": request.param, **json.loads((tmp / "result.json").read_text())}


def test_fit_and_keras_round_trip(backend_models):
    """On JAX and PyTorch: model.fit with SymbolicRP() lowers the loss; the .keras file loads with safe_mode=True
    and the loaded model's optimizer continues to the same weights as the uninterrupted one."""
    r = backend_models
    assert r["last_loss"] < r["first_loss"]
    assert r["loaded_optimizer"] == "SymbolicRP" and r["loaded_iterations"] == r["iterations"] == 16
    assert r["round_trip_diff"] <= 1e-6


def test_sparse_embedding_gradients_match_tensorflow(backend_models):
    """An Embedding model (sparse gradients on TensorFlow, densified by the optimizer; dense on the other
    backends) fitted from the same weights on both backends ends at the same weights (within 1e-5)."""
    emb, start = backend_models["emb"], [w.copy() for w in backend_models["emb"].get_weights()]
    emb.compile(optimizer=SymbolicRP(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit(emb, *backend_models["emb_data"], epochs=2, batch_size=16)  # here: TensorFlow, tf.IndexedSlices
    got = np.load(backend_models["dir"] / "emb_out.npz", allow_pickle=False)
    for i, w in enumerate(emb.get_weights()):
        np.testing.assert_allclose(got[f"arr_{i}"], w, rtol=1e-5, atol=1e-5, err_msg=f"Embedding model weight {i}")
    assert not np.allclose(emb.get_weights()[0], start[0])  # the embedding rows moved


@pytest.mark.parametrize("key", list(FROM_TENSORFLOW))
def test_a_keras_file_saved_on_tensorflow_continues_on_another_backend(backend_models, key):
    """A model trained with SymbolicRP() or LearnedOptimizer (DM) on TensorFlow, saved as .keras, loads under JAX or
    PyTorch (safe_mode=True) with its optimizer state and continues to the weights the uninterrupted TensorFlow run
    reaches (within 1e-5)."""
    r = backend_models
    assert r[key] == {"optimizer": FROM_TENSORFLOW[key][0], "iterations": 4}
    got = np.load(r["dir"] / f"{key}_continued.npz", allow_pickle=False)
    diff = max(float(np.max(np.abs(got[f"arr_{i}"] - w))) for i, w in enumerate(r["tf_uninterrupted"][key]))
    assert diff <= 1e-5


@pytest.mark.parametrize("key", list(FROM_BACKEND))
def test_a_keras_file_saved_on_another_backend_continues_on_tensorflow(backend_models, key):
    """The other direction: SymbolicRPsi() or LearnedOptimizer (RP_s) trained and saved under JAX or PyTorch,
    loaded here on TensorFlow, continued to the weights the uninterrupted run on that backend reaches (within
    1e-5)."""
    r = backend_models
    data = np.load(r["dir"] / "cross.npz", allow_pickle=False)
    model = keras.saving.load_model(r["dir"] / f"{key}.keras", safe_mode=True)
    assert type(model.optimizer).__name__ == FROM_BACKEND[key][0] and int(model.optimizer.iterations.numpy()) == 4
    fit(model, data["x"], data["y"])
    want = np.load(r["dir"] / f"{key}_uninterrupted.npz", allow_pickle=False)
    diff = max(float(np.max(np.abs(a - want[f"arr_{i}"]))) for i, a in enumerate(model.get_weights()))
    assert diff <= 1e-5


def test_gradient_accumulation_updates_every_second_step(backend_steps):
    """With gradient_accumulation_steps=2 the weights move only at steps 2, 4, 6 (odd steps accumulate)."""
    w = [[backend_steps[f"SymbolicRPsi_accumulate|1.0|w|{t}|{i}"] for i in range(2)] for t in range(STEPS)]
    for i in range(2):
        np.testing.assert_array_equal(w[0][i], INIT[i])
        np.testing.assert_array_equal(w[2][i], w[1][i])
        assert not np.array_equal(w[1][i], INIT[i])


@pytest.mark.parametrize("rule_name", ["symbolic_rp_gain", "symbolic_rp_ema_family", "symbolic_rp_family",
                                       "symbolic_rp_si_gain", "symbolic_dm_gain", "symbolic_rp_small",
                                       "symbolic_rp_gain@8"])
def test_optax_transformation_equals_the_keras_optimizer(rule_name):
    """symbolic_rule(rule) under jax.jit, applied with optax.apply_updates to a parameter tree, follows the TensorFlow
    Keras optimizer step for step (same gradients, bad entries included); the weights move. ``@8``: the rule with a
    size scale of reference 8, below the tree's 17 coordinates (the factor counts every leaf)."""
    import jax
    import jax.numpy as jnp
    import optax

    from tf_symbolic_l2o.optax_rules import symbolic_rule

    rule_name, _, reference = rule_name.partition("@")
    rule = Rule.load(saved_models_dir() / rule_name / "rule.json")
    if reference:
        rule = rule.replace(size_scale={"reference": float(reference), "power": 0.5})
    tx = symbolic_rule(rule, learning_rate=0.7)
    params = {"a": jnp.asarray(INIT[0]), "b": jnp.asarray(INIT[1])}
    state = tx.init(params)
    update = jax.jit(tx.update)
    grads = gradients(seed=1)
    keras_weights, _ = run_steps("SymbolicOptimizer", {"rule": rule, "learning_rate": 0.7}, grads)
    for t, (ga, gb) in enumerate(grads):
        updates, state = update({"a": jnp.asarray(ga), "b": jnp.asarray(gb)}, state, params)
        params = optax.apply_updates(params, updates)
        for got, want in zip((params["a"], params["b"]), keras_weights[t]):
            np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=1e-7, err_msg=f"step {t + 1}")
    assert int(state.count) == STEPS
    assert not np.allclose(np.asarray(params["a"]), INIT[0])
    chained = optax.chain(optax.clip_by_global_norm(1.0), tx)  # composes with optax's own transformations
    out, _ = chained.update({"a": jnp.ones((3, 4)), "b": jnp.ones(5)}, chained.init(params), params)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(out))


def test_optax_transformation_refuses_a_bad_learning_rate():
    from tf_symbolic_l2o.optax_rules import symbolic_rule
    from tf_symbolic_l2o.optimizers import SymbolicRP

    with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
        symbolic_rule(SymbolicRP().rule, learning_rate=float("nan"))


def test_torch_fused_step_falls_back_to_the_eager_step_and_runs_inside_a_compiled_train_step(tmp_path):
    """On PyTorch, SymbolicRP()'s compiled step: where torch.compile fails (here: made to raise, as without a C++
    compiler) a one-line RuntimeWarning says so and the eager step runs, with the weights of fused=False; and under
    model.fit(jit_compile=True), where Keras compiles the whole train step, the optimizer's step is compiled with it
    and trains the model."""
    code = (
        "import warnings, numpy as np, torch, keras\n"
        "from tf_symbolic_l2o.optimizers import SymbolicRP\n"
        "from _backend_models import small_model\n"
        "def fail(*a, **k): raise RuntimeError('no C++ compiler here')\n"
        "real_compile, torch.compile = torch.compile, fail\n"
        "grads = [torch.full((3, 4), 0.3), torch.linspace(-1, 1, 5)]\n"
        "out = {}\n"
        "for fused in (True, False):\n"
        "    vs = [keras.Variable(np.ones((3, 4), 'float32')), keras.Variable(np.zeros(5, 'float32'))]\n"
        "    opt = SymbolicRP(fused=fused)\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        for _ in range(3): opt.apply(grads, vs)\n"
        "    out[fused] = [keras.ops.convert_to_numpy(v) for v in vs]\n"
        "    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]\n"
        "    assert len(msgs) == (1 if fused else 0), msgs\n"
        "    assert not fused or ('no C++ compiler here' in msgs[0] and '\\n' not in msgs[0]), msgs\n"
        "assert all(np.array_equal(a, b) for a, b in zip(out[True], out[False]))\n"
        "assert not np.array_equal(out[True][0], np.ones((3, 4)))\n"
        "torch.compile = real_compile\n"
        "keras.utils.set_random_seed(0)\n"
        "x = np.random.default_rng(0).normal(size=(64, 4)).astype('float32'); y = (x[:, 0] > 0).astype('int32')\n"
        "model = small_model(4, SymbolicRP())\n"
        "model.compile(optimizer=SymbolicRP(), jit_compile=True,\n"
        "              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
        "loss = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history['loss']\n"
        "assert loss[-1] < loss[0], loss\n"
        "print('ok')")
    run = _subprocess(code, "torch", tmp_path)
    assert run.returncode == 0 and run.stdout.strip().splitlines()[-1] == "ok", run.stderr[-3000:]
