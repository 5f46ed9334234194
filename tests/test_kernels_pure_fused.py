"""The pure-Python twins' fused entries (the projection, then forward; backward, then the weight
gradients) keep the kernel contract: they agree with the NumPy twins' fused entries, with the
loss gradient as dH or as (dO, V), with the output layer's logits, with variable lengths (LSTM),
and refuse bad arguments naming them."""

import numpy as np
import pytest
from conftest import assert_close

from fastbptt.reference import elman as elman_np
from fastbptt.reference import elman_pure, lstm_pure
from fastbptt.reference import lstm as lstm_np

SHAPES = [(1, 1, 1, 1), (4, 3, 2, 5), (0, 2, 3, 4)]  # T, B, I, Hn: tiny, the twin is slow
O = 3


def _problem(rng, T, B, I, n, gates):
    p = {"Wx": rng.normal(0, 0.5, (gates * n, I)), "b": rng.normal(0, 0.3, gates * n),
         "Wh": rng.normal(0, 0.8 / np.sqrt(n), (gates * n, n)), "X": rng.normal(0, 1, (T, B, I)),
         "h0": rng.normal(0, 0.5, (B, n)), "c0": rng.normal(0, 1, (B, n)),
         "dH": rng.normal(0, 1, (T, B, n)), "dh_T": rng.normal(0, 1, (B, n)),
         "dc_T": rng.normal(0, 1, (B, n)), "V": rng.normal(0, 0.5, (O, n)),
         "c": rng.normal(0, 0.5, O), "dO": rng.normal(0, 1, (T, B, O))}
    return p


def _lengths(T, B):
    lengths = np.maximum(T - np.arange(B), 1)
    return np.array([(lengths > t).sum() for t in range(T)], dtype=np.intp)


def _elman(kern, act, p, head, keep_dA):
    T, B, _ = p["X"].shape
    n = p["Wh"].shape[0]
    H = np.zeros((T + 1, B, n))
    out = np.full((T, B, O), np.nan)
    logits = (p["V"], p["c"], out) if head else ()
    kern.forward_fused(act, p["Wx"], p["b"], p["Wh"], p["X"], p["h0"], H, 1, None, *logits)
    got = {"H": H, "out": out} if head else {"H": H}
    got.update(dh0=np.full((B, n), np.nan), dWx=np.full_like(p["Wx"], np.nan),
               dWh=np.full_like(p["Wh"], np.nan), db=np.full_like(p["b"], np.nan))
    dA = np.full((T, B, n), np.nan) if keep_dA else None
    grad = (None, p["dh_T"]) if head else (p["dH"], p["dh_T"])
    more = (p["dO"], p["V"], np.full((O, n), np.nan)) if head else ()
    kern.backward_fused(act, p["Wh"], p["X"], H, *grad, got["dh0"], got["dWx"], got["dWh"],
                        got["db"], 1, None, dA, *more)
    if keep_dA:
        got["dA"] = dA
    if head:
        got["dV"] = more[2]
    return got


