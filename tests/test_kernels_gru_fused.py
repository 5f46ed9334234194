"""The GRU's fused entries (projection inside the forward loop, weight gradients folded inside the
backward loop, the output layer in both) agree with the NumPy twin and with finite differences,
across paths, threads, variable lengths and the optional dA; bad input fails cleanly."""

import numpy as np
import pytest
from conftest import assert_close

from fastbptt import _gru
from fastbptt.reference import gru as gru_np

# every test here runs once per SIMD set the host supports (conftest.simd)
pytestmark = pytest.mark.usefixtures("simd")

SHAPES = [  # T, B, I, Hn: one row per block takes the hand path, more take the register tiles
    (1, 1, 1, 1),
    (2, 1, 3, 16),  # two rows in all: the products with the weights as given
    (7, 1, 3, 5),
    (9, 2, 3, 16),
    (13, 5, 4, 37),
    (6, 40, 0, 9),  # no input: the projections are the bias alone
    (20, 32, 32, 128),
    (70, 33, 7, 24),  # more rows than one fold holds: several folds per block
]
GRADS = ("dh0", "dWx", "dWh", "dbx", "dbh")


def _lengths(rng, T, B):
    lengths = np.sort(rng.integers(1, T + 1, B))[::-1]
    lengths[0] = T
    return np.array([(lengths > t).sum() for t in range(T)], dtype=np.intp)


def _problem(rng, T, B, I, n, dtype, O=0):
    p = {
        "Wx": rng.normal(0, 0.5, (3 * n, I)),
        "bx": rng.normal(0, 0.3, (3 * n,)),
        "Wh": rng.normal(0, 0.8 / np.sqrt(n), (3 * n, n)),
        "bh": rng.normal(0, 0.3, (3 * n,)),
        "X": rng.normal(0, 1.0, (T, B, I)),
        "h0": rng.normal(0, 0.5, (B, n)),
        "dH": rng.normal(0, 1.0, (T, B, n)),
        "dh_T": rng.normal(0, 1.0, (B, n)),
        "V": rng.normal(0, 0.5, (O, n)),
        "c": rng.normal(0, 0.5, (O,)),
        "dO": rng.normal(0, 1.0, (T, B, O)),
    }
    return {k: v.astype(dtype) for k, v in p.items()}


def _run(kern, p, n_threads=1, batch_sizes=None, want_dA=False, head=False):
    """forward_fused then backward_fused; with head, the output layer (V, c) in both loops."""
    T, B, _ = p["X"].shape
    n, dt = p["Wh"].shape[1], p["X"].dtype
    # zeros: with batch_sizes the kernels leave the padded entries as they were
    H = np.zeros((T + 1, B, n), dt)
    G = np.zeros((T, B, 3 * n), dt)
    HN = np.zeros((T, B, n), dt)
    r = {"H": H, "G": G, "HN": HN}
    logits = ()
    if head:
        r["out"] = np.zeros((T, B, p["V"].shape[0]), dt)
        logits = (p["V"], p["c"], r["out"])
    kern.forward_fused(p["Wx"], p["bx"], p["Wh"], p["bh"], p["X"], p["h0"], H, G, HN, n_threads,
                       batch_sizes, *logits)
    r["dh0"] = np.full((B, n), np.nan, dt)
    for name in ("Wx", "Wh", "bx", "bh"):
        r["d" + name] = np.full_like(p[name], np.nan)  # every entry must be overwritten
    dA = np.zeros((T, B, 3 * n), dt) if want_dA else None
    tail = ()
    if head:
        r["dV"] = np.full_like(p["V"], np.nan)
        tail = (p["dO"], p["V"], r["dV"])
    kern.backward_fused(p["Wh"], p["X"], H, G, HN, None if head else p["dH"], p["dh_T"], r["dh0"],
                        r["dWx"], r["dWh"], r["dbx"], r["dbh"], n_threads, batch_sizes, dA, *tail)
    if want_dA:
        r["dA"] = dA
    return r


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("ragged", [False, True])
def test_fused_agrees_with_numpy(dtype, shape, n_threads, ragged, rng):
    p = _problem(rng, *shape, dtype)
    bs = _lengths(rng, shape[0], shape[1]) if ragged else None
    got = _run(_gru, p, n_threads, bs, want_dA=True)
    want = _run(gru_np, p, 1, bs, want_dA=True)
    for k in want:
        assert_close(got[k], want[k], dtype, what=k)



