"""A property test of the public API (hypothesis): cells, heads, losses, targets, reductions, dtypes,
shapes (0 and 1 included), lengths, initial states, layouts (strided, Fortran, read-only), NaN / Inf,
n_threads and backends. Each drawn call either raises a ValueError or TypeError naming what is
wrong, with every parameter unchanged, or returns what the NumPy backend returns.

The number of examples comes from the hypothesis profile (tests/conftest.py: "ci" by default,
HYPOTHESIS_PROFILE=thorough for more)."""

import re

import numpy as np
from conftest import count_cases
from hypothesis import event, given, settings
from hypothesis import strategies as st

import fastbptt as fb

CELLS = ["tanh", "relu", "step", "lstm", "gru"]
# valid pairs, three times as likely as the two invalid ones at the end
HEADS = [("linear", "mse"), ("sigmoid", "mse"), ("sigmoid", "bce"), ("softmax", "mse"),
         ("softmax", "ce"), (None, "mse")] * 3 + [("linear", "ce"), ("softmax", "bce")]
CONSTRUCTOR_ARGS = ("input_size", "hidden_size", "output", "loss", "n_threads", "bidirectional",
                    "num_layers", "output_size")


def _layout(draw, a):
    """a as drawn: C order, Fortran order, a strided view, or read-only."""
    kind = draw(st.sampled_from(["c", "fortran", "strided", "readonly"]))
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "strided" and a.ndim:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if kind == "readonly":
        a = a.copy()
        a.flags.writeable = False
    return a


def _poison(draw, a, what, broken):
    """Now and then (1 in 20) a NaN or Inf somewhere in a float array (and `what` marked as broken)."""
    if a.size and a.dtype.kind == "f" and draw(st.integers(0, 19)) == 0:
        a = a.copy()
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        broken.add(what)
    return a


def _targets(draw, rng, m, T, B, broken):
    O = m.output_size
    steps = (T,) if m.target == "all" else ()
    ids_shape = steps + (B,)
    shape = steps + (B, O)
    kind = draw(st.sampled_from(["good", "good", "good", "wrong shape", "out of range"]))
    if m.loss == "ce":
        if draw(st.booleans()):
            Y = rng.integers(0, O, size=ids_shape)
            if kind == "out of range":
                Y = Y + O
        else:
            Y = np.eye(O)[rng.integers(0, O, size=ids_shape)]
            if kind == "out of range":
                Y = -Y
    elif m.loss == "bce":
        Y = rng.integers(0, 2, size=shape).astype(float)
        if kind == "out of range":
            Y = Y + 2
    else:
        Y = rng.standard_normal(shape)
        kind = "good" if kind == "out of range" else kind
    if kind == "wrong shape":  # one value per class too many: neither class ids nor per-class
        Y = rng.uniform(size=shape[:-1] + (O + 1,)) / (O + 1)
    if kind != "good":
        broken.add("Y")
    return _poison(draw, Y, "Y", broken)


def _named(message, names):
    return any(re.search(rf"\b{re.escape(n)}\b", message) for n in names)


def _same(a, b, dtype):
    tol = 1e-10 if dtype == np.float64 else 1e-4
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y, dtype) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], dtype) for k in a)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    return a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= tol * scale


