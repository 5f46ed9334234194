"""Checkpoints: bitwise round trips, resuming, atomic writes, and refusal of bad files."""

import importlib
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import fastbptt as fb
from fastbptt import io as fbio
from fastbptt import optim


def _available(cell):
    try:
        importlib.import_module(f"fastbptt._{cell}")
    except ImportError:
        return False
    return True


CELLS = ["tanh", "relu", "step"] + [c for c in ("lstm", "gru") if _available(c)]
HEADS = [("linear", "mse"), ("sigmoid", "bce"), ("softmax", "ce"), (None, "mse")]


def _model(cell="tanh", head=("linear", "mse"), dtype=np.float64, seed=5, **kw):
    output, loss = head
    return fb.RNN(3, 7, None if output is None else 4, cell=cell, output=output, loss=loss,
                  dtype=dtype, seed=seed, **kw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h[0]}-{h[1]}")
@pytest.mark.parametrize("cell", CELLS)
def test_round_trip_is_bitwise(cell, head, dtype, tmp_path, rng):
    m = _model(cell, head, dtype, target="last", reduction="sum", n_threads=2)
    for name, value in m.params.items():  # not the seed's values: prove they come from the file
        m.params[name] = rng.normal(size=value.shape)
    path = tmp_path / "model.npz"
    assert m.save(path) is None and path.exists()
    back = fb.load(path)
    assert back.get_config() == m.get_config()
    assert set(back.params) == set(m.params)
    for name in m.params:
        assert back.params[name].dtype == m.params[name].dtype
        assert back.params[name].tobytes() == m.params[name].tobytes(), name
    X = rng.normal(size=(5, 2, 3))
    assert back.predict(X).tobytes() == m.predict(X).tobytes()
    assert fb.load(str(path), backend="numpy").backend == "numpy"


def test_file_holds_no_pickle_and_is_written_exactly_at_path(tmp_path):
    path = tmp_path / "weights"  # no suffix is added
    fbio.save(_model(), path)
    assert os.listdir(tmp_path) == ["weights"]
    with np.load(path, allow_pickle=False) as data:
        assert str(data["format"]) == fbio.FORMAT and int(data["version"]) == fbio.FORMAT_VERSION
        config = json.loads(data["config"].tobytes())
        assert config["hidden_size"] == 7
        assert all(data[k].dtype != object for k in data.files)


@pytest.mark.parametrize("make", [lambda: optim.Adam(lr=0.02),
                                  lambda: optim.AdamW(lr=0.02, weight_decay=0.1),
                                  lambda: optim.RMSprop(lr=0.02, weight_decay=0.1)])
def test_resume_training_from_checkpoint_matches_uninterrupted(tmp_path, rng, make):
    X, Y = rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4, 4))
    straight = _model()
    opt = make()
    straight.fit(X, Y, epochs=2, batch_size=2, optimizer=opt, seed=1, progress=False)
    fbio.save(straight, tmp_path / "ckpt.npz", optimizer=opt)
    straight.fit(X, Y, epochs=2, batch_size=2, optimizer=opt, seed=2, progress=False)

    resumed, opt2 = fbio.load(tmp_path / "ckpt.npz", with_optimizer=True)
    assert type(opt2) is type(opt) and opt2.t == 4 and opt2.get_config() == \
        make().get_config() | {"t": 4}
    resumed.fit(X, Y, epochs=2, batch_size=2, optimizer=opt2, seed=2, progress=False)
    for name in straight.params:
        assert resumed.params[name].tobytes() == straight.params[name].tobytes(), name
    fbio.save(resumed, tmp_path / "plain.npz")
    assert fbio.load(tmp_path / "plain.npz", with_optimizer=True)[1] is None


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "m.npz"
    fbio.save(_model(seed=1), path)
    m2 = _model(seed=2)
    fbio.save(m2, path)
    assert fb.load(path).params["W"].tobytes() == m2.params["W"].tobytes()
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("fail_at", ["savez", "fsync", "replace"])
def test_a_crash_mid_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "m.npz"
    old = _model(seed=1)
    fbio.save(old, path)
    original = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    target = {"savez": (fbio.np, "savez"), "fsync": (fbio.os, "fsync"),
              "replace": (fbio.os, "replace")}[fail_at]
    monkeypatch.setattr(*target, crash)
    with pytest.raises(OSError, match="simulated"):
        fbio.save(_model(seed=2), path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.npz"]
    assert fb.load(path).params["W"].tobytes() == old.params["W"].tobytes()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_refused(tmp_path, fraction):
    path = tmp_path / "m.npz"
    fbio.save(_model(), path)
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError, match="cut.npz"):
        fb.load(cut)


