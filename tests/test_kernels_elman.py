"""The Elman kernels of the three backends agree, on odd shapes too, and fail cleanly on bad input."""

import numpy as np
import pytest
from conftest import assert_close

from fastbptt import _elman
from fastbptt.reference import elman as elman_np
from fastbptt.reference import elman_pure

# every test here runs once per SIMD set the host supports (conftest.simd)
pytestmark = pytest.mark.usefixtures("simd")

BACKENDS = {"cython": _elman, "numpy": elman_np, "python": elman_pure}
SHAPES = [  # T, B, H
    (1, 1, 1),
    (5, 1, 16),
    (7, 3, 37),
    (4, 2, 70),   # H > 64: BLAS path
    (3, 40, 30),  # B * H * H > small-path budget: BLAS path
    (0, 2, 4),
]


def _problem(rng, T, B, n, dtype, act):
    W = rng.normal(0, 0.8 / np.sqrt(n), (n, n)).astype(dtype)
    A = rng.normal(0, 1.0, (T, B, n)).astype(dtype)
    h0 = rng.normal(0, 0.5, (B, n)).astype(dtype)
    if act == 1:
        h0 = np.abs(h0)
    dH = rng.normal(0, 1.0, (T, B, n)).astype(dtype)
    dh_T = rng.normal(0, 1.0, (B, n)).astype(dtype)
    return W, A, h0, dH, dh_T


def _run(kern, act, W, A, h0, dH, dh_T, n_threads):
    T, B, n = A.shape
    H = np.empty((T + 1, B, n), A.dtype)
    kern.forward(act, W, A, h0, H, n_threads)
    if act == 2:
        return H, None, None
    dA = np.empty((T, B, n), A.dtype)
    dh0 = np.empty((B, n), A.dtype)
    kern.backward(act, W, H, dH, dh_T, dA, dh0, n_threads)
    return H, dA, dh0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", [0, 1, 2], ids=["tanh", "relu", "step"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("backend,n_threads", [("cython", 1), ("cython", 2), ("python", 1)])
def test_backends_agree_with_numpy(backend, n_threads, shape, act, dtype, rng):
    problem = _problem(rng, *shape, dtype, act)
    ref = _run(elman_np, act, *problem, 1)
    got = _run(BACKENDS[backend], act, *problem, n_threads)
    for name, r, g in zip(("H", "dA", "dh0"), ref, got, strict=True):
        if r is None:
            continue
        assert g.dtype == dtype
        assert_close(g, r, dtype, f"{backend} {name}")


def test_numpy_backward_matches_finite_differences(rng):
    """The reference's BPTT against central differences of its own forward (float64)."""
    T, B, n = 6, 2, 5
    for act in (0, 1):
        W, A, h0, R, r_T = _problem(rng, T, B, n, np.float64, act)

        def objective(W, A, h0, act=act, R=R, r_T=r_T):
            H = np.empty((T + 1, B, n))
            elman_np.forward(act, W, A, h0, H)
            return float(np.sum(H[1:] * R) + np.sum(H[-1] * r_T))

        H = np.empty((T + 1, B, n))
        elman_np.forward(act, W, A, h0, H)
        dA = np.empty((T, B, n))
        dh0 = np.empty((B, n))
        elman_np.backward(act, W, H, R, r_T, dA, dh0)
        dW = dA.reshape(-1, n).T @ H[:-1].reshape(-1, n)
        eps = 1e-6
        for arr, analytic in ((A, dA), (h0, dh0), (W, dW)):
            numeric = np.zeros_like(arr)
            for i in np.ndindex(arr.shape):
                old = arr[i]
                arr[i] = old + eps
                up = objective(W, A, h0)
                arr[i] = old - eps
                down = objective(W, A, h0)
                arr[i] = old
                numeric[i] = (up - down) / (2 * eps)
            err = np.abs(numeric - analytic).max() / np.abs(analytic).max()
            assert err < 1e-7


