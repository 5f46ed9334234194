"""The model API: backends agree over every head, loss, reduction and target; gradients are right."""

import numpy as np
import pytest
from conftest import assert_close

import fastbptt as fb

HEADS = [  # output, loss
    ("linear", "mse"),
    ("sigmoid", "mse"),
    ("sigmoid", "bce"),
    ("softmax", "mse"),
    ("softmax", "ce"),
    (None, "mse"),
]
SHAPES = [(1, 1, 1, 1, 1), (6, 1, 2, 16, 1), (5, 3, 4, 37, 3), (4, 2, 3, 70, 2)]  # T, B, I, H, O


def _targets(rng, output, loss, target, T, B, O, H, int_ids=True):
    O = H if output is None else O
    steps = (T,) if target == "all" else ()
    if loss == "ce" and int_ids:
        return rng.integers(0, O, size=steps + (B,))
    if loss == "ce":
        return np.eye(O)[rng.integers(0, O, size=steps + (B,))]
    if loss == "bce" or output in ("sigmoid", "softmax"):
        return rng.integers(0, 2, size=steps + (B, O)).astype(float)
    return rng.normal(size=steps + (B, O))


def _model(cell, output, loss, reduction, target, I, H, O, dtype, backend, seed=1):
    return fb.RNN(I, H, None if output is None else O, cell=cell, output=output, loss=loss,
                  reduction=reduction, target=target, dtype=dtype, backend=backend, seed=seed)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h[0]}-{h[1]}")
@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm", "gru"])
def test_backends_agree(cell, head, reduction, target, dtype, rng):
    output, loss = head
    for T, B, I, H, O in SHAPES:
        X = rng.normal(size=(T, B, I))
        Y = _targets(rng, output, loss, target, T, B, O, H)
        results = {}
        for backend in ("numpy", "cython", "python"):
            m = _model(cell, output, loss, reduction, target, I, H, O, dtype, backend)
            results[backend] = m.loss_and_grad(X, Y)
            pred = m.predict(X)
            expected_shape = (T, B) if target == "all" else (B,)
            assert pred.shape == expected_shape + (H if output is None else O,)
        ref_loss, ref_grads = results["numpy"]
        for backend in ("cython", "python"):
            loss_b, grads_b = results[backend]
            assert_close(loss_b, ref_loss, dtype, f"{backend} loss")
            assert set(grads_b) == set(ref_grads)
            for name in ref_grads:
                assert grads_b[name].dtype == dtype
                assert_close(grads_b[name], ref_grads[name], dtype, f"{backend} d{name}")


@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h[0]}-{h[1]}")
@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm", "gru"])
def test_gradcheck(cell, head, reduction, target, rng):
    output, loss = head
    T, B, I, H, O = 5, 2, 3, 4, 3
    m = _model(cell, output, loss, reduction, target, I, H, O, np.float64, "cython", seed=3)
    X = rng.normal(size=(T, B, I))
    Y = _targets(rng, output, loss, target, T, B, O, H)
    states = {"h0": rng.normal(size=(B, H)) * 0.3}
    if cell == "lstm":
        states["c0"] = rng.normal(size=(B, H))
    errors = fb.gradcheck(m, X, Y, **states)
    assert set(errors) == set(m.params) | set(states)
    worst = max(errors.values())
    assert worst < 1e-7, errors


def test_ce_one_hot_equals_class_ids(rng):
    m = fb.RNN(2, 5, 4, output="softmax", loss="ce")
    X = rng.normal(size=(6, 3, 2))
    ids = rng.integers(0, 4, size=(6, 3))
    l1, g1 = m.loss_and_grad(X, ids)
    l2, g2 = m.loss_and_grad(X, np.eye(4)[ids])
    assert l1 == pytest.approx(l2, rel=1e-14)
    for k in g1:
        assert_close(g1[k], g2[k], np.float64, k)


def test_reduction_mean_is_sum_over_count(rng):
    X = rng.normal(size=(7, 3, 2))
    Y = rng.normal(size=(7, 3, 1))
    l_mean, g_mean = fb.RNN(2, 4, 1, reduction="mean").loss_and_grad(X, Y)
    l_sum, g_sum = fb.RNN(2, 4, 1, reduction="sum").loss_and_grad(X, Y)
    assert l_sum == pytest.approx(l_mean * 21, rel=1e-13)
    assert_close(g_sum["W"], g_mean["W"] * 21, np.float64)


