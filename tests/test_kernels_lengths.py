"""Kernels with batch_sizes (variable lengths): a padded batch gives, for every sequence, exactly what
that sequence gives alone, and the kernels neither read nor write a finished row."""

import numpy as np
import pytest
from conftest import assert_close

from fastbptt import _elman, _gru, _lstm
from fastbptt.reference import elman as elman_np
from fastbptt.reference import elman_pure, gru_pure, lstm_pure
from fastbptt.reference import gru as gru_np
from fastbptt.reference import lstm as lstm_np

# every test here runs once per SIMD set the host supports (conftest.simd)
pytestmark = pytest.mark.usefixtures("simd")

KERNELS = {
    "lstm": {"cython": _lstm, "numpy": lstm_np, "python": lstm_pure},
    "gru": {"cython": _gru, "numpy": gru_np, "python": gru_pure},
}
GATES = {"lstm": 4, "gru": 3}
# (T, n, lengths), lengths sorted decreasing as the model passes them
CASES = [
    (5, 3, [5]),                  # B = 1, full length
    (6, 4, [2]),                  # B = 1, padded
    (4, 5, [4, 4, 4]),            # every length equals T
    (3, 2, [1, 1, 1, 1]),         # lengths of 1
    (7, 37, [7, 7, 5, 3, 1]),     # odd Hn, one sequence per length band
    (9, 16, [9, 8, 8, 6, 6, 6, 4, 2, 1, 1]),  # enough rows for the register tiles
    (6, 4, [4, 2]),               # T beyond the longest: batch size 0 at the end
]
BACKENDS = [("cython", 1), ("cython", 2), ("cython", 3), ("numpy", 1), ("python", 1)]


def batch_sizes_of(lengths, T):
    lengths = np.asarray(lengths)
    return (lengths[None, :] > np.arange(T)[:, None]).sum(axis=1).astype(np.intp)


def _problem(rng, cell, T, B, n, dtype, lengths):
    k = GATES[cell]
    p = {
        "Wh": rng.normal(0, 0.8 / np.sqrt(n), (k * n, n)),
        "bh": rng.normal(0, 0.5, (k * n,)),
        "A": rng.normal(0, 1.0, (T, B, k * n)),
        "h0": rng.normal(0, 0.5, (B, n)),
        "c0": rng.normal(0, 1.0, (B, n)),
        "dH": rng.normal(0, 1.0, (T, B, n)),
        "dh_T": rng.normal(0, 1.0, (B, n)),
        "dc_T": rng.normal(0, 1.0, (B, n)),
    }
    p = {key: v.astype(dtype) for key, v in p.items()}
    # what lies past a sequence's end must never be read: NaN there would poison any result
    for b, length in enumerate(lengths):
        p["A"][length:, b] = np.nan
        p["dH"][length:, b] = np.nan
    return p


def _outputs(cell, T, B, n, dtype, fill):
    k = GATES[cell]
    shapes = {"H": (T + 1, B, n), "G": (T, B, k * n), "dA": (T, B, k * n), "dh0": (B, n)}
    if cell == "lstm":
        shapes.update(C=(T + 1, B, n), dc0=(B, n))
    else:
        shapes.update(HN=(T, B, n), dGh=(T, B, k * n))
    return {name: np.full(shape, fill, dtype) for name, shape in shapes.items()}


def _run(cell, kern, p, n_threads=1, batch_sizes=None, fill=np.nan):
    """Forward then backward into OUT arrays prefilled with `fill`; returns them."""
    T, B, _ = p["A"].shape
    n = p["Wh"].shape[1]
    o = _outputs(cell, T, B, n, p["A"].dtype, fill)
    extra = () if batch_sizes is None else (batch_sizes,)
    if cell == "lstm":
        kern.forward(p["Wh"], p["A"], p["h0"], p["c0"], o["H"], o["C"], o["G"], n_threads, *extra)
        kern.backward(p["Wh"], o["H"], o["C"], o["G"], p["dH"], p["dh_T"], p["dc_T"], o["dA"],
                      o["dh0"], o["dc0"], n_threads, *extra)
    else:
        kern.forward(p["Wh"], p["bh"], p["A"], p["h0"], o["H"], o["G"], o["HN"], n_threads, *extra)
        kern.backward(p["Wh"], o["H"], o["G"], o["HN"], p["dH"], p["dh_T"], o["dA"], o["dGh"],
                      o["dh0"], n_threads, *extra)
    return o