@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 2, 3), (9, 1, 3, 16), (12, 7, 4, 37), (5, 33, 8, 24)],
                         ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("O", [0, 1, 10])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("ragged", [False, True])
def test_output_layer_in_the_loops(dtype, shape, O, n_threads, ragged, rng):
    """Logits formed in the forward loop, dO_t V and the output layer's weight gradient in the
    backward loop: the Cython kernels against the NumPy twin, and the twin against plain
    products."""
    T, B, _, n = shape
    p = _problem(rng, *shape, dtype, O=O)
    bs = _lengths(rng, T, B) if ragged else None
    got = _run(_gru, p, n_threads, bs, want_dA=True, head=True)
    want = _run(gru_np, p, 1, bs, want_dA=True, head=True)
    for k in want:
        assert_close(got[k], want[k], dtype, what=k)
    valid = np.ones((T, B), bool) if bs is None else np.arange(B)[None, :] < bs[:, None]
    H = want["H"]
    assert_close(want["out"], np.where(valid[..., None], H[1:] @ p["V"].T + p["c"], 0), dtype,
                 what="out")
    dO = np.where(valid[..., None], p["dO"], 0)
    assert_close(want["dV"], np.einsum("tbo,tbn->on", dO, H[1:]), dtype, what="dV")
    # dH = dO @ V given as an array: the same gradients
    p["dH"] = (p["dO"].reshape(T * B, O) @ p["V"]).reshape(T, B, n)
    plain = _run(gru_np, p, 1, bs, want_dA=True)
    for k in GRADS + ("dA",):
        assert_close(want[k], plain[k], dtype, what=k)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_matches_the_plain_kernels_and_gemms(dtype, rng):
    """The fused entries give what forward/backward plus the weight-gradient GEMMs give."""
    T, B, I, n = 11, 6, 5, 12
    p = _problem(rng, T, B, I, n, dtype)
    got = _run(_gru, p, 2)
    A = (p["X"].reshape(-1, I) @ p["Wx"].T + p["bx"]).reshape(T, B, 3 * n)
    H, G, HN = np.empty((T + 1, B, n), dtype), np.empty((T, B, 3 * n), dtype), np.empty((T, B, n), dtype)
    dA, dGh, dh0 = np.empty_like(G), np.empty_like(G), np.empty((B, n), dtype)
    _gru.forward(p["Wh"], p["bh"], A, p["h0"], H, G, HN)
    _gru.backward(p["Wh"], H, G, HN, p["dH"], p["dh_T"], dA, dGh, dh0)
    da, dg = dA.reshape(-1, 3 * n), dGh.reshape(-1, 3 * n)
    want = {"H": H, "G": G, "HN": HN, "dh0": dh0, "dWx": da.T @ p["X"].reshape(-1, I),
            "dWh": dg.T @ H[:-1].reshape(-1, n), "dbx": da.sum(0), "dbh": dg.sum(0)}
    for k in want:
        assert_close(got[k], want[k], dtype, what=k)


