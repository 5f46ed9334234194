"""Bad input: a clear error naming what was expected, or correct handling; the model is left as it was."""

import numpy as np
import pytest

import fastbptt as fb


@pytest.fixture
def model():
    return fb.RNN(2, 4, 1)


def _snapshot(m):
    return {k: v.copy() for k, v in m.params.items()}


def _unchanged(m, snap):
    return all(np.array_equal(m.params[k], snap[k]) for k in snap)


GOOD_X = np.zeros((5, 3, 2))
GOOD_Y = np.zeros((5, 3, 1))


@pytest.mark.parametrize("X, Y, exc, match", [
    (np.zeros((5, 3, 3)), GOOD_Y, ValueError, "input_size=2"),
    (np.zeros((5, 3, 2, 1)), GOOD_Y, ValueError, r"expected \(T, B, 2\)"),
    (np.zeros(5), GOOD_Y, ValueError, r"expected \(T, B, 2\)"),
    (np.zeros((0, 3, 2)), np.zeros((0, 3, 1)), ValueError, "T = 0"),
    (np.zeros((5, 0, 2)), np.zeros((5, 0, 1)), ValueError, "B = 0"),
    (GOOD_X, np.zeros((5, 3, 2)), ValueError, r"expected \(5, 3, 1\)"),
    (GOOD_X, np.zeros((4, 3, 1)), ValueError, r"expected \(5, 3, 1\)"),
    (np.full((5, 3, 2), np.nan), GOOD_Y, ValueError, "X contains NaN"),
    (np.full((5, 3, 2), np.inf), GOOD_Y, ValueError, "X contains NaN or Inf"),
    (GOOD_X, np.full((5, 3, 1), np.nan), ValueError, "Y contains NaN"),
    (GOOD_X.astype(complex), GOOD_Y, TypeError, "complex"),
    (GOOD_X.astype(object), GOOD_Y, TypeError, "object"),
    (np.array([["a", "b"]] * 5), GOOD_Y, TypeError, "real numbers"),
    ([[[0.0, 1.0]], [[1.0]]], GOOD_Y, TypeError, "could not be read"),
])
def test_bad_inputs_raise_and_leave_model(model, X, Y, exc, match):
    snap = _snapshot(model)
    with pytest.raises(exc, match=match):
        model.loss_and_grad(X, Y)
    assert _unchanged(model, snap)


def test_integer_and_bool_inputs_are_cast(model, rng):
    Xi = rng.integers(0, 2, size=(5, 3, 2))
    l_int, g_int = model.loss_and_grad(Xi, GOOD_Y)
    l_bool, _ = model.loss_and_grad(Xi.astype(bool), GOOD_Y.astype(int))
    l_f, g_f = model.loss_and_grad(Xi.astype(float), GOOD_Y)
    assert l_int == l_f == l_bool
    np.testing.assert_array_equal(g_int["W"], g_f["W"])