def _alone(p, b, length):
    """Sequence b's own problem: its valid steps only, a batch of one."""
    one = {}
    for key, v in p.items():
        if key in ("Wh", "bh"):
            one[key] = v
        elif key in ("A", "dH"):
            one[key] = np.ascontiguousarray(v[:length, b:b + 1])
        else:
            one[key] = np.ascontiguousarray(v[b:b + 1])
    return one


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"T{c[0]}_n{c[1]}_B{len(c[2])}")
@pytest.mark.parametrize("backend,n_threads", BACKENDS, ids=lambda x: str(x))
def test_each_sequence_as_if_alone(backend, n_threads, case, dtype, cell, rng):
    T, n, lengths = case
    B = len(lengths)
    p = _problem(rng, cell, T, B, n, dtype, lengths)
    kern = KERNELS[cell][backend]
    got = _run(cell, kern, p, n_threads, batch_sizes_of(lengths, T))
    for b, length in enumerate(lengths):
        ref = _run(cell, kern, _alone(p, b, length), n_threads)
        what = f"{cell} {backend} t{n_threads} row {b} (length {length})"
        for name, r in ref.items():
            g = got[name][:, b] if got[name].ndim == 3 else got[name][b]
            if name in ("H", "C"):
                g = g[:length + 1]
            elif g.ndim == 2:
                g = g[:length]
            assert_close(g, r[:, 0] if r.ndim == 3 else r[0], dtype, f"{what} {name}")
        # past its end a sequence's rows are exactly as allocated: neither read nor written
        for name in got:
            if got[name].ndim == 3:
                start = length + 1 if name in ("H", "C") else length
                assert np.isnan(got[name][start:, b]).all(), f"{what}: {name} written past the end"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("backend,n_threads", BACKENDS, ids=lambda x: str(x))
def test_full_batch_sizes_change_nothing(backend, n_threads, cell, rng):
    T, B, n = 5, 4, 6
    p = _problem(rng, cell, T, B, n, np.float64, [T] * B)
    kern = KERNELS[cell][backend]
    plain = _run(cell, kern, p, n_threads)
    full = _run(cell, kern, p, n_threads, np.full(T, B, dtype=np.intp))
    for name in plain:
        np.testing.assert_array_equal(full[name], plain[name], err_msg=f"{cell} {backend} {name}")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("backend", ["cython", "numpy", "python"])
def test_backends_agree_on_a_ragged_batch(backend, cell, rng):
    """Against the NumPy reference on the same ragged batch, zero-filled OUT arrays (the cell's
    allocation), larger sizes than above."""
    T, n = 12, 24
    lengths = [12, 11, 9, 9, 7, 4, 4, 2, 1]
    p = _problem(rng, cell, T, len(lengths), n, np.float64, lengths)
    bs = batch_sizes_of(lengths, T)
    ref = _run(cell, KERNELS[cell]["numpy"], p, 1, bs, fill=0.0)
    for n_threads in (1, 2) if backend == "cython" else (1,):
        got = _run(cell, KERNELS[cell][backend], p, n_threads, bs, fill=0.0)
        for name in ref:
            assert_close(got[name], ref[name], np.float64, f"{cell} {backend} {name}")