def test_corrupted_member_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    fbio.save(_model(), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("param/W.npy")
    start = info.header_offset + 30 + len(info.filename) + 200  # inside W's data
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="m.npz"):
        fb.load(path)


class _Payload:
    """Unpickling this would create a directory: the marker that load ran pickle."""

    marker = None

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_payloads_are_refused_unrun(tmp_path):
    marker = tmp_path / "pwned"
    _Payload.marker = str(marker)
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps({"param/W": _Payload()}))
    with pytest.raises(ValueError, match="raw.npz"):
        fb.load(raw)
    in_npz = tmp_path / "obj.npz"
    good = tmp_path / "good.npz"
    fbio.save(_model(), good)
    with np.load(good) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["param/W"] = np.array([_Payload()], dtype=object)
    np.savez(in_npz, **arrays)  # numpy pickles object arrays inside the zip
    with pytest.raises(ValueError, match="obj.npz"):
        fb.load(in_npz)
    assert not marker.exists()


def _rewrite(tmp_path, change):
    """A valid checkpoint with entries changed by `change(arrays)`."""
    good = tmp_path / "good.npz"
    fbio.save(_model(), good)
    with np.load(good) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    return bad


def _config_edit(**edits):
    def change(arrays):
        cfg = json.loads(arrays["config"].tobytes())
        cfg.update(edits)
        arrays["config"] = np.frombuffer(json.dumps(cfg).encode(), dtype=np.uint8)

    return change


BAD = {
    "newer version": (lambda a: a.update(version=np.array(2)), "version 2 .*newer"),
    "older version": (lambda a: a.update(version=np.array(0)), "version 0"),
    "version not int": (lambda a: a.update(version=np.array(1.0)), "integer"),
    "other format": (lambda a: a.update(format=np.array("keras")), "not a fastbptt model"),
    "no config": (lambda a: a.pop("config"), "no 'config'"),
    "config not json": (lambda a: a.update(config=np.frombuffer(b"{oops", np.uint8)),
                        "not valid JSON"),
    "config as text": (lambda a: a.update(config=np.array("{}")), "JSON bytes"),
    "config unknown key": (_config_edit(colour="blue"), "keys \\['colour'\\]"),
    "config missing key": (lambda a: a.update(config=np.frombuffer(b'{"input_size": 3}',
                                                                     np.uint8)), "lacks keys"),
    "config not a dict": (lambda a: a.update(config=np.frombuffer(b"[1, 2]", np.uint8)),
                          "not a dict"),
    "config values": (_config_edit(cell="transformer"), "valid model"),
    "missing param": (lambda a: a.pop("param/W"), "do not match"),
    "extra entry": (lambda a: a.update(notes=np.zeros(1)), "unexpected entries"),
    "wrong shape": (lambda a: a.update({"param/W": np.zeros((7, 6))}), "'W' is float64 \\(7, 6\\)"),
    "wrong dtype": (lambda a: a.update({"param/W": np.zeros((7, 7), np.float32)}),
                    "'W' is float32"),
    "non-finite": (lambda a: a["param/b"].__setitem__(0, np.nan), "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_incompatible_files_are_refused(case, tmp_path):
    change, match = BAD[case]
    bad = _rewrite(tmp_path, change)
    with pytest.raises(ValueError, match=match):
        fb.load(bad)


def test_bad_optimizer_state_is_refused(tmp_path):
    m = _model()
    opt = optim.Momentum(lr=0.1)
    opt.step(m.params, {k: np.ones_like(v) for k, v in m.params.items()})
    good = tmp_path / "good.npz"
    fbio.save(m, good, optimizer=opt)
    with np.load(good) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["optim/state/W/velocity"] = np.zeros((2, 2))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="optimizer"):
        fbio.load(tmp_path / "bad.npz", with_optimizer=True)


def test_not_a_checkpoint_at_all(tmp_path):
    with pytest.raises(FileNotFoundError):
        fb.load(tmp_path / "missing.npz")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        fb.load(single)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.npz"):
        fb.load(text)
