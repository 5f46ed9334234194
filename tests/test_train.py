"""fit and truncated BPTT: exactness against full BPTT, state carry, minibatches, metrics,
callbacks, progress, divergence and bit-for-bit reproducibility."""

import importlib
import json
import sys

import numpy as np
import pytest
from conftest import assert_close

import fastbptt as fb
from fastbptt import optim, train
from fastbptt.graph import Pass


def _available(cell):
    try:
        importlib.import_module(f"fastbptt._{cell}")
    except ImportError:
        return False
    return True


CELLS = ["tanh", "relu"] + [c for c in ("lstm", "gru") if _available(c)]
STATE_KEYS = ("h0", "c0")


def _problem(rng, cell="tanh", T=7, B=3, n_in=2, H=5, n_out=2, target="all", reduction="mean",
             dtype=np.float64, output="linear", loss="mse", seed=1, backend=None):
    m = fb.RNN(n_in, H, n_out, cell=cell, output=output, loss=loss, target=target,
               reduction=reduction, dtype=dtype, seed=seed, backend=backend)
    X = rng.normal(size=(T, B, n_in))
    steps = (T,) if target == "all" else ()
    if loss == "ce":
        Y = rng.integers(0, n_out, size=steps + (B,))
    elif output == "sigmoid":
        Y = rng.integers(0, 2, size=steps + (B, n_out)).astype(float)
    else:
        Y = rng.normal(size=steps + (B, n_out))
    return m, X, Y


def _same(a, b):
    """Bitwise equality of two parameter dicts."""
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


def _snapshot(m):
    return {k: v.copy() for k, v in m.params.items()}


def _state_kwargs(state):
    return dict(zip(STATE_KEYS, state, strict=False))


def _state_at(m, X, t):
    """The state after the first t steps of X, from an unchunked forward (zeros for t = 0)."""
    if t == 0:
        return tuple(np.zeros((X.shape[1], m.hidden_size)) for _ in m.layers.state_names)
    return m.forward(X[:t])[1]


# -- TBPTT against full BPTT -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("target", ["all", "last"])
@pytest.mark.parametrize("cell", CELLS)
def test_tbptt_T_T_equals_full_bptt_bitwise(cell, target, reduction, dtype, rng):
    m, X, Y = _problem(rng, cell, target=target, reduction=reduction, dtype=dtype)
    T = X.shape[0]
    loss, grads = m.loss_and_grad(X, Y)
    expected = {k: v - 0.3 * grads[k] for k, v in m.params.items()}
    for tbptt in [(T, T), None, T, (T, 3 * T), (4 * T, 5 * T)]:
        mm = m.copy()
        hist = mm.fit(X, Y, iterations=1, tbptt=tbptt, lr=0.3, progress=False)
        _same(mm.params, expected)
        assert hist.steps["loss"] == [loss]


@pytest.mark.parametrize("backend", ["cython", "numpy", "python"])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell,output,loss", [("tanh", "linear", "mse"), ("lstm", "softmax", "ce"),
                                              ("relu", "sigmoid", "bce")])
def test_tbptt_T_T_equals_full_bptt_bitwise_every_backend(cell, output, loss, layers, n_threads,
                                                          backend, rng):
    """TBPTT's one chunk takes the output layer's work in the kernels' loops (logits, dV) as
    loss_and_grad does, on every backend, thread count and depth: the same update bit for bit."""
    T, B, n_in, n_out = 9, 3, 2, 3
    m = fb.RNN(n_in, 5, n_out, cell=cell, output=output, loss=loss, num_layers=layers,
               n_threads=n_threads, backend=backend, seed=4)
    X = rng.normal(size=(T, B, n_in))
    Y = rng.integers(0, n_out, size=(T, B)) if loss == "ce" else \
        rng.integers(0, 2, size=(T, B, n_out)).astype(float)
    loss_value, grads = m.loss_and_grad(X, Y)
    expected = {k: v - 0.3 * grads[k] for k, v in m.params.items()}
    (chunk,) = train.truncated_bptt(m, X, Y, None)
    for k in grads:
        assert chunk.grads[k].tobytes() == grads[k].tobytes(), k
    if chunk.logits is not None:
        assert_close(chunk.logits, m.head.logits(m.params, chunk.seen), np.float64, "logits")
    mm = m.copy()
    hist = mm.fit(X, Y, iterations=1, lr=0.3, progress=False)
    _same(mm.params, expected)
    assert hist.steps["loss"] == [loss_value]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k1, k2", [(2, 5), (3, 4), (4, 6), (4, 4)])
