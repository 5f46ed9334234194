"""The LSTM and GRU kernels of the three backends agree, the NumPy backward matches finite
differences, and bad input fails cleanly."""

import numpy as np
import pytest
from conftest import assert_close

from fastbptt import _gru, _lstm
from fastbptt.reference import gru as gru_np
from fastbptt.reference import gru_pure, lstm_pure
from fastbptt.reference import lstm as lstm_np

# every test here runs once per SIMD set the host supports (conftest.simd)
pytestmark = pytest.mark.usefixtures("simd")

KERNELS = {
    "lstm": {"cython": _lstm, "numpy": lstm_np, "python": lstm_pure},
    "gru": {"cython": _gru, "numpy": gru_np, "python": gru_pure},
}
SHAPES = [  # T, B, Hn: one sequence per thread takes the hand path, more take the register tiles
    (1, 1, 1),
    (1, 2, 24),  # two rows in all: the products with Wh as given (no transposed copy)
    (6, 2, 1),
    (5, 1, 16),
    (7, 3, 37),
    (4, 8, 80),
    (3, 40, 30),
    (2, 3, 130),  # backward products over K = 3Hn, 4Hn > 256: the tiles cut K into chunks
    (0, 2, 4),
]


def _lstm_problem(rng, T, B, n, dtype):
    p = {
        "Wh": rng.normal(0, 0.8 / np.sqrt(max(n, 1)), (4 * n, n)),
        "A": rng.normal(0, 1.0, (T, B, 4 * n)),
        "h0": rng.normal(0, 0.5, (B, n)),
        "c0": rng.normal(0, 1.0, (B, n)),
        "dH": rng.normal(0, 1.0, (T, B, n)),
        "dh_T": rng.normal(0, 1.0, (B, n)),
        "dc_T": rng.normal(0, 1.0, (B, n)),
    }
    return {k: v.astype(dtype) for k, v in p.items()}


def _gru_problem(rng, T, B, n, dtype):
    p = {
        "Wh": rng.normal(0, 0.8 / np.sqrt(max(n, 1)), (3 * n, n)),
        "bh": rng.normal(0, 0.5, (3 * n,)),
        "A": rng.normal(0, 1.0, (T, B, 3 * n)),
        "h0": rng.normal(0, 0.5, (B, n)),
        "dH": rng.normal(0, 1.0, (T, B, n)),
        "dh_T": rng.normal(0, 1.0, (B, n)),
    }
    return {k: v.astype(dtype) for k, v in p.items()}


def _freeze(*arrays):
    for a in arrays:
        a.flags.writeable = False


def _run_lstm(kern, p, n_threads=1, freeze=False):
    """Forward then backward; freeze makes forward's outputs read-only for backward."""
    T, B, n4 = p["A"].shape
    n, dt = n4 // 4, p["A"].dtype
    H = np.empty((T + 1, B, n), dt)
    C = np.empty((T + 1, B, n), dt)
    G = np.empty((T, B, n4), dt)
    kern.forward(p["Wh"], p["A"], p["h0"], p["c0"], H, C, G, n_threads)
    if freeze:
        _freeze(H, C, G)
    dA = np.empty((T, B, n4), dt)
    dh0 = np.empty((B, n), dt)
    dc0 = np.empty((B, n), dt)
    kern.backward(p["Wh"], H, C, G, p["dH"], p["dh_T"], p["dc_T"], dA, dh0, dc0, n_threads)
    return {"H": H, "C": C, "G": G, "dA": dA, "dh0": dh0, "dc0": dc0}


def _run_gru(kern, p, n_threads=1, freeze=False):
    """Forward then backward; freeze makes forward's outputs read-only for backward."""
    T, B, n3 = p["A"].shape
    n, dt = n3 // 3, p["A"].dtype
    H = np.empty((T + 1, B, n), dt)
    G = np.empty((T, B, n3), dt)
    HN = np.empty((T, B, n), dt)
    kern.forward(p["Wh"], p["bh"], p["A"], p["h0"], H, G, HN, n_threads)
    if freeze:
        _freeze(H, G, HN)
    dA = np.empty((T, B, n3), dt)
    dGh = np.empty((T, B, n3), dt)
    dh0 = np.empty((B, n), dt)
    kern.backward(p["Wh"], H, G, HN, p["dH"], p["dh_T"], dA, dGh, dh0, n_threads)
    return {"H": H, "G": G, "HN": HN, "dA": dA, "dGh": dGh, "dh0": dh0}


