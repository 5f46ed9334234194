"""The LSTM's fused entries (projection inside the forward loop, weight gradients folded inside the
backward loop) agree with the NumPy twin, which is the contract path plus the weight-gradient GEMMs,
across paths, threads, variable lengths and the optional dA; bad input fails cleanly."""

import numpy as np
import pytest
from conftest import assert_close

from fastbptt import _lstm
from fastbptt.reference import lstm as lstm_np

# every test here runs once per SIMD set the host supports (conftest.simd)
pytestmark = pytest.mark.usefixtures("simd")

SHAPES = [  # T, B, I, Hn: one row per block takes the hand path, more take the register tiles
    (1, 1, 1, 1),
    (2, 1, 3, 16),  # two rows in all: the products with the weights as given
    (7, 1, 3, 5),
    (9, 2, 3, 16),
    (13, 5, 4, 37),
    (6, 40, 0, 9),  # no input: the pre-activations are the bias alone
    (20, 32, 32, 128),
    (70, 33, 7, 24),  # more rows than one fold holds: several folds per block
    (3, 3, 5, 130),  # products over K = 4Hn > 256 and rows of the fold past one panel
]


def _lengths(rng, T, B):
    lengths = np.sort(rng.integers(1, T + 1, B))[::-1]
    lengths[0] = T
    return np.array([(lengths > t).sum() for t in range(T)], dtype=np.intp)


def _problem(rng, T, B, I, n, dtype):
    p = {
        "Wx": rng.normal(0, 0.5, (4 * n, I)),
        "b": rng.normal(0, 0.3, (4 * n,)),
        "Wh": rng.normal(0, 0.8 / np.sqrt(n), (4 * n, n)),
        "X": rng.normal(0, 1.0, (T, B, I)),
        "h0": rng.normal(0, 0.5, (B, n)),
        "c0": rng.normal(0, 1.0, (B, n)),
        "dH": rng.normal(0, 1.0, (T, B, n)),
        "dh_T": rng.normal(0, 1.0, (B, n)),
        "dc_T": rng.normal(0, 1.0, (B, n)),
    }
    return {k: v.astype(dtype) for k, v in p.items()}


def _run(kern, p, n_threads=1, batch_sizes=None, want_dA=False):
    T, B, _ = p["X"].shape
    n, dt = p["Wh"].shape[1], p["X"].dtype
    # zeros: with batch_sizes the kernels leave the padded entries as they were
    H = np.zeros((T + 1, B, n), dt)
    C = np.zeros((T + 1, B, n), dt)
    G = np.zeros((T, B, 4 * n), dt)
    kern.forward_fused(p["Wx"], p["b"], p["Wh"], p["X"], p["h0"], p["c0"], H, C, G, n_threads,
                       batch_sizes)
    out = {"H": H, "C": C, "G": G}
    for name in ("dh0", "dc0"):
        out[name] = np.full((B, n), np.nan, dt)
    for name in ("Wx", "Wh", "b"):
        out["d" + name] = np.full_like(p[name], np.nan)  # every entry must be overwritten
    dA = np.zeros((T, B, 4 * n), dt) if want_dA else None
    kern.backward_fused(p["Wh"], p["X"], H, C, G, p["dH"], p["dh_T"], p["dc_T"], out["dh0"],
                        out["dc0"], out["dWx"], out["dWh"], out["db"], n_threads, batch_sizes, dA)
    if want_dA:
        out["dA"] = dA
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("ragged", [False, True])
def test_fused_agrees_with_numpy(dtype, shape, n_threads, ragged, rng):
    p = _problem(rng, *shape, dtype)
    bs = _lengths(rng, shape[0], shape[1]) if ragged else None
    got = _run(_lstm, p, n_threads, bs, want_dA=True)
    want = _run(lstm_np, p, 1, bs, want_dA=True)
    for k in want:
        assert_close(got[k], want[k], dtype, what=k)



@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gates_past_the_caches_are_the_gates_in_place(dtype, rng):
    """A call whose gates take more than 8 L2s sends them to G past the caches, from a scratch;
    fewer are formed in place in G. Either way the same bits: a long call's first steps equal a
    short call's, and the long call agrees with the NumPy twin."""
    from fastbptt import config

    B, I, n = 8, 8, 64
    step_bytes = B * 4 * n * np.dtype(dtype).itemsize
    T = 8 * config()["l2_bytes"] // step_bytes + 2
    p = _problem(rng, T, B, I, n, dtype)
    got = _run(_lstm, p)
    short = {k: v[:40] if v.shape[0] == T else v for k, v in p.items()}
    first = _run(_lstm, short)
    for k in ("G", "H", "C"):
        np.testing.assert_array_equal(got[k][:first[k].shape[0]], first[k], err_msg=k)
    want = _run(lstm_np, p)
    for k in want:
        assert_close(got[k], want[k], dtype, what=k)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(5, 6, 3, 16), (90, 40, 4, 20)], ids=["one-fold", "folds"])
