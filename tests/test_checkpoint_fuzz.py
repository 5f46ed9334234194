"""Checkpoint fuzzing: truncations, bit flips, crafted configs and headers, pickled payloads, extra
and missing entries. load returns the saved model or raises a ValueError naming the file; it never
unpickles, and never allocates much more than the file's own bytes."""

import io
import json
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest
from conftest import count_cases

import fastbptt as fb

# the largest allocation load may make, in multiples of the file's size (reading the arrays, the
# model's copy of them) plus a fixed allowance for the interpreter's own objects
ALLOC_PER_FILE_BYTE = 4
ALLOC_FIXED = 1 << 20


class Pickled:
    """Unpickling this object would leave a marker file behind."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(path, model, optimizer) of two checkpoints: a small tanh model, and a stacked
    bidirectional lstm saved with an Adam state."""
    d = tmp_path_factory.mktemp("fuzz")
    small = fb.RNN(2, 3, 1, seed=1)
    big = fb.RNN(3, 4, 2, cell="lstm", num_layers=2, bidirectional=True, seed=2)
    opt = fb.optim.make_optimizer("adam", lr=0.01)
    opt.step(big.params, {k: np.ones_like(v) for k, v in big.params.items()})
    small.save(d / "small.npz")
    big.save(d / "big.npz", optimizer=opt)
    return {"small": (d / "small.npz", small), "big": (d / "big.npz", big)}


def _same_model(loaded, model):
    return loaded.get_config() == model.get_config() and all(
        np.array_equal(loaded.params[k], v) for k, v in model.params.items())


def _try(path, data, model=None):
    """Write data to path and load it: return "loaded" or "refused"; fail on anything else."""
    path.write_bytes(data)
    tracemalloc.start()
    try:
        loaded = fb.load(path, with_optimizer=True)[0]
    except ValueError as exc:
        assert path.name in str(exc), f"the error does not name the file: {exc}"
        outcome = "refused"
    else:
        outcome = "loaded"
        if model is not None:
            assert _same_model(loaded, model), "a damaged file loaded as a different model"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= ALLOC_PER_FILE_BYTE * len(data) + ALLOC_FIXED, \
        f"load allocated {peak} bytes for a file of {len(data)}"
    count_cases("checkpoint fuzzing")
    return outcome