@pytest.mark.parametrize("kern", [_elman, elman_np, elman_pure], ids=["cython", "numpy", "python"])
def test_bad_shapes_name_the_array(kern):
    W = np.zeros((4, 4))
    A = np.zeros((3, 2, 4))
    h0 = np.zeros((2, 4))
    with pytest.raises(ValueError, match="h0"):
        kern.forward(0, W, A, np.zeros((3, 4)), np.empty((4, 2, 4)))
    with pytest.raises(ValueError, match="W"):
        kern.forward(0, np.zeros((4, 5)), A, h0, np.empty((4, 2, 4)))
    with pytest.raises(ValueError, match="H"):
        kern.forward(0, W, A, h0, np.empty((3, 2, 4)))
    with pytest.raises(ValueError, match="forward only"):
        kern.backward(2, W, np.zeros((4, 2, 4)), A, h0, np.empty_like(A), np.empty_like(h0))
    with pytest.raises(ValueError, match="activation"):
        kern.forward(7, W, A, h0, np.empty((4, 2, 4)))


@pytest.mark.parametrize("kern", [_elman, elman_np, elman_pure], ids=["cython", "numpy", "python"])
def test_non_finite_raises_floating_point_error(kern):
    W = np.full((3, 3), 10.0)
    A = np.ones((400, 1, 3))
    h0 = np.ones((1, 3))
    H = np.empty((401, 1, 3))
    with pytest.raises(FloatingPointError, match="time step"):
        kern.forward(1, W, A, h0, H)  # relu with gain 30 per step overflows
    A[2, 0, 1] = np.nan
    with pytest.raises(FloatingPointError, match="time step 2"):
        kern.forward(0, W * 0.1, A, h0, H)


def test_cython_accepts_read_only_inputs(rng):
    W, A, h0, dH, dh_T = _problem(rng, 4, 2, 5, np.float64, 0)
    for arr in (W, A, h0, dH, dh_T):
        arr.flags.writeable = False
    H, dA, dh0 = _run(_elman, 0, W, A, h0, dH, dh_T, 1)
    ref = _run(elman_np, 0, W, A, h0, dH, dh_T, 1)
    assert_close(dA, ref[1], np.float64)


def test_cython_refuses_mixed_dtypes_and_non_contiguous():
    W = np.zeros((4, 4))
    A = np.zeros((3, 2, 4), np.float32)
    with pytest.raises((TypeError, ValueError)):
        _elman.forward(0, W, A, np.zeros((2, 4)), np.empty((4, 2, 4)))
    A64 = np.zeros((3, 2, 8))[:, :, ::2]
    with pytest.raises((TypeError, ValueError)):
        _elman.forward(0, W, A64, np.zeros((2, 4)), np.empty((4, 2, 4)))


FUSED_SHAPES = [  # T, B, I, H: the sequence path (H a whole number of registers, B <= 3) and others
    (1, 1, 1, 8),
    (1, 2, 3, 40),    # two rows in all: the products with the weights as given
    (70, 1, 2, 16),   # W1's shape; T > one weight-gradient block
    (33, 2, 3, 32),
    (65, 3, 16, 24),
    (5, 1, 2, 12),    # float32: not a whole register, falls back
    (9, 4, 2, 16),    # B > 3: falls back
    (6, 2, 20, 8),    # I > 16: falls back
    (4, 7, 5, 37),    # odd width: tiled path with the projection per step
    (3, 40, 30, 70),  # several row tiles and panels
    # weights of half a megabyte and more: K in chunks, each panel chunk asked for ahead, the
    # weight-gradient fold tile by tile over its large block of B
    (3, 48, 100, 400),
    (0, 1, 2, 16),
]


