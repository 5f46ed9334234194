"""input="tokens": integer ids mean exactly what their one-hot rows mean, on every cell, backend and
layout, in every call, in fit and in checkpoints; bad ids are refused."""

import numpy as np
import pytest
from conftest import assert_close

import fastbptt as fb
from fastbptt.cells import token_weight_grad

V, T, B = 9, 6, 4
LAYOUTS = {"one": {}, "stacked-bidir": {"num_layers": 2, "bidirectional": True}}


def _pair(cell, backend, layout, **kw):
    kw = dict(input_size=V, hidden_size=5, output_size=3, cell=cell, backend=backend, seed=3,
              **LAYOUTS[layout], **kw)
    return fb.RNN(**kw, input="tokens"), fb.RNN(**kw)


def _close_dicts(a, b, what):
    assert set(a) == set(b)
    for k in b:
        assert_close(a[k], b[k], np.float64, f"{what} {k}")


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("backend", ["cython", "numpy", "python"])
@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm", "gru", "step"])
def test_tokens_equal_one_hot(cell, backend, layout, rng):
    tok, dense = _pair(cell, backend, layout)
    ids = rng.integers(0, V, size=(T, B))
    ids[0, 0] = V - 1  # the last column too
    X = np.eye(V)[ids]
    Y = rng.normal(size=(T, B, 3))
    h0 = rng.normal(size=tok.state_shape(B))
    for lengths in (None, np.array([6, 2, 5, 1])):
        out_t, st_t = tok.forward(ids, h0=h0, lengths=lengths)
        out_d, st_d = dense.forward(X, h0=h0, lengths=lengths)
        assert_close(out_t, out_d, np.float64, "outputs")
        for a, b in zip(st_t, st_d, strict=True):
            assert_close(a, b, np.float64, "state")
        if cell == "step":
            continue
        loss_t, g_t = tok.loss_and_grad(ids, Y, h0=h0, lengths=lengths)
        loss_d, g_d = dense.loss_and_grad(X, Y, h0=h0, lengths=lengths)
        assert abs(loss_t - loss_d) <= 1e-12 * max(1.0, abs(loss_d))
        _close_dicts(g_t, g_d, "grad")
        assert abs(tok.evaluate(ids, Y, lengths=lengths)
                   - dense.evaluate(X, Y, lengths=lengths)) <= 1e-12


def test_one_sequence_of_ids(rng):
    tok, dense = _pair("gru", "auto", "one")
    ids = rng.integers(0, V, size=T)
    assert_close(tok.predict(ids), dense.predict(np.eye(V)[ids]), np.float64, "outputs")
    assert tok.predict(ids).shape == (T, 3)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_fit_with_tbptt_and_minibatches_equals_one_hot(cell, rng):
    tok, dense = _pair(cell, "auto", "one", output="softmax", loss="ce")
    ids = rng.integers(0, V, size=(T, 8))
    Y = rng.integers(0, 3, size=(T, 8))
    lengths = rng.integers(1, T + 1, size=8)
    kw = dict(lengths=lengths, epochs=2, batch_size=3, tbptt=(2, 3), optimizer="adam", lr=0.01,
              progress=False, validation=(ids[:, :4], Y[:, :4]), metric="accuracy")
    h_t = tok.fit(ids, Y, **kw)
    h_d = dense.fit(np.eye(V)[ids], Y, **{**kw, "validation": (np.eye(V)[ids[:, :4]], Y[:, :4])})
    _close_dicts(tok.params, dense.params, "params")
    assert np.allclose(h_t["val_loss"], h_d["val_loss"], rtol=1e-12, atol=0)
    assert h_t["val_metric"] == h_d["val_metric"]


def test_weight_grad_is_the_scatter_add(rng):
    ids = rng.integers(0, 7, size=(5, 3))
    ids[ids == 4] = 2  # an id that never occurs, and repeats
    dA = rng.normal(size=(5, 3, 4))
    expected = np.zeros((4, 7))
    np.add.at(expected.T, ids.reshape(-1), dA.reshape(-1, 4))
    got = token_weight_grad(dA, ids, 7)
    assert_close(got, expected, np.float64, "dWx")
    assert not got[:, 4].any()