def test_non_contiguous_and_read_only_inputs(model, rng):
    big = rng.normal(size=(5, 6, 4))
    X = big[:, ::2, ::2]  # non-contiguous view
    assert not X.flags.c_contiguous
    Xc = np.ascontiguousarray(X)
    Xc.flags.writeable = False
    Y = rng.normal(size=(5, 3, 1))
    l1, g1 = model.loss_and_grad(X, Y)
    l2, g2 = model.loss_and_grad(Xc, Y)
    assert l1 == l2
    Xf = np.asfortranarray(Xc)
    l3, _ = model.loss_and_grad(Xf, Y)
    assert l3 == l1


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"cell": "lstmm"}, ValueError, "unknown cell 'lstmm'; expected one of"),
    ({"output": "tanh"}, ValueError, "unknown output 'tanh'"),
    ({"loss": "hinge"}, ValueError, "unknown loss 'hinge'"),
    ({"reduction": "max"}, ValueError, "unknown reduction"),
    ({"target": "first"}, ValueError, "unknown target"),
    ({"backend": "fortran"}, ValueError, "unknown backend 'fortran'; expected one of auto, cython"),
    ({"dtype": np.int32}, TypeError, "expected float32 or float64"),
    ({"dtype": np.complex128}, TypeError, "expected float32 or float64"),
    ({"loss": "bce"}, ValueError, "loss='bce' needs output in"),
    ({"loss": "ce", "output": "sigmoid"}, ValueError, "loss='ce' needs output"),
    ({"n_threads": 0}, ValueError, "n_threads must be a positive integer"),
    ({"init": "gaussian"}, ValueError, "unknown initialiser"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fb.RNN(2, 4, 1, **kwargs)


def test_bad_sizes():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        fb.RNN(2, 0, 1)
    with pytest.raises(ValueError, match="output_size must be a positive integer"):
        fb.RNN(2, 3, None)
    with pytest.raises(ValueError, match="output=None"):
        fb.RNN(2, 3, 5, output=None)


def test_env_backend(monkeypatch):
    monkeypatch.setenv("FASTBPTT_BACKEND", "python")
    assert fb.RNN(2, 3, 1).backend == "python"
    assert fb.RNN(2, 3, 1, backend="numpy").backend == "numpy"
    monkeypatch.setenv("FASTBPTT_BACKEND", "gpu")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        fb.RNN(2, 3, 1)


def test_param_assignment_is_checked(model):
    snap = _snapshot(model)
    with pytest.raises(ValueError, match=r"parameter 'W' must have shape \(4, 4\)"):
        model.params["W"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="NaN"):
        model.params["W"] = np.full((4, 4), np.nan)
    with pytest.raises(KeyError, match="unknown parameter"):
        model.params["Q"] = np.zeros(3)
    with pytest.raises(ValueError, match="must have shape"):
        model.params.update(W=np.eye(4), U=np.zeros(7))
    assert _unchanged(model, snap)
    model.params["W"] = np.eye(4).astype(np.float32)
    assert model.params["W"].dtype == np.float64


def test_nan_written_into_params_in_place_is_caught(model):
    model.params["W"][0, 0] = np.nan
    with pytest.raises(ValueError, match="parameter 'W' contains NaN"):
        model.loss_and_grad(GOOD_X, GOOD_Y)


def test_exploding_forward_is_a_clear_error():
    m = fb.RNN(1, 3, 1, cell="relu")
    m.params["W"] = np.full((3, 3), 50.0)
    m.params["U"] = np.ones((3, 1))
    with pytest.raises(FloatingPointError, match="non-finite hidden state"):
        m.loss_and_grad(np.ones((400, 1, 1)), np.zeros((400, 1, 1)))


@pytest.mark.parametrize("Y, match", [
    (np.array([[0, 5, 1]] * 5), r"class ids in Y must lie in \[0, 3\)"),
    (np.array([[0, -1, 1]] * 5), r"class ids in Y must lie in \[0, 3\)"),
    (np.zeros((5, 3, 2)), r"expected \(5, 3, 3\) or class ids of shape \(5, 3\)"),
])
def test_ce_targets_checked(Y, match):
    m = fb.RNN(2, 4, 3, output="softmax", loss="ce")
    with pytest.raises(ValueError, match=match):
        m.loss_and_grad(GOOD_X, Y)


def test_initial_state_checked(model):
    with pytest.raises(ValueError, match=r"h0 has shape \(2, 4\); expected \(3, 4\)"):
        model.loss_and_grad(GOOD_X, GOOD_Y, h0=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="c0 is only for the lstm cell"):
        model.loss_and_grad(GOOD_X, GOOD_Y, c0=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="h0 contains NaN"):
        model.loss_and_grad(GOOD_X, GOOD_Y, h0=np.full((3, 4), np.nan))


def test_lstm_state_shapes_checked():
    m = fb.RNN(2, 4, 1, cell="lstm")
    with pytest.raises(ValueError, match=r"c0 has shape \(3, 5\); expected \(3, 4\)"):
        m.loss_and_grad(GOOD_X, GOOD_Y, c0=np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"h0 has shape \(2, 4\); expected \(3, 4\), that is \(B, H\) "):
        m.loss_and_grad(GOOD_X, GOOD_Y, h0=np.zeros((2, 4)))
    gru = fb.RNN(2, 4, 1, cell="gru")
    with pytest.raises(ValueError, match="c0 is only for the lstm cell"):
        gru.loss_and_grad(GOOD_X, GOOD_Y, c0=np.zeros((3, 4)))