def test_chunk_logits_and_head_gradient_across_segments(cell, k1, k2, rng):
    """A window forwarded in segments: the seen steps' logits come from the segments' loops and
    the head's dV from their backward passes, summed; both equal the head's own products. (With
    2 k1 > k2 > k1 the seen steps span two segments, the first of them only partly seen.)"""
    T = 11
    m, X, Y = _problem(rng, cell, T=T, reduction="sum")
    for c in train.truncated_bptt(m, X, Y, (k1, k2)):
        assert c.logits is not None  # every cell's loop forms them
        assert_close(c.logits, m.head.logits(m.params, c.seen), np.float64, "logits")
        start = _state_kwargs(_state_at(m, X, c.window_start))
        H = Pass(m).forward(np.ascontiguousarray(X[c.window_start:c.stop]),
                            tuple(np.asarray(v) for v in start.values())).H
        seen = H[1 + c.start - c.window_start:]
        _, _, head = m.head.loss_and_grad(m.params, seen, Y[c.start:c.stop], scale=1.0)
        assert_close(c.grads["V"], head["V"], np.float64, f"chunk [{c.start},{c.stop}) dV")
        assert_close(c.grads["c"], head["c"], np.float64, f"chunk [{c.start},{c.stop}) dc")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k1", [1, 3, 6])
def test_chunks_with_k2_T_add_up_to_full_bptt(cell, k1, rng):
    m, X, Y = _problem(rng, cell, T=7)
    loss, grads = m.loss_and_grad(X, Y)
    chunks = list(train.truncated_bptt(m, X, Y, (k1, 7)))
    assert [c.start for c in chunks] == list(range(0, 7, k1))
    assert all(c.window_start == 0 for c in chunks)
    assert_close(sum(c.loss for c in chunks), loss, np.float64, "loss")
    for k in grads:
        assert_close(sum(c.grads[k] for c in chunks), grads[k], np.float64, f"d{k}")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k1, k2", [(2, 5), (3, 3), (1, 4), (4, 6), (5, 9)])