def test_integer_features_without_tokens_stay_features(rng):
    m = fb.RNN(3, 4, 2)
    X = rng.integers(0, 5, size=(T, B, 3))
    assert np.array_equal(m.predict(X), m.predict(X.astype(float)))


@pytest.mark.parametrize("batch_first", [False, True])
def test_bad_ids_are_refused_naming_the_first(batch_first):
    m = fb.RNN(V, 4, 2, input="tokens", batch_first=batch_first)
    before = {k: v.copy() for k, v in m.params.items()}
    ids = np.zeros((3, 5), dtype=np.int64)
    ids[1, 3], ids[2, 0] = V, -1
    with pytest.raises(ValueError, match=r"X\[1, 3\] = 9 .*\[0, input_size=9\)"):
        m.predict(ids)
    ids[1, 3] = 0
    with pytest.raises(ValueError, match=r"X\[2, 0\] = -1"):
        m.loss_and_grad(ids, np.zeros(ids.shape + (2,)))
    with pytest.raises(TypeError, match="integer token ids"):
        m.predict(ids.astype(float))
    with pytest.raises(TypeError, match="integer token ids"):
        m.predict(ids > 0)
    with pytest.raises(ValueError, match="ids shaped"):
        m.predict(np.zeros((2, 3, V), dtype=np.int64))
    assert all(np.array_equal(before[k], m.params[k]) for k in before)


def test_input_setting_is_checked():
    with pytest.raises(ValueError, match="input must be one of 'dense', 'tokens'"):
        fb.RNN(3, 4, 2, input="ids")


def test_save_load_and_copy_keep_tokens(rng, tmp_path):
    m = fb.RNN(V, 4, V, cell="lstm", output="softmax", loss="ce", input="tokens", seed=5)
    ids = rng.integers(0, V, size=(T, B))
    m.save(tmp_path / "m.npz")
    loaded = fb.load(tmp_path / "m.npz")
    assert loaded.input == "tokens" and loaded.get_config()["input"] == "tokens"
    assert np.array_equal(loaded.predict(ids), m.predict(ids))
    assert np.array_equal(m.copy().predict(ids), m.predict(ids))
    assert "input='tokens'" in repr(m)


def test_sample_feeds_ids_to_a_token_model(rng):
    kw = dict(cell="gru", output="softmax", loss="ce", seed=2)
    tok, dense = fb.RNN(V, 6, V, input="tokens", **kw), fb.RNN(V, 6, V, **kw)
    drawn = [fb.sample(m, [1, 2, 3], 12, temperature=0.8, seed=7) for m in (tok, dense)]
    assert np.array_equal(drawn[0], drawn[1])


def test_from_torch_with_token_inputs_matches_torch_on_one_hot(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(V, 5, num_layers=2).double()
    m = fb.RNN.from_torch_state_dict(lstm.state_dict(), output=None, input="tokens")
    ids = rng.integers(0, V, size=(T, B))
    with torch.no_grad():
        expected = lstm(torch.nn.functional.one_hot(torch.from_numpy(ids), V).double())[0]
    assert_close(m.predict(ids), expected.numpy(), np.float64, "outputs")


def test_gradcheck_of_a_token_model(rng):
    m = fb.RNN(V, 4, 3, cell="lstm", output="softmax", loss="ce", input="tokens",
               batch_first=True, num_layers=2)
    ids = rng.integers(0, V, size=(2, 5))
    errors = fb.gradcheck(m, ids, ids % 3)
    assert max(errors.values()) < 1e-7


def test_float32_tokens_equal_float32_one_hot(rng):
    tok, dense = _pair("lstm", "auto", "one", dtype=np.float32)
    ids = rng.integers(0, V, size=(T, B))
    Y = rng.normal(size=(T, B, 3))
    g_t, g_d = tok.loss_and_grad(ids, Y)[1], dense.loss_and_grad(np.eye(V)[ids], Y)[1]
    for k in g_d:
        assert g_t[k].dtype == np.float32
        assert_close(g_t[k], g_d[k], np.float32, k)