def test_a_block_whose_rows_never_run_adds_nothing(cell, dtype, shape, rng):
    """Sequences of length 0 after a long one: the second thread's block has no step to run, and
    its share of the weight gradients (never folded) must count as zero. The GRU shares the fold
    (cython/_fused.pxd), so it is checked here too, through its own test module's helpers."""
    if cell == "lstm":
        problem, run, kern, twin = _problem, _run, _lstm, lstm_np
    else:
        import test_kernels_gru_fused as gru_tests

        from fastbptt import _gru
        from fastbptt.reference import gru as gru_np

        problem, run, kern, twin = gru_tests._problem, gru_tests._run, _gru, gru_np
    T = shape[0]
    p = problem(rng, *shape, dtype)
    bs = np.ones(T, dtype=np.intp)
    got = run(kern, p, 2, bs)
    want = run(twin, p, 1, bs)
    for k in want:
        assert_close(got[k], want[k], dtype, what=k)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_matches_the_contract_path_and_gemms(dtype, rng):
    """The fused entries give what forward/backward plus the GEMMs of the contract give."""
    T, B, I, n = 11, 6, 5, 12
    p = _problem(rng, T, B, I, n, dtype)
    got = _run(_lstm, p, 2)
    A = (p["X"].reshape(-1, I) @ p["Wx"].T + p["b"]).reshape(T, B, 4 * n)
    H, C = np.empty((T + 1, B, n), dtype), np.empty((T + 1, B, n), dtype)
    G, dA = np.empty((T, B, 4 * n), dtype), np.empty((T, B, 4 * n), dtype)
    dh0, dc0 = np.empty((B, n), dtype), np.empty((B, n), dtype)
    _lstm.forward(p["Wh"], A, p["h0"], p["c0"], H, C, G)
    _lstm.backward(p["Wh"], H, C, G, p["dH"], p["dh_T"], p["dc_T"], dA, dh0, dc0)
    flat = dA.reshape(-1, 4 * n)
    want = {"H": H, "C": C, "G": G, "dh0": dh0, "dc0": dc0, "dWx": flat.T @ p["X"].reshape(-1, I),
            "dWh": flat.T @ H[:-1].reshape(-1, n), "db": flat.sum(axis=0)}
    for k in want:
        assert_close(got[k], want[k], dtype, what=k)


def test_fused_results_do_not_depend_on_the_thread_count_beyond_rounding(rng):
    p = _problem(rng, 30, 17, 6, 20, np.float64)
    one, two = _run(_lstm, p, 1), _run(_lstm, p, 2)
    for k in ("H", "C", "G", "dh0", "dc0"):
        # the rows of a block never meet another block's: bitwise the same
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)
    for k in ("dWx", "dWh", "db"):
        assert_close(one[k], two[k], np.float64, what=k)


def test_fused_T_0_copies_the_state_and_zeroes_the_weight_gradients(rng):
    p = _problem(rng, 0, 3, 4, 5, np.float64)
    out = _run(_lstm, p)
    np.testing.assert_array_equal(out["H"][0], p["h0"])
    np.testing.assert_array_equal(out["dh0"], p["dh_T"])
    np.testing.assert_array_equal(out["dc0"], p["dc_T"])
    for k in ("dWx", "dWh", "db"):
        assert not out[k].any()


