"""The fixes of the reliability report: bounded threads and memory, Params routes, checkpoints
that never replace a good file with a bad one, and errors that name what is wrong."""

import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import fastbptt as fb
from fastbptt import io as fbio
from fastbptt._backend import kernels
from fastbptt._checks import MAX_THREADS, param_bytes


def _params(m):
    return {k: v.copy() for k, v in m.params.items()}


def _unchanged(m, before):
    return all(np.array_equal(m.params[k], v) for k, v in before.items())


# -- threads and memory -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_threads", [MAX_THREADS + 1, 2**31, 2**63, 0, -1, 2.0, True])
def test_n_threads_is_bounded_at_construction(n_threads):
    with pytest.raises(ValueError, match="n_threads"):
        fb.RNN(2, 8, 1, n_threads=n_threads)
    m = fb.RNN(2, 8, 1, n_threads=2)
    with pytest.raises(ValueError, match="n_threads"):
        m.n_threads = n_threads
    assert m.n_threads == 2


_THREADS_STARTED = textwrap.dedent("""
    import os
    import numpy as np
    from fastbptt._backend import kernels

    kern = kernels("elman", "cython")
    rng = np.random.default_rng(0)
    T, B, n, I = 3, 3, 8, 2
    W, U = 0.3 * rng.standard_normal((n, n)), rng.standard_normal((n, I))
    X, h0 = rng.standard_normal((T, B, I)), np.zeros((B, n))
    A = X @ U.T
    H1, H2 = np.empty((T + 1, B, n)), np.empty((T + 1, B, n))
    before = len(os.listdir("/proc/self/task"))
    for act in (0, 1, 2):
        kern.forward_fused(act, U, np.zeros(n), W, X, h0, H1, 1)
        kern.forward_fused(act, U, np.zeros(n), W, X, h0, H2, 1000)
        assert np.abs(H2 - H1).max() < 1e-12
        kern.forward(act, W, A, h0, H2, 100000)
        assert np.abs(H2 - H1).max() < 1e-12
    # OpenMP keeps its team after a region: the count now shows how many threads were started
    print(len(os.listdir("/proc/self/task")) - before)
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_elman_kernels_run_at_most_one_thread_per_sequence():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _THREADS_STARTED], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert int(out.stdout) <= 3 - 1, f"{out.stdout.strip()} threads started for a batch of 3"


def test_elman_kernels_refuse_a_thread_count_past_int():
    kern = kernels("elman", "cython")
    H = np.empty((2, 1, 2))
    with pytest.raises(OverflowError):
        kern.forward(0, np.eye(2), np.ones((1, 1, 2)), np.zeros((1, 2)), H, 2**31)


@pytest.mark.parametrize("cell, layers, bidirectional, output_size",
                         [("tanh", 1, False, 3), ("lstm", 3, True, 2), ("gru", 2, False, None)])
def test_param_bytes_counts_what_the_constructor_builds(cell, layers, bidirectional, output_size):
    m = fb.RNN(5, 7, output_size, cell=cell, num_layers=layers, bidirectional=bidirectional,
               output="linear" if output_size else None)
    data = sum(v.nbytes for v in m.params.values())
    estimate = param_bytes(cell, 5, 7, output_size, layers, 2 if bidirectional else 1, np.float64)
    assert data < estimate <= data + 4096 * len(m.params)


@pytest.mark.parametrize("sizes", [dict(hidden_size=10**9), dict(hidden_size=40000, num_layers=10**8),
                                   dict(hidden_size=1, num_layers=10**8)])
def test_sizes_that_cannot_fit_are_refused_before_allocating(sizes):
    started = time.perf_counter()
    with pytest.raises(ValueError, match="GiB"):
        fb.RNN(2, output_size=1, **sizes)
    assert time.perf_counter() - started < 1.0


# -- Params -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["pop", "popitem", "clear", "del"])
def test_params_cannot_lose_entries(route):
    m = fb.RNN(2, 3, 1)
    before = _params(m)
    with pytest.raises(TypeError, match="parameters cannot be"):
        if route == "del":
            del m.params["W"]
        else:
            getattr(m.params, route)(*(["W"] if route == "pop" else []))
    assert set(m.params) == set(before) and _unchanged(m, before)


def test_params_setdefault_and_ior_are_checked():
    m = fb.RNN(2, 3, 1)
    before = _params(m)
    assert m.params.setdefault("W") is m.params["W"]
    with pytest.raises(KeyError, match="unknown parameter"):
        m.params.setdefault("Z", np.zeros(1))
    with pytest.raises(ValueError, match="parameter 'W' must have shape"):
        m.params |= {"U": np.ones((3, 2)), "W": np.zeros((1, 1))}
    assert _unchanged(m, before)  # all or nothing: U was not taken either
    m.params |= {"W": np.eye(3)}
    np.testing.assert_array_equal(m.params["W"], np.eye(3))


def test_assigning_params_checks_the_whole_mapping():
    m = fb.RNN(2, 3, 1)
    before = _params(m)
    with pytest.raises(ValueError, match=r"missing \['U', 'V', 'b', 'c'\]"):
        m.params = {"W": np.zeros((3, 3))}
    with pytest.raises(TypeError, match="mapping"):
        m.params = [("W", np.zeros((3, 3)))]
    bad = dict(before, W=np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        m.params = bad
    assert _unchanged(m, before) and isinstance(m.params, type(fb.RNN(1, 1, 1).params))
    new = {k: v + 1 for k, v in before.items()}
    m.params = new
    new["W"][0, 0] = 99.0  # the model keeps its own copy
    assert m.params["W"][0, 0] == before["W"][0, 0] + 1
    m.predict(np.zeros((2, 1, 2)))


# -- checkpoints ---------------------------------------------------------------------------------------

def test_save_refuses_non_finite_parameters_and_keeps_the_old_file(tmp_path):
    m = fb.RNN(2, 3, 1)
    path = tmp_path / "k.npz"
    m.save(path)
    good = path.read_bytes()
    m.params["W"][0, 0] = np.nan  # in place: only a call or a save sees it
    with pytest.raises(ValueError, match="'W' contains NaN"):
        m.save(path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["k.npz"]
    np.testing.assert_array_equal(fb.load(path).params["U"], m.params["U"])


def test_save_removes_stale_temporaries_only(tmp_path):
    m = fb.RNN(2, 3, 1)
    path = tmp_path / "k.npz"
    stale = tmp_path / ".k.npz.abcd1234.tmp"
    fresh = tmp_path / ".k.npz.zzzz9999.tmp"
    other = tmp_path / ".other.npz.abcd1234.tmp"
    unlike = tmp_path / ".k.npz.notours.tmp"
    for f in (stale, fresh, other, unlike):
        f.write_bytes(b"x" * 10)
    old = time.time() - 3600
    for f in (stale, other, unlike):
        os.utime(f, (old, old))
    with open(fresh, "rb") as held:  # a save in progress holds its temporary's lock
        fbio._lock(held)
        os.utime(fresh, (old, old))
        m.save(path)
    assert not stale.exists()
    assert fresh.exists() and other.exists() and unlike.exists()
    m.save(path)  # unlocked now, and old
    assert not fresh.exists()


_SAVER = textwrap.dedent("""
    import sys
    import fastbptt as fb
    m = fb.RNN(64, 512, 64, cell="lstm")
    print("ready", flush=True)
    while True:
        m.save(sys.argv[1])
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_save_killed_mid_write_leaves_the_old_file_and_a_temporary_the_next_save_removes(
        tmp_path):
    path = tmp_path / "k.npz"
    fb.RNN(64, 512, 64, cell="lstm", seed=5).save(path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE,
                            env=env)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 20
        while not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]:
            assert time.monotonic() < deadline, "no save seen in progress"
            time.sleep(0.001)
        proc.kill()
    finally:
        proc.wait()
    assert proc.returncode == -9
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert left, "the kill came after the save had finished"
    fb.load(path)  # either the old file or a complete new one
    old = time.time() - 3600
    for n in left:
        os.utime(tmp_path / n, (old, old))
    fb.RNN(2, 3, 1).save(path)
    assert sorted(os.listdir(tmp_path)) == ["k.npz"]