@given(st.data())
def test_calls_match_numpy_or_name_what_is_wrong(data):
    draw = data.draw
    count_cases("property test")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cell = draw(st.sampled_from(CELLS))
    output, loss = draw(st.sampled_from(HEADS))
    I, H, O = (draw(st.integers(1, 4)) for _ in range(3))
    config = dict(cell=cell, output=output, loss=loss, output_size=None if output is None else O,
                  reduction=draw(st.sampled_from(["mean", "sum"])),
                  target=draw(st.sampled_from(["all", "last"])),
                  dtype=draw(st.sampled_from([np.float64, np.float32])),
                  num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.integers(0, 3)) == 0,
                  n_threads=draw(st.sampled_from([1, 2, 3] * 4 + [1000, 0])), seed=1)
    backend = draw(st.sampled_from(["cython"] * 4 + ["python"]))
    try:
        m = fb.RNN(I, H, backend=backend, **config)
    except (ValueError, TypeError) as exc:
        assert _named(str(exc), CONSTRUCTOR_ARGS), exc
        event("refused by the constructor")
        return
    ref = fb.RNN(I, H, backend="numpy", **config)
    ref.params.update(m.params)
    before = {k: v.copy() for k, v in m.params.items()}

    broken = set()
    # an empty X now and then
    T = draw(st.integers(1, 5)) if draw(st.integers(0, 19)) else 0
    B = draw(st.integers(1, 4)) if draw(st.integers(0, 19)) else 0
    if T == 0 or B == 0:
        broken.add("X")
    X = _poison(draw, rng.standard_normal((T, B, I)), "X", broken)
    X = _layout(draw, X)
    lengths = None
    if draw(st.booleans()) and B:
        lengths = rng.integers(0 if draw(st.integers(0, 5)) == 0 else min(T, 1), T + 1, size=B)
        if T and lengths.min() < 1:
            broken.add("lengths")
    op = draw(st.sampled_from(["predict", "forward", "loss_and_grad", "evaluate"]))
    args = [X]
    if op in ("loss_and_grad", "evaluate"):
        args.append(_layout(draw, _targets(draw, rng, m, max(T, 1), max(B, 1), broken)))
        if op == "loss_and_grad" and cell == "step":
            broken.add("step")
    kwargs = {} if lengths is None else {"lengths": lengths}
    if B and draw(st.integers(0, 3)) == 0:  # an initial state, now and then of the wrong shape
        k = config["num_layers"] * (2 if config["bidirectional"] else 1)
        shape = (B, H) if k == 1 else (k, B, H)
        if draw(st.integers(0, 4)) == 0:
            shape = shape[:-1] + (H + 1,)
            broken.add("h0")
        kwargs["h0"] = _layout(draw, _poison(draw, rng.standard_normal(shape), "h0", broken))
    X_before = np.array(X, copy=True)

    try:
        got = getattr(m, op)(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        assert broken, f"refused a valid call: {exc!r}"
        assert _named(str(exc), broken | {"class ids", "bce targets", "ce targets"}), exc
        assert all(np.array_equal(m.params[k], v) for k, v in before.items())
        try:
            getattr(ref, op)(*args, **kwargs)
        except type(exc):
            pass
        else:
            raise AssertionError(f"the numpy backend took what {backend} refused: {exc!r}")
        event(f"refused: {sorted(broken)}")
        return
    assert not broken, f"took a call with broken {broken}"
    event(f"{backend} equal to numpy: {op}")
    expected = getattr(ref, op)(*args, **kwargs)
    assert _same(got, expected, m.dtype), f"{op}: {backend} and numpy differ"
    assert all(np.array_equal(m.params[k], v) for k, v in before.items())
    np.testing.assert_array_equal(X, X_before)


@settings(max_examples=max(10, settings().max_examples // 4))  # a quarter of the profile's
@given(data=st.data())
def test_a_saved_model_loads_as_itself(data, tmp_path_factory):
    draw = data.draw
    count_cases("property test")
    cell = draw(st.sampled_from(CELLS))
    output, loss = draw(st.sampled_from(HEADS[:6]))
    bidirectional = output is not None and draw(st.booleans())
    m = fb.RNN(draw(st.integers(1, 4)), draw(st.integers(1, 4)),
               None if output is None else draw(st.integers(1, 4)), cell=cell, output=output,
               loss=loss, num_layers=draw(st.integers(1, 3)), bidirectional=bidirectional,
               dtype=draw(st.sampled_from([np.float64, np.float32])),
               n_threads=draw(st.integers(1, 256)), seed=draw(st.integers(0, 2**32 - 1)))
    path = tmp_path_factory.mktemp("roundtrip") / "m.npz"
    m.save(path)
    loaded = fb.load(path)
    assert loaded.get_config() == m.get_config()
    assert all(np.array_equal(loaded.params[k], v) and loaded.params[k].dtype == v.dtype
               for k, v in m.params.items())
    X = np.random.default_rng(0).standard_normal((3, 2, m.input_size))
    np.testing.assert_array_equal(loaded.predict(X), m.predict(X))