def _lstm(kern, p, head, keep_dA, batch_sizes):
    T, B, _ = p["X"].shape
    n = p["Wh"].shape[1]
    H, C = np.zeros((T + 1, B, n)), np.zeros((T + 1, B, n))
    G = np.zeros((T, B, 4 * n))
    out = np.zeros((T, B, O))
    logits = (p["V"], p["c"], out) if head else ()
    kern.forward_fused(p["Wx"], p["b"], p["Wh"], p["X"], p["h0"], p["c0"], H, C, G, 1,
                       batch_sizes, *logits)
    got = {"H": H, "C": C, "G": G, "out": out}
    got.update(dh0=np.full((B, n), np.nan), dc0=np.full((B, n), np.nan),
               dWx=np.full_like(p["Wx"], np.nan), dWh=np.full_like(p["Wh"], np.nan),
               db=np.full_like(p["b"], np.nan))
    dA = np.zeros((T, B, 4 * n)) if keep_dA else None
    more = (p["dO"], p["V"], np.full((O, n), np.nan)) if head else ()
    kern.backward_fused(p["Wh"], p["X"], H, C, G, None if head else p["dH"], p["dh_T"],
                        p["dc_T"], got["dh0"], got["dc0"], got["dWx"], got["dWh"], got["db"], 1,
                        batch_sizes, dA, *more)
    if keep_dA:
        got["dA"] = dA
    if head:
        got["dV"] = more[2]
    return got


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("act", [0, 1], ids=["tanh", "relu"])
@pytest.mark.parametrize("head,keep_dA", [(False, True), (True, False)])
def test_elman_pure_fused_agrees_with_numpy(shape, act, head, keep_dA, rng):
    p = _problem(rng, *shape, 1)
    want = _elman(elman_np, act, p, head, keep_dA)
    got = _elman(elman_pure, act, p, head, keep_dA)
    for name in want:
        assert_close(got[name], want[name], np.float64, what=name)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("head,keep_dA", [(False, True), (True, False)])
@pytest.mark.parametrize("ragged", [False, True])
def test_lstm_pure_fused_agrees_with_numpy(shape, head, keep_dA, ragged, rng):
    p = _problem(rng, *shape, 4)
    bs = _lengths(*shape[:2]) if ragged else None
    want = _lstm(lstm_np, p, head, keep_dA, bs)
    got = _lstm(lstm_pure, p, head, keep_dA, bs)
    for name in want:
        assert_close(got[name], want[name], np.float64, what=name)


def test_elman_pure_fused_bad_arguments_name_them(rng):
    p = _problem(rng, 3, 2, 2, 4, 1)
    with pytest.raises(ValueError, match="Wx has shape"):
        _elman(elman_pure, 0, dict(p, Wx=np.zeros((4, 3))), False, True)
    with pytest.raises(ValueError, match="V has shape"):
        _elman(elman_pure, 0, dict(p, V=np.zeros((O, 5))), True, False)
    grads = (np.zeros((2, 4)), np.zeros((4, 2)), np.zeros((4, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="not both"):
        elman_pure.backward_fused(0, p["Wh"], p["X"], np.zeros((4, 2, 4)), p["dH"], p["dh_T"],
                                  *grads, 1, None, None, p["dO"], p["V"])
    with pytest.raises(ValueError, match="batch_sizes"):
        elman_pure.forward_fused(0, p["Wx"], p["b"], p["Wh"], p["X"], p["h0"],
                                 np.zeros((4, 2, 4)), 1, np.array([2, 2, 1], dtype=np.intp))


def test_lstm_pure_fused_bad_arguments_name_them(rng):
    p = _problem(rng, 3, 2, 2, 4, 4)
    with pytest.raises(ValueError, match="Wx has shape"):
        _lstm(lstm_pure, dict(p, Wx=np.zeros((16, 3))), False, True, None)
    with pytest.raises(ValueError, match="V has shape"):
        _lstm(lstm_pure, dict(p, V=np.zeros((O, 5))), True, False, None)
    H, G = np.zeros((4, 2, 4)), np.zeros((3, 2, 16))
    grads = (np.zeros((2, 4)), np.zeros((2, 4)), np.zeros((16, 2)), np.zeros((16, 4)), np.zeros(16))
    with pytest.raises(ValueError, match="dV needs dO"):
        lstm_pure.backward_fused(p["Wh"], p["X"], H, H, G, p["dH"], p["dh_T"], p["dc_T"], *grads,
                                 1, None, None, None, None, np.zeros((O, 4)))
    with pytest.raises(ValueError, match="dA has shape"):
        lstm_pure.backward_fused(p["Wh"], p["X"], H, H, G, p["dH"], p["dh_T"], p["dc_T"], *grads,
                                 1, None, np.zeros((3, 2, 4)))
