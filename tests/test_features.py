"""Features against an independent NumPy implementation of the paper's formulas."""

import numpy as np
import pytest
import tensorflow as tf

from tf_symbolic_l2o.features import FEATURE_NAMES, FeatureSet, parse_features


def numpy_features(grads, b1=0.95, b2=0.95, eps=1e-12):
    """The features written from the paper's definitions (Adam-style m̂, v̂ with β1 = β2 = 0.95): {name: [T, n]}."""
    T, n = grads.shape
    m = v = mom5 = mom9 = mom99 = np.zeros(n)
    vp = {2.0: np.zeros(n), 2.5: np.zeros(n), 3.0: np.zeros(n)}
    ema = {(base, d): np.zeros(n) for base in ("mt", "gt") for d in (0.5, 0.9, 0.99)}
    out = {k: [] for k in FEATURE_NAMES}
    for i in range(T):
        g, t = grads[i], i + 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mom5, mom9, mom99 = 0.5 * mom5 + 0.5 * g, 0.9 * mom9 + 0.1 * g, 0.99 * mom99 + 0.01 * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        s = np.sqrt(vhat) + eps
        vals = {"mt": mhat / s, "gt": g / s, "g": g, "mom5": mom5, "mom9": mom9, "mom99": mom99,
                "t": np.full(n, t / 1000), "m": m, "mhat": mhat, "s": s}
        for p, name in ((2.0, "mp2"), (2.5, "mp25"), (3.0, "mp3")):
            vp[p] = b2 * vp[p] + (1 - b2) * np.abs(g) ** p
            vals[name] = mhat / ((vp[p] / (1 - b2 ** t)) ** (1 / p) + 1e-8)
        for (base, d), e in ema.items():  # EMAs of this step's m̃ and g̃
            ema[base, d] = d * e + (1 - d) * vals[base]
            vals[f"e{base}{str(d)[2:]}"] = ema[base, d]
        for k in FEATURE_NAMES:
            out[k].append(vals[k])
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("spec", ["mt+gt", "mt+g+mom5+mom9+mom99", "mp2+mp25+mp3", "egt9", "emt99+g",
                                  "mt+gt+emt5+emt9+egt5+egt9", "+".join(FEATURE_NAMES)])
def test_features_match_numpy(spec):
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(12, 7)) * np.logspace(-4, 0, 7)
    grads[3, 2] = 0.0
    fs = FeatureSet(spec)
    state = fs.init_state([7], tf.float64)
    ref = numpy_features(grads)
    for i in range(12):
        feats, state = fs.update(state, tf.constant(grads[i]), i + 1)
        assert feats.shape == (7, fs.num_features)
        for j, name in enumerate(fs.names):
            np.testing.assert_allclose(feats[:, j].numpy(), ref[name][i], rtol=1e-9, atol=1e-12, err_msg=name)


def test_canonical_order_and_state_slots():
    assert parse_features("gt+mt") == ("mt", "gt")
    fs = FeatureSet("mom9+mt")
    assert fs.names == ("mt", "mom9")
    assert fs.state_names() == ("m", "v", "mom9")
    assert FeatureSet("g").state_names() == ()
    assert FeatureSet("mp3").state_names() == ("m", "v_mp3")
    assert FeatureSet("egt9+emt5").state_names() == ("m", "v", "emt5", "egt9")
    assert FeatureSet("egt99").state_names() == ("v", "egt99")


def test_ema_features_need_the_step():
    fs = FeatureSet("mt+emt9")
    with pytest.raises(ValueError, match="need the step"):
        fs.advance(fs.init_state([2]), tf.constant([1.0, -1.0]))


def test_first_step_values_by_hand():
    # t = 1: m̂ = g, v̂ = g², so m̃ = g̃ = sign(g) (up to eps)
    fs = FeatureSet("mt+gt")
    feats, _ = fs.update(fs.init_state([3]), tf.constant([0.5, -2.0, 1e-3]), 1)
    np.testing.assert_allclose(feats.numpy(), [[1, 1], [-1, -1], [1, 1]], rtol=1e-5)


@pytest.mark.parametrize("spec", ["g", "mom9", "mt+gt", "mp25", "mp3", "+".join(FEATURE_NAMES)])
def test_inputs_finite_is_where_advancing_keeps_the_state_finite(spec):
    """``inputs_finite(g)`` (the Keras optimizer's guard) against float32 NumPy: g finite, and g² / |g|ᵖ finite
    when the state averages them; then one advance from a large finite state stays finite."""
    g = np.array([1.0, -2.0, np.inf, -np.inf, np.nan, 3e38, 2e19, 1e15, 1e13, 0.0], np.float32)
    fs = FeatureSet(spec)
    names = fs.state_names()
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.isfinite(g)
        if "v" in names:
            want &= np.isfinite(g * g)
        for key, p in (("v_mp2", 2.0), ("v_mp25", 2.5), ("v_mp3", 3.0)):
            if key in names:
                want &= np.isfinite(np.abs(g) ** np.float32(p))
    got = fs.inputs_finite(tf.constant(g)).numpy()
    np.testing.assert_array_equal(got, want)
    if spec == "g":
        np.testing.assert_array_equal(got, np.isfinite(g))  # no state: only g itself
    state = {k: tf.fill([g.size], np.float32(1e30)) for k in names}
    new = fs.advance(state, tf.where(tf.constant(got), tf.constant(g), 0.0), step=5)
    for k in names:
        assert np.all(np.isfinite(new[k].numpy()[got])), k


@pytest.mark.parametrize("bad", ["", "mt+foo", "mt+mt"])
def test_bad_feature_strings(bad):
    with pytest.raises(ValueError):
        parse_features(bad)


def test_bad_betas():
    with pytest.raises(ValueError, match="beta1"):
        FeatureSet("mt", beta1=1.0)
