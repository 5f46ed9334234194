"""The bce head's compiled pass (fastbptt._build.bce_loss_grad) gives the bits of the NumPy and
SciPy expressions it replaces: the gradient at the logits over the whole float range, the loss
summed in add.reduce's order and the bias gradient in its order too; it leaves arrays it does not
take to them; the head's loss and gradients are the same with it and without it."""

import numpy as np
import pytest
from scipy.special import expit

import fastbptt as fb
from fastbptt import heads

_sum = np.add.reduce


def _numpy_head(o, y, scale):
    """What heads.py computes without the compiled pass: loss, dO and dc."""
    with np.errstate(all="ignore"):
        terms = np.logaddexp(0.0, o)
        dO = np.multiply(y, o)
        terms -= dO
        expit(o, out=dO)
        dO -= y
        if scale != 1:
            dO *= o.dtype.type(scale)
        dc = _sum(dO, 0)[0] if o.shape[1] == 1 else _sum(_sum(dO, 0), 0)
    return _sum(terms, None, np.float64), dO, dc


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    bits = np.uint64 if a.dtype == np.float64 else np.uint32
    return a.dtype == b.dtype and bool(np.all((a.view(bits) == b.view(bits))
                                              | (np.isnan(a) & np.isnan(b))))


def _compiled(o, y, scale):
    from fastbptt._build import bce_loss_grad

    dO, dc = np.empty_like(o), np.empty(o.shape[2], o.dtype)
    loss = bce_loss_grad(o, y, scale, dO, dc)
    assert loss is not None
    return loss, dO, dc


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [8, 1 << 13])  # under and over the size that releases the GIL
def test_the_gradient_has_the_bits_of_the_numpy_expressions(dtype, n, rng):
    o = np.concatenate([rng.normal(0, s, n) for s in (0.01, 1, 8, 60, 900)] + [np.array(
        [0.0, -0.0, 1e-30, -1e-30, 17.0, -17.0, 88.7, -88.7, 104.0, -104.0, 709.8, -709.8,
         745.2, -745.2, 1e300, -1e300, np.inf, -np.inf, np.nan])])
    with np.errstate(over="ignore"):
        o = o.astype(dtype)[:, None, None]
    y = rng.random(o.shape).astype(dtype)
    y[::2] = np.round(y[::2])
    loss, dO, dc = _compiled(o, y, 1.0)
    want_loss, want_dO, want_dc = _numpy_head(o, y, 1.0)
    assert _same_bits(dO, want_dO)
    assert _same_bits(loss, want_loss)  # NaN here: the NaN logit
    assert _same_bits(dc, want_dc)


# sizes about the pairwise sum's blocks (8 lanes, 128 a leaf) and the cast buffer (8192), one
# sequence or a batch, one output unit or several
SHAPES = [(1, 1, 1), (7, 1, 1), (8, 1, 1), (9, 1, 1), (129, 1, 1), (8, 1, 2), (8, 3, 1),
          (8, 3, 2), (1000, 1, 1), (1000, 32, 1), (257, 3, 1), (200, 32, 10), (3, 1, 20000),
          (5000, 4, 1), (10000, 2, 3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_sums_are_in_the_order_of_add_reduce(dtype, shape, rng):
    o = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, 2, shape).astype(dtype)
    for scale in (1.0, 1.0 / (shape[0] * shape[1]), 0.37):
        got, want = _compiled(o, y, scale), _numpy_head(o, y, scale)
        for name, a, b in zip(("loss", "dO", "dc"), got, want, strict=True):
            assert _same_bits(a, b), (name, scale)


def test_a_sum_of_negative_zeros_is_positive_zero_as_in_numpy():
    o = np.zeros((9, 2, 1))
    y = np.full(o.shape, 0.5)
    loss, dO, dc = _compiled(o, y, -1.0)  # dO = (0.5 - 0.5) * -1 = -0.0 everywhere
    assert np.all(np.signbit(dO))
    assert _same_bits(dc, _numpy_head(o, y, -1.0)[2]) and not np.signbit(dc[0])


def test_arrays_it_does_not_take_are_left_to_numpy():
    from fastbptt._build import bce_loss_grad

    o = np.linspace(-3, 3, 12).reshape(3, 2, 2)
    y = np.full(o.shape, 0.5)
    out, dc = np.full(o.shape, 7.0), np.full(2, 7.0)
    frozen = out.copy()
    frozen.flags.writeable = False
    cases = [
        (o.astype(np.float32), y, 1.0, out, dc),  # mixed dtypes
        (o[:, :1], y[:, :1], 1.0, out[:, :1], dc),  # not contiguous
        (o, y[:2], 1.0, out, dc),  # shapes differ
        (o, y, 1.0, out, dc[:1]),  # dc not one per output
        (o.reshape(6, 2), y.reshape(6, 2), 1.0, out.reshape(6, 2), dc),  # not (T, B, O)
        (o.astype(np.int64), y, 1.0, out, dc),  # not floats
        (o[:0], y[:0], 1.0, out[:0], dc),  # no steps
        (o, y, 1.0, frozen, dc),
    ]
    for args in cases:
        before = [a.copy() for a in (args[3], args[4])]
        assert bce_loss_grad(*args) is None
        for a, b in zip((args[3], args[4]), before, strict=True):
            np.testing.assert_array_equal(a, b)  # nothing written


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 3])
def test_the_head_gives_the_same_loss_and_gradients_with_and_without_it(dtype, B, rng,
                                                                        monkeypatch):
    X = rng.integers(0, 2, size=(8, B, 2)).astype(dtype)
    Y = rng.integers(0, 2, size=(8, B, 2)).astype(dtype)
    lengths = [8, 5, 3][:B]
    for reduction in ("mean", "sum"):
        m = fb.RNN(2, 16, 2, cell="tanh", output="sigmoid", loss="bce", dtype=dtype,
                   reduction=reduction, seed=0)
        with monkeypatch.context() as patch:
            results = [(m.loss_and_grad(X, Y), m.loss_and_grad(X, Y, lengths=lengths))]
            patch.setattr(heads, "_compiled_bce", None)
            results.append((m.loss_and_grad(X, Y), m.loss_and_grad(X, Y, lengths=lengths)))
        for (loss, grads), (loss_np, grads_np) in zip(*results, strict=True):
            assert loss == loss_np
            for k in grads:
                np.testing.assert_array_equal(grads[k], grads_np[k], err_msg=k)