@pytest.mark.parametrize("head", [False, True])
@pytest.mark.parametrize("B", [1, 4])  # the hand path and the register tiles
def test_gradients_match_finite_differences(head, B, rng):
    """L = sum(H[1:] * R) (or sum(out * R) with the output layer) + h_T . dh_T: the kernels'
    gradients against central differences of the forward kernel, at entries of every array."""
    T, I, n, O = 5, 3, 6, 4
    p = _problem(rng, T, B, I, n, np.float64, O=O)
    R = p["dO"] if head else p["dH"]

    def loss(q):
        r = _run(_gru, q, head=head)
        return float(np.sum((r["out"] if head else r["H"][1:]) * R) + np.sum(r["H"][-1] * q["dh_T"]))

    got = _run(_gru, p, head=head)
    eps = 1e-6
    for name in ("Wx", "bx", "Wh", "bh", "h0") + (("V", "c") if head else ()):
        for idx in [tuple(rng.integers(0, s) for s in p[name].shape) for _ in range(4)]:
            q = {k: v.copy() for k, v in p.items()}
            q[name][idx] += eps
            up = loss(q)
            q[name][idx] -= 2 * eps
            numeric = (up - loss(q)) / (2 * eps)
            if name == "c":  # the logits' bias: its gradient is the sum of dO over the steps
                analytic = R.sum(axis=(0, 1))[idx]
            else:
                analytic = got["dh0" if name == "h0" else "d" + name][idx]
            assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(numeric)), (name, idx)


def test_fused_results_do_not_depend_on_the_thread_count_beyond_rounding(rng):
    p = _problem(rng, 30, 17, 6, 20, np.float64)
    one, two = _run(_gru, p, 1), _run(_gru, p, 2)
    for k in ("H", "G", "HN", "dh0"):
        # the rows of a block never meet another block's: bitwise the same
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)
    for k in ("dWx", "dWh", "dbx", "dbh"):
        assert_close(one[k], two[k], np.float64, what=k)


def test_fused_T_0_copies_the_state_and_zeroes_the_weight_gradients(rng):
    p = _problem(rng, 0, 3, 4, 5, np.float64, O=2)
    for head in (False, True):
        out = _run(_gru, p, head=head)
        np.testing.assert_array_equal(out["H"][0], p["h0"])
        np.testing.assert_array_equal(out["dh0"], p["dh_T"])
        for k in ("dWx", "dWh", "dbx", "dbh") + (("dV",) if head else ()):
            assert not out[k].any()


@pytest.mark.parametrize("which", ["Wx", "bx", "bh", "X", "h0", "dH", "dWx", "dWh", "dbx", "dbh"])
def test_fused_bad_shapes_name_the_array(which, rng):
    p = _problem(rng, 4, 3, 2, 5, np.float64)
    bad = dict(p)
    if which in p:
        bad[which] = np.zeros(p[which].shape[:-1] + (p[which].shape[-1] + 1,))
        # the inputs set I, so a wider X shows up as a Wx that does not fit it
        with pytest.raises(ValueError, match="Wx has shape" if which == "X" else f"{which} has shape"):
            _run(_gru, bad)
        return
    T, B, n = 4, 3, 5
    H, G, HN = np.zeros((T + 1, B, n)), np.zeros((T, B, 3 * n)), np.zeros((T, B, n))
    outs = {"dWx": np.empty_like(p["Wx"]), "dWh": np.empty_like(p["Wh"]),
            "dbx": np.empty_like(p["bx"]), "dbh": np.empty_like(p["bh"])}
    outs[which] = np.empty(outs[which].shape[:-1] + (outs[which].shape[-1] + 2,))
    with pytest.raises(ValueError, match=f"{which} has shape"):
        _gru.backward_fused(p["Wh"], p["X"], H, G, HN, p["dH"], p["dh_T"], np.empty((B, n)),
                            outs["dWx"], outs["dWh"], outs["dbx"], outs["dbh"])