def _fused_problem(rng, T, B, I, n, dtype, act):
    W, A, h0, dH, dh_T = _problem(rng, T, B, n, dtype, act)
    U = rng.normal(0, 1.0 / np.sqrt(I), (n, I)).astype(dtype)
    b = rng.normal(0, 0.1, n).astype(dtype)
    X = rng.normal(0, 1.0, (T, B, I)).astype(dtype)
    return U, b, W, X, h0, dH, dh_T


def _run_fused(kern, act, U, b, W, X, h0, dH, dh_T, n_threads, keep_dA):
    T, B, _ = X.shape
    n = W.shape[0]
    H = np.empty((T + 1, B, n), X.dtype)
    kern.forward_fused(act, U, b, W, X, h0, H, n_threads)
    dA = np.empty((T, B, n), X.dtype) if keep_dA else None
    dh0 = np.empty((B, n), X.dtype)
    dU, dW, db = np.empty_like(U), np.empty_like(W), np.empty_like(b)
    kern.backward_fused(act, W, X, H, dH, dh_T, dh0, dU, dW, db, n_threads, None, dA)
    return {"H": H, "dA": dA, "dh0": dh0, "dU": dU, "dW": dW, "db": db}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", [0, 1], ids=["tanh", "relu"])
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("n_threads,keep_dA", [(1, True), (2, True), (1, False)])
def test_fused_entries_agree_with_numpy(shape, act, dtype, n_threads, keep_dA, rng):
    problem = _fused_problem(rng, *shape, dtype, act)
    ref = _run_fused(elman_np, act, *problem, 1, True)
    got = _run_fused(_elman, act, *problem, n_threads, keep_dA)
    for name, r in ref.items():
        if name == "dA" and not keep_dA:
            continue
        assert got[name].dtype == dtype
        assert_close(got[name], r, dtype, f"fused {name}")


def test_sequence_path_is_chosen_by_shape():
    assert _elman.sequence_path(2, 16, 1, np.float64) and _elman.sequence_path(2, 16, 3, np.float32)
    assert not _elman.sequence_path(2, 16, 4, np.float64)   # batch too large
    assert not _elman.sequence_path(2, 17, 1, np.float32)   # not a whole number of float registers
    assert not _elman.sequence_path(40, 16, 1, np.float64)  # projection better outside the loop


def test_sequence_path_takes_narrow_layers_on_every_set():
    """Eight floats or doubles fill a whole number of registers of every set: under AVX-512 the
    sequence kernels of 256 bits take them (a 512-bit register would be half empty)."""
    assert _elman.sequence_path(2, 8, 1, np.float32) and _elman.sequence_path(2, 8, 3, np.float64)
    assert _elman.sequence_path(2, 16, 1, np.float32) and _elman.sequence_path(2, 16, 1, np.float64)


def _head_run(act, Wx, b, Wh, X, h0, V, c, dO, dh_T, n_threads):
    T, B, _ = X.shape
    n, O = Wh.shape[0], V.shape[0]
    H = np.empty((T + 1, B, n), X.dtype)
    out = np.empty((T, B, O), X.dtype)
    _elman.forward_fused(act, Wx, b, Wh, X, h0, H, n_threads, None, V, c, out)
    dh0, dWx, dWh = np.empty((B, n), X.dtype), np.empty_like(Wx), np.empty_like(Wh)
    db, dV = np.empty_like(b), np.empty_like(V)
    _elman.backward_fused(act, Wh, X, H, None, dh_T, dh0, dWx, dWh, db, n_threads, None, None, dO,
                          V, dV)
    return {"H": H, "out": out, "dh0": dh0, "dWx": dWx, "dWh": dWh, "db": db, "dV": dV}


@pytest.mark.parametrize("n,dtype", [(8, np.float64), (16, np.float64), (8, np.float32),
                                     (16, np.float32), (32, np.float32)])
