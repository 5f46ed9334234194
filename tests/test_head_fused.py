"""The head's gradient handed to the recurrent kernels unformed (HeadGrad: dO and V) gives what the
formed (T, B, H) array gives, for every head, loss, reduction and target, variable lengths, stacked
and bidirectional layers, and for the cells that do not take it (their Stack forms it)."""

import numpy as np
import pytest
from conftest import assert_close

import fastbptt as fb
from fastbptt.calls import check_call
from fastbptt.graph import Pass, Plan
from fastbptt.heads import HeadGrad

# every test here runs once per SIMD set the host supports (conftest.simd)
pytestmark = pytest.mark.usefixtures("simd")

HEADS = [("linear", "mse"), ("sigmoid", "mse"), ("sigmoid", "bce"), ("softmax", "mse"),
         ("softmax", "ce"), (None, "mse")]


def _in_loop(cell):
    """Whether the compiled kernel of this cell forms the logits in its loop: LSTM and GRU always,
    Elman in builds with the tiled kernels (without AVX2 + FMA its fused entries are not used)."""
    if cell in ("lstm", "gru"):
        return True
    from fastbptt import _elman
    return cell in ("tanh", "relu") and _elman.fused_ok(2, 8, 3, np.float64)


def _targets(rng, output, loss, T, B, O, H, target, dtype):
    steps = (T, B) if target == "all" else (B,)
    if loss == "ce":
        return rng.integers(0, O, size=steps)
    if loss == "bce":
        return rng.integers(0, 2, size=steps + (O,)).astype(dtype)
    return rng.normal(size=steps + ((H if output is None else O),)).astype(dtype)


def _lengths(rng, T, B, ragged):
    if not ragged:
        return None
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T
    return lengths


def _formed(m, X, Y, states, lengths, unformed=False):
    """loss_and_grad with the head's gradient formed as a (T, B, H) array before the backward pass;
    with `unformed`, left as a HeadGrad whose dV the backward pass fills."""
    call = check_call(m, X, Y, states.get("h0"), states.get("c0"), lengths).sort()
    run = Pass(m, m.training, Plan(False, unformed, m.training and m.dropout > 0))
    seg = run.forward(call.X, call.state0, 0, call.lengths, call.batch_sizes)
    assert seg.trace.logits is None  # the head forms the logits itself
    loss = run.loss([seg], call.Y, 0, call.T, call.T, call.lengths)
    assert isinstance(loss.grad, HeadGrad if m.output is not None else np.ndarray)
    if not unformed and m.output is not None:
        loss = loss._replace(grad=loss.grad.dense())
    grads, dstate0, _ = run.backward([seg], loss, call.lengths)
    for name, value in zip(("h0", "c0"), dstate0, strict=False):
        if name in states:
            grads[name] = call.unsort(value)
    return loss.value, grads


def _head_outputs(m, X, states, lengths):
    """forward's outputs with the head forming the logits from the states itself, and the logits
    the top layer's kernel forms in its loop (None where it forms none)."""
    call = check_call(m, X, None, states.get("h0"), states.get("c0"), lengths).sort()
    run = Pass(m, plan=Plan(False, False, False))
    seg = run.forward(call.X, call.state0, 0, call.lengths, call.batch_sizes)
    in_loop = Pass(m).forward(call.X, call.state0, 0, call.lengths, call.batch_sizes).trace
    Y_hat = call.unsort(run.outputs(seg, call.lengths))
    if m.target == "last":
        Y_hat = Y_hat[0]
    if in_loop.logits is not None:
        assert in_loop.logits.dtype == X.dtype
        seen = seg.H[1:]
        if call.lengths is not None:  # the kernels leave padded steps at zero
            valid = np.arange(seen.shape[0])[:, None] < call.lengths[None, :]
            assert not in_loop.logits[~valid].any()
            seen = seen * valid[..., None]
            expected = m.head.logits(m.params, seen) * valid[..., None]
        else:
            expected = m.head.logits(m.params, seen)
        assert_close(in_loop.logits, expected, X.dtype, "logits formed in the loop")
    return Y_hat, in_loop.logits


