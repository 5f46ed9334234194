"""Training on variable lengths: fit, truncated BPTT, validation and evaluate with `lengths` run the
same pass as loss_and_grad(lengths=...), and padded steps carry no loss and no gradient."""

import numpy as np
import pytest
from conftest import assert_close

import fastbptt as fb
from fastbptt import optim, train

LAYOUTS = [("tanh", 1, False), ("relu", 1, False), ("lstm", 1, False), ("gru", 1, False),
           ("tanh", 2, True), ("lstm", 2, False), ("gru", 1, True)]


def _ragged(rng, cell, layers=1, bidirectional=False, target="all", reduction="mean", T=9, B=5,
            I=2, H=4, O=2):
    m = fb.RNN(I, H, O, cell=cell, num_layers=layers, bidirectional=bidirectional, target=target,
               reduction=reduction, seed=3)
    X = rng.normal(size=(T, B, I))
    Y = rng.normal(size=(T if target == "all" else 1, B, O))[0 if target == "last" else slice(None)]
    lengths = rng.integers(1, T + 1, size=B)
    lengths[1] = T - 2  # not sorted, and no sequence need fill all T steps
    return m, X, Y, lengths


def _same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.parametrize("cell, layers, bidirectional", LAYOUTS)
@pytest.mark.parametrize("target", ["all", "last"])
def test_fit_with_lengths_is_a_loop_of_loss_and_grad(cell, layers, bidirectional, target, rng):
    m, X, Y, lengths = _ragged(rng, cell, layers, bidirectional, target)
    hand = m.copy()
    hist = m.fit(X, Y, lengths=lengths, epochs=2, batch_size=2, optimizer="adam", lr=0.05,
                 seed=4, progress=False)
    opt = optim.make_optimizer("adam", lr=0.05)
    order_rng = np.random.default_rng(4)
    losses = []
    for _ in range(2):
        order = order_rng.permutation(X.shape[1])
        for b0 in range(0, X.shape[1], 2):
            idx = order[b0:b0 + 2]
            loss, grads = hand.loss_and_grad(X[:, idx], Y[:, idx] if target == "all" else Y[idx],
                                             lengths=lengths[idx])
            opt.step(hand.params, grads)
            losses.append(loss)
    _same(m.params, hand.params)
    assert hist.steps["loss"] == losses