@pytest.mark.parametrize("which", ["Wx", "b", "X", "h0", "dH", "dWx", "dWh", "db", "dA"])
def test_fused_bad_shapes_name_the_array(which, rng):
    p = _problem(rng, 4, 3, 2, 5, np.float64)
    if which == "dA":
        with pytest.raises(ValueError, match="dA has shape"):
            T, B, n = 4, 3, 5
            H = np.zeros((T + 1, B, n))
            _lstm.backward_fused(p["Wh"], p["X"], H, H.copy(), np.zeros((T, B, 4 * n)), p["dH"],
                                 p["dh_T"], p["dc_T"], np.empty((B, n)), np.empty((B, n)),
                                 np.empty_like(p["Wx"]), np.empty_like(p["Wh"]),
                                 np.empty_like(p["b"]), 1, None, np.zeros((T, B, n)))
        return
    bad = dict(p)
    if which in p:
        bad[which] = np.zeros(p[which].shape[:-1] + (p[which].shape[-1] + 1,))
        # the inputs set I, so a wider X shows up as a Wx that does not fit it
        with pytest.raises(ValueError, match="Wx has shape" if which == "X" else f"{which} has shape"):
            _run(_lstm, bad)
    else:
        T, B, n = 4, 3, 5
        H = np.zeros((T + 1, B, n))
        outs = {"dWx": np.empty_like(p["Wx"]), "dWh": np.empty_like(p["Wh"]),
                "db": np.empty_like(p["b"])}
        outs[which] = np.empty(outs[which].shape[:-1] + (outs[which].shape[-1] + 2,))
        with pytest.raises(ValueError, match=f"{which} has shape"):
            _lstm.backward_fused(p["Wh"], p["X"], H, H.copy(), np.zeros((T, B, 4 * n)), p["dH"],
                                 p["dh_T"], p["dc_T"], np.empty((B, n)), np.empty((B, n)),
                                 outs["dWx"], outs["dWh"], outs["db"])


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("B", [1, 6])
def test_fused_nan_raises_naming_the_step(n_threads, B, rng):
    p = _problem(rng, 8, B, 3, 4, np.float64)
    p["X"][5, B - 1, 0] = np.nan
    with pytest.raises(FloatingPointError, match="time step 5"):
        _run(_lstm, p, n_threads)
    q = _problem(rng, 8, B, 3, 4, np.float64)
    q["dH"][3, 0, 1] = np.inf
    with pytest.raises(FloatingPointError, match="time step 3"):
        _run(_lstm, q, n_threads)


def test_fused_refuses_mixed_dtypes(rng):
    p = _problem(rng, 3, 2, 2, 4, np.float64)
    p["X"] = p["X"].astype(np.float32)
    with pytest.raises((TypeError, ValueError)):
        _run(_lstm, p)


def test_scratch_hands_out_an_array_again_only_once_nobody_holds_it():
    from fastbptt.cells import _Scratch

    pool = _Scratch(keep=3, min_bytes=0)
    a = pool.empty((3, 4), np.float64)
    first = id(a)
    b = pool.empty((3, 4), np.float64)
    assert b is not a  # a is still held
    del a
    c = pool.empty((3, 4), np.float64)
    assert id(c) == first
    view = c[1:]
    del c
    assert id(pool.empty((3, 4), np.float64)) != first  # a view keeps its base in use
    del view
    assert pool.empty((3, 4), np.float32).dtype == np.float32
    assert len(pool._arrays) <= 3


def test_scratch_arrays_start_on_a_cache_line():
    from fastbptt.cells import _aligned_empty, _Scratch

    pool = _Scratch(keep=3, min_bytes=0)
    for shape, dtype in [((3, 4), np.float64), ((5, 7, 3), np.float32), ((0, 4), np.float32)]:
        for a in (_aligned_empty(shape, dtype), pool.empty(shape, dtype)):
            assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
            assert a.size == 0 or a.ctypes.data % 64 == 0  # an empty array has no data to align


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(20, 32, 32, 128), (9, 5, 4, 37), (6, 3, 5, 16)],
                         ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("ragged", [False, True])
def test_gates_streamed_to_an_aligned_array_equal_the_copied_ones(dtype, shape, ragged, rng):
    # an aligned G takes the streaming stores, one a few bytes off the copy after each row
    from fastbptt.cells import _aligned_empty

    p = _problem(rng, *shape, dtype)
    T, B, _, n = shape
    bs = _lengths(rng, T, B) if ragged else None
    runs = []
    for offset in (0, 1):
        H, C = np.zeros((T + 1, B, n), dtype), np.zeros((T + 1, B, n), dtype)
        G = _aligned_empty(T * B * 4 * n + 1, dtype)[offset:offset + T * B * 4 * n]
        G = G.reshape(T, B, 4 * n)
        G[...] = -7  # with batch_sizes, the entries of finished rows stay as they were
        assert (G.ctypes.data % 64 == 0) == (offset == 0)
        _lstm.forward_fused(p["Wx"], p["b"], p["Wh"], p["X"], p["h0"], p["c0"], H, C, G, 1, bs)
        runs.append((H, C, G.copy()))
    for got, want in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(got, want)
    if bs is None:  # the twin leaves the entries of finished rows zero
        assert_close(runs[0][2], _run(lstm_np, p)["G"], dtype)