def _check_same(m, X, Y, dtype, states=None, lengths=None):
    """loss_and_grad (the output layer's work in the kernels' loops where they do it) and the
    HeadGrad with dV from the backward pass against the formed array; predict and evaluate against
    the head's own products."""
    states = states or {}
    ref_loss, ref_grads = _formed(m, X, Y, states, lengths)
    runs = {"loss_and_grad": m.loss_and_grad(X, Y, lengths=lengths, **states),
            "dV deferred": _formed(m, X, Y, states, lengths, unformed=True)}
    for what, (loss, grads) in runs.items():
        assert_close(loss, ref_loss, dtype, f"{what} loss")
        assert set(grads) == set(ref_grads)
        for name, g in ref_grads.items():
            assert grads[name].dtype == dtype, name
            assert_close(grads[name], g, dtype, f"{what} {name}")
    if m.training and m.dropout > 0:
        return
    assert_close(m.evaluate(X, Y, lengths=lengths, **states), ref_loss, dtype, "evaluate")
    X3 = X if X.ndim == 3 else X[:, None]
    Y_ref, logits = _head_outputs(m, X3, states, lengths)
    Y_hat = m.predict(X3, lengths=lengths, **states)
    assert Y_hat.dtype == dtype
    assert_close(Y_hat, Y_ref, dtype, "predict")
    return logits


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("output,loss", HEADS, ids=lambda v: str(v))
@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm"])
def test_unformed_equals_formed_every_head(cell, output, loss, reduction, target, n_threads,
                                           ragged, dtype, rng):
    T, B, I, H, O = 11, 3, 2, 8, 3
    m = fb.RNN(I, H, None if output is None else O, cell=cell, output=output, loss=loss,
               reduction=reduction, target=target, dtype=dtype, n_threads=n_threads, seed=3)
    X = rng.normal(size=(T, B, I)).astype(dtype)
    Y = _targets(rng, output, loss, T, B, O, H, target, dtype)
    states = {"h0": (rng.normal(size=(B, H)) * 0.3).astype(dtype)}
    if cell == "lstm":
        states["c0"] = (rng.normal(size=(B, H)) * 0.3).astype(dtype)
    logits = _check_same(m, X, Y, dtype, states, _lengths(rng, T, B, ragged))
    # the compiled top layer forms the logits in its loop for every head with an output layer
    assert (logits is not None) == (output is not None and target == "all" and _in_loop(cell))