@pytest.mark.parametrize("act", [0, 1], ids=["tanh", "relu"])
def test_sequence_kernels_equal_the_tiled_path(act, n, dtype, rng):
    """One sequence through the sequence kernels equals the same sequence as each row of a batch of
    four, which takes the per-step tiled path: states, a head's logits, every gradient (the batch's
    weight gradients four times the one sequence's)."""
    T, I, O, B = 70, 2, 3, 4
    Wh = rng.normal(0, 0.5 / np.sqrt(n), (n, n)).astype(dtype)
    Wx = rng.normal(0, 1.0, (n, I)).astype(dtype)
    b = rng.normal(0, 0.1, n).astype(dtype)
    V = rng.normal(0, 1.0 / np.sqrt(n), (O, n)).astype(dtype)
    c = rng.normal(0, 0.1, O).astype(dtype)
    X = rng.normal(0, 1.0, (T, 1, I)).astype(dtype)
    h0 = rng.normal(0, 0.5, (1, n)).astype(dtype)
    dO = rng.normal(0, 1.0, (T, 1, O)).astype(dtype)
    dh_T = rng.normal(0, 0.1, (1, n)).astype(dtype)
    assert _elman.sequence_path(I, n, 1, dtype) and not _elman.sequence_path(I, n, B, dtype)
    one = _head_run(act, Wx, b, Wh, X, h0, V, c, dO, dh_T, 1)
    rows = [np.repeat(a, B, axis=1) for a in (X, dO)] + [np.repeat(a, B, axis=0) for a in (h0, dh_T)]
    many = _head_run(act, Wx, b, Wh, rows[0], rows[2], V, c, rows[1], rows[3], 1)
    for name in ("H", "out"):
        for r in range(B):
            assert_close(one[name][:, 0], many[name][:, r], dtype, name)
    assert_close(one["dh0"][0], many["dh0"][B - 1], dtype, "dh0")
    for name in ("dWx", "dWh", "db", "dV"):
        assert_close(B * one[name], many[name], dtype, name)