def test_model_reusing_its_lstm_cache_never_overwrites_one_still_held(rng):
    import fastbptt as fb

    m = fb.RNN(3, 5, 2, cell="lstm", seed=1)
    X = rng.normal(size=(6, 4, 3))
    Y = rng.normal(size=(6, 4, 2))
    first = m.loss_and_grad(X, Y)
    from fastbptt.calls import check_call
    from fastbptt.graph import Pass

    call = check_call(m, X)
    H = Pass(m).forward(call.X, call.state0).H
    held = H.copy()
    again = m.loss_and_grad(X * 2, Y)  # runs while H and its trace are held
    np.testing.assert_array_equal(H, held)
    assert again[0] != first[0]
    np.testing.assert_array_equal(m.loss_and_grad(X, Y)[1]["Wh"], first[1]["Wh"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 2, 3), (9, 1, 3, 16), (12, 7, 4, 37), (5, 33, 8, 24)],
                         ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("O", [0, 1, 10])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_head_gradient_formed_in_the_loop_equals_the_formed_array(dtype, shape, O, n_threads,
                                                                 backend, rng):
    """dO and V instead of dH = dO @ V: the same results, with and without variable lengths."""
    kern = _lstm if backend == "cython" else lstm_np
    T, B, _, n = shape
    p = _problem(rng, *shape, dtype)
    dO = rng.normal(size=(T, B, O)).astype(dtype)
    V = rng.normal(size=(O, n)).astype(dtype)
    for bs in (None, _lengths(rng, T, B)):
        p["dH"] = (dO.reshape(T * B, O) @ V).reshape(T, B, n)
        want = _run(lstm_np, p, 1, bs, want_dA=True)
        H, C, G = want["H"], want["C"], want["G"]
        out = {k: np.full_like(want[k], np.nan) for k in ("dh0", "dc0", "dWx", "dWh", "db")}
        dA = np.zeros_like(want["dA"])
        kern.backward_fused(p["Wh"], p["X"], H, C, G, None, p["dh_T"], p["dc_T"], out["dh0"],
                            out["dc0"], out["dWx"], out["dWh"], out["db"], n_threads, bs, dA, dO,
                            V)
        out["dA"] = dA
        for k in out:
            assert_close(out[k], want[k], dtype, what=k)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_head_gradient_is_given_one_way_and_fits(backend, rng):
    kern = _lstm if backend == "cython" else lstm_np
    T, B, I, n, O = 4, 3, 2, 5, 2
    p = _problem(rng, T, B, I, n, np.float64)
    out = _run(lstm_np, p)
    args = (p["Wh"], p["X"], out["H"], out["C"], out["G"])
    tail = (p["dh_T"], p["dc_T"], np.empty((B, n)), np.empty((B, n)), np.empty_like(p["Wx"]),
            np.empty_like(p["Wh"]), np.empty_like(p["b"]), 1, None, None)
    dO, V = np.zeros((T, B, O)), np.zeros((O, n))
    with pytest.raises(ValueError, match="not both"):
        kern.backward_fused(*args, p["dH"], *tail, dO, V)
    with pytest.raises(ValueError, match="not both"):
        kern.backward_fused(*args, None, *tail, dO, None)
    with pytest.raises(ValueError, match="V has shape"):
        kern.backward_fused(*args, None, *tail, dO, np.zeros((O, n + 1)))
    with pytest.raises(ValueError, match="dO has shape"):
        kern.backward_fused(*args, None, *tail, np.zeros((T, B + 1, O)), V)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 2, 3), (9, 1, 3, 16), (12, 7, 4, 37), (5, 33, 8, 24)],
                         ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("O", [1, 10])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("ragged", [False, True])
