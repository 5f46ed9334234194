"""loss_and_grad's short path (graph.short_loss_and_grad) against the full Pass, bit for bit."""

import numpy as np
import pytest

import fastbptt as fb
from fastbptt.calls import check_call
from fastbptt.graph import Pass, takes_short_path


def _through_pass(m, X, Y):
    call = check_call(m, X, Y).sort()
    run = Pass(m, m.training)
    seg = run.forward(call.X, call.state0)
    loss = run.loss([seg], call.Y, 0, call.T, call.T)
    return loss.value, run.backward([seg], loss)[0]


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
@pytest.mark.parametrize("case", ["adder", "float32", "one sequence", "batch_first", "tokens",
                                  "numpy backend"])
def test_short_path_equals_the_pass(cell, case, rng):
    kw = {"output": "sigmoid", "loss": "bce"}
    I, X = 3, rng.integers(0, 2, size=(8, 2, 3)).astype(np.float64)
    Y = rng.integers(0, 2, size=(8, 2, 1)).astype(np.float64)
    if case == "float32":
        kw["dtype"] = np.float32
    elif case == "one sequence":
        X, Y = X[:, 0], Y[:, 0]
    elif case == "batch_first":
        kw["batch_first"] = True
        X, Y = X.swapaxes(0, 1), Y.swapaxes(0, 1)
    elif case == "tokens":
        kw["input"] = "tokens"
        I, X = 5, rng.integers(0, 5, size=(8, 2))
    elif case == "numpy backend":
        kw["backend"] = "numpy"
    m = fb.RNN(I, 16, 1, cell=cell, seed=0, **kw)
    assert takes_short_path(m, None, None, None)
    loss, grads = m.loss_and_grad(X, Y)
    want_loss, want = _through_pass(m, X, Y)
    assert loss == want_loss
    assert grads.keys() == want.keys()
    for name, g in want.items():
        np.testing.assert_array_equal(grads[name], g, err_msg=name)


def test_short_path_leaves_the_other_calls_to_the_pass():
    m = fb.RNN(2, 4, 1, output="sigmoid", loss="bce")
    assert not takes_short_path(m, np.zeros(4), None, None)
    assert not takes_short_path(m, None, None, [3])
    assert not takes_short_path(fb.RNN(2, 4, 1, num_layers=2), None, None, None)
    assert not takes_short_path(fb.RNN(2, 4, 1, cell="gru"), None, None, None)
    assert not takes_short_path(fb.RNN(2, 4, 1, target="last"), None, None, None)