SHAPES = [  # T, B, I, H, O: the sequence path, the tiled path, odd and degenerate sizes
    (1, 1, 1, 1, 1),
    (40, 1, 2, 16, 1),
    (9, 2, 3, 8, 2),
    (1, 5, 3, 13, 1),
    (13, 7, 4, 37, 5),
    (6, 33, 20, 24, 10),
    (5, 1, 2, 1, 3),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_unformed_equals_formed_every_shape(shape, n_threads, ragged, dtype, rng):
    T, B, I, H, O = shape
    for cell in ("tanh", "lstm"):
        m = fb.RNN(I, H, O, cell=cell, reduction="sum", dtype=dtype, n_threads=n_threads, seed=5)
        X = rng.normal(size=(T, B, I)).astype(dtype)
        Y = rng.normal(size=(T, B, O)).astype(dtype)
        logits = _check_same(m, X, Y, dtype, lengths=_lengths(rng, T, B, ragged and B > 1))
        assert (logits is not None) == _in_loop(cell)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("layers,bidirectional", [(2, False), (1, True), (2, True)])
@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_unformed_equals_formed_stacked_bidirectional(cell, layers, bidirectional, target, ragged,
                                                      dtype, rng):
    """Each direction of the top layer takes its columns of V (the reverse one dO reversed within
    each length); gated cells, which do not take a HeadGrad, get the array from their Stack."""
    T, B, I, H, O = 7, 4, 3, 8, 3
    m = fb.RNN(I, H, O, cell=cell, output="softmax", loss="ce", target=target, num_layers=layers,
               bidirectional=bidirectional, dtype=dtype, n_threads=2, seed=11).eval()
    X = rng.normal(size=(T, B, I)).astype(dtype)
    Y = _targets(rng, "softmax", "ce", T, B, O, H, target, dtype)
    k = layers * (2 if bidirectional else 1)
    states = {"h0": (rng.normal(size=(k, B, H)) * 0.3).astype(dtype)}
    if cell == "lstm":
        states["c0"] = (rng.normal(size=(k, B, H)) * 0.3).astype(dtype)
    logits = _check_same(m, X, Y, dtype, states, _lengths(rng, T, B, ragged))
    # one top direction of a cell that can: logits from its loop; otherwise the head's product
    assert (logits is not None) == (not bidirectional and _in_loop(cell) and target == "all")


# which backends' top layer forms the logits in its loop: the compiled kernels, and the LSTM's NumPy
# and pure-Python twins (whose forward_fused takes the output layer); the others leave them to the
# head
FORMS_LOGITS = {("tanh", "cython"), ("lstm", "cython"), ("lstm", "numpy"), ("lstm", "python")}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_three_backends_agree(cell, bidirectional, target, ragged, dtype, rng):
    T, B, I, H, O = 9, 3, 2, 8, 2
    X = rng.normal(size=(T, B, I)).astype(dtype)
    Y = rng.normal(size=(T, B, O) if target == "all" else (B, O)).astype(dtype)
    lengths = np.array([9, 4, 7]) if ragged else None
    out = {}
    for backend in ("numpy", "python", "cython"):
        m = fb.RNN(I, H, O, cell=cell, target=target, bidirectional=bidirectional, dtype=dtype,
                   backend=backend, n_threads=2, seed=2)
        loss, grads = m.loss_and_grad(X, Y, lengths=lengths)
        out[backend] = loss, grads, m.predict(X, lengths=lengths), m.evaluate(X, Y, lengths=lengths)
        logits = _check_same(m, X, Y, dtype, lengths=lengths)
        expected = (cell, backend) in FORMS_LOGITS and target == "all" and not bidirectional
        expected = expected and (backend != "cython" or _in_loop(cell))
        assert (logits is not None) == expected, backend
    for backend in ("python", "cython"):
        assert_close(out[backend][0], out["numpy"][0], dtype, f"{backend} loss")
        for name, g in out["numpy"][1].items():
            assert_close(out[backend][1][name], g, dtype, f"{backend} {name}")
        assert_close(out[backend][2], out["numpy"][2], dtype, f"{backend} predict")
        assert_close(out[backend][3], out["numpy"][3], dtype, f"{backend} evaluate")


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
@pytest.mark.parametrize("output,loss,target,bidirectional,layers", [
    ("linear", "mse", "all", False, 1),
    ("sigmoid", "bce", "last", False, 1),
    ("softmax", "ce", "all", True, 1),
    ("sigmoid", "mse", "all", False, 2),
])
def test_gradcheck_unformed_path(cell, output, loss, target, bidirectional, layers, rng):
    """Finite differences of the loss (evaluate: the in-loop logits too) against the gradients
    with the output layer's work in the kernels' loops."""
    T, B, I, H, O = 6, 2, 3, 4, 3
    m = fb.RNN(I, H, O, cell=cell, output=output, loss=loss, target=target,
               bidirectional=bidirectional, num_layers=layers, backend="cython", seed=4)
    X = rng.normal(size=(T, B, I))
    Y = _targets(rng, output, loss, T, B, O, H, target, np.float64)
    k = layers * (2 if bidirectional else 1)
    h0 = rng.normal(size=(k, B, H) if k > 1 else (B, H)) * 0.3
    errors = fb.gradcheck(m, X, Y, h0=h0, lengths=np.array([6, 4]))
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("output,loss", HEADS, ids=lambda v: str(v))
def test_head_returns_what_dense_forms(output, loss, rng):
    """unformed=True gives a HeadGrad whose dense() is the array unformed=False gives (an array
    itself without an output layer), masked steps included, and the same grads; with
    defer_weight_grad, grads["V"] is its dV, which the states fill with what the head computes."""
    T, B, H, O = 5, 3, 4, 3
    head = fb.heads.Head(output, loss, "mean", "all", H, O)
    p = {"V": rng.normal(size=(O, H)), "c": rng.normal(size=O)}
    Hs = rng.normal(size=(T, B, H))
    Y = _targets(rng, output, loss, T, B, O, H, "all", np.float64)
    mask = np.arange(T)[:, None] < np.array([5, 2, 4])[None, :]
    for m in (None, mask):
        loss_f, dense, grads_f = head.loss_and_grad(p, Hs, Y, mask=m)
        loss_u, unformed, grads_u = head.loss_and_grad(p, Hs, Y, mask=m, unformed=True)
        loss_d, deferred, grads_d = head.loss_and_grad(p, Hs, Y, mask=m, unformed=True,
                                                       defer_weight_grad=True)
        assert loss_u == loss_d == loss_f
        assert set(grads_u) == set(grads_d) == set(grads_f)
        for name in grads_f:
            np.testing.assert_array_equal(grads_u[name], grads_f[name])
        if output is None:
            for got in (unformed, deferred):
                assert isinstance(got, np.ndarray)
                np.testing.assert_array_equal(got, dense)
            continue
        np.testing.assert_array_equal(grads_d["c"], grads_f["c"])
        for got in (unformed, deferred):
            assert isinstance(got, HeadGrad) and got.dO.shape == (T, B, O)
            np.testing.assert_array_equal(got.dense(), dense)
        assert unformed.dV is None
        assert deferred.dV is grads_d["V"] and not deferred.dV.any()
        deferred.weight_grad_from(Hs)
        assert_close(grads_d["V"], grads_f["V"], np.float64, "dV")
        if m is not None:
            assert not unformed.dO[~m].any()


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_dropout_below_the_top_layer(cell, rng):
    """In training mode with dropout between stacked layers, the top layer's kernel forms the
    logits and dV from the inputs dropout left it, as the head does from its states."""
    T, B, I, H, O = 8, 3, 2, 6, 2
    m = fb.RNN(I, H, O, cell=cell, num_layers=3, dropout=0.5, seed=6)
    X = rng.normal(size=(T, B, I))
    Y = rng.normal(size=(T, B, O))
    m._dropout_rng = np.random.default_rng(9)
    ref_loss, ref_grads = _formed(m, X, Y, {}, None)
    m._dropout_rng = np.random.default_rng(9)
    loss, grads = m.loss_and_grad(X, Y)
    assert_close(loss, ref_loss, np.float64, "loss")
    for name, g in ref_grads.items():
        assert_close(grads[name], g, np.float64, name)
    assert Pass(m).plan[:2] == (True, True)


def test_outputs_handed_out_are_never_overwritten(rng):
    """The logits arrays are reused from call to call only once nothing holds them: outputs a
    caller keeps (predict's, a view of them) stay as they were."""
    T, B, I, H, O = 12, 4, 3, 8, 2
    m = fb.RNN(I, H, O, seed=1)
    X = rng.normal(size=(T, B, I))
    first = m.predict(X)
    column = m.predict(X[:, 0])
    expected, expected_column = first.copy(), column.copy()
    for _ in range(8):
        m.predict(2 * X)
        m.predict(2 * X[:, 0])
        m.loss_and_grad(X, rng.normal(size=(T, B, O)))
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(column, expected_column)


@pytest.mark.parametrize("cell,output,target,layers,bidirectional,plan", [
    ("tanh", "linear", "all", 1, False, (True, True)),
    ("lstm", "softmax", "all", 2, False, (True, True)),
    ("tanh", "linear", "last", 1, False, (False, False)),
    ("tanh", None, "all", 1, False, (False, False)),
    ("gru", "linear", "all", 1, False, (True, True)),
    ("lstm", "linear", "all", 1, True, (True, True)),
])
def test_head_plan(cell, output, target, layers, bidirectional, plan):
    """The output layer's work goes into the loops for target="all" with an output layer; dV only
    where every top cell fills it (each direction of a bidirectional top layer fills its
    columns)."""
    m = fb.RNN(3, 4, None if output is None else 2, cell=cell, output=output, target=target,
               num_layers=layers, bidirectional=bidirectional)
    assert Pass(m).plan[:2] == plan
