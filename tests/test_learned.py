"""The coordinate-wise LSTM optimizers: shapes, formulas, the update rule and save/load."""

import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.baselines import Baseline
from tf_symbolic_l2o.learned.io import load_l2o, save_l2o
from tf_symbolic_l2o.learned.lstm import log_and_sign
from tf_symbolic_l2o.learned.registry import available_optimizers, make_l2o


@pytest.mark.parametrize("name,n_in,lstm", [("dm", 2, (20, 20)), ("rp", 2, (20, 20)), ("rp_s", 2, (7,)),
                                            ("rp_si", 4, (7,))])
def test_forward_shapes(name, n_in, lstm):
    l2o = make_l2o(name)
    assert l2o.num_inputs == n_in
    n = 13
    state = l2o.init_state(n)
    g = tf.random.normal([n])
    raw, feats, new = l2o.forward(g, state, 1)
    assert raw.shape == (n,)
    assert feats.shape == (n, l2o.feature_set.num_features)
    assert l2o.odd  # the presets are built odd: each layer carries both branches' state
    assert [h.shape for h, _ in new[1]] == [(n, 2 * u) for u in lstm]
    assert l2o.state_units == tuple(2 * u for u in lstm)
    delta, _ = l2o.update(g, state, 1)
    np.testing.assert_allclose(delta.numpy(), 0.01 * raw.numpy(), rtol=1e-6)
    if name != "dm":
        assert np.all(np.abs(raw.numpy()) <= 1.0)  # tanh head


def test_parameter_counts():
    # RP_s: Dense(2→6) 18 + LSTM(6→7) 4·(6·7+7·7+7)=392 + Dense(7→1) 8 = 418
    assert sum(int(np.prod(v.shape)) for v in make_l2o("rp_s").trainable_variables) == 18 + 392 + 8
    # DM: LSTM(2→20) 4·(2·20+20·20+20)=1840, LSTM(20→20) 3280, Dense 21
    assert sum(int(np.prod(v.shape)) for v in make_l2o("dm").trainable_variables) == 1840 + 3280 + 21


def test_log_and_sign_by_hand():
    g = tf.constant([1.0, -1e-3, 0.0, 1e-20])
    out = log_and_sign(g, 5.0).numpy()
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(out[:, 0], np.clip(np.log(np.abs(g.numpy()) + eps) / 5, -1, 1), rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], np.clip(g.numpy() * np.exp(5.0), -1, 1), rtol=1e-5)
    assert out[0, 1] == 1.0 and out[2, 1] == 0.0


def test_lstm_step_matches_numpy():
    """RP_s raw output from its weights, computed with NumPy (Keras LSTM gate order i, f, c, o): the plain network
    h(x), and the odd one ½·(h(x) − h(−x)) (both RP_s inputs m̃, g̃ are odd)."""
    n = 5
    g = np.random.default_rng(1).normal(size=n).astype(np.float32)

    def numpy_h(w, feats):
        x = feats @ w[0] + w[1]
        x = np.where(x > 0, x, np.exp(x) - 1)  # ELU
        z = x @ w[2] + np.zeros((n, 7)) @ w[3] + w[4]
        sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
        i, f, c, o = np.split(z, 4, axis=1)
        c = sig(f) * 0 + sig(i) * np.tanh(c)
        h = sig(o) * np.tanh(c)
        return np.tanh(h @ w[5] + w[6])[:, 0]

    for odd in (False, True):
        l2o = make_l2o("rp_s", odd=odd, seed=3)
        raw, feats, _ = l2o.forward(tf.constant(g), l2o.init_state(n), 1)
        w = [v.numpy() for v in l2o.weights]
        f = feats.numpy()
        ref = 0.5 * (numpy_h(w, f) - numpy_h(w, -f)) if odd else numpy_h(w, f)
        np.testing.assert_allclose(raw.numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["dm", "rp_s", "rp_si"])
