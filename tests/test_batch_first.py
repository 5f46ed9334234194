"""batch_first=True: X, Y and the outputs are (B, T, ...), the states stay (L*D, B, H) as PyTorch
keeps them; every call equals the time-major model's on the transposed data."""

import numpy as np
import pytest

import fastbptt as fb

T, B = 7, 5


def _bm(a):
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


def _pair(**kw):
    kw = dict(input_size=3, hidden_size=4, output_size=2, seed=4, **kw)
    return fb.RNN(**kw), fb.RNN(**kw, batch_first=True)


CASES = {
    "tanh": dict(cell="tanh"),
    "lstm-stacked-bidir": dict(cell="lstm", num_layers=2, bidirectional=True),
    "gru-softmax-ce": dict(cell="gru", output="softmax", loss="ce"),
    "lstm-last": dict(cell="lstm", target="last"),
}


def _data(rng, m):
    X = rng.normal(size=(T, B, 3))
    if m.target == "last":
        Y = rng.normal(size=(B, 2))
    elif m.loss == "ce":
        Y = rng.integers(0, 2, size=(T, B))
    else:
        Y = rng.normal(size=(T, B, 2))
    return X, Y


@pytest.mark.parametrize("case", list(CASES))
def test_calls_equal_the_time_major_model(case, rng):
    tm, bf = _pair(**CASES[case])
    X, Y = _data(rng, tm)
    Yb = Y if tm.target == "last" else _bm(Y)
    lengths = np.array([7, 3, 5, 1, 7])
    h0 = rng.normal(size=tm.state_shape(B))
    for L in (None, lengths):
        out_t, st_t = tm.forward(X, h0=h0, lengths=L)
        out_b, st_b = bf.forward(_bm(X), h0=h0, lengths=L)
        assert np.array_equal(out_b, out_t if tm.target == "last" else _bm(out_t))
        for a, b in zip(st_t, st_b, strict=True):
            assert np.array_equal(a, b)  # states keep PyTorch's (L*D, B, H) layout
        loss_t, g_t = tm.loss_and_grad(X, Y, h0=h0, lengths=L)
        loss_b, g_b = bf.loss_and_grad(_bm(X), Yb, h0=h0, lengths=L)
        assert loss_t == loss_b and all(np.array_equal(g_t[k], g_b[k]) for k in g_t)
        assert tm.evaluate(X, Y, lengths=L) == bf.evaluate(_bm(X), Yb, lengths=L)
        assert fb.train.evaluate(tm, X, Y, chunk=3, lengths=L) == \
            fb.train.evaluate(bf, _bm(X), Yb, chunk=3, lengths=L)
    classes = tm.predict_classes(X)
    assert np.array_equal(bf.predict_classes(_bm(X)),
                          classes if tm.target == "last" else _bm(classes))


def test_fit_minibatches_along_the_batch_axis(rng):
    tm, bf = _pair(cell="lstm", output="softmax", loss="ce")
    X = rng.normal(size=(T, 9, 3))
    Y = rng.integers(0, 2, size=(T, 9))
    lengths = rng.integers(1, T + 1, size=9)
    kw = dict(lengths=lengths, epochs=2, batch_size=4, tbptt=(3, 4), optimizer="adam", lr=0.01,
              progress=False, metric="accuracy")
    h_t = tm.fit(X, Y, validation=(X[:, :3], Y[:, :3]), **kw)
    h_b = bf.fit(_bm(X), _bm(Y), validation=(_bm(X[:, :3]), _bm(Y[:, :3])), **kw)
    assert all(np.array_equal(tm.params[k], bf.params[k]) for k in tm.params)
    assert h_t["val_loss"] == h_b["val_loss"] and h_t["metric"] == h_b["metric"]


def test_tokens_batch_first_and_one_sequence(rng):
    kw = dict(input_size=6, hidden_size=4, output_size=6, output="softmax", loss="ce",
              input="tokens")
    tm, bf = fb.RNN(**kw), fb.RNN(**kw, batch_first=True)
    ids = rng.integers(0, 6, size=(T, B))
    assert np.array_equal(bf.predict(ids.T), _bm(tm.predict(ids)))
    assert np.array_equal(bf.predict(ids[:, 0]), tm.predict(ids[:, 0]))  # (T,) either way
    assert tm.loss_and_grad(ids, ids)[0] == bf.loss_and_grad(ids.T, ids.T)[0]


def test_save_load_keeps_the_layout(rng, tmp_path):
    _, bf = _pair(cell="gru")
    bf.save(tmp_path / "m.npz")
    loaded = fb.load(tmp_path / "m.npz")
    X = rng.normal(size=(B, T, 3))
    assert loaded.batch_first and np.array_equal(loaded.predict(X), bf.predict(X))
    assert bf.copy().batch_first and "batch_first=True" in repr(bf)


def test_bad_shapes_say_batch_first(rng):
    _, bf = _pair()
    with pytest.raises(ValueError, match=r"batch_first=True expects \(B, T, ...\) = \(5, 7"):
        bf.loss_and_grad(rng.normal(size=(B, T, 3)), rng.normal(size=(T, B, 2)))
    with pytest.raises(ValueError, match=r"\(B, T, 3\) batch-first"):
        bf.predict(np.zeros((2, 3, 4, 3)))
    with pytest.raises(ValueError, match="batch_first must be True or False"):
        fb.RNN(3, 4, 2, batch_first="yes")