PROBLEM = {"lstm": _lstm_problem, "gru": _gru_problem}
RUN = {"lstm": _run_lstm, "gru": _run_gru}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(
    "backend,n_threads", [("cython", 1), ("cython", 2), ("cython", 3), ("python", 1)]
)
def test_backends_agree_with_numpy(backend, n_threads, shape, dtype, cell, rng):
    p = PROBLEM[cell](rng, *shape, dtype)
    ref = RUN[cell](KERNELS[cell]["numpy"], p)
    got = RUN[cell](KERNELS[cell][backend], p, n_threads)
    for name, r in ref.items():
        assert got[name].dtype == dtype
        assert_close(got[name], r, dtype, f"{cell} {backend} {name}")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_initial_state_is_copied_and_gradient_passes_through_when_T_is_0(cell, rng):
    p = PROBLEM[cell](rng, 0, 3, 5, np.float64)
    for kern in KERNELS[cell].values():
        out = RUN[cell](kern, p)
        np.testing.assert_array_equal(out["H"][0], p["h0"])
        np.testing.assert_array_equal(out["dh0"], p["dh_T"])
        if cell == "lstm":
            np.testing.assert_array_equal(out["C"][0], p["c0"])
            np.testing.assert_array_equal(out["dc0"], p["dc_T"])


def _numeric_grad(objective, arr, eps=1e-6):
    """Central differences of objective() in every entry of arr (each perturbed in place)."""
    numeric = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        up = objective()
        arr[i] = old - eps
        down = objective()
        arr[i] = old
        numeric[i] = (up - down) / (2 * eps)
    return numeric


def _assert_rel(numeric, analytic, what):
    err = np.abs(numeric - analytic).max() / np.abs(analytic).max()
    assert err < 1e-7, f"{what}: relative error {err:.3g}"


def test_numpy_lstm_backward_matches_finite_differences(rng):
    """Scalar L = <R, H[1:]> + <r_h, h_T> + <r_c, c_T>: dH = R, dh_T = r_h, dc_T = r_c."""
    T, B, n = 4, 2, 3
    p = _lstm_problem(rng, T, B, n, np.float64)
    p["A"] *= 0.5  # keeps the gates away from saturation

    def objective():
        H, C = np.empty((T + 1, B, n)), np.empty((T + 1, B, n))
        lstm_np.forward(p["Wh"], p["A"], p["h0"], p["c0"], H, C, np.empty((T, B, 4 * n)))
        final = np.sum(H[-1] * p["dh_T"]) + np.sum(C[-1] * p["dc_T"])
        return float(np.sum(H[1:] * p["dH"]) + final)

    out = _run_lstm(lstm_np, p)
    gates = out["G"].reshape(-1, 4, n)
    # every gate in its sensitive range, so the i, f, g and o paths all carry gradient
    assert (np.abs(gates[:, [0, 1, 3]] - 0.5) < 0.49).all() and (np.abs(gates[:, 2]) < 0.999).all()
    dA = out["dA"].reshape(-1, 4, n)
    assert (np.abs(dA).max(axis=(0, 2)) > 1e-2).all()
    dWh = np.einsum("tbk,tbj->kj", out["dA"], out["H"][:-1])
    for name, analytic in (("A", out["dA"]), ("h0", out["dh0"]), ("c0", out["dc0"]), ("Wh", dWh)):
        _assert_rel(_numeric_grad(objective, p[name]), analytic, f"lstm d{name}")


def test_numpy_gru_backward_matches_finite_differences(rng):
    """Scalar L = <R, H[1:]> + <r_h, h_T>: dH = R, dh_T = r_h."""
    T, B, n = 4, 2, 3
    p = _gru_problem(rng, T, B, n, np.float64)
    p["A"] *= 0.5  # keeps the gates away from saturation

    def objective():
        H = np.empty((T + 1, B, n))
        gru_np.forward(p["Wh"], p["bh"], p["A"], p["h0"], H, np.empty((T, B, 3 * n)),
                       np.empty((T, B, n)))
        return float(np.sum(H[1:] * p["dH"]) + np.sum(H[-1] * p["dh_T"]))

    out = _run_gru(gru_np, p)
    gates = out["G"].reshape(-1, 3, n)
    assert (np.abs(gates[:, :2] - 0.5) < 0.49).all() and (np.abs(gates[:, 2]) < 0.999).all()
    # the reset gate's gradient runs through HN, which must not vanish
    assert np.abs(out["HN"]).min() > 1e-3
    dA = out["dA"].reshape(-1, 3, n)
    assert (np.abs(dA).max(axis=(0, 2)) > 1e-2).all()
    dWh = np.einsum("tbk,tbj->kj", out["dGh"], out["H"][:-1])
    dbh = out["dGh"].sum(axis=(0, 1))
    for name, analytic in (("A", out["dA"]), ("h0", out["dh0"]), ("Wh", dWh), ("bh", dbh)):
        _assert_rel(_numeric_grad(objective, p[name]), analytic, f"gru d{name}")