def _rewrite(src, dst, **changes):
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        arrays[key.replace("__", "/")] = value
    np.savez(dst, **arrays)


@pytest.mark.parametrize("key, value, match", [
    ("n_threads", 2147483647, "n_threads"), ("n_threads", "4", "n_threads"),
    ("hidden_size", 40000, "parameter"), ("num_layers", 10**8, "layers"),
    ("input_size", -3, "input_size"), ("dtype", "complex128", "dtype"),
    ("bidirectional", "yes", "bidirectional"), ("dropout", 2.0, "dropout"),
    ("cell", ["tanh"], "cell"), ("init", "orthogonal", "init")])
def test_load_checks_config_values_before_building(tmp_path, key, value, match):
    m = fb.RNN(2, 3, 1)
    m.save(tmp_path / "good.npz")
    cfg = m.get_config()
    cfg[key] = value
    _rewrite(tmp_path / "good.npz", tmp_path / "bad.npz", config=fbio._json_bytes(cfg))
    started = time.perf_counter()
    with pytest.raises(ValueError, match=match) as err:
        fb.load(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)
    assert time.perf_counter() - started < 1.0


# -- errors that name what is wrong ----------------------------------------------------------------

def test_unclear_errors_are_clear():
    X = np.zeros((4, 5, 2))
    ce = fb.RNN(2, 3, 3, output="softmax", loss="ce", target="last")
    before = _params(ce)
    with pytest.raises(TypeError, match="Y is None"):
        ce.loss_and_grad(X, None)
    with pytest.raises(TypeError, match="Y is None"):
        ce.evaluate(X, None)
    with pytest.raises(TypeError, match="dtype float64 with values that are not whole"):
        ce.loss_and_grad(X, np.array([0.5, 1, 2, 1, 0]))
    with pytest.raises(ValueError, match="Y could not be read"):
        ce.loss_and_grad(X, [[1, 2], [3]])
    with pytest.raises(ValueError, match=r"\[9223372036854775808, 9223372036854775808\]"):
        ce.loss_and_grad(X, np.full(5, 2**63, dtype=np.uint64))
    with pytest.raises(ValueError, match="non-negative"):
        ce.loss_and_grad(X, np.full((5, 3), -0.5))
    bce = fb.RNN(2, 3, 1, output="sigmoid", loss="bce")
    with pytest.raises(ValueError, match=r"bce targets in Y must lie in \[0, 1\]"):
        bce.loss_and_grad(X, np.full((4, 5, 1), 1.5))
    with pytest.raises(TypeError, match="complex"):
        fb.RNN(2, 3, 1, init=lambda name, shape, rng, h: np.ones(shape) * (1 + 1j))
    assert _unchanged(ce, before)


