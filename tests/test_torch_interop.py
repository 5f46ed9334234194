"""Weights move between fastbptt and PyTorch, and both compute the same outputs and gradients."""

import numpy as np
import pytest
from conftest import assert_close

import fastbptt as fb
from fastbptt.calls import check_call
from fastbptt.graph import Pass

torch = pytest.importorskip("torch")

MODULES = {"tanh": ("RNN", "tanh"), "relu": ("RNN", "relu"), "lstm": ("LSTM", None),
           "gru": ("GRU", None)}


def _torch_module(cell, I, H, layers, bidirectional):
    kind, nonlinearity = MODULES[cell]
    kw = {"nonlinearity": nonlinearity} if nonlinearity else {}
    torch.manual_seed(0)
    return getattr(torch.nn, kind)(I, H, num_layers=layers, bidirectional=bidirectional,
                                   dtype=torch.float64, **kw)


def _torch_run(module, head, X, Y, lengths=None):
    """Forward, 0.5 * squared error of a linear head summed over units, mean over valid steps."""
    module.zero_grad()
    head.zero_grad()
    x = torch.from_numpy(X)
    if lengths is None:
        out, state = module(x)
        mask = torch.ones(X.shape[:2], dtype=torch.float64)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths),
                                                         enforce_sorted=False)
        out, state = module(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=X.shape[0])
        mask = (torch.arange(X.shape[0])[:, None] < torch.as_tensor(lengths)[None, :]).double()
    o = head(out)
    loss = (0.5 * ((o - torch.from_numpy(Y)) ** 2).sum(-1) * mask).sum() / mask.sum()
    loss.backward()
    return loss.item(), out.detach().numpy(), state


@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm", "gru"])
def test_outputs_and_gradients_match_pytorch(cell, rng):
    T, B, I, H, O = 7, 3, 4, 5, 2
    module = _torch_module(cell, I, H, 2, True)
    head = torch.nn.Linear(2 * H, O, dtype=torch.float64)
    X = rng.normal(size=(T, B, I))
    Y = rng.normal(size=(T, B, O))
    m = fb.RNN.from_torch_state_dict(module.state_dict(), cell=cell,
                                     head=(head.weight, head.bias))
    assert m.num_layers == 2 and m.bidirectional and m.cell_name == cell
    loss_t, _, state_t = _torch_run(module, head, X, Y)
    loss, grads = m.loss_and_grad(X, Y)
    assert abs(loss - loss_t) <= 1e-10 * max(1.0, abs(loss_t))
    _, state = m.forward(X)
    state_t = state_t if isinstance(state_t, tuple) else (state_t,)
    for ours, theirs in zip(state, state_t, strict=True):
        assert_close(ours, theirs.detach().numpy(), np.float64, "final state")
    torch_grads = {k: v.grad.numpy() for k, v in module.named_parameters()}
    ours = fb.RNN.to_torch_state_dict(_as_model_with(m, grads))
    for key, g in torch_grads.items():
        if key.startswith("bias_hh") and cell != "gru":
            g = torch_grads[key.replace("bias_hh", "bias_ih")]  # one summed bias: same gradient
            key = key.replace("bias_hh", "bias_ih")
        assert np.abs(ours[key] - g).max() <= 1e-10 * max(1.0, np.abs(g).max()), key
    assert np.abs(grads["V"] - head.weight.grad.numpy()).max() <= 1e-10
    assert np.abs(grads["c"] - head.bias.grad.numpy()).max() <= 1e-10


def _as_model_with(model, grads):
    """A copy of `model` whose parameters are the gradients (to key them like PyTorch)."""
    other = model.copy()
    other.params.update({k: grads[k] for k in model.params})
    return other


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_round_trip_through_pytorch(cell, rng):
    m = fb.RNN(3, 4, 2, cell=cell, num_layers=2, bidirectional=True, seed=3)
    module = _torch_module(cell, 3, 4, 2, True)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in m.to_torch_state_dict().items()})
    X = rng.normal(size=(5, 2, 3))
    out_t, _ = module(torch.from_numpy(X))
    call = check_call(m, X)
    Hout = Pass(m).forward(call.X, call.state0).H
    assert_close(Hout[1:], out_t.detach().numpy(), np.float64, "layer outputs")
    back = fb.RNN.from_torch_state_dict(module.state_dict(), output_size=2)
    for k, v in m.to_torch_state_dict().items():
        np.testing.assert_array_equal(back.to_torch_state_dict()[k], v)


def test_state_dict_errors():
    module = _torch_module("lstm", 3, 4, 1, False)
    sd = module.state_dict()
    with pytest.raises(ValueError, match="does not match"):
        fb.RNN.from_torch_state_dict(sd, cell="gru", output_size=1)
    with pytest.raises(ValueError, match="unexpected key 'foo'"):
        fb.RNN.from_torch_state_dict({**sd, "foo": np.zeros(1)}, output_size=1)
    with pytest.raises(ValueError, match="output_size is needed"):
        fb.RNN.from_torch_state_dict(sd)
    bad = dict(sd)
    bad["weight_hh_l0"] = torch.zeros(16, 5)
    with pytest.raises(ValueError):
        fb.RNN.from_torch_state_dict(bad, output_size=1)


@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm", "gru"])
def test_packed_variable_lengths_match_pytorch(cell, rng):
    """Right-padded batch with lengths against PyTorch's packed sequences: loss, final states and
    every gradient to 1e-10."""
    T, I, H, O = 8, 3, 4, 2
    lengths = np.array([5, 8, 2, 7])
    B = len(lengths)
    module = _torch_module(cell, I, H, 2, True)
    head = torch.nn.Linear(2 * H, O, dtype=torch.float64)
    X = rng.normal(size=(T, B, I))
    for b, n in enumerate(lengths):
        X[n:, b] = 0.0
    Y = rng.normal(size=(T, B, O))
    m = fb.RNN.from_torch_state_dict(module.state_dict(), cell=cell, head=(head.weight, head.bias))
    loss_t, _, state_t = _torch_run(module, head, X, Y, lengths)
    loss, grads = m.loss_and_grad(X, Y, lengths=lengths)
    assert abs(loss - loss_t) <= 1e-10 * max(1.0, abs(loss_t))
    _, state = m.forward(X, lengths=lengths)
    state_t = state_t if isinstance(state_t, tuple) else (state_t,)
    for ours, theirs in zip(state, state_t, strict=True):
        assert np.abs(ours - theirs.detach().numpy()).max() <= 1e-10
    torch_grads = {k: v.grad.numpy() for k, v in module.named_parameters()}
    ours = fb.RNN.to_torch_state_dict(_as_model_with(m, grads))
    for key, g in torch_grads.items():
        if key.startswith("bias_hh") and cell != "gru":
            continue  # the summed bias's gradient is compared under bias_ih
        assert np.abs(ours[key] - g).max() <= 1e-10 * max(1.0, np.abs(g).max()), key