def test_odd_network_is_the_difference_of_two_plain_runs(name):
    """Over a whole sequence, the odd L2O equals ½·(plain run on g − plain run on −g) with the same weights (each
    branch keeps its own recurrent state), it is exactly zero at rest and exactly odd."""
    odd = make_l2o(name, seed=5)
    rng = np.random.default_rng(4)  # random weights, biases included (fresh biases are zero: no drift to see)
    odd.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in odd.get_weights()])
    plain = make_l2o(name, seed=5, odd=False)
    plain.set_weights(odd.get_weights())
    n, steps = 7, 12
    grads = (np.random.default_rng(2).normal(size=(steps, n)) * np.logspace(-4, 1, n)).astype(np.float32)

    def run(opt, seq):
        state, outs = opt.init_state(n), []
        for t, g in enumerate(seq, start=1):
            raw, _, state = opt.forward(tf.constant(g), state, t)
            outs.append(raw.numpy())
        return np.array(outs)

    ref = 0.5 * (run(plain, grads) - run(plain, -grads))
    np.testing.assert_allclose(run(odd, grads), ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(run(odd, -grads), -run(odd, grads), rtol=0, atol=1e-7)
    assert np.all(run(odd, np.zeros_like(grads)) == 0.0)
    assert not np.all(run(plain, np.zeros_like(grads)) == 0.0)  # the plain network drifts at rest


def test_unknown_name_and_bad_sizes():
    with pytest.raises(ValueError, match="unknown learned optimizer"):
        make_l2o("lstm9000")
    with pytest.raises(ValueError):
        make_l2o("rp", lstm=(0,))
    assert available_optimizers() == ["dm", "rp", "rp_s", "rp_si"]


def test_save_load_roundtrip_and_savedmodel(tmp_path):
    l2o = make_l2o("rp_s", features="mt+g+mom9")
    save_l2o(l2o, tmp_path / "l2o")
    back = load_l2o(tmp_path / "l2o")
    assert back.feature_set.names == ("mt", "g", "mom9") and back.odd
    for a, b in zip(l2o.weights, back.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    g = tf.random.normal([6])
    ref, _ = l2o.update(g, l2o.init_state(6), 1)
    sm = tf.saved_model.load(str(tmp_path / "l2o" / "saved_model"))
    out = sm.step(g, tf.constant(1), sm.init_state(tf.constant(6)))
    np.testing.assert_allclose(out["delta"].numpy(), ref.numpy(), rtol=1e-5, atol=1e-7)


def test_saved_weights_npz_and_checkpoint_hold_the_same_weights(tmp_path):
    """save_l2o writes the weights twice (weights.npz for every Keras backend, the TF checkpoint for older readers);
    load_l2o reads the npz, and a folder without it is read from the checkpoint: both give the saved weights."""
    l2o = make_l2o("rp_s", seed=3)
    save_l2o(l2o, tmp_path / "l2o")
    with np.load(tmp_path / "l2o" / "weights.npz", allow_pickle=False) as data:
        assert [data[f"arr_{i}"].tolist() for i in range(len(data.files))] == [w.tolist() for w in l2o.get_weights()]
    from_npz = load_l2o(tmp_path / "l2o").get_weights()
    (tmp_path / "l2o" / "weights.npz").unlink()
    from_checkpoint = load_l2o(tmp_path / "l2o").get_weights()
    for a, b, w in zip(from_npz, from_checkpoint, l2o.get_weights()):
        np.testing.assert_array_equal(a, w)
        np.testing.assert_array_equal(b, w)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_l2o(tmp_path / "nothing")
    save_l2o(make_l2o("rp_s"), tmp_path / "l2o")
    npz = tmp_path / "l2o" / "weights.npz"
    good = npz.read_bytes()
    npz.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read learned-optimizer weights"):
        load_l2o(tmp_path / "l2o")
    np.savez(npz, np.zeros((3, 3), np.float32))  # a readable file with the wrong weights
    with pytest.raises(ValueError, match="holds weights of shapes"):
        load_l2o(tmp_path / "l2o")
    npz.write_bytes(good)
    with np.load(npz, allow_pickle=False) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    arrays[0][0, 0] = np.nan
    np.savez(npz, *arrays)
    with pytest.raises(ValueError, match="non-finite"):
        load_l2o(tmp_path / "l2o")
    npz.unlink()  # a folder saved before weights.npz existed: the checkpoint is read
    for f in (tmp_path / "l2o").glob("weights.data*"):
        f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        load_l2o(tmp_path / "l2o")


def test_baselines_match_keras():
    """The functional baselines reproduce keras.optimizers step for step."""
    import keras

    rng = np.random.default_rng(0)
    grads = rng.normal(size=(6, 4)).astype(np.float32)
    for kind, keras_opt in [("sgd", keras.optimizers.SGD(0.1)),
                            ("momentum", keras.optimizers.SGD(0.1, momentum=0.9)),
                            ("adam", keras.optimizers.Adam(0.01)),
                            ("rmsprop", keras.optimizers.RMSprop(0.01))]:
        var = tf.Variable(np.zeros(4, np.float32))
        opt = Baseline(kind, float(keras_opt.learning_rate.numpy()))
        theta, state = tf.zeros(4), opt.init_state(4)
        for t, g in enumerate(grads, start=1):
            keras_opt.apply_gradients([(tf.constant(g), var)])
            delta, state = opt.update(tf.constant(g), state, t)
            theta += delta
        np.testing.assert_allclose(theta.numpy(), var.numpy(), rtol=1e-5, atol=1e-6, err_msg=kind)