def _arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _npz(arrays, extra_members=()):
    """An .npz in memory from arrays (and raw members written as given)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    if extra_members:
        with zipfile.ZipFile(buf, "a") as z:
            for name, raw in extra_members:
                z.writestr(name, raw)
    return buf.getvalue()


@pytest.mark.parametrize("which", ["small", "big"])
def test_truncated_files_are_refused(saved, which, tmp_path):
    path, model = saved[which]
    data = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        # every boundary of the layout (member headers, data, the central directory) and its
        # neighbours, then an even spread over the rest
        marks = {0, 1, len(data) - 1}
        for info in z.infolist():
            start = info.header_offset + 30 + len(info.filename)
            marks |= {info.header_offset, start, start + info.compress_size}
    offsets = sorted({o + d for o in marks for d in (-1, 0, 1) if 0 <= o + d < len(data)}
                     | set(range(0, len(data), max(1, len(data) // 40))))
    for n in offsets:
        assert _try(tmp_path / "cut.npz", data[:n], model) == "refused", n


@pytest.mark.parametrize("which", ["small", "big"])
def test_bit_flips_load_the_same_model_or_are_refused(saved, which, tmp_path, seed):
    path, model = saved[which]
    data = path.read_bytes()
    rng = np.random.default_rng(seed)
    outcomes = set()
    for pos in rng.choice(len(data), size=min(len(data), 150 if which == "small" else 60), replace=False):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        outcomes.add(_try(tmp_path / "flip.npz", bytes(flipped), model))
    assert "refused" in outcomes


BAD_VALUES = [None, True, -1, 0, 2**31 - 1, 2**63, 10**30, 1.5, float("nan"), "3", "", [3],
              {"a": 1}, "float16", "lstm"]


@pytest.mark.parametrize("key", sorted(fb.RNN(2, 3, 1).get_config()) + ["seed", "init", "dtype"])
def test_crafted_config_values(saved, key, tmp_path):
    path, model = saved["small"]
    arrays = _arrays(path)
    for value in BAD_VALUES:
        cfg = dict(model.get_config(), **{key: value})
        arrays["config"] = np.frombuffer(json.dumps(cfg).encode(), dtype=np.uint8)
        outcome = _try(tmp_path / "cfg.npz", _npz(arrays))
        # only values that describe this same model (batch_first=True is one: the same
        # parameters, read in another layout)
        if outcome == "loaded" and not (key == "batch_first" and value is True):
            assert fb.load(tmp_path / "cfg.npz").get_config()[key] == model.get_config()[key]


@pytest.mark.parametrize("config", [b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"input_size": 2}',
                                    b"[" * 100000, b'{"a": ' * 100000,
                                    json.dumps({"hidden_size": 10**9}).encode(),
                                    json.dumps(dict(fb.RNN(2, 3, 1).get_config(),
                                                    hidden_size=40000)).encode(),
                                    json.dumps(dict(fb.RNN(2, 3, 1).get_config(),
                                                    num_layers=10**8)).encode()])
def test_crafted_config_documents(saved, config, tmp_path):
    path, _ = saved["small"]
    arrays = _arrays(path)
    arrays["config"] = np.frombuffer(config, dtype=np.uint8)
    assert _try(tmp_path / "doc.npz", _npz(arrays)) == "refused"


def test_headers_claiming_more_than_the_file_holds(saved, tmp_path):
    path, _ = saved["small"]
    arrays = _arrays(path)
    for shape in [(10**12,), (2**40, 2**20), (3, 10**9)]:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                      "shape": shape})
        raw = header.getvalue() + b"\0" * 64
        rest = {k: v for k, v in arrays.items() if k != "param/W"}
        assert _try(tmp_path / "huge.npz", _npz(rest, [("param/W.npy", raw)])) == "refused"


def test_pickled_payloads_are_never_unpickled(saved, tmp_path):
    path, _ = saved["small"]
    arrays = _arrays(path)
    marker = tmp_path / "unpickled"
    payload = np.empty(1, dtype=object)
    payload[0] = Pickled(str(marker))
    for key in ["param/W", "config", "format", "optim/config"]:
        buf = io.BytesIO()
        np.save(buf, payload, allow_pickle=True)
        rest = {k: v for k, v in arrays.items() if k != key}
        assert _try(tmp_path / "pickle.npz", _npz(rest, [(key + ".npy", buf.getvalue())])) == \
            "refused"
    raw = pickle.dumps({"config": Pickled(str(marker))})
    assert _try(tmp_path / "pickle.npz", raw) == "refused"
    assert _try(tmp_path / "pickle.npz", _npz(arrays, [("extra.pkl", raw)])) == "refused"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:  # compressed members
        for key, value in arrays.items():
            member = io.BytesIO()
            np.save(member, value)
            z.writestr(key + ".npy", member.getvalue())
    assert _try(tmp_path / "deflated.npz", buf.getvalue()) == "refused"
    assert not marker.exists()


@pytest.mark.parametrize("which", ["small", "big"])
def test_extra_and_missing_entries(saved, which, tmp_path):
    path, model = saved[which]
    arrays = _arrays(path)
    for key in arrays:  # every entry missing in turn
        rest = {k: v for k, v in arrays.items() if k != key}
        outcome = _try(tmp_path / "missing.npz", _npz(rest))
        assert outcome == "refused" or key.startswith("optim/"), key
    for key, value in [("param/Z", np.zeros(3)), ("junk", np.zeros(1)), ("param/W_l9", np.zeros(1)),
                       ("optim/state/W/velocity", np.zeros((3, 3))), ("version", np.array(2)),
                       ("format", np.array("other")), ("param/U", np.zeros((3, 2), np.float32)),
                       ("param/U", np.zeros((2, 3))), ("param/U", np.full((3, 2), np.inf))]:
        outcome = _try(tmp_path / "extra.npz", _npz(dict(arrays, **{key: value})))
        assert outcome == "refused", key


@pytest.mark.parametrize("config", [{"name": "adam", "lr": "x"}, {"name": "evil"}, [], "adam",
                                    {"name": "adam", "t": float("inf")}, {"name": "adam", "t": -5},
                                    {"name": "adam", "t": "12"}, {"name": "sgd", "lr": -1},
                                    {"name": "adam", "lr": float("nan")}, {"lr": 0.1},
                                    {"name": "adam", "beta1": [1]}, {"name": "adam", "x": 1}])
def test_crafted_optimizer_configs(saved, config, tmp_path):
    path, _ = saved["big"]
    arrays = _arrays(path)
    arrays["optim/config"] = np.frombuffer(json.dumps(config).encode(), dtype=np.uint8)
    assert _try(tmp_path / "opt.npz", _npz(arrays)) == "refused"