@pytest.mark.parametrize("cell, layers, bidirectional", LAYOUTS)
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_tbptt_of_k_T_with_lengths_is_full_bptt(cell, layers, bidirectional, target, reduction,
                                                 rng):
    m, X, Y, lengths = _ragged(rng, cell, layers, bidirectional, target, reduction)
    loss, grads = m.loss_and_grad(X, Y, lengths=lengths)
    (chunk,) = train.truncated_bptt(m, X, Y, X.shape[0], lengths=lengths)
    assert chunk.loss == loss
    _same(chunk.grads, grads)
    mm = m.copy()
    mm.fit(X, Y, lengths=lengths, tbptt=X.shape[0], iterations=1, lr=0.1, progress=False)
    m.fit(X, Y, lengths=lengths, iterations=1, lr=0.1, progress=False)
    _same(mm.params, m.params)


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("k1", [2, 4])
def test_tbptt_chunks_with_lengths_add_up_to_full_bptt_when_k2_is_T(cell, target, k1, rng):
    """Backpropagated to the start (k2 = T) with fixed parameters, the chunks' gradients sum to
    the full gradient, and chunks past every sequence's end (or before every last step) carry
    none."""
    m, X, Y, lengths = _ragged(rng, cell, target=target, reduction="sum")
    T = X.shape[0]
    loss, grads = m.loss_and_grad(X, Y, lengths=lengths)
    chunks = list(train.truncated_bptt(m, X, Y, (k1, T), lengths=lengths))
    assert_close(sum(c.loss for c in chunks), loss, np.float64, "loss")
    for k, g in grads.items():
        assert_close(sum(c.grads[k] for c in chunks), g, np.float64, k)
    if target == "all":
        assert len(chunks) == -(-int(lengths.max()) // k1)
        assert sum(c.items for c in chunks) == lengths.sum()
    else:
        assert sum(c.items for c in chunks) == len(lengths)


@pytest.mark.parametrize("cell, layers, bidirectional", LAYOUTS)
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ragged_batches_train_as_the_sequences_unpadded(cell, layers, bidirectional, target,
                                                         reduction, rng):
    """Minibatch by minibatch, the gradient of a padded ragged batch (garbage in the padding) is
    the sum of the sequences' own gradients, unpadded, divided as the reduction says."""
    m, X, Y, lengths = _ragged(rng, cell, layers, bidirectional, target, reduction)
    hand = m.copy()
    m.fit(X, Y, lengths=lengths, epochs=2, batch_size=3, shuffle=False, lr=0.2, progress=False)
    for _ in range(2):
        for b0 in range(0, X.shape[1], 3):
            idx = np.arange(b0, min(b0 + 3, X.shape[1]))
            total = {k: np.zeros_like(v) for k, v in hand.params.items()}
            for i in idx:
                L = int(lengths[i])
                y = Y[:L, i] if target == "all" else Y[i]
                _, g = hand.loss_and_grad(X[:L, i], y)
                weight = L if (reduction == "mean" and target == "all") else 1
                for k in total:
                    total[k] += weight * g[k]
            if reduction == "mean":
                divisor = lengths[idx].sum() if target == "all" else len(idx)
                total = {k: v / divisor for k, v in total.items()}
            hand.params.update({k: hand.params[k] - 0.2 * total[k] for k in total})
    for k in m.params:
        assert_close(m.params[k], hand.params[k], np.float64, k)


@pytest.mark.parametrize("target", ["all", "last"])
def test_validation_and_evaluate_with_lengths(target, rng):
    m, X, Y, lengths = _ragged(rng, "lstm", target=target)
    Xv, Yv, Lv = X[:, ::-1].copy(), Y[..., ::-1, :].copy(), lengths[::-1].copy()
    hist = m.fit(X, Y, lengths=lengths, epochs=2, lr=0.1, tbptt=3, validation=(Xv, Yv, Lv),
                 progress=False)
    want = m.evaluate(Xv, Yv, lengths=Lv)
    assert_close(hist.epochs["val_loss"][-1], want, np.float64, "val_loss")
    assert_close(train.evaluate(m, Xv, Yv, chunk=2, lengths=Lv)[0], want, np.float64, "chunked")
    # padded steps are not seen: garbage there changes nothing
    Xg = Xv.copy()
    for b, L in enumerate(Lv):
        Xg[L:, b] = 1e3
    assert m.evaluate(Xg, Yv, lengths=Lv) == m.evaluate(Xv, Yv, lengths=Lv)
    with pytest.raises(ValueError, match="lengths_val"):
        m.fit(X, Y, lengths=lengths, validation=(Xv, Yv, Lv[:2]), progress=False)


def test_metrics_count_valid_steps_only(rng):
    T, B = 6, 4
    m = fb.RNN(2, 5, 1, output="sigmoid", loss="bce", seed=2)
    X = rng.normal(size=(T, B, 2))
    lengths = np.array([6, 2, 4, 1])
    Y = (m.predict(X) > 0.5).astype(float)
    Y[3, 1, 0] = 1 - Y[3, 1, 0]  # padded: not counted
    Y[0, 2, 0] = 1 - Y[0, 2, 0]  # valid: one wrong of 13 steps, one wrong sequence of 4
    for name, want in [("accuracy", 12 / 13), ("sequence_accuracy", 3 / 4)]:
        hist = m.fit(X, Y, lengths=lengths, lr=0.0, metric=name, tbptt=2,
                     validation=(X, Y, lengths), progress=False)
        assert hist.epochs["metric"][0] == pytest.approx(want, abs=1e-15)
        assert hist.epochs["val_metric"][0] == pytest.approx(want, abs=1e-15)


def test_stateful_fit_with_lengths_carries_each_sequences_own_last_state(rng):
    m, X, Y, lengths = _ragged(rng, "gru")
    m.fit(X, Y, lengths=lengths, lr=0.0, stateful=True, progress=False)
    np.testing.assert_array_equal(train.carried_state(m)[0], m.forward(X, lengths=lengths)[1][0])
    train.reset_state(m)


def test_deprecated_cell_alias(rng):
    m = fb.RNN(2, 3, 1, cell="lstm")
    with pytest.warns(DeprecationWarning, match="RNN.layers"):
        assert m.cell is m.layers
