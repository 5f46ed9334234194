"""The LSTM and GRU forwards keep their packed weights between calls (cython/_packcache.pxd): a
call with the kept copy gives bitwise what a call that packs afresh gives, and every way a
parameter can change is seen, writes through an alias of a parameter array included."""

import numpy as np
import pytest

import fastbptt as fb
from fastbptt import optim

# B > 1 per block: the tiled path, the one that packs (one row takes the hand-written path)
SHAPE = dict(I=5, H=12, O=3, B=6, T=4)


@pytest.fixture(params=["lstm", "gru"])
def cell(request):
    return request.param


def _model(cell, dtype=np.float64):
    return fb.RNN(SHAPE["I"], SHAPE["H"], SHAPE["O"], cell=cell, dtype=dtype, seed=3,
                  backend="cython")


def _data(rng, dtype=np.float64):
    T, B = SHAPE["T"], SHAPE["B"]
    return (rng.standard_normal((T, B, SHAPE["I"])).astype(dtype),
            rng.standard_normal((T, B, SHAPE["O"])).astype(dtype))


def _fresh_twin(m):
    """A model with m's parameters whose forward packs at every call (no slot)."""
    twin = m.copy()
    twin.layers.cells[0][0]._packed = None
    return twin


def _same(m, X, Y):
    """m's loss and gradients equal bitwise those of a twin that packs afresh."""
    loss, grads = m.loss_and_grad(X, Y)
    ref_loss, ref_grads = _fresh_twin(m).loss_and_grad(X, Y)
    assert loss == ref_loss
    for name, g in ref_grads.items():
        assert np.array_equal(grads[name], g), name
    return loss


def test_kept_copy_is_used_and_gives_the_fresh_result(rng, cell):
    m = _model(cell)
    X, Y = _data(rng)
    first = _same(m, X, Y)
    slot = m.layers.cells[0][0]._packed
    assert len(slot) == 1
    kept = slot[0]
    assert _same(m, X, Y) == first
    assert slot[0] is kept  # unchanged weights: the same panels again


def _alias_write(m):
    w = m.params["Wh"]
    w[0, 0] += 0.25


def _setitem(m):
    m.params["Wx"] = m.params["Wx"] * 0.5


def _isub(m):
    m.params["Wh"] -= 0.01


def _update(m):
    m.params.update({"Wx": m.params["Wx"] + 0.1})


def _replace_all(m):
    m.params = {k: v * 1.5 for k, v in m.params.items()}


def _alias_write_wx(m):
    w = m.params["Wx"]
    w[-1, -1] = -2.0


@pytest.mark.parametrize("change", [_alias_write, _alias_write_wx, _setitem, _isub, _update,
                                    _replace_all])
def test_every_change_is_seen(rng, change, cell):
    m = _model(cell)
    X, Y = _data(rng)
    before = _same(m, X, Y)
    change(m)
    assert _same(m, X, Y) != before


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_steps_are_seen(rng, name, cell):
    m = _model(cell)
    X, Y = _data(rng)
    opt = optim.make_optimizer(name, lr=0.05)
    for _ in range(3):
        _, grads = m.loss_and_grad(X, Y)
        opt.step(m.params, grads)
        _same(m, X, Y)


def test_load_is_seen(rng, tmp_path, cell):
    m, other = _model(cell), _model(cell)
    other.params = {k: v + 0.3 for k, v in other.params.items()}
    X, Y = _data(rng)
    _same(m, X, Y)
    other.save(tmp_path / "other.npz")
    m.params = fb.load(tmp_path / "other.npz").params
    assert _same(m, X, Y) == other.loss_and_grad(X, Y)[0]


def test_dtype_switch(rng, cell):
    X, Y = _data(rng)
    m = _model(cell)
    _same(m, X, Y)
    # a float32 model handed the slot a float64 call filled: packed again, in its own dtype
    m32 = m.copy(np.float32)
    m32.layers.cells[0][0]._packed = m.layers.cells[0][0]._packed
    _same(m32, X.astype(np.float32), Y.astype(np.float32))
    _same(m, X, Y)


def test_simd_switch(rng, monkeypatch, cell):
    from fastbptt import _simd

    X, Y = _data(rng)
    m = _model(cell)
    try:
        for name in _simd.supported() + _simd.supported()[:1]:  # and back to the first
            monkeypatch.setenv("FASTBPTT_SIMD", name)
            _simd.use()
            _same(m, X, Y)  # the panels kept under the previous set are not this set's
    finally:
        monkeypatch.undo()
        _simd.use()
