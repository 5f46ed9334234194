"""Variable-length batches: a padded batch gives exactly what its sequences give one by one."""

import numpy as np
import pytest
from conftest import assert_close

import fastbptt as fb

CELLS = ["tanh", "relu", "lstm", "gru"]


def _padded(rng, lengths, T, I, garbage=True):
    X = rng.normal(size=(T, len(lengths), I))
    for b, n in enumerate(lengths):
        X[n:, b] = rng.normal(size=(T - n, I)) * 100 if garbage else 0  # padding must not matter
    return X


@pytest.mark.parametrize("backend", ["cython", "numpy", "python"])
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_padded_batch_equals_one_by_one(cell, layers, bidirectional, target, backend, rng):
    T, I, H, O = 7, 2, 4, 3
    lengths = np.array([3, 7, 1, 5, 7])
    B = len(lengths)
    X = _padded(rng, lengths, T, I)
    Y = rng.normal(size=(T, B, O) if target == "all" else (B, O))
    m = fb.RNN(I, H, O, cell=cell, target=target, reduction="sum", num_layers=layers,
               bidirectional=bidirectional, backend=backend, seed=1)
    loss, grads = m.loss_and_grad(X, Y, lengths=lengths)
    Y_hat, state = m.forward(X, lengths=lengths)
    total, summed = 0.0, {k: np.zeros_like(v) for k, v in grads.items()}
    for b, n in enumerate(lengths):
        Xb = X[:n, b:b + 1]
        Yb = Y[:n, b:b + 1] if target == "all" else Y[b:b + 1]
        lb, gb = m.loss_and_grad(Xb, Yb)
        total += lb
        for k in summed:
            summed[k] += gb[k]
        yb, sb = m.forward(Xb)
        if target == "all":
            assert_close(Y_hat[:n, b], yb[:, 0], np.float64, "outputs")
            assert not Y_hat[n:, b].any(), "outputs at padded steps are zero"
        else:
            assert_close(Y_hat[b], yb[0], np.float64, "last-step output")
        for s_all, s_one in zip(state, sb, strict=True):
            assert_close(s_all[..., b, :], s_one[..., 0, :], np.float64, "final state")
    assert_close(loss, total, np.float64, "loss")
    for k in grads:
        assert_close(grads[k], summed[k], np.float64, f"d{k}")


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_with_lengths(cell, rng):
    T, I, H, O = 5, 2, 3, 2
    lengths = np.array([2, 5, 4])
    X = _padded(rng, lengths, T, I, garbage=False)
    Y = rng.integers(0, O, size=(T, 3))
    m = fb.RNN(I, H, O, cell=cell, output="softmax", loss="ce", num_layers=2, bidirectional=True,
               seed=2)
    states = {"h0": rng.normal(size=(4, 3, H)) * 0.3}
    if cell == "lstm":
        states["c0"] = rng.normal(size=(4, 3, H)) * 0.3
    errors = fb.gradcheck(m, X, Y, lengths=lengths, **states)
    assert max(errors.values()) < 1e-7, errors


def test_mean_divides_by_valid_steps(rng):
    lengths = np.array([2, 4])
    X = _padded(rng, lengths, 4, 2)
    Y = rng.normal(size=(4, 2, 1))
    m_sum = fb.RNN(2, 3, 1, reduction="sum")
    m_mean = fb.RNN(2, 3, 1, reduction="mean")
    assert m_mean.evaluate(X, Y, lengths=lengths) == pytest.approx(
        m_sum.evaluate(X, Y, lengths=lengths) / 6, rel=1e-13)


def test_full_lengths_equal_no_lengths(rng):
    X = rng.normal(size=(6, 3, 2))
    Y = rng.normal(size=(6, 3, 1))
    m = fb.RNN(2, 4, 1, cell="lstm")
    l1, g1 = m.loss_and_grad(X, Y)
    l2, g2 = m.loss_and_grad(X, Y, lengths=[6, 6, 6])
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


@pytest.mark.parametrize("lengths, exc, match", [
    ([3, 0, 2], ValueError, "empty sequences are not allowed"),
    ([3, 9, 2], ValueError, r"lengths must lie in \[1, T=5\]"),
    ([3, 2], ValueError, r"expected \(3,\), one length per sequence"),
    ([1.5, 2, 2], TypeError, "expected integers"),
])
def test_bad_lengths(lengths, exc, match):
    m = fb.RNN(2, 3, 1)
    with pytest.raises(exc, match=match):
        m.loss_and_grad(np.zeros((5, 3, 2)), np.zeros((5, 3, 1)), lengths=lengths)


def test_kernels_shrink_the_active_batch(rng):
    """The kernels never touch a finished sequence: its later rows stay exactly as allocated."""
    from fastbptt import _gru, _lstm

    T, B, n = 6, 3, 4
    batch_sizes = np.array([3, 3, 2, 2, 1, 1], dtype=np.intp)
    Wh = rng.normal(size=(4 * n, n)) * 0.3
    A4 = rng.normal(size=(T, B, 4 * n))
    H = np.zeros((T + 1, B, n))
    C = np.zeros_like(H)
    G = np.zeros((T, B, 4 * n))
    _lstm.forward(Wh, A4, np.zeros((B, n)), np.zeros((B, n)), H, C, G, 1, batch_sizes)
    assert not H[3:, 2].any() and not C[5:, 1].any() and not G[4:, 1].any()
    Wg = rng.normal(size=(3 * n, n)) * 0.3
    A3 = rng.normal(size=(T, B, 3 * n))
    H = np.zeros((T + 1, B, n))
    G = np.zeros((T, B, 3 * n))
    HN = np.zeros((T, B, n))
    _gru.forward(Wg, np.zeros(3 * n), A3, np.zeros((B, n)), H, G, HN, 1, batch_sizes)
    assert not H[3:, 2].any() and not HN[4:, 1].any()