@pytest.mark.parametrize("kern", [_gru, gru_np], ids=["cython", "numpy"])
def test_head_arguments_come_one_way_and_fit(kern, rng):
    T, B, I, n, O = 4, 3, 2, 5, 2
    p = _problem(rng, T, B, I, n, np.float64, O=O)
    r = _run(gru_np, p)
    args = (p["Wh"], p["X"], r["H"], r["G"], r["HN"])
    tail = (p["dh_T"], np.empty((B, n)), np.empty_like(p["Wx"]), np.empty_like(p["Wh"]),
            np.empty_like(p["bx"]), np.empty_like(p["bh"]), 1, None, None)
    dO, V = p["dO"], p["V"]
    with pytest.raises(ValueError, match="not both"):
        kern.backward_fused(*args, p["dH"], *tail, dO, V)
    with pytest.raises(ValueError, match="not both"):
        kern.backward_fused(*args, None, *tail)
    with pytest.raises(ValueError, match="not both"):
        kern.backward_fused(*args, None, *tail, dO, None)
    with pytest.raises(ValueError, match="dV needs dO"):
        kern.backward_fused(*args, p["dH"], *tail, None, None, np.zeros((O, n)))
    with pytest.raises(ValueError, match="V has shape"):
        kern.backward_fused(*args, None, *tail, dO, np.zeros((O, n + 1)))
    with pytest.raises(ValueError, match="dO has shape"):
        kern.backward_fused(*args, None, *tail, np.zeros((T, B + 1, O)), V)
    with pytest.raises(ValueError, match="dV has shape"):
        kern.backward_fused(*args, None, *tail, dO, V, np.zeros((O + 1, n)))
    H, G, HN = r["H"].copy(), r["G"].copy(), r["HN"].copy()
    fwd = (p["Wx"], p["bx"], p["Wh"], p["bh"], p["X"], p["h0"], H, G, HN, 1, None)
    with pytest.raises(ValueError, match="together"):
        kern.forward_fused(*fwd, V, None, None)
    with pytest.raises(ValueError, match="out has shape"):
        kern.forward_fused(*fwd, V, p["c"], np.zeros((T, B, O + 1)))
    with pytest.raises(ValueError, match="batch_sizes"):
        kern.forward_fused(*fwd[:-1], np.array([3, 3, 4, 1]))


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("B", [1, 6])
def test_fused_nan_raises_naming_the_step(n_threads, B, rng):
    p = _problem(rng, 8, B, 3, 4, np.float64)
    p["X"][5, B - 1, 0] = np.nan
    with pytest.raises(FloatingPointError, match="time step 5"):
        _run(_gru, p, n_threads)
    q = _problem(rng, 8, B, 3, 4, np.float64)
    q["dH"][3, 0, 1] = np.inf
    with pytest.raises(FloatingPointError, match="time step 3"):
        _run(_gru, q, n_threads)


def test_fused_refuses_mixed_dtypes(rng):
    p = _problem(rng, 3, 2, 2, 4, np.float64)
    p["X"] = p["X"].astype(np.float32)
    with pytest.raises((TypeError, ValueError)):
        _run(_gru, p)


@pytest.mark.parametrize("head", [False, True])
@pytest.mark.parametrize("ragged", [False, True])
def test_pure_python_twin_keeps_the_contract(head, ragged, rng):
    """The pure-Python twin's fused entries (compositions of its plain ones) agree with the NumPy
    twin's, and refuse a loss gradient given two ways."""
    from fastbptt.reference import gru_pure

    T, B = 4, 3
    p = _problem(rng, T, B, 2, 5, np.float64, O=2)
    bs = _lengths(rng, T, B) if ragged else None
    got = _run(gru_pure, p, 1, bs, want_dA=True, head=head)
    want = _run(gru_np, p, 1, bs, want_dA=True, head=head)
    for k in want:
        assert_close(got[k], want[k], np.float64, what=k)
    with pytest.raises(ValueError, match="not both"):
        gru_pure.backward_fused(p["Wh"], p["X"], want["H"], want["G"], want["HN"], p["dH"],
                                p["dh_T"], np.empty((B, 5)), np.empty_like(p["Wx"]),
                                np.empty_like(p["Wh"]), np.empty_like(p["bx"]),
                                np.empty_like(p["bh"]), 1, None, None, p["dO"], p["V"])