def _lstm_arrays(T=3, B=2, n=4):
    z = np.zeros
    return {
        "fwd": [z((4 * n, n)), z((T, B, 4 * n)), z((B, n)), z((B, n)),
                z((T + 1, B, n)), z((T + 1, B, n)), z((T, B, 4 * n))],
        "fwd_names": ["Wh", "A", "h0", "c0", "H", "C", "G"],
        "bwd": [z((4 * n, n)), z((T + 1, B, n)), z((T + 1, B, n)), z((T, B, 4 * n)), z((T, B, n)),
                z((B, n)), z((B, n)), z((T, B, 4 * n)), z((B, n)), z((B, n))],
        "bwd_names": ["Wh", "H", "C", "G", "dH", "dh_T", "dc_T", "dA", "dh0", "dc0"],
    }


def _gru_arrays(T=3, B=2, n=4):
    z = np.zeros
    return {
        "fwd": [z((3 * n, n)), z(3 * n), z((T, B, 3 * n)), z((B, n)),
                z((T + 1, B, n)), z((T, B, 3 * n)), z((T, B, n))],
        "fwd_names": ["Wh", "bh", "A", "h0", "H", "G", "HN"],
        "bwd": [z((3 * n, n)), z((T + 1, B, n)), z((T, B, 3 * n)), z((T, B, n)), z((T, B, n)),
                z((B, n)), z((T, B, 3 * n)), z((T, B, 3 * n)), z((B, n))],
        "bwd_names": ["Wh", "H", "G", "HN", "dH", "dh_T", "dA", "dGh", "dh0"],
    }


ARRAYS = {"lstm": _lstm_arrays, "gru": _gru_arrays}


@pytest.mark.parametrize("backend", ["cython", "numpy", "python"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("which", ["fwd", "bwd"])
def test_bad_shapes_name_the_array(which, cell, backend):
    kern = KERNELS[cell][backend]
    call = kern.forward if which == "fwd" else kern.backward
    names = ARRAYS[cell]()[which + "_names"]
    # backward reads T, B and Hn off dH; every other array (all of forward's) is checked
    reference = None if which == "fwd" else "dH"
    for pos, name in enumerate(names):
        if name == reference:
            continue
        args = ARRAYS[cell]()[which]
        args[pos] = np.zeros(args[pos].shape[:-1] + (args[pos].shape[-1] + 1,))
        with pytest.raises(ValueError, match=f"^{name} has shape"):
            call(*args)


@pytest.mark.parametrize(
    "backend,n_threads", [("cython", 1), ("cython", 2), ("numpy", 1), ("python", 1)]
)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_nan_raises_floating_point_error_naming_the_step(cell, backend, n_threads, rng):
    """NaNs in two sequences: the error names the step a serial loop meets first, however the
    batch is split over threads."""
    kern = KERNELS[cell][backend]
    p = PROBLEM[cell](rng, 6, 2, 3, np.float64)
    p["A"][4, 0, 0] = np.nan
    p["A"][2, 1, 0] = np.nan
    with pytest.raises(FloatingPointError, match="time step 2"):
        RUN[cell](kern, p, n_threads)
    p = PROBLEM[cell](rng, 6, 2, 3, np.float64)
    p["dH"][1, 1, 0] = np.nan
    p["dH"][3, 0, 1] = np.nan
    with pytest.raises(FloatingPointError, match="non-finite gradient at time step 3"):
        RUN[cell](kern, p, n_threads)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cython_accepts_read_only_inputs(cell, rng):
    p = PROBLEM[cell](rng, 4, 2, 5, np.float64)
    ref = RUN[cell](KERNELS[cell]["numpy"], p)
    _freeze(*p.values())
    got = RUN[cell](KERNELS[cell]["cython"], p, freeze=True)
    for name, r in ref.items():
        assert_close(got[name], r, np.float64, name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cython_refuses_mixed_dtypes_and_non_contiguous(cell):
    args = ARRAYS[cell]()["fwd"]
    pos = ARRAYS[cell]()["fwd_names"].index("A")
    mixed = list(args)
    mixed[pos] = args[pos].astype(np.float32)
    with pytest.raises((TypeError, ValueError)):
        KERNELS[cell]["cython"].forward(*mixed)
    strided = list(args)
    strided[pos] = np.zeros(args[pos].shape[:-1] + (2 * args[pos].shape[-1],))[:, :, ::2]
    with pytest.raises((TypeError, ValueError)):
        KERNELS[cell]["cython"].forward(*strided)