def test_mse_is_half_squared_error_summed_over_units(rng):
    m = fb.RNN(2, 3, 2, output="linear", loss="mse", reduction="sum")
    X = rng.normal(size=(4, 1, 2))
    Y = rng.normal(size=(4, 1, 2))
    assert m.evaluate(X, Y) == pytest.approx(0.5 * np.sum((m.predict(X) - Y) ** 2), rel=1e-13)


def test_single_sequence_matches_batch_of_one(rng):
    m = fb.RNN(2, 6, 1, output="sigmoid", loss="bce")
    X = rng.normal(size=(9, 2))
    Y = rng.integers(0, 2, size=(9, 1)).astype(float)
    l1, g1 = m.loss_and_grad(X, Y)
    l2, g2 = m.loss_and_grad(X[:, None], Y[:, None])
    assert l1 == l2
    assert m.predict(X).shape == (9, 1)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    last = fb.RNN(2, 6, 3, output="softmax", loss="ce", target="last")
    assert last.predict(X).shape == (3,)
    loss, _ = last.loss_and_grad(X, 2)
    assert np.isfinite(loss)


def test_forward_returns_final_state_and_h0_carries(rng):
    m = fb.RNN(3, 5, 2)
    X = rng.normal(size=(10, 2, 3))
    Y_all, (h_T,) = m.forward(X)
    Y_a, (h_a,) = m.forward(X[:4])
    Y_b, (h_b,) = m.forward(X[4:], h0=h_a)
    assert_close(np.concatenate([Y_a, Y_b]), Y_all, np.float64)
    assert_close(h_b, h_T, np.float64)


def test_step_cell_is_forward_only(rng):
    m = fb.RNN(2, 3, 1, cell="step")
    X = rng.integers(0, 2, size=(5, 4, 2))
    H_out = m.predict(X)
    assert H_out.shape == (5, 4, 1)
    with pytest.raises(ValueError, match="forward only"):
        m.loss_and_grad(X, np.zeros((5, 4, 1)))


def test_seeded_init_is_reproducible():
    a = fb.RNN(2, 8, 1, seed=5)
    b = fb.RNN(2, 8, 1, seed=5)
    c = fb.RNN(2, 8, 1, seed=6)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W"], c.params["W"])


def test_float32_model_stays_float32(rng):
    m = fb.RNN(2, 4, 1, dtype=np.float32)
    X = rng.normal(size=(3, 2, 2))  # float64 input is cast
    loss, grads = m.loss_and_grad(X, np.zeros((3, 2, 1)))
    assert all(g.dtype == np.float32 for g in grads.values())
    assert m.predict(X).dtype == np.float32


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_carry_state_across_calls(cell, rng):
    m = fb.RNN(3, 6, 2, cell=cell, seed=4)
    X = rng.normal(size=(9, 2, 3))
    Y_all, state = m.forward(X)
    Y_a, state_a = m.forward(X[:5])
    kw = {"h0": state_a[0]}
    if cell == "lstm":
        kw["c0"] = state_a[1]
    Y_b, state_b = m.forward(X[5:], **kw)
    assert len(state) == (2 if cell == "lstm" else 1)
    assert_close(np.concatenate([Y_a, Y_b]), Y_all, np.float64)
    for s_full, s_chunk in zip(state, state_b, strict=True):
        assert_close(s_chunk, s_full, np.float64)


def test_lstm_forget_gate_path_is_exercised(rng):
    """With the forget gate pinned open and the input gate shut, c is carried unchanged."""
    m = fb.RNN(2, 3, 1, cell="lstm", seed=0)
    b = np.zeros(12)
    b[0:3] = -50.0   # input gate closed
    b[3:6] = 50.0    # forget gate open
    m.params["b"] = b
    m.params["Wh"] = np.zeros((12, 3))
    c0 = rng.normal(size=(1, 3))
    _, (h_T, c_T) = m.forward(rng.normal(size=(20, 1, 2)), h0=np.zeros((1, 3)), c0=c0)
    assert_close(c_T, c0, np.float64)


def test_gru_update_gate_keeps_state(rng):
    """z pinned to 1 keeps h: h_t = (1 - z) n + z h_{t-1}."""
    m = fb.RNN(2, 3, 1, cell="gru", seed=0)
    bx = np.zeros(9)
    bx[3:6] = 50.0
    m.params["bx"] = bx
    h0 = rng.normal(size=(1, 3)) * 0.5
    _, (h_T,) = m.forward(rng.normal(size=(10, 1, 2)), h0=h0)
    assert_close(h_T, h0, np.float64)