def test_output_layer_in_the_loops(dtype, shape, O, n_threads, ragged, rng):
    """Logits formed in the forward loop, the output layer's weight gradient in the backward loop:
    the Cython kernels against the NumPy twin, and the twin against plain products."""
    T, B, _, n = shape
    p = _problem(rng, *shape, dtype)
    V = rng.normal(size=(O, n)).astype(dtype)
    c = rng.normal(size=O).astype(dtype)
    dO = rng.normal(size=(T, B, O)).astype(dtype)
    bs = _lengths(rng, T, B) if ragged else None
    runs = {}
    for name, kern in (("cython", _lstm), ("numpy", lstm_np)):
        H, C = np.zeros((T + 1, B, n), dtype), np.zeros((T + 1, B, n), dtype)
        G, out = np.zeros((T, B, 4 * n), dtype), np.zeros((T, B, O), dtype)
        kern.forward_fused(p["Wx"], p["b"], p["Wh"], p["X"], p["h0"], p["c0"], H, C, G, n_threads,
                           bs, V, c, out)
        grads = {k: np.full(shape, np.nan, dtype) for k, shape in
                 (("dh0", (B, n)), ("dc0", (B, n)), ("dWx", p["Wx"].shape),
                  ("dWh", p["Wh"].shape), ("db", p["b"].shape), ("dV", V.shape))}
        kern.backward_fused(p["Wh"], p["X"], H, C, G, None, p["dh_T"], p["dc_T"], grads["dh0"],
                            grads["dc0"], grads["dWx"], grads["dWh"], grads["db"], n_threads, bs,
                            None, dO, V, grads["dV"])
        runs[name] = {"H": H, "out": out, **grads}
    for k in runs["numpy"]:
        assert_close(runs["cython"][k], runs["numpy"][k], dtype, what=k)
    valid = np.ones((T, B), bool) if bs is None else np.arange(B)[None, :] < bs[:, None]
    H = runs["numpy"]["H"]
    want_out = np.where(valid[..., None], H[1:] @ V.T + c, 0)
    assert_close(runs["numpy"]["out"], want_out, dtype, what="out")
    want_dV = np.einsum("tbo,tbn->on", np.where(valid[..., None], dO, 0), H[1:])
    assert_close(runs["numpy"]["dV"], want_dV, dtype, what="dV")


def test_output_layer_arguments_come_together(rng):
    p = _problem(rng, 3, 2, 2, 4, np.float64)
    H, C, G = np.zeros((4, 2, 4)), np.zeros((4, 2, 4)), np.zeros((3, 2, 16))
    for kern in (_lstm, lstm_np):
        with pytest.raises(ValueError, match="together"):
            kern.forward_fused(p["Wx"], p["b"], p["Wh"], p["X"], p["h0"], p["c0"], H, C, G, 1,
                               None, np.zeros((2, 4)), None, None)
        with pytest.raises(ValueError, match="out has shape"):
            kern.forward_fused(p["Wx"], p["b"], p["Wh"], p["X"], p["h0"], p["c0"], H, C, G, 1,
                               None, np.zeros((2, 4)), np.zeros(2), np.zeros((3, 2, 3)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [16, 11])  # whole registers; and a scalar tail of n % width units
def test_gate_activations_are_accurate_everywhere(dtype, n):
    """With Wh = 0 and zero states the gates are sigmoid / tanh of the pre-activations themselves:
    within a few ulp of the float64 values over a wide range, exactly +-1 where those round to it."""
    from scipy.special import expit

    a = np.concatenate([np.linspace(-120, 120, 24001), np.geomspace(1e-30, 120, 3000)])
    a = np.concatenate([a, -a])
    rows = a.size // (4 * n)
    A = a[: rows * 4 * n].reshape(1, rows, 4 * n).astype(dtype)
    zeros = np.zeros((rows, n), dtype)
    H = np.empty((2, rows, n), dtype)
    C = np.empty_like(H)
    G = np.empty((1, rows, 4 * n), dtype)
    _lstm.forward(np.zeros((4 * n, n), dtype), A, zeros, zeros, H, C, G)
    z = A[0].astype(np.float64)
    exact = np.concatenate([expit(z[:, :2 * n]), np.tanh(z[:, 2 * n:3 * n]),
                            expit(z[:, 3 * n:])], axis=1)
    got = G[0].astype(np.float64)
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    # near the smallest normal the sigmoid may flush to 0: judge those absolutely
    tiny = np.abs(exact) < 16 * np.finfo(dtype).tiny
    assert np.max(np.abs(got - exact)[~tiny] / ulp[~tiny]) <= 4
    assert np.max(np.abs(got - exact)[tiny], initial=0) <= 16 * np.finfo(dtype).tiny
    assert np.isfinite(got).all()
    far = np.abs(z) >= 100
    assert np.all(got[far] == np.where(exact[far] > 0.5, 1.0, np.where(exact[far] < -0.5, -1.0,
                                                                         got[far])))
    assert np.all(got[far & (exact < 0.5) & (exact >= 0)] < 1e-43)
