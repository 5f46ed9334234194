"""fit over every cell x num_layers x bidirectional x batch_size x tbptt x stateful: a minibatch is
trained exactly as a fit on that slice of the data alone (its rows of h0 / c0 included)."""

import itertools

import numpy as np
import pytest

import fastbptt as fb
from fastbptt.train import carried_state, reset_state

T, N, I, H, O = 4, 5, 2, 3, 2
CASES = list(itertools.product(["tanh", "relu", "lstm", "gru"], [1, 2], [False, True], [None, 2],
                               [None, (2, 2), (2, 3)]))


def _model(cell, layers, bidirectional):
    return fb.RNN(I, H, O, cell=cell, num_layers=layers, bidirectional=bidirectional,
                  backend="cython", seed=1)


def _data(cell, layers, bidirectional, seed):
    rng = np.random.default_rng(seed)
    k = layers * (2 if bidirectional else 1)
    shape = (N, H) if k == 1 else (k, N, H)
    states = {"h0": 0.5 * rng.standard_normal(shape)}
    if cell == "lstm":
        states["c0"] = 0.5 * rng.standard_normal(shape)
    return rng.standard_normal((T, N, I)), rng.standard_normal((T, N, O)), states


def _fit(m, X, Y, **kw):
    return m.fit(X, Y, epochs=1, optimizer="sgd", lr=0.1, shuffle=False, progress=False, **kw)


@pytest.mark.parametrize("cell, layers, bidirectional, batch_size, tbptt", CASES)
def test_minibatches_train_as_their_slices(cell, layers, bidirectional, batch_size, tbptt, seed):
    X, Y, states = _data(cell, layers, bidirectional, seed)
    m, ref = _model(cell, layers, bidirectional), _model(cell, layers, bidirectional)
    _fit(m, X, Y, batch_size=batch_size, tbptt=tbptt, **states)
    step = batch_size or N
    for b0 in range(0, N, step):
        rows = slice(b0, b0 + step)
        _fit(ref, X[:, rows], Y[:, rows], tbptt=tbptt,
             **{k: np.ascontiguousarray(v[..., rows, :]) for k, v in states.items()})
    for name, value in ref.params.items():
        np.testing.assert_allclose(m.params[name], value, rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell, layers, bidirectional, batch_size, tbptt", CASES)
def test_stateful_fit_continues_from_the_carried_state(cell, layers, bidirectional, batch_size,
                                                       tbptt, seed):
    X, Y, states = _data(cell, layers, bidirectional, seed)
    m = _model(cell, layers, bidirectional)
    if batch_size is not None:
        with pytest.raises(ValueError, match="one minibatch"):
            _fit(m, X, Y, batch_size=batch_size, tbptt=tbptt, stateful=True, **states)
        return
    try:
        _fit(m, X, Y, tbptt=tbptt, stateful=True, **states)
        carried = carried_state(m)
        assert carried[0].shape == states["h0"].shape
        ref = m.copy()
        _fit(m, X, Y, tbptt=tbptt, stateful=True)
        _fit(ref, X, Y, tbptt=tbptt, **dict(zip(("h0", "c0"), carried, strict=False)))
    finally:
        reset_state(m)
    for name, value in ref.params.items():
        np.testing.assert_allclose(m.params[name], value, rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_the_step_cell_refuses_to_train(layers, bidirectional, seed):
    X, Y, _ = _data("step", layers, bidirectional, seed)
    m = _model("step", layers, bidirectional)
    with pytest.raises(ValueError, match="forward only"):
        _fit(m, X, Y, batch_size=2)
