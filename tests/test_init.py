"""Every initialiser's statistics, reproducibility from a seed, and the ways to choose one."""

import importlib

import numpy as np
import pytest

import fastbptt as fb
from fastbptt import init as fbinit


def _available(cell):
    try:
        importlib.import_module(f"fastbptt._{cell}")
    except ImportError:
        return False
    return True


GATED = [c for c in ("lstm", "gru") if _available(c)]  # collected once those kernels are built
GATES = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 3}
RECURRENT = {"tanh": "W", "relu": "W", "lstm": "Wh", "gru": "Wh"}

N_IN, H, N_OUT = 150, 200, 60  # large enough for tight statistics (W has 40,000 entries)


def _model(init, cell="tanh", seed=0, dtype=np.float64, hidden=H):
    return fb.RNN(N_IN, hidden, N_OUT, cell=cell, init=init, seed=seed, dtype=dtype)


def _check_uniform(x, lo, hi, name):
    """Support inside [lo, hi] and reaching near both ends; mean and variance of U(lo, hi)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n, width = x.size, hi - lo
    assert x.min() >= lo and x.max() <= hi, f"{name}: outside [{lo}, {hi}]"
    assert x.min() < lo + 0.01 * width, f"{name}: does not reach the low end"
    assert x.max() > hi - 0.01 * width, f"{name}: does not reach the high end"
    sd_mean = width / np.sqrt(12 * n)
    assert abs(x.mean() - (lo + hi) / 2) < 5 * sd_mean, f"{name}: mean {x.mean()}"
    assert abs(x.var() / (width ** 2 / 12) - 1) < 0.06, f"{name}: variance {x.var()}"


def _zero(x, name):
    assert not np.any(x), f"{name} should be zero"


def test_default_is_pytorch_uniform():
    p = _model("default").params
    k = 1 / np.sqrt(H)
    for name in ("U", "W", "V"):
        _check_uniform(p[name], -k, k, name)
    both_biases = np.concatenate([p["b"], p["c"]])
    assert np.abs(both_biases).max() <= k
    assert _model(None).params["W"].tobytes() == p["W"].tobytes()


def test_fan_in_uniform():
    p = _model("fan_in").params
    _check_uniform(p["U"], -1 / np.sqrt(N_IN), 1 / np.sqrt(N_IN), "U")
    _check_uniform(p["W"], -1 / np.sqrt(H), 1 / np.sqrt(H), "W")
    _check_uniform(p["V"], -1 / np.sqrt(H), 1 / np.sqrt(H), "V")
    _zero(p["b"], "b")
    _zero(p["c"], "c")


@pytest.mark.parametrize("scheme, lo, hi", [("uniform", -1.0, 1.0), ("uniform_positive", 0.0, 1.0)])
def test_seed_001_uniform_schemes(scheme, lo, hi):
    p = _model(scheme).params
    for name in ("U", "W", "V"):
        _check_uniform(p[name], lo, hi, name)
    _zero(p["b"], "b")
    _zero(p["c"], "c")


@pytest.mark.parametrize("cell", ["tanh"] + GATED)
@pytest.mark.parametrize("scheme", ["xavier", "glorot"])
def test_xavier(scheme, cell):
    hidden = H if cell == "tanh" else 50
    p = _model(scheme, cell, hidden=hidden).params
    # a gated cell's stacked matrix counts each gate's block on its own: fan_out = H
    for name, a in p.items():
        if a.ndim == 1:
            _zero(a, name)
            continue
        fan_out = N_OUT if name == "V" else hidden
        bound = np.sqrt(6 / (a.shape[1] + fan_out))
        _check_uniform(a, -bound, bound, name)
    assert _model("glorot", cell, hidden=hidden).params["V"].tobytes() == \
        _model("xavier", cell, hidden=hidden).params["V"].tobytes()


@pytest.mark.parametrize("cell", ["tanh", "relu"] + GATED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_orthogonal_recurrent_blocks(cell, dtype):
    hidden = 64
    p = _model("orthogonal", cell, dtype=dtype, hidden=hidden).params
    W = p[RECURRENT[cell]].astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for g in range(GATES[cell]):
        block = W[g * hidden:(g + 1) * hidden]
        assert np.abs(block.T @ block - np.eye(hidden)).max() < tol
        assert np.abs(block @ block.T - np.eye(hidden)).max() < tol
    # entries of a Haar-random orthogonal matrix have variance 1/H
    assert abs(W.var() * hidden - 1) < 0.05
    k = 1 / np.sqrt(hidden)
    for name, a in p.items():
        if name != RECURRENT[cell]:
            assert np.abs(a).max() <= k, f"{name} should follow the default scheme"


def test_orthogonal_is_haar_not_biased_by_qr_signs():
    # QR alone returns a positive-diagonal R, which skews Q's diagonal; with the fix, mean ~ 0
    rng = np.random.default_rng(0)
    diag = np.concatenate([np.diag(fbinit.random_orthogonal(8, rng)) for _ in range(2000)])
    assert abs(diag.mean()) < 5 * np.sqrt(1 / 8 / diag.size)


@pytest.mark.parametrize("cell", ["relu", "tanh"] + GATED)
def test_identity(cell):
    hidden = 40
    p = _model("identity", cell, hidden=hidden).params
    W = p[RECURRENT[cell]]
    np.testing.assert_array_equal(W, np.tile(np.eye(hidden), (GATES[cell], 1)))
    for name, a in p.items():
        if a.ndim == 1:
            _zero(a, name)
    k = 1 / np.sqrt(hidden)
    _check_uniform(p["V"], -k, k, "V")
    half = fb.RNN(3, 5, 1, cell="relu", init=fbinit.identity(0.5)).params["W"]
    np.testing.assert_array_equal(half, 0.5 * np.eye(5))


@pytest.mark.parametrize("cell", [c for c in GATED if c == "lstm"])
@pytest.mark.parametrize("base", ["default", "xavier", "orthogonal"])
def test_lstm_unit_forget_bias(base, cell):
    hidden = 30
    plain = _model(base, cell, seed=4, hidden=hidden).params
    p = _model(base + "+forget_bias", cell, seed=4, hidden=hidden).params
    np.testing.assert_array_equal(p["b"][hidden:2 * hidden], 1.0)
    rest = np.r_[0:hidden, 2 * hidden:4 * hidden]
    np.testing.assert_array_equal(p["b"][rest], plain["b"][rest])
    for name in plain:
        if name != "b":
            np.testing.assert_array_equal(p[name], plain[name])
    two = fb.RNN(2, 4, 1, cell="lstm", init=fbinit.with_forget_bias("uniform", 2.0)).params["b"]
    np.testing.assert_array_equal(two, [0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0])


def test_forget_bias_needs_an_lstm():
    with pytest.raises(ValueError, match="forget-gate bias"):
        fb.RNN(2, 4, 1, cell="tanh", init="xavier+forget_bias")
    with pytest.raises(ValueError, match="forget-gate bias"):
        fb.RNN(2, 4, 1, cell="tanh", init=fbinit.with_forget_bias())


SCHEMES = ["default", "fan_in", "uniform", "uniform_positive", "xavier", "glorot", "orthogonal",
           "identity"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reproducible_from_seed(scheme):
    a = fb.RNN(3, 7, 2, init=scheme, seed=11).params
    b = fb.RNN(3, 7, 2, init=scheme, seed=11).params
    c = fb.RNN(3, 7, 2, init=scheme, seed=12).params
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name
    assert a["U"].tobytes() != c["U"].tobytes()  # U is drawn at random by every scheme


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dtype_follows_model(scheme):
    p = fb.RNN(3, 7, 2, init=scheme, dtype=np.float32).params
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in p.values())


def test_choose_per_parameter_callable_or_array():
    W = np.arange(16.0).reshape(4, 4) / 100
    m = fb.RNN(2, 4, 1, init={"W": W, "U": "uniform", "V": "xavier"}, seed=1)
    np.testing.assert_array_equal(m.params["W"], W)
    assert np.abs(m.params["U"]).max() <= 1.0 and np.abs(m.params["U"]).max() > 0.5

    def ones(name, shape, rng, hidden_size):
        return np.ones(shape)

    assert np.all(fb.RNN(2, 4, 1, init=ones).params["b"] == 1.0)
    with pytest.raises(ValueError, match="unknown initialiser 'he'"):
        fb.RNN(2, 4, 1, init="he")
    with pytest.raises(ValueError, match="unknown parameters"):
        fb.RNN(2, 4, 1, init={"Wh": "xavier"})
    with pytest.raises(ValueError, match="shape"):
        fb.RNN(2, 4, 1, init={"W": np.eye(3)})
