"""Whole calls of one cell (no lengths, an output layer on every step) take Pass.whole, without
the Segment and Trace of the general pass: the same results, bitwise, as the general pass."""

import numpy as np
import pytest

import fastbptt as fb


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("cell,output,loss", [("tanh", "sigmoid", "bce"), ("relu", "linear", "mse"),
                                              ("lstm", "softmax", "ce"), ("gru", "linear", "mse")])
@pytest.mark.parametrize("T,B", [(1, 1), (8, 1), (5, 4)])
def test_whole_equals_general(rng, backend, cell, output, loss, T, B):
    I, H, O = 3, 16, 4
    m = fb.RNN(I, H, O, cell=cell, output=output, loss=loss, seed=1, backend=backend)
    general = m.copy()
    general._whole = general._whole_forward = False
    assert m._whole_forward and m._whole
    X = rng.standard_normal((T, B, I))
    Y = rng.integers(0, O, size=(T, B)) if loss == "ce" else rng.random((T, B, O))
    states = {"h0": rng.standard_normal((B, H))}
    if cell == "lstm":
        states["c0"] = rng.standard_normal((B, H))
    for kw in ({}, states):
        value, grads = m.loss_and_grad(X, Y, **kw)
        ref_value, ref_grads = general.loss_and_grad(X, Y, **kw)
        assert value == ref_value
        assert grads.keys() == ref_grads.keys()
        for name in grads:
            assert np.array_equal(grads[name], ref_grads[name]), name
        assert m.evaluate(X, Y, **kw) == general.evaluate(X, Y, **kw)
        (out, state), (ref_out, ref_state) = m.forward(X, **kw), general.forward(X, **kw)
        assert np.array_equal(out, ref_out)
        for s, r in zip(state, ref_state, strict=True):
            assert np.array_equal(s, r)


@pytest.mark.parametrize("kw", [dict(target="last"), dict(output=None, output_size=None),
                                dict(num_layers=2), dict(bidirectional=True)])
def test_whole_is_not_taken_where_it_does_not_apply(kw):
    m = fb.RNN(2, 4, **{"output_size": 1, **kw})
    assert not m._whole and not m._whole_forward


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("T,B,O", [(8, 1, 1), (5, 3, 2)])
def test_bce_head_is_bitwise_its_numpy_expressions(rng, dtype, reduction, T, B, O):
    """The sigmoid + bce head (buffers reused to save allocations) computes, bitwise, the loss
    sum(logaddexp(0, o) - y o) and the gradient (expit(o) - y) * scale, with the bias gradient
    summed over steps, then sequences."""
    from scipy.special import expit

    m = fb.RNN(3, 4, O, output="sigmoid", loss="bce", reduction=reduction, dtype=dtype)
    o = rng.normal(scale=3, size=(T, B, O)).astype(dtype)
    Y = rng.random((T, B, O)).astype(dtype)
    value, grad, grads = m.head.loss_and_grad(m.params, None, Y, unformed=True,
                                              defer_weight_grad=True, logits=o.copy())
    scale = 1.0 / (T * B) if reduction == "mean" else 1.0
    loss = np.add.reduce(np.logaddexp(0, o) - Y * o, None, np.float64)
    dO = expit(o) - Y
    if scale != 1:
        dO = dO * dtype(scale)
    assert value == float(loss) * scale
    assert grad.dO.dtype == dtype and np.array_equal(grad.dO, dO)
    assert np.array_equal(grads["c"], np.add.reduce(np.add.reduce(dO, 0), 0))
