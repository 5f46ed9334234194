"""Stacked and bidirectional layers, dropout between layers."""

import numpy as np
import pytest
from conftest import assert_close

import fastbptt as fb

CELLS = ["tanh", "relu", "lstm", "gru"]


def _states(rng, cell, k, B, H):
    states = {"h0": rng.normal(size=(k, B, H)) * 0.3}
    if cell == "lstm":
        states["c0"] = rng.normal(size=(k, B, H)) * 0.3
    return states


@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("layers,bidirectional", [(2, False), (1, True), (2, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_stacked_bidirectional(cell, layers, bidirectional, target, rng):
    T, B, I, H, O = 5, 2, 3, 3, 2
    m = fb.RNN(I, H, O, cell=cell, output="softmax", loss="ce", target=target, num_layers=layers,
               bidirectional=bidirectional, seed=2)
    X = rng.normal(size=(T, B, I))
    Y = rng.integers(0, O, size=(T, B) if target == "all" else (B,))
    k = layers * (2 if bidirectional else 1)
    states = _states(rng, cell, k, B, H)
    errors = fb.gradcheck(m, X, Y, **states)
    assert set(errors) == set(m.params) | set(states)
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_backends_agree_stacked_bidirectional(cell, dtype, rng):
    T, B, I, H, O = 6, 3, 2, 5, 2
    X = rng.normal(size=(T, B, I))
    Y = rng.normal(size=(T, B, O))
    out = {}
    for backend in ("numpy", "cython", "python"):
        m = fb.RNN(I, H, O, cell=cell, num_layers=2, bidirectional=True, dtype=dtype,
                   backend=backend, seed=7)
        out[backend] = m.loss_and_grad(X, Y)
    for backend in ("cython", "python"):
        assert_close(out[backend][0], out["numpy"][0], dtype, "loss")
        for name, g in out["numpy"][1].items():
            assert_close(out[backend][1][name], g, dtype, name)


def test_names_shapes_and_state_layout(rng):
    m = fb.RNN(3, 4, 2, cell="gru", num_layers=2, bidirectional=True)
    shapes = m.param_shapes()
    assert shapes["Wx"] == (12, 3) and shapes["Wx_l0_reverse"] == (12, 3)
    assert shapes["Wx_l1"] == (12, 8) and shapes["Wh_l1_reverse"] == (12, 4)
    assert shapes["V"] == (2, 8)
    Y, (h_n,) = m.forward(rng.normal(size=(5, 6, 3)))
    assert Y.shape == (5, 6, 2) and h_n.shape == (4, 6, 4)
    Y1, (h1,) = m.forward(rng.normal(size=(5, 3)))  # one sequence
    assert Y1.shape == (5, 2) and h1.shape == (4, 4)


def test_bidirectional_reverse_direction_sees_the_future(rng):
    """Output at step 0 of the reverse direction depends on the last input; forward's does not."""
    m = fb.RNN(1, 3, 1, bidirectional=True, seed=1)
    X = rng.normal(size=(6, 1, 1))
    X2 = X.copy()
    X2[-1] += 1.0
    (y_a, (h_a,)), (y_b, (h_b,)) = m.forward(X), m.forward(X2)
    assert not np.allclose(y_a[0], y_b[0])  # step 0 changed: the reverse pass read step 5 first
    assert not np.allclose(h_a[1], h_b[1])  # and so did the reverse direction's final state
    m_uni = fb.RNN(1, 3, 1, seed=1)
    assert np.allclose(m_uni.predict(X)[0], m_uni.predict(X2)[0])


def test_state_carry_in_stacked_model(rng):
    m = fb.RNN(2, 4, 1, cell="lstm", num_layers=3)
    X = rng.normal(size=(8, 2, 2))
    Y_all, state = m.forward(X)
    Y_a, (h, c) = m.forward(X[:3])
    Y_b, state_b = m.forward(X[3:], h0=h, c0=c)
    assert_close(np.concatenate([Y_a, Y_b]), Y_all, np.float64)
    for a, b in zip(state, state_b, strict=True):
        assert a.shape == (3, 2, 4)
        assert_close(b, a, np.float64)


def test_dropout_only_in_training_and_seeded(rng):
    X = rng.normal(size=(5, 4, 2))
    Y = rng.normal(size=(5, 4, 1))
    m = fb.RNN(2, 6, 1, num_layers=2, dropout=0.5, seed=3)
    ref = fb.RNN(2, 6, 1, num_layers=2, dropout=0.0, seed=3)
    # predict and evaluate never drop
    np.testing.assert_array_equal(m.predict(X), ref.predict(X))
    assert m.evaluate(X, Y) == ref.evaluate(X, Y)
    l_train, _ = m.loss_and_grad(X, Y)
    assert l_train != ref.loss_and_grad(X, Y)[0]
    m.eval()
    assert m.loss_and_grad(X, Y)[0] == ref.loss_and_grad(X, Y)[0]
    # same seed, same masks
    a = fb.RNN(2, 6, 1, num_layers=2, dropout=0.5, seed=3)
    b = fb.RNN(2, 6, 1, num_layers=2, dropout=0.5, seed=3)
    assert a.loss_and_grad(X, Y)[0] == b.loss_and_grad(X, Y)[0]


def test_dropout_gradient_with_a_fixed_mask(rng):
    """With the mask held fixed, the gradient is exact (finite differences through the same mask)."""
    T, B, I, H = 4, 2, 2, 3
    m = fb.RNN(I, H, 1, cell="gru", num_layers=2, dropout=0.3, seed=5)
    X = rng.normal(size=(T, B, I))
    Y = rng.normal(size=(T, B, 1))

    def loss():
        m._dropout_rng = np.random.default_rng(11)
        return m.loss_and_grad(X, Y)

    _, grads = loss()
    eps = 1e-5
    for name in ("Wx", "Wh_l1", "Wx_l1"):
        flat = m.params[name].reshape(-1)
        for i in range(0, flat.size, 5):
            old = flat[i]
            flat[i] = old + eps
            up = loss()[0]
            flat[i] = old - eps
            down = loss()[0]
            flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - grads[name].reshape(-1)[i]) < 1e-7 * max(1, abs(numeric))


def test_stack_bad_arguments():
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        fb.RNN(2, 3, 1, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
        fb.RNN(2, 3, 1, num_layers=2, dropout=1.0)
    with pytest.raises(ValueError, match="bidirectional must be True or False"):
        fb.RNN(2, 3, 1, bidirectional="yes")
    with pytest.raises(ValueError, match="needs one direction"):
        fb.RNN(2, 3, None, output=None, bidirectional=True)
    m = fb.RNN(2, 3, 1, num_layers=2)
    with pytest.raises(ValueError, match=r"expected \(2, 4, 3\), that is \(num_layers"):
        m.loss_and_grad(np.zeros((5, 4, 2)), np.zeros((5, 4, 1)), h0=np.zeros((4, 3)))


def test_stacked_checkpoint_round_trip(tmp_path, rng):
    m = fb.RNN(2, 3, 2, cell="lstm", num_layers=2, bidirectional=True, dropout=0.25, seed=4)
    path = tmp_path / "m.npz"
    m.save(path)
    m2 = fb.load(path)
    assert m2.get_config() == m.get_config()
    X = rng.normal(size=(4, 2, 2))
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))


def test_tbptt_on_stacked_model_equals_full_bptt(rng):
    from fastbptt.train import truncated_bptt

    m = fb.RNN(2, 4, 1, cell="gru", num_layers=2)
    X = rng.normal(size=(9, 3, 2))
    Y = rng.normal(size=(9, 3, 1))
    m.eval()
    loss, grads = m.loss_and_grad(X, Y)
    (chunk,) = list(truncated_bptt(m, X, Y, None))
    assert chunk.loss == loss
    for k in grads:
        np.testing.assert_array_equal(chunk.grads[k], grads[k])