def test_float_class_ids_that_are_whole_numbers_are_class_ids(rng):
    X = rng.standard_normal((4, 5, 2))
    m = fb.RNN(2, 3, 3, output="softmax", loss="ce", target="last")
    ids = np.array([0, 1, 2, 1, 0])
    loss, grads = m.loss_and_grad(X, ids.astype(float))
    loss_int, grads_int = m.loss_and_grad(X, ids)
    assert loss == loss_int and all(np.array_equal(grads[k], grads_int[k]) for k in grads)


def test_ce_targets_not_summing_to_one_warn_once(monkeypatch):
    from fastbptt import heads

    monkeypatch.setattr(heads, "_WARNED", set())
    X = np.zeros((4, 5, 2))
    m = fb.RNN(2, 3, 3, output="softmax", loss="ce", target="last")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        m.loss_and_grad(X, np.full((5, 3), 0.5))
        m.loss_and_grad(X, np.full((5, 3), 0.5))
        m.loss_and_grad(X, np.full((5, 3), 1 / 3))
    assert [str(w.message)[:31] for w in seen] == ["ce targets in Y do not sum to 1"]


def test_gradcheck_leaves_out_relu_kinks_and_says_so(rng):
    m = fb.RNN(2, 4, 1, cell="relu", seed=0)
    m.params["b"] = np.zeros(4)
    X, Y = rng.standard_normal((6, 3, 2)), rng.standard_normal((6, 3, 1))
    X[0] = 0  # every first pre-activation sits at the kink: b's stencil straddles it
    result = fb.gradcheck(m, X, Y)
    assert result.kinks["b"] == 4 and np.isnan(result["b"])
    assert max(v for k, v in result.items() if k != "b") < 1e-8
    X[0] = 1.0
    result = fb.gradcheck(m, X, Y)
    assert sum(result.kinks.values()) == 0 and max(result.values()) < 1e-8


def test_a_model_pickles_and_copies_with_its_checks(rng):
    import copy
    import pickle

    m = fb.RNN(2, 3, 1, cell="lstm", num_layers=2)
    X = rng.standard_normal((4, 2, 2))
    m.predict(X)  # the scratch pools hold arrays now
    for other in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        np.testing.assert_array_equal(other.predict(X), m.predict(X))
        with pytest.raises(ValueError, match="must have shape"):
            other.params["Wh"] = np.zeros(1)