def test_chunk_gradient_is_the_truncated_one(cell, k1, k2, rng):
    """Chunk [s, e) backpropagated from w = e - k2: the gradient of the losses at s..e-1 with the
    state at w held constant, i.e. grad L[w:e] - grad L[w:s], both from the unchunked state at w."""
    T = 11
    m, X, Y = _problem(rng, cell, T=T, reduction="sum")
    chunks = list(train.truncated_bptt(m, X, Y, (k1, k2)))
    assert len(chunks) == -(-T // k1)
    for c in chunks:
        s, e, w = c.start, c.stop, c.window_start
        assert (s, e, w) == (s, min(s + k1, T), max(0, e - k2))
        start = _state_kwargs(_state_at(m, X, w))
        full_loss, full = m.loss_and_grad(X[w:e], Y[w:e], **start)
        old_loss, old = (0.0, None) if s == w else m.loss_and_grad(X[w:s], Y[w:s], **start)
        assert_close(c.loss, full_loss - old_loss, np.float64, "loss")
        for k in m.params:
            expected = full[k] - (0 if old is None else old[k])
            assert_close(c.grads[k], expected, np.float64, f"chunk [{s},{e}) d{k}")
        for got, want in zip(c.state, _state_at(m, X, e), strict=True):
            assert_close(got, want, np.float64, "state at chunk end")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k1, k2", [(3, 3), (2, 5), (20, 20)])
def test_target_last_backpropagates_only_the_last_k2_steps(cell, k1, k2, rng):
    T = 10
    m, X, Y = _problem(rng, cell, T=T, target="last")
    chunks = list(train.truncated_bptt(m, X, Y, (k1, k2)))
    assert len(chunks) == 1  # only the chunk holding the last step has a loss
    w = max(0, T - k2)
    assert chunks[0].window_start == w
    loss, grads = m.loss_and_grad(X[w:], Y, **_state_kwargs(_state_at(m, X, w)))
    assert_close(chunks[0].loss, loss, np.float64, "loss")
    for k in m.params:
        assert_close(chunks[0].grads[k], grads[k], np.float64, f"d{k}")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("k", [1, 4, 7, 30])
def test_chunked_state_carry_matches_unchunked_forward(cell, k, rng):
    T = 30
    m, X, Y = _problem(rng, cell, T=T, B=2)
    final = m.forward(X)[1]
    full_loss = m.evaluate(X, Y)
    hist = m.fit(X, Y, tbptt=k, stateful=True, lr=0.0, progress=False)  # lr 0: weights stay
    for got, want in zip(train.carried_state(m), final, strict=True):
        assert_close(got, want, np.float64, "carried state")
    assert_close(hist.epochs["loss"][0], full_loss, np.float64, "epoch loss = sum of chunk losses")
    assert_close(train.evaluate(m, X, Y, chunk=k)[0], full_loss, np.float64, "chunked evaluate")
    assert train.evaluate(m, X, Y)[0] == full_loss
    # the same carry across calls: two halves, stateful, end where one pass ends
    train.reset_state(m)
    assert train.carried_state(m) is None
    m.fit(X[:13], Y[:13], tbptt=k, stateful=True, lr=0.0, progress=False)
    m.fit(X[13:], Y[13:], tbptt=k, stateful=True, lr=0.0, progress=False)
    for got, want in zip(train.carried_state(m), final, strict=True):
        assert_close(got, want, np.float64, "state carried across calls")


def test_stateful_carries_across_epochs_and_stateless_does_not(rng):
    m, X, Y = _problem(rng, T=6, B=2)
    a, b = m.copy(), m.copy()
    a.fit(X, Y, epochs=2, lr=0.0, stateful=True, progress=False)
    twice = a.forward(np.concatenate([X, X]))[1]
    for got, want in zip(train.carried_state(a), twice, strict=True):
        assert_close(got, want, np.float64, "state after two stateful epochs")
    b.fit(X, Y, epochs=2, lr=0.0, stateful=False, progress=False)
    assert train.carried_state(b) is None
    with pytest.raises(ValueError, match="one minibatch"):
        a.fit(X, Y, batch_size=1, stateful=True, progress=False)
    with pytest.raises(ValueError, match="reset_state"):
        a.fit(X[:, :1], Y[:, :1], stateful=True, progress=False)
    # explicit h0 overrides the carried state
    h0 = rng.normal(size=(2, 5))
    c = m.copy()
    c.fit(X, Y, h0=h0, stateful=True, lr=0.0, progress=False)
    for got, want in zip(train.carried_state(c), c.forward(X, h0=h0)[1], strict=True):
        assert_close(got, want, np.float64, "state from h0")


def test_h0_is_the_start_of_every_minibatch(rng):
    m, X, Y = _problem(rng, T=5, B=4)
    h0 = rng.normal(size=(4, 5))
    loss, grads = m.loss_and_grad(X[:, :2], Y[:, :2], h0=h0[:2])
    expected = {k: v - 0.1 * grads[k] for k, v in m.params.items()}
    mm = m.copy()
    mm.fit(X, Y, h0=h0, batch_size=2, shuffle=False, iterations=1, lr=0.1, progress=False)
    _same(mm.params, expected)


# -- minibatches, iterations, shuffling, reproducibility -------------------------------------------

def test_minibatch_and_chunk_counts(rng):
    m, X, Y = _problem(rng, T=7, B=5)
    hist = m.fit(X, Y, batch_size=2, epochs=2, progress=False)
    assert hist.steps["step"] == list(range(1, 7)) and hist.steps["epoch"] == [1] * 3 + [2] * 3
    assert hist.epochs["step"] == [3, 6] and len(hist) == 2
    hist = m.fit(X, Y, batch_size=2, epochs=1, tbptt=3, progress=False)
    assert len(hist.steps["step"]) == 3 * 3
    hist = m.fit(X, Y, batch_size=2, iterations=4, progress=False)
    assert hist.steps["step"] == [1, 2, 3, 4] and hist.epochs["epoch"] == [1, 2]
    assert hist.epochs["step"] == [3, 4]
    hist = m.fit(X, Y, batch_size=99, iterations=2, progress=False)
    assert hist.config["batch_size"] == 5


def test_first_minibatch_follows_the_seeded_permutation(rng):
    m, X, Y = _problem(rng, T=4, B=6)
    perm = np.random.default_rng(42).permutation(6)
    for shuffle, idx in [(True, perm[:2]), (False, np.arange(2))]:
        loss, grads = m.loss_and_grad(X[:, idx], Y[:, idx])
        mm = m.copy()
        mm.fit(X, Y, batch_size=2, shuffle=shuffle, seed=42, iterations=1, lr=0.2, progress=False)
        _same(mm.params, {k: v - 0.2 * grads[k] for k, v in m.params.items()})


def _history_without_time(h):
    d = h.as_dict()
    d["epochs"].pop("seconds")
    return d


@pytest.mark.parametrize("cell", CELLS)
def test_same_seed_same_result_bit_for_bit(cell, rng):
    m, X, Y = _problem(rng, cell, output="sigmoid", loss="bce", T=9, B=6)
    Xv, Yv = X[:, :2], Y[:, :2]
    kw = dict(epochs=3, batch_size=4, optimizer="adam", lr=0.05, tbptt=(2, 5), clip_norm=0.5,
              metric="bit_accuracy", validation=(Xv, Yv), progress=False)
    runs = []
    for _ in range(2):
        mm = fb.RNN(2, 5, 2, cell=cell, output="sigmoid", loss="bce", seed=1)
        runs.append((mm, mm.fit(X, Y, seed=7, **kw)))
    _same(runs[0][0].params, runs[1][0].params)
    assert _history_without_time(runs[0][1]) == _history_without_time(runs[1][1])
    other = fb.RNN(2, 5, 2, cell=cell, output="sigmoid", loss="bce", seed=1)
    other.fit(X, Y, seed=8, **kw)
    assert any(other.params[k].tobytes() != runs[0][0].params[k].tobytes() for k in other.params)


# -- optimizer, schedule and clipping inside fit ---------------------------------------------------

def test_fit_clipping_matches_the_clip_functions(rng):
    m, X, Y = _problem(rng, T=6)
    _, grads = m.loss_and_grad(X, Y)
    norm = optim.global_norm(grads)
    for kw, clipped in [
        ({"clip_norm": norm / 4}, optim.clip_by_norm(grads, norm / 4)),
        ({"clip_value": 0.01}, optim.clip_by_value(grads, 0.01)),
        ({"clip_value": 0.01, "clip_norm": 0.001},
         optim.clip_by_norm(optim.clip_by_value(grads, 0.01), 0.001)),
    ]:
        mm = m.copy()
        hist = mm.fit(X, Y, iterations=1, lr=0.5, progress=False, **kw)
        _same(mm.params, {k: v - 0.5 * clipped[k] for k, v in m.params.items()})
        assert hist.steps["grad_norm"] == [norm]  # recorded before clipping


def test_schedule_and_optimizer_instance_persist(rng):
    m, X, Y = _problem(rng, T=5, B=4)
    hist = m.fit(X, Y, batch_size=1, epochs=2, lr=0.1, schedule=optim.step_decay(0.5, 3),
                 progress=False)
    assert hist.steps["lr"] == [0.1] * 3 + [0.05] * 3 + [0.025] * 2
    opt = optim.Adam(lr=0.01)
    m.fit(X, Y, iterations=3, optimizer=opt, progress=False)
    m.fit(X, Y, iterations=2, optimizer=opt, progress=False)
    assert opt.t == 5 and set(opt.state) == set(m.params)
    with pytest.raises(ValueError, match="instance"):
        m.fit(X, Y, optimizer=opt, lr=0.1, progress=False)


# -- metrics and validation ------------------------------------------------------------------------

def _bits_problem(rng, T=6, B=5, n_out=3):
    m = fb.RNN(2, 4, n_out, output="sigmoid", loss="bce", seed=2)
    X = rng.normal(size=(T, B, 2))
    Y = (m.predict(X) > 0.5).astype(float)  # right everywhere, then spoil a few bits
    Y[0, 0, 0] = 1 - Y[0, 0, 0]
    Y[5, 0, 1] = 1 - Y[5, 0, 1]
    Y[3, 2, 2] = 1 - Y[3, 2, 2]
    return m, X, Y


@pytest.mark.parametrize("tbptt", [None, 2, (2, 4)])
def test_builtin_metrics_count_exactly_across_chunks(tbptt, rng):
    m, X, Y = _bits_problem(rng)
    T, B, n_out = Y.shape
    expected = {"bit_accuracy": 1 - 3 / (T * B * n_out), "accuracy": 1 - 3 / (T * B),
                "sequence_accuracy": 1 - 2 / B}
    for name, value in expected.items():
        hist = m.fit(X, Y, lr=0.0, metric=name, tbptt=tbptt, validation=(X, Y), progress=False)
        assert hist.epochs["metric"][0] == pytest.approx(value, abs=1e-15)
        assert hist.epochs["val_metric"][0] == pytest.approx(value, abs=1e-15)
        assert train.evaluate(m, X, Y, metric=name, chunk=2)[1] == pytest.approx(value, abs=1e-15)
        assert len(hist.steps["metric"]) == len(hist.steps["step"])


def test_accuracy_for_softmax_ids_onehot_and_target_last(rng):
    T, B, n_out = 5, 8, 4
    m = fb.RNN(3, 6, n_out, output="softmax", loss="ce", seed=3)
    X = rng.normal(size=(T, B, 3))
    pred = m.predict(X).argmax(-1)
    ids = rng.integers(0, n_out, size=(T, B))
    want = float(np.mean(pred == ids))
    assert train.evaluate(m, X, ids, metric="accuracy")[1] == pytest.approx(want, abs=1e-15)
    onehot = np.eye(n_out)[ids]
    assert train.evaluate(m, X, onehot, metric="bit_accuracy")[1] == pytest.approx(want, abs=1e-15)
    last = fb.RNN(3, 6, n_out, output="softmax", loss="ce", target="last", seed=3)
    ids_last = rng.integers(0, n_out, size=B)
    want_last = float(np.mean(last.predict(X).argmax(-1) == ids_last))
    hist = last.fit(X, ids_last, lr=0.0, metric="accuracy", tbptt=2, progress=False)
    assert hist.epochs["metric"][0] == pytest.approx(want_last, abs=1e-15)


def test_callable_metric_is_averaged_over_chunks(rng):
    m, X, Y = _problem(rng, T=8, B=2)

    def mean_output(y_pred, y_true):
        return float(np.mean(y_pred))

    hist = m.fit(X, Y, lr=0.0, metric=mean_output, tbptt=2, progress=False)
    assert hist.metric == "mean_output"
    assert hist.epochs["metric"][0] == pytest.approx(float(np.mean(m.predict(X))), rel=1e-12)


def test_validation_loss_is_the_models_loss_after_the_epoch(rng):
    m, X, Y = _problem(rng, T=6, B=4)
    Xv, Yv = rng.normal(size=(9, 3, 2)), rng.normal(size=(9, 3, 2))
    hist = m.fit(X, Y, epochs=2, lr=0.1, validation=(Xv, Yv), progress=False)
    assert hist.epochs["val_loss"][-1] == m.evaluate(Xv, Yv)
    assert "val_metric" not in hist.epochs
    hist = m.fit(X, Y, epochs=1, lr=0.1, tbptt=4, validation=(Xv, Yv), progress=False)
    assert_close(hist.epochs["val_loss"][-1], m.evaluate(Xv, Yv), np.float64, "chunked val_loss")


# -- history, progress, callbacks ------------------------------------------------------------------

def test_history_contents_and_plot(rng, tmp_path):
    m, X, Y = _bits_problem(rng)
    hist = m.fit(X, Y, epochs=3, batch_size=2, lr=0.1, metric="accuracy", validation=(X, Y),
                 progress=False)
    assert set(hist.steps) == {"step", "epoch", "loss", "lr", "grad_norm", "metric"}
    assert set(hist.epochs) == {"epoch", "step", "loss", "metric", "val_loss", "val_metric",
                                "seconds"}
    assert hist["loss"] == hist.epochs["loss"] and hist["grad_norm"] == hist.steps["grad_norm"]
    assert len(hist) == 3 and len(hist.steps["loss"]) == 9
    json.dumps(hist.as_dict())
    assert "9 steps, 3 epochs" in repr(hist)
    fig = hist.plot(path=tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3
    from matplotlib.figure import Figure

    axes = Figure().subplots(1, 2)
    assert hist.plot(axes=axes, per_step=False, logy=True) is axes[0].figure
    with pytest.raises(ValueError, match="2 axes"):
        hist.plot(axes=axes[:1])


def test_plot_without_matplotlib_says_how_to_get_it(rng, monkeypatch):
    m, X, Y = _problem(rng)
    hist = m.fit(X, Y, progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"fastbptt\[plot\]"):
        hist.plot()


def test_progress_bar_plain_fallback_and_off(rng, capsys, monkeypatch):
    m, X, Y = _problem(rng, B=4)
    m.fit(X, Y, epochs=2, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err and "step/s" in err and "loss" in err  # tqdm's bar, loss as postfix
    m.fit(X, Y, epochs=2, batch_size=2, progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm not installed: plain lines, no crash
    m.fit(X, Y, epochs=2, batch_size=2, progress=True, log_every=2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln.split()[1] for ln in lines[:-1]] == ["2/4", "4/4"]
    assert lines[-1].startswith("done: epoch 2 step 4 loss")


def test_callbacks_stop_training(rng):
    m, X, Y = _problem(rng, B=4)
    seen = []

    def at_epoch(epoch, logs, model):
        seen.append((epoch, sorted(logs)))
        return epoch == 2

    hist = m.fit(X, Y, epochs=5, callbacks=at_epoch, progress=False)
    assert len(hist) == 2 and hist.stopped_early and "at epoch 2" in hist.stop_reason
    assert seen[0] == (1, ["epoch", "loss", "metric", "seconds", "step"])

    class StopAtStep(train.Callback):
        def on_step(self, step, logs, model):
            assert model is m and logs["step"] == step
            if step == 3:
                raise train.StopTraining("enough")

    hist = m.fit(X, Y, epochs=5, batch_size=1, callbacks=[StopAtStep()], progress=False)
    assert hist.steps["step"] == [1, 2, 3] and hist.stop_reason == "enough" and len(hist) == 1
    with pytest.raises(TypeError, match="callback"):
        m.fit(X, Y, callbacks=[3], progress=False)


def test_early_stopping_patience_target_and_restore(rng):
    m, X, Y = _problem(rng)
    es = train.EarlyStopping(monitor="val_loss", patience=2, restore_best=True)
    for epoch, value in enumerate([1.0, 0.9, 0.95], start=1):
        m.params["c"] = [value, value]
        es.on_epoch(epoch, {"val_loss": value}, m)
    assert es.best == 0.9 and es.best_epoch == 2
    with pytest.raises(train.StopTraining, match="did not improve for 2 epochs"):
        es.on_epoch(4, {"val_loss": 0.91}, m)
    es.on_end(None, m)
    np.testing.assert_array_equal(m.params["c"], [0.9, 0.9])
    acc = train.EarlyStopping(monitor="metric", target=0.75)  # max mode for non-loss names
    acc.on_epoch(1, {"metric": 0.5}, m)
    with pytest.raises(train.StopTraining, match="reached"):
        acc.on_epoch(2, {"metric": 0.8}, m)
    hist = m.fit(X, Y, epochs=9, callbacks=[train.EarlyStopping("loss", target=1e9)],
                 progress=False)
    assert len(hist) == 1 and "reached" in hist.stop_reason
    with pytest.raises(ValueError, match="'val_loss'"):
        m.fit(X, Y, epochs=2, callbacks=[train.EarlyStopping()], progress=False)


# -- divergence ------------------------------------------------------------------------------------

class _Snapshots(train.Callback):
    def __init__(self):
        self.params = []

    def on_step(self, step, logs, model):
        self.params.append(_snapshot(model))


def test_overflowing_update_is_refused_and_weights_stay(rng):
    m, X, Y = _problem(rng)
    before = _snapshot(m)
    with pytest.raises(FloatingPointError, match="step 1") as info:
        m.fit(X, 1e4 * Y, epochs=3, lr=1e306, progress=False)  # |lr * dc| ~ 1e309 overflows
    _same(m.params, before)
    assert "before this step" in str(info.value) and info.value.history.steps["step"] == []


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_divergence_keeps_the_last_finite_weights(optimizer, rng):
    """A huge rate makes step 1 finite but explosive; the forward of step 2 overflows in the
    kernel. The model must hold the weights after step 1, and stay usable."""
    m = fb.RNN(2, 6, 1, cell="relu", init="identity", seed=0)
    X = np.abs(rng.normal(size=(40, 2, 2))) + 1
    Y = np.ones((40, 2, 1))
    snaps = _Snapshots()
    opt = optim.make_optimizer(optimizer, lr=1e150)
    with pytest.raises(FloatingPointError, match="step 2") as info:
        m.fit(X, Y, batch_size=1, epochs=2, shuffle=False, optimizer=opt, callbacks=[snaps],
              progress=False)
    assert len(snaps.params) == 1 and info.value.history.steps["step"] == [1]
    _same(m.params, snaps.params[0])
    assert all(np.isfinite(v).all() for v in m.params.values())
    assert opt.t == 1
    assert m.params["W"].max() > 1e100  # the explosive step did happen


def test_non_finite_loss_stops_before_the_update(rng, monkeypatch):
    m, X, Y = _problem(rng)
    before = _snapshot(m)
    real = m.head.loss_and_grad

    def nan_loss(*args, **kw):
        loss, dseen, grads = real(*args, **kw)
        return float("nan"), dseen, grads

    monkeypatch.setattr(m.head, "loss_and_grad", nan_loss)
    with pytest.raises(FloatingPointError, match="the loss is nan"):
        m.fit(X, Y, progress=False)
    _same(m.params, before)


# -- arguments -------------------------------------------------------------------------------------

def test_bad_arguments(rng):
    m, X, Y = _problem(rng)
    bad = [
        ({"epochs": 2, "iterations": 2}, ValueError, "not both"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"tbptt": (4, 2)}, ValueError, "k2 >= k1"),
        ({"tbptt": 0}, ValueError, "tbptt"),
        ({"tbptt": "long"}, ValueError, "tbptt"),
        ({"metric": "f1"}, ValueError, "unknown metric"),
        ({"validation": X}, ValueError, "pair"),
        ({"clip_norm": -1.0}, ValueError, "clip_norm"),
        ({"optimizer": "lbfgs"}, ValueError, "unknown optimizer"),
        ({"log_every": 0}, ValueError, "log_every"),
    ]
    for kw, exc, match in bad:
        with pytest.raises(exc, match=match):
            m.fit(X, Y, progress=False, **kw)
    step = fb.RNN(2, 3, 1, cell="step")
    with pytest.raises(ValueError, match="forward only"):
        step.fit(X, Y[..., :1], progress=False)
    with pytest.raises(ValueError, match="Y has shape"):
        m.fit(X, Y[:-1], progress=False)


def test_single_sequence_2d_input(rng):
    m, X, Y = _problem(rng, B=1)
    a, b = m.copy(), m.copy()
    a.fit(X[:, 0], Y[:, 0], tbptt=3, epochs=2, progress=False)
    b.fit(X, Y, tbptt=3, epochs=2, progress=False)
    _same(a.params, b.params)


def test_rnn_fit_shows_train_fit_signature_and_docstring():
    import inspect

    m = fb.RNN(2, 3, 1)
    sig = inspect.signature(m.fit)
    assert list(sig.parameters)[:3] == ["X", "Y", "lengths"]
    assert not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    assert list(sig.parameters) == list(inspect.signature(fb.train.fit).parameters)[1:]
    assert m.fit.__doc__ == fb.train.fit.__doc__ and "Parameters" in m.fit.__doc__