BAD = [
    (np.array([3, 2], dtype=np.intp), "shape"),            # T = 3 steps
    (np.array([3.0, 2.0, 1.0]), "integers"),
    (np.array([True, True, False]), "integers"),
    (np.array([4, 2, 1], dtype=np.intp), r"\[0, B=3\]"),
    (np.array([3, 2, -1], dtype=np.intp), r"\[0, B=3\]"),
    (np.array([2, 3, 1], dtype=np.intp), "non-increasing"),
    (np.array([[3, 2, 1]], dtype=np.intp), "shape"),
]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("backend", ["cython", "numpy", "python"])
@pytest.mark.parametrize("bad,match", BAD, ids=[m for _, m in BAD])
def test_bad_batch_sizes_refused(bad, match, backend, cell, rng):
    T, B, n = 3, 3, 2
    p = _problem(rng, cell, T, B, n, np.float64, [T] * B)
    kern = KERNELS[cell][backend]
    o = _outputs(cell, T, B, n, np.float64, 0.0)
    if cell == "lstm":
        fwd = (p["Wh"], p["A"], p["h0"], p["c0"], o["H"], o["C"], o["G"], 1, bad)
        bwd = (p["Wh"], o["H"], o["C"], o["G"], p["dH"], p["dh_T"], p["dc_T"], o["dA"], o["dh0"],
               o["dc0"], 1, bad)
    else:
        fwd = (p["Wh"], p["bh"], p["A"], p["h0"], o["H"], o["G"], o["HN"], 1, bad)
        bwd = (p["Wh"], o["H"], o["G"], o["HN"], p["dH"], p["dh_T"], o["dA"], o["dGh"], o["dh0"],
               1, bad)
    with pytest.raises(ValueError, match="batch_sizes") as err:
        kern.forward(*fwd)
    assert err.match(match)
    with pytest.raises(ValueError, match="batch_sizes") as err:
        kern.backward(*bwd)
    assert err.match(match)
    # refused before anything is written
    assert not o["H"].any() and not o["dA"].any()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_int32_batch_sizes_accepted(cell, rng):
    T, lengths = 5, [5, 3, 2]
    p = _problem(rng, cell, T, 3, 4, np.float64, lengths)
    bs = batch_sizes_of(lengths, T)
    ref = _run(cell, _lstm if cell == "lstm" else _gru, p, 1, bs)
    got = _run(cell, _lstm if cell == "lstm" else _gru, p, 1, bs.astype(np.int32))
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name])


# -- Elman: the contract entries and the fused ones ------------------------------------------------

ELMAN = {"cython": _elman, "numpy": elman_np, "python": elman_pure}
# (T, n, lengths): one to three sequences of whole vector registers take the sequence path (each
# runs its own steps); other shapes the loop over blocks of active rows (by hand for one row a block)
ELMAN_CASES = [
    (6, 8, [6, 3]),
    (5, 16, [5, 2, 1]),
    (4, 3, [2]),
    (7, 5, [7, 4, 4, 2, 1]),
    (9, 16, [9, 8, 8, 6, 6, 6, 4, 2, 1, 1]),
    (6, 4, [4, 2, 2, 1]),
]


def _elman_problem(rng, T, n, lengths, dtype, I=3):
    B = len(lengths)
    p = {
        "W": rng.normal(0, 0.8 / np.sqrt(n), (n, n)),
        "U": rng.normal(0, 0.5, (n, I)),
        "b": rng.normal(0, 0.3, (n,)),
        "A": rng.normal(0, 1.0, (T, B, n)),
        "X": rng.normal(0, 1.0, (T, B, I)),
        "h0": rng.normal(0, 0.5, (B, n)),
        "dH": rng.normal(0, 1.0, (T, B, n)),
        "dh_T": rng.normal(0, 1.0, (B, n)),
    }
    p = {key: v.astype(dtype) for key, v in p.items()}
    for b, length in enumerate(lengths):
        for key in ("A", "X", "dH"):
            p[key][length:, b] = np.nan
    return p


def _elman_run(kern, act, p, n_threads=1, batch_sizes=None, fused=False, keep_dA=True):
    T, B, n = p["A"].shape
    dt = p["A"].dtype
    extra = () if batch_sizes is None else (batch_sizes,)
    H = np.full((T + 1, B, n), np.nan, dt)
    dA = np.full((T, B, n), np.nan, dt) if keep_dA else None
    dh0 = np.full((B, n), np.nan, dt)
    if not fused:
        kern.forward(act, p["W"], p["A"], p["h0"], H, n_threads, *extra)
        kern.backward(act, p["W"], H, p["dH"], p["dh_T"], dA, dh0, n_threads, *extra)
        return {"H": H, "dA": dA, "dh0": dh0}
    grads = {k: np.full(p[k].shape, np.nan, dt) for k in ("U", "W", "b")}
    kern.forward_fused(act, p["U"], p["b"], p["W"], p["X"], p["h0"], H, n_threads, *extra)
    kern.backward_fused(act, p["W"], p["X"], H, p["dH"], p["dh_T"], dA, dh0, grads["U"],
                        grads["W"], grads["b"], n_threads, *extra)
    out = {"H": H, "dh0": dh0, **{"d" + k: v for k, v in grads.items()}}
    if keep_dA:
        out["dA"] = dA
    return out