def test_fused_entries_raise_on_non_finite():
    n, I, T = 8, 2, 400
    U = np.ones((n, I))
    b = np.zeros(n)
    X = np.ones((T, 1, I))
    H = np.empty((T + 1, 1, n))
    with pytest.raises(FloatingPointError, match="time step"):
        _elman.forward_fused(1, U, b, np.full((n, n), 10.0), X, np.ones((1, n)), H)
    X[3, 0, 1] = np.nan
    with pytest.raises(FloatingPointError, match="time step 3"):
        _elman.forward_fused(0, U, b, np.full((n, n), 0.1), X, np.ones((1, n)), H)
    X[3, 0, 1] = 1.0
    _elman.forward_fused(0, U, b, np.full((n, n), 0.1), X, np.ones((1, n)), H)
    dH = np.ones((T, 1, n))
    dH[10, 0, 2] = np.inf
    out = [np.empty((1, n)), np.empty((n, I)), np.empty((n, n)), np.empty(n), 1, None,
           np.empty((T, 1, n))]
    with pytest.raises(FloatingPointError, match="time step 10"):
        _elman.backward_fused(0, np.full((n, n), 0.1), X, H, dH, np.zeros((1, n)), *out)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_of_the_kernels_is_accurate_everywhere(dtype):
    """One step from h0 = 0 with W = 0 is tanh(A) itself: compare it with NumPy's over a wide range."""
    a = np.concatenate([np.linspace(-30, 30, 6001), np.geomspace(1e-30, 30, 2000)])
    a = np.concatenate([a, -a]).astype(dtype)
    n = 8
    a = a[: a.size // n * n].reshape(-1, 1, n)
    out = np.empty((2, a.shape[0], n), dtype)
    _elman.forward(0, np.zeros((n, n), dtype), a.reshape(1, -1, n),
                   np.zeros((a.shape[0], n), dtype), out)
    exact = np.tanh(a.reshape(-1, n).astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    assert np.max(np.abs(out[1] - exact) / ulp) <= 4


def _backward_head(kern, act, W, X, H, dH, dO, V, dh_T, n_threads, keep_dA, batch_sizes=None):
    """backward_fused with the loss gradient given as dH or as dO and V; with dO, also the head's
    weight gradient dV."""
    T, B, _ = X.shape
    n = W.shape[0]
    dA = np.zeros((T, B, n), X.dtype) if keep_dA else None
    dh0 = np.empty((B, n), X.dtype)
    dU, dW, db = np.empty((n, X.shape[2]), X.dtype), np.empty_like(W), np.empty(n, X.dtype)
    out = {"dA": dA, "dh0": dh0, "dU": dU, "dW": dW, "db": db}
    head = ()
    if dO is not None:
        out["dV"] = np.full(V.shape, np.nan, X.dtype)
        head = (dO, V, out["dV"])
    kern.backward_fused(act, W, X, H, dH, dh_T, dh0, dU, dW, db, n_threads, batch_sizes, dA,
                        *head)
    return out


# tiled path, T over several blocks of the weight-gradient fold (which meets dO_{t-1} with h_t)
FOLD_SHAPES = [(60, 5, 3, 13), (20, 33, 4, 24), (13, 50, 3, 20)]  # the last: two blocks of rows on every set


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", [0, 1], ids=["tanh", "relu"])
@pytest.mark.parametrize("shape", FUSED_SHAPES + FOLD_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("O", [1, 3])
@pytest.mark.parametrize("n_threads,keep_dA", [(1, True), (2, False)])
def test_head_gradient_in_the_loop_equals_the_formed_array(shape, O, act, dtype, n_threads,
                                                           keep_dA, rng):
    """dO (T, B, O) and V (O, H) in place of dH give what dH = dO @ V formed beforehand gives, in
    the Cython kernels and their NumPy twin."""
    U, b, W, X, h0, _, dh_T = _fused_problem(rng, *shape, dtype, act)
    T, B, _ = X.shape
    n = W.shape[0]
    H = np.empty((T + 1, B, n), dtype)
    elman_np.forward_fused(act, U, b, W, X, h0, H)
    dO = rng.normal(0, 1.0, (T, B, O)).astype(dtype)
    V = rng.normal(0, 1.0 / np.sqrt(n), (O, n)).astype(dtype)
    dense = (dO.reshape(-1, O).astype(np.float64) @ V.astype(np.float64)).reshape(T, B, n)
    ref = _backward_head(elman_np, act, W, X, H, dense.astype(dtype), None, None, dh_T, 1, True)
    ref["dV"] = dO.reshape(-1, O).astype(np.float64).T @ H[1:].reshape(-1, n)
    for kern, threads in ((_elman, n_threads), (elman_np, 1)):
        got = _backward_head(kern, act, W, X, H, None, dO, V, dh_T, threads, keep_dA)
        for name, r in ref.items():
            if name == "dA" and not keep_dA:
                continue
            assert got[name].dtype == dtype
            assert_close(got[name], r, dtype, f"{kern.__name__} {name}")


@pytest.mark.parametrize("kern", [_elman, elman_np], ids=["cython", "numpy"])
def test_head_gradient_arguments_are_checked(kern):
    T, B, I, n, O = 4, 1, 2, 8, 3
    X, H = np.zeros((T, B, I)), np.zeros((T + 1, B, n))
    out = [np.zeros((B, n)), np.zeros((n, I)), np.zeros((n, n)), np.zeros(n)]
    args = (0, np.eye(n), X, H, None, np.zeros((B, n)), *out, 1, None, np.zeros((T, B, n)))
    with pytest.raises(ValueError, match="dO and V"):
        kern.backward_fused(*args, np.zeros((T, B, O)))
    with pytest.raises(ValueError, match="dO"):
        kern.backward_fused(*args, np.zeros((T, B, O + 1)), np.zeros((O, n)))
    with pytest.raises(ValueError, match="V"):
        kern.backward_fused(*args, np.zeros((T, B, O)), np.zeros((O, n + 1)))
    with pytest.raises(ValueError, match="dH"):
        kern.backward_fused(0, np.eye(n), X, H, np.zeros((T, B, n + 1)), *args[5:])
    with pytest.raises(ValueError, match="not both"):
        kern.backward_fused(0, np.eye(n), X, H, np.zeros((T, B, n)), *args[5:],
                            np.zeros((T, B, O)), np.zeros((O, n)))
    with pytest.raises(ValueError, match="not both"):
        kern.backward_fused(*args)
    with pytest.raises(ValueError, match="dV"):
        kern.backward_fused(*args, np.zeros((T, B, O)), np.zeros((O, n)), np.zeros((O, n + 1)))
    with pytest.raises(ValueError, match="dV"):
        kern.backward_fused(*args, None, None, np.zeros((O, n)))


@pytest.mark.parametrize("B,n", [(1, 8), (5, 13)], ids=["sequence", "tiled"])
def test_head_gradient_non_finite_names_the_step(B, n):
    T, I, O = 30, 2, 2
    X, H = np.ones((T, B, I)), np.full((T + 1, B, n), 0.5)
    dO = np.ones((T, B, O))
    dO[12, B - 1, 1] = np.nan
    out = [np.empty((B, n)), np.empty((n, I)), np.empty((n, n)), np.empty(n)]
    with pytest.raises(FloatingPointError, match="time step 12"):
        _elman.backward_fused(0, np.full((n, n), 0.1), X, H, None, np.zeros((B, n)), *out, 1, None,
                              None, dO, np.ones((O, n)))


# -- the output layer's logits inside the forward loop ---------------------------------------------

def _forward_logits(kern, act, U, b, W, X, h0, V, c, n_threads, batch_sizes=None, fill=np.nan):
    """forward_fused with the output layer (V, c): the states and the logits, each prefilled with
    `fill` so rows the kernel must not touch stay recognisable."""
    T, B, _ = X.shape
    H = np.full((T + 1, B, W.shape[0]), fill, X.dtype)
    out = np.full((T, B, V.shape[0]), fill, X.dtype)
    kern.forward_fused(act, U, b, W, X, h0, H, n_threads, batch_sizes, V, c, out)
    return H, out


def _head(rng, O, n, dtype):
    V = rng.normal(0, 1.0 / np.sqrt(max(n, 1)), (O, n)).astype(dtype)
    c = rng.normal(0, 0.5, O).astype(dtype)
    return V, c


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", [0, 1, 2], ids=["tanh", "relu", "step"])
@pytest.mark.parametrize("shape", FUSED_SHAPES + FOLD_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("O", [1, 3, 10, 16, 17])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_logits_in_the_loop_equal_the_head_product(shape, O, act, dtype, n_threads, rng):
    """out[t] = H[t + 1] V^T + c from inside the forward loop (sequence, tiled and fallback
    paths; on the tiled one by dot products, or by the register tile at O = 16), and the states
    are those forward_fused gives without the output layer."""
    U, b, W, X, h0, _, _ = _fused_problem(rng, *shape, dtype, act)
    T, B, _ = X.shape
    V, c = _head(rng, O, W.shape[0], dtype)
    plain = np.empty((T + 1, B, W.shape[0]), dtype)
    _elman.forward_fused(act, U, b, W, X, h0, plain, n_threads)
    for kern, threads in ((_elman, n_threads), (elman_np, 1)):
        H, out = _forward_logits(kern, act, U, b, W, X, h0, V, c, threads)
        assert out.dtype == dtype
        assert_close(H, plain, dtype, f"{kern.__name__} H")
        expected = H[1:].astype(np.float64) @ V.T.astype(np.float64) + c
        assert_close(out, expected, dtype, f"{kern.__name__} logits")


@pytest.mark.parametrize("kern", [_elman, elman_np], ids=["cython", "numpy"])
def test_logits_degenerate_sizes(kern):
    """No output unit (O = 0) leaves the states as they are; no time step writes nothing; no
    hidden unit gives the bias."""
    T, B, I, n = 5, 2, 3, 8
    rng = np.random.default_rng(1)
    U, b, W, X, h0, _, _ = _fused_problem(rng, T, B, I, n, np.float64, 0)
    H, out = _forward_logits(kern, 0, U, b, W, X, h0, np.zeros((0, n)), np.zeros(0), 1)
    plain = np.empty_like(H)
    kern.forward_fused(0, U, b, W, X, h0, plain)
    assert out.shape == (T, B, 0)
    np.testing.assert_array_equal(H, plain)
    H, out = _forward_logits(kern, 0, U, b, W, X[:0], h0, np.ones((2, n)), np.ones(2), 1)
    assert out.shape == (0, B, 2)
    # no hidden unit: the logits are the bias
    H, out = _forward_logits(kern, 0, np.zeros((0, I)), np.zeros(0), np.zeros((0, 0)), X,
                             np.zeros((B, 0)), np.zeros((2, 0)), np.array([1.0, -2.0]), 1)
    np.testing.assert_array_equal(out, np.broadcast_to([1.0, -2.0], (T, B, 2)))


@pytest.mark.parametrize("kern", [_elman, elman_np], ids=["cython", "numpy"])
def test_logits_arguments_are_checked(kern):
    T, B, I, n, O = 4, 2, 2, 8, 3
    args = (0, np.ones((n, I)), np.zeros(n), np.eye(n), np.zeros((T, B, I)), np.zeros((B, n)),
            np.empty((T + 1, B, n)), 1, None)
    V, c, out = np.zeros((O, n)), np.zeros(O), np.empty((T, B, O))
    with pytest.raises(ValueError, match="V, c and out together"):
        kern.forward_fused(*args, V, None, out)
    with pytest.raises(ValueError, match="V, c and out together"):
        kern.forward_fused(*args, V, c)
    with pytest.raises(ValueError, match="V"):
        kern.forward_fused(*args, np.zeros((O, n + 1)), c, out)
    with pytest.raises(ValueError, match="c"):
        kern.forward_fused(*args, V, np.zeros(O + 1), out)
    with pytest.raises(ValueError, match="out"):
        kern.forward_fused(*args, V, c, np.empty((T, B, O + 1)))


@pytest.mark.parametrize("B,n", [(1, 8), (5, 13)], ids=["sequence", "tiled"])
def test_logits_non_finite_state_names_the_step(B, n):
    T, I = 30, 2
    X = np.ones((T, B, I))
    X[7, B - 1, 0] = np.nan
    with pytest.raises(FloatingPointError, match="time step 7"):
        _forward_logits(_elman, 0, np.ones((n, I)), np.zeros(n), np.full((n, n), 0.1), X,
                        np.zeros((B, n)), np.ones((2, n)), np.zeros(2), 1)


@pytest.mark.parametrize("which,shape", [("db", (6,)), ("dWx", (5, 3)), ("dH", (3, 2, 4))])
def test_a_wrong_shape_is_named_with_both_shapes_as_numpy_names_it(which, shape, rng):
    """The compiled driver's shape checks (C comparisons) raise the NumPy twin's message, for
    arrays of one, two and three axes."""
    T, B, I, n = 3, 2, 4, 5
    args = {"Wh": (n, n), "X": (T, B, I), "H": (T + 1, B, n), "dH": (T, B, n), "dh_T": (B, n),
            "dh0": (B, n), "dWx": (n, I), "dWh": (n, n), "db": (n,)}
    arrays = {k: rng.standard_normal(shape if k == which else s) for k, s in args.items()}
    messages = []
    for kern in (_elman, elman_np):
        with pytest.raises(ValueError) as exc:
            kern.backward_fused(0, *arrays.values())
        messages.append(str(exc.value))
    assert messages[0] == messages[1] == f"{which} has shape {shape}, expected {args[which]}"
