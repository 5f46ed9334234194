"""The bce head's compiled elementwise pass (fastbptt._build.bce_terms) gives the bits of the NumPy
and SciPy expressions it replaces, over the whole float range, and leaves arrays it does not take
to them; the head's loss and gradient are the same with it and without it."""

import numpy as np
import pytest
from scipy.special import expit

import fastbptt as fb
from fastbptt import heads


def _numpy_terms(o, y):
    with np.errstate(all="ignore"):
        terms = np.logaddexp(0.0, o)
        dO = np.multiply(y, o)
        terms -= dO
        expit(o, out=dO)
        dO -= y
    return terms, dO


def _same_bits(a, b):
    bits = np.uint64 if a.dtype == np.float64 else np.uint32
    return bool(np.all((a.view(bits) == b.view(bits)) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [8, 1 << 13])  # under and over the size that releases the GIL
def test_compiled_terms_are_the_bits_of_the_numpy_expressions(dtype, n, rng):
    from fastbptt._build import bce_terms

    o = np.concatenate([rng.normal(0, s, n) for s in (0.01, 1, 8, 60, 900)] + [np.array(
        [0.0, -0.0, 1e-30, -1e-30, 17.0, -17.0, 88.7, -88.7, 104.0, -104.0, 709.8, -709.8,
         745.2, -745.2, 1e300, -1e300, np.inf, -np.inf, np.nan])])
    with np.errstate(over="ignore"):
        o = o.astype(dtype)
    y = rng.random(o.size).astype(dtype)
    y[::2] = np.round(y[::2])
    terms, dO = np.empty_like(o), np.empty_like(o)
    assert bce_terms(o, y, terms, dO) is True
    want_terms, want_dO = _numpy_terms(o, y)
    assert _same_bits(terms, want_terms)
    assert _same_bits(dO, want_dO)


def test_arrays_it_does_not_take_are_left_to_numpy():
    from fastbptt._build import bce_terms

    o = np.linspace(-3, 3, 12)
    y = np.full(12, 0.5)
    out = np.full(12, 7.0)
    cases = [
        (o.astype(np.float32), y, out, out.copy()),  # mixed dtypes
        (o[::2], y[:6], out[:6], out[:6].copy()),  # not contiguous
        (o, y[:11], out, out.copy()),  # sizes differ
        (o.astype(np.int64), y, out, out.copy()),  # not floats
    ]
    frozen = out.copy()
    frozen.flags.writeable = False
    cases.append((o, y, frozen, out.copy()))
    for args in cases:
        before = [a.copy() for a in args[2:]]
        assert bce_terms(*args) is False
        for a, b in zip(args[2:], before, strict=True):
            np.testing.assert_array_equal(a, b)  # nothing written


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_head_gives_the_same_loss_and_gradients_with_and_without_it(dtype, rng, monkeypatch):
    X = rng.integers(0, 2, size=(8, 3, 2)).astype(dtype)
    Y = rng.integers(0, 2, size=(8, 3, 2)).astype(dtype)
    m = fb.RNN(2, 16, 2, cell="tanh", output="sigmoid", loss="bce", dtype=dtype, seed=0)
    loss, grads = m.loss_and_grad(X, Y)
    monkeypatch.setattr(heads, "_compiled_bce", None)
    loss_np, grads_np = m.loss_and_grad(X, Y)
    assert loss == loss_np
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads_np[k], err_msg=k)