def _elman_alone(p, b, length):
    one = {}
    for key, v in p.items():
        if key in ("W", "U", "b"):
            one[key] = v
        elif key in ("A", "X", "dH"):
            one[key] = np.ascontiguousarray(v[:length, b:b + 1])
        else:
            one[key] = np.ascontiguousarray(v[b:b + 1])
    return one


ELMAN_RUNS = [("cython", 1, False), ("cython", 2, False), ("cython", 3, False), ("numpy", 1, False),
              ("python", 1, False), ("cython", 1, True), ("cython", 2, True), ("numpy", 1, True)]


@pytest.mark.parametrize("act", [0, 1], ids=["tanh", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ELMAN_CASES, ids=lambda c: f"T{c[0]}_n{c[1]}_B{len(c[2])}")
@pytest.mark.parametrize("backend,n_threads,fused", ELMAN_RUNS, ids=lambda x: str(x))
def test_elman_each_sequence_as_if_alone(backend, n_threads, fused, case, dtype, act, rng):
    T, n, lengths = case
    p = _elman_problem(rng, T, n, lengths, dtype)
    kern = ELMAN[backend]
    bs = batch_sizes_of(lengths, T)
    for keep_dA in (True, False) if fused else (True,):
        got = _elman_run(kern, act, p, n_threads, bs, fused, keep_dA)
        summed = {k: 0 for k in ("dU", "dW", "db")}
        for b, length in enumerate(lengths):
            ref = _elman_run(kern, act, _elman_alone(p, b, length), n_threads, None, fused,
                             keep_dA)
            what = f"elman {backend} t{n_threads} fused={fused} row {b} (length {length})"
            assert_close(got["H"][:length + 1, b], ref["H"][:, 0], dtype, f"{what} H")
            assert_close(got["dh0"][b], ref["dh0"][0], dtype, f"{what} dh0")
            assert np.isnan(got["H"][length + 1:, b]).all(), f"{what}: H written past the end"
            if keep_dA:
                assert_close(got["dA"][:length, b], ref["dA"][:, 0], dtype, f"{what} dA")
                assert np.isnan(got["dA"][length:, b]).all(), f"{what}: dA written past the end"
            if fused:
                for k in summed:
                    summed[k] = summed[k] + ref[k].astype(np.float64)
        if fused:
            for k, total in summed.items():
                assert_close(got[k], total, dtype, f"elman {backend} fused {k}")


@pytest.mark.parametrize("backend", ["cython", "numpy", "python"])
def test_elman_step_forward_with_lengths(backend, rng):
    T, n, lengths = 6, 5, [6, 4, 1]
    p = _elman_problem(rng, T, n, lengths, np.float64)
    H = np.full((T + 1, 3, n), np.nan)
    ELMAN[backend].forward(2, p["W"], p["A"], p["h0"], H, 1, batch_sizes_of(lengths, T))
    for b, length in enumerate(lengths):
        one = _elman_alone(p, b, length)
        ref = np.empty((length + 1, 1, n))
        ELMAN[backend].forward(2, p["W"], one["A"], one["h0"], ref, 1)
        np.testing.assert_array_equal(H[:length + 1, b], ref[:, 0])
        assert np.isnan(H[length + 1:, b]).all()


@pytest.mark.parametrize("backend,n_threads,fused", ELMAN_RUNS, ids=lambda x: str(x))
def test_elman_full_batch_sizes_change_nothing(backend, n_threads, fused, rng):
    T, n, B = 5, 8, 3
    p = _elman_problem(rng, T, n, [T] * B, np.float64)
    kern = ELMAN[backend]
    plain = _elman_run(kern, 0, p, n_threads, None, fused)
    full = _elman_run(kern, 0, p, n_threads, np.full(T, B, dtype=np.intp), fused)
    for name in plain:
        assert_close(full[name], plain[name], np.float64, f"elman {backend} {name}")


@pytest.mark.parametrize("backend", ["cython", "numpy", "python"])
@pytest.mark.parametrize("bad,match", BAD, ids=[m for _, m in BAD])
def test_elman_bad_batch_sizes_refused(bad, match, backend, rng):
    T, n, B = 3, 4, 3
    p = _elman_problem(rng, T, n, [T] * B, np.float64)
    kern = ELMAN[backend]
    H = np.zeros((T + 1, B, n))
    dA = np.zeros((T, B, n))
    calls = [lambda: kern.forward(0, p["W"], p["A"], p["h0"], H, 1, bad),
             lambda: kern.backward(0, p["W"], H, p["dH"], p["dh_T"], dA, np.zeros((B, n)), 1, bad)]
    if backend != "python":
        calls += [lambda: kern.forward_fused(0, p["U"], p["b"], p["W"], p["X"], p["h0"], H, 1, bad),
                  lambda: kern.backward_fused(0, p["W"], p["X"], H, p["dH"], p["dh_T"], dA,
                                              np.zeros((B, n)), np.zeros((n, 3)), np.zeros((n, n)),
                                              np.zeros(n), 1, bad)]
    for call in calls:
        with pytest.raises(ValueError, match="batch_sizes") as err:
            call()
        assert err.match(match)
    assert not H.any() and not dA.any()


# -- the cells' time-parallel work on the valid steps only (fastbptt.valid_steps) ----------------

@pytest.mark.parametrize("chunk_bytes", [1, 1000, 1 << 22])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_packed_products_match_masked_ones(chunk_bytes, dtype, rng, monkeypatch):
    """Chunks of one step (1 byte), chunks that cut runs of steps (1000 bytes), one chunk."""
    from fastbptt import valid_steps

    monkeypatch.setattr(valid_steps, "CHUNK_BYTES", chunk_bytes)
    T, k, m = 11, 5, 3
    lengths = [11, 9, 9, 6, 3, 3, 1]
    B = len(lengths)
    bs = batch_sizes_of(lengths, T)
    mask = np.arange(B)[None, :] < bs[:, None]
    X = rng.normal(size=(T, B, k)).astype(dtype)
    Y = rng.normal(size=(T, B, m)).astype(dtype)
    W = rng.normal(size=(k, m)).astype(dtype)
    bias = rng.normal(size=m).astype(dtype)
    out = valid_steps.rows_times(X, W, bs, bias)
    expected = np.where(mask[:, :, None], X @ W + bias, 0)
    assert_close(out, expected, dtype, "rows_times")
    assert not out[~mask].any(), "padded steps stay zero"
    (xy, xx), (sx, sy) = valid_steps.valid_grads(bs, (X, Y), ((0, 1), (0, 0)), (0, 1))
    Xv, Yv = X[mask], Y[mask]
    assert_close(xy, Xv.T @ Yv, dtype, "X^T Y")
    assert_close(xx, Xv.T @ Xv, dtype, "X^T X")
    assert_close(sx, Xv.sum(axis=0), dtype, "sum X")
    assert_close(sy, Yv.sum(axis=0), dtype, "sum Y")


def test_chunks_cover_every_valid_step_once():
    from fastbptt import valid_steps

    lengths = np.array([9, 7, 7, 4, 2, 1])
    T = 12  # batch size 0 at the end
    bs = batch_sizes_of(lengths, T)
    for rows in (6, 7, 10, 64):
        seen = np.zeros((T, len(lengths)), dtype=int)
        for chunk in valid_steps.chunks(bs, rows):
            assert sum((t1 - t0) * b for t0, t1, b in chunk) <= rows
            for t0, t1, b in chunk:
                seen[t0:t1, :b] += 1
        np.testing.assert_array_equal(seen, np.arange(len(lengths))[None, :] < bs[:, None])
