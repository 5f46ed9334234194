"""Optimizers against steps written out by hand, schedules, clipping, non-finite steps refused."""

import math

import numpy as np
import pytest

import fastbptt as fb
from fastbptt import optim

DTYPES = [np.float64, np.float32]
TOL = {np.float64: 1e-15, np.float32: 1e-6}


def _params(dtype):
    return {"a": np.array([1.0, -2.0], dtype=dtype), "b": np.array([[0.5]], dtype=dtype)}


G1 = {"a": np.array([1.0, 2.0]), "b": np.array([[-0.5]])}
G2 = {"a": np.array([0.5, -1.0]), "b": np.array([[0.25]])}


def _grads(g, dtype):
    return {k: v.astype(dtype) for k, v in g.items()}


def _check(params, expected, dtype):
    for name, values in expected.items():
        got = params[name]
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got.ravel(), values, rtol=TOL[dtype], atol=TOL[dtype],
                                   err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_step_by_hand(dtype):
    p = _params(dtype)
    opt = optim.SGD(lr=0.1)
    opt.step(p, _grads(G1, dtype))
    _check(p, {"a": [1.0 - 0.1 * 1.0, -2.0 - 0.1 * 2.0], "b": [0.5 + 0.1 * 0.5]}, dtype)
    opt.step(p, _grads(G2, dtype))
    _check(p, {"a": [0.9 - 0.05, -2.2 + 0.1], "b": [0.55 - 0.025]}, dtype)
    assert opt.t == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_momentum_step_by_hand(dtype):
    p = _params(dtype)
    opt = optim.Momentum(lr=0.1, momentum=0.9)
    opt.step(p, _grads(G1, dtype))  # v1 = g1
    _check(p, {"a": [0.9, -2.2], "b": [0.55]}, dtype)
    opt.step(p, _grads(G2, dtype))  # v2 = 0.9 g1 + g2 = [1.4, 0.8], [[-0.2]]
    _check(p, {"a": [0.9 - 0.14, -2.2 - 0.08], "b": [0.55 + 0.02]}, dtype)
    np.testing.assert_allclose(opt.state["a"]["velocity"], [1.4, 0.8], rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_nesterov_step_by_hand(dtype):
    p = _params(dtype)
    opt = optim.make_optimizer("nesterov", lr=0.1)
    assert opt.momentum == 0.9 and opt.nesterov
    opt.step(p, _grads(G1, dtype))  # v1 = g1; direction g1 + 0.9 v1 = 1.9 g1
    _check(p, {"a": [1.0 - 0.19, -2.0 - 0.38], "b": [0.5 + 0.095]}, dtype)
    opt.step(p, _grads(G2, dtype))  # v2 = [1.4, 0.8], [[-0.2]]; direction g2 + 0.9 v2
    _check(p, {"a": [0.81 - 0.1 * 1.76, -2.38 - 0.1 * -0.28], "b": [0.595 - 0.1 * 0.07]}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_step_by_hand(dtype):
    p = {"w": np.array([1.0, 3.0], dtype=dtype)}
    opt = optim.Adagrad(lr=0.1)
    opt.step(p, {"w": np.array([2.0, 0.0], dtype=dtype)})  # m = [4, 0]
    w1 = [1.0 - 0.1 * 2.0 / math.sqrt(4.0 + 1e-8), 3.0]
    _check(p, {"w": w1}, dtype)
    opt.step(p, {"w": np.array([1.0, -3.0], dtype=dtype)})  # m = [5, 9]
    w2 = [w1[0] - 0.1 * 1.0 / math.sqrt(5.0 + 1e-8), 3.0 + 0.1 * 3.0 / math.sqrt(9.0 + 1e-8)]
    _check(p, {"w": w2}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step_by_hand(dtype):
    p = {"w": np.array([1.0, -1.0], dtype=dtype)}
    opt = optim.Adam(lr=0.01)
    grads = [[0.5, -2.0], [-1.0, 1.0], [0.25, 0.0]]
    expected = [1.0, -1.0]
    m = [0.0, 0.0]
    v = [0.0, 0.0]
    for t, g in enumerate(grads, start=1):
        opt.step(p, {"w": np.array(g, dtype=dtype)})
        for i in range(2):
            m[i] = 0.9 * m[i] + 0.1 * g[i]
            v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
            m_hat = m[i] / (1 - 0.9 ** t)
            v_hat = v[i] / (1 - 0.999 ** t)
            expected[i] -= 0.01 * m_hat / (math.sqrt(v_hat) + 1e-8)
        _check(p, {"w": expected}, dtype)
    # the first step of Adam moves every weight by about lr, whatever the gradient's scale
    q = {"w": np.array([0.0, 0.0])}
    optim.Adam(lr=0.01).step(q, {"w": np.array([1e-3, -1e3])})
    np.testing.assert_allclose(q["w"], [-0.01, 0.01], rtol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop_step_by_hand(dtype):
    p = {"w": np.array([1.0, -1.0], dtype=dtype)}
    opt = optim.RMSprop(lr=0.01, alpha=0.9, eps=1e-8)
    expected, v = [1.0, -1.0], [0.0, 0.0]
    for g in ([0.5, -2.0], [-1.0, 1.0], [0.25, 0.0]):
        opt.step(p, {"w": np.array(g, dtype=dtype)})
        for i in range(2):
            v[i] = 0.9 * v[i] + 0.1 * g[i] * g[i]
            expected[i] -= 0.01 * g[i] / (math.sqrt(v[i]) + 1e-8)
        _check(p, {"w": expected}, dtype)
    assert optim.make_optimizer("rmsprop").lr == 0.01


# -- weight decay ----------------------------------------------------------------------------------

WD = 0.1


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_weight_decay_by_hand(dtype):
    p = _params(dtype)
    optim.SGD(lr=0.1, weight_decay=WD).step(p, _grads(G1, dtype))
    # g + wd p: a [1 + 0.1, 2 - 0.2], b [-0.5 + 0.05]
    _check(p, {"a": [1.0 - 0.1 * 1.1, -2.0 - 0.1 * 1.8], "b": [0.5 + 0.1 * 0.45]}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_weight_decay_by_hand(dtype, nesterov):
    p = {"w": np.array([2.0], dtype=dtype)}
    opt = optim.Momentum(lr=0.1, momentum=0.5, nesterov=nesterov, weight_decay=WD)
    w, v = 2.0, 0.0
    for g in (1.0, -3.0):
        opt.step(p, {"w": np.array([g], dtype=dtype)})
        d = g + WD * w  # the decay goes into the velocity
        v = 0.5 * v + d
        w -= 0.1 * ((d + 0.5 * v) if nesterov else v)
        _check(p, {"w": [w]}, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_weight_decay_is_decoupled(dtype, name):
    p = {"w": np.array([3.0, -1.0], dtype=dtype)}
    opt = optim.make_optimizer(name, lr=0.01, weight_decay=WD)
    assert opt.weight_decay == WD
    w, m, v = [3.0, -1.0], [0.0, 0.0], [0.0, 0.0]
    for t, g in enumerate(([0.5, -2.0], [-1.0, 1.0]), start=1):
        opt.step(p, {"w": np.array(g, dtype=dtype)})
        for i in range(2):
            m[i] = 0.9 * m[i] + 0.1 * g[i]  # the moments see the raw gradient, not wd p
            v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
            step = (m[i] / (1 - 0.9 ** t)) / (math.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
            w[i] = w[i] - 0.01 * WD * w[i] - 0.01 * step
        _check(p, {"w": w}, dtype)
    np.testing.assert_allclose(opt.state["w"]["m"], m, rtol=TOL[dtype])


def test_adamw_defaults_and_zero_gradient_shrinks_weights():
    assert optim.AdamW().weight_decay == 0.01 and optim.Adam().weight_decay == 0.0
    p = {"w": np.array([2.0, -4.0])}
    optim.AdamW(lr=0.1, weight_decay=0.5).step(p, {"w": np.zeros(2)})
    np.testing.assert_allclose(p["w"], [2.0 * 0.95, -4.0 * 0.95], rtol=1e-15)


def test_rmsprop_weight_decay_by_hand():
    p = {"w": np.array([2.0])}
    optim.RMSprop(lr=0.01, alpha=0.9, weight_decay=WD).step(p, {"w": np.array([1.0])})
    d = 1.0 + WD * 2.0
    np.testing.assert_allclose(p["w"], [2.0 - 0.01 * d / (math.sqrt(0.1 * d * d) + 1e-8)],
                               rtol=1e-15)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_fit_passes_weight_decay(name):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(5, 3, 2)), rng.normal(size=(5, 3, 1))
    m = fb.RNN(2, 4, 1, seed=0, backend="numpy")
    by_hand = {k: v.copy() for k, v in m.params.items()}
    _, grads = m.loss_and_grad(X, Y)
    optim.make_optimizer(name, lr=0.05, weight_decay=0.2).step(by_hand, grads)
    hist = m.fit(X, Y, iterations=1, optimizer=name, lr=0.05, weight_decay=0.2, progress=False)
    assert hist.optimizer.weight_decay == 0.2
    for k, v in by_hand.items():
        np.testing.assert_allclose(m.params[k], v, rtol=1e-13, atol=1e-15, err_msg=k)
    m2 = fb.RNN(2, 4, 1, seed=0, backend="numpy")  # an instance carries its own decay
    m2.fit(X, Y, iterations=1, optimizer=optim.make_optimizer(name, lr=0.05, weight_decay=0.2),
           progress=False)
    for k, v in by_hand.items():
        np.testing.assert_allclose(m2.params[k], v, rtol=1e-13, atol=1e-15, err_msg=k)


def test_schedule_sets_each_steps_rate():
    seen = []

    def schedule(step, lr):
        seen.append(step)
        return lr / (step + 1)

    p = {"w": np.array([0.0])}
    opt = optim.SGD(lr=1.0, schedule=schedule)
    used = [opt.step(p, {"w": np.array([1.0])}) for _ in range(3)]
    assert seen == [0, 1, 2]
    assert used == [1.0, 0.5, 1.0 / 3.0]
    np.testing.assert_allclose(p["w"], [-(1.0 + 0.5 + 1.0 / 3.0)], rtol=1e-15)


def test_builtin_schedules():
    sd = optim.step_decay(0.5, every=2)
    assert [sd(s, 1.0) for s in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    it = optim.inverse_time_decay(1.0)
    assert [it(s, 2.0) for s in range(3)] == [2.0, 1.0, 2.0 / 3.0]
    with pytest.raises(ValueError, match="every"):
        optim.step_decay(0.5, every=0)


def test_bad_schedule_value_refused():
    opt = optim.SGD(lr=0.1, schedule=lambda step, lr: float("nan"))
    p = {"w": np.array([1.0])}
    with pytest.raises(ValueError, match="schedule"):
        opt.step(p, {"w": np.array([1.0])})
    assert p["w"][0] == 1.0


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_non_finite_step_changes_nothing(name):
    p = {"w": np.array([1.0, 2.0]), "u": np.array([3.0])}
    opt = optim.make_optimizer(name, lr=1e300)
    opt.step(p, {"w": np.array([1e-300, 0.0]), "u": np.array([0.0])})  # a finite first step
    before = {k: v.copy() for k, v in p.items()}
    state = {k: {s: a.copy() for s, a in slots.items()} for k, slots in opt.state.items()}
    with pytest.raises(FloatingPointError, match="'w'"):
        opt.step(p, {"w": np.array([1e300, 0.0]), "u": np.array([1.0])})
    for k in p:
        np.testing.assert_array_equal(p[k], before[k])
    assert opt.t == 1
    for k, slots in state.items():
        for s, a in slots.items():
            np.testing.assert_array_equal(opt.state[k][s], a)


def test_step_on_model_params_is_all_or_nothing():
    m = fb.RNN(2, 3, 1, seed=0)
    before = {k: v.copy() for k, v in m.params.items()}
    grads = {k: np.ones_like(v) for k, v in m.params.items()}
    grads["c"] = np.array([np.inf])
    with pytest.raises(FloatingPointError, match="'c'"):
        optim.SGD(lr=0.1).step(m.params, grads)
    for k in before:
        np.testing.assert_array_equal(m.params[k], before[k])


def test_grad_keys_and_shapes():
    p = {"w": np.zeros(2)}
    opt = optim.SGD()
    with pytest.raises(ValueError, match="no gradient for parameter 'w'"):
        opt.step(p, {"v": np.zeros(2)})
    with pytest.raises(ValueError, match="shape"):
        opt.step(p, {"w": np.zeros(3)})
    opt.step(p, {"w": np.ones(2), "h0": np.ones(5)})  # extra keys such as h0 are ignored
    np.testing.assert_array_equal(p["w"], [-0.1, -0.1])


def test_make_optimizer_choices_and_errors():
    assert isinstance(optim.make_optimizer("SGD"), optim.SGD)
    assert optim.make_optimizer("adam").lr == 1e-3
    assert optim.make_optimizer("adagrad", lr=0.5).lr == 0.5
    inst = optim.Adam()
    assert optim.make_optimizer(inst) is inst
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        optim.make_optimizer("lbfgs")
    with pytest.raises(ValueError, match="weight_decay"):
        optim.make_optimizer(inst, weight_decay=0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.SGD(weight_decay=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        optim.RMSprop(alpha=1.0)
    with pytest.raises(ValueError, match="instance"):
        optim.make_optimizer(inst, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(lr=-1.0)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(lr=float("nan"))
    with pytest.raises(TypeError, match="lr"):
        optim.SGD(lr="fast")
    with pytest.raises(ValueError, match="momentum"):
        optim.Momentum(momentum=1.0)
    with pytest.raises(ValueError, match="beta2"):
        optim.Adam(beta2=1.5)
    with pytest.raises(TypeError, match="schedule"):
        optim.SGD(schedule=0.5)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
                                  "adamw"])
def test_config_and_state_round_trip(name):
    opt = optim.make_optimizer(name, lr=0.05, weight_decay=0.125)
    p = {"w": np.array([1.0, 2.0])}
    for g in ([0.1, -0.2], [0.3, 0.4]):
        opt.step(p, {"w": np.array(g)})
    clone = optim.optimizer_from_config(opt.get_config())
    clone.load_state_arrays(opt.state_arrays(), opt.t)
    assert type(clone) is type(opt) and clone.get_config() == opt.get_config()
    q = {"w": p["w"].copy()}
    opt.step(p, {"w": np.array([0.5, 0.5])})
    clone.step(q, {"w": np.array([0.5, 0.5])})
    np.testing.assert_array_equal(p["w"], q["w"])
    with pytest.raises(ValueError, match="slot"):
        clone.load_state_arrays({"w/bogus": np.zeros(2)}, 1)


# -- clipping --------------------------------------------------------------------------------------

def test_clip_by_value():
    g = {"a": np.array([-3.0, 0.5, 2.0]), "b": np.array([[1.5]])}
    out = optim.clip_by_value(g, 1.0)
    np.testing.assert_array_equal(out["a"], [-1.0, 0.5, 1.0])
    np.testing.assert_array_equal(out["b"], [[1.0]])
    np.testing.assert_array_equal(g["a"], [-3.0, 0.5, 2.0])  # inputs untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_by_norm(dtype):
    g = {"a": np.array([3.0], dtype=dtype), "b": np.array([[4.0]], dtype=dtype)}  # norm 5
    assert optim.global_norm(g) == 5.0
    out = optim.clip_by_norm(g, 1.0)
    np.testing.assert_allclose(out["a"], [0.6], rtol=TOL[dtype])
    np.testing.assert_allclose(out["b"], [[0.8]], rtol=TOL[dtype])
    assert out["a"].dtype == dtype
    assert optim.global_norm(out) == pytest.approx(1.0, rel=10 * TOL[dtype])
    same = optim.clip_by_norm(g, 5.0)  # at or below the threshold: unchanged
    np.testing.assert_array_equal(same["a"], g["a"])


def test_global_norm_without_overflow_and_with_nan():
    g = {"a": np.array([1e200, 1e200])}
    assert optim.global_norm(g) == pytest.approx(math.sqrt(2) * 1e200, rel=1e-15)
    assert optim.global_norm({"a": np.zeros(3)}) == 0.0
    assert math.isnan(optim.global_norm({"a": np.array([1.0, np.nan])}))
    assert math.isinf(optim.global_norm({"a": np.array([1.0, np.inf])}))


@pytest.mark.parametrize("sizes", [(1,), (7, 9), (16, 256, 16, 1), (300, 5000, 1)], ids=str)
def test_global_norm_compiled_gives_the_bits_of_numpy(sizes, rng, monkeypatch):
    """The compiled reductions (fastbptt._build.norm_parts) take the NumPy lines' operations in
    their order: float32 and float64 gradients, mixed, with entries over many magnitudes; non-
    finite and empty ones as NumPy has them; other arrays left to NumPy."""
    from fastbptt._build import norm_parts  # noqa: F401 (the compiled side must be there)

    cases = []
    for dtypes in ([np.float64], [np.float32], [np.float32, np.float64]):
        grads = {f"g{i}": (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(
            dtypes[i % len(dtypes)]) for i, n in enumerate(sizes)}
        cases.append(grads)
    cases += [{"a": np.array([1.0, np.nan, np.inf])}, {"a": np.array([-np.inf, 2.0])},
              {"a": np.zeros(5), "b": np.zeros(0)}, {"a": -np.zeros(3)},
              {"a": np.ones((4, 3))[:, ::2], "b": np.ones(3)},  # not contiguous
              {"a": np.arange(4)}]  # integers
    compiled = [optim.global_norm(g) for g in cases]
    monkeypatch.setattr(optim, "_compiled_norm_parts", None)
    numpy_side = [optim.global_norm(g) for g in cases]
    for got, want in zip(compiled, numpy_side, strict=True):
        assert (math.isnan(got) and math.isnan(want)) or \
            np.float64(got).tobytes() == np.float64(want).tobytes()


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_updates_give_the_bits_of_numpy(name, dtype, rng, monkeypatch):
    """SGD's and Adam's compiled passes (fastbptt._build.sgd_step / adam_step) round as their
    NumPy lines do, step after step; state they do not take (another dtype) is left to NumPy."""
    from fastbptt._build import adam_step, sgd_step  # noqa: F401 (the compiled side must be there)

    def run(compiled):
        with monkeypatch.context() as patch:
            if not compiled:
                patch.setattr(optim, "_compiled_sgd", None)
                patch.setattr(optim, "_compiled_adam", None)
            params = {"W": (rng_w.standard_normal((7, 5)) * 3).astype(dtype),
                      "b": np.zeros(5, dtype)}
            opt = optim.make_optimizer(name, lr=0.05)
            for _ in range(6):
                grads = {k: (rng_g.standard_normal(v.shape) * 10.0 ** rng_g.integers(-8, 3, v.shape)
                             ).astype(dtype) for k, v in params.items()}
                opt.step(params, grads)
            return params, opt.state_arrays()

    results = []
    for compiled in (True, False):
        rng_w, rng_g = np.random.default_rng(1), np.random.default_rng(2)
        results.append(run(compiled))
    (p1, s1), (p2, s2) = results
    for k in p1:
        assert p1[k].dtype == dtype and p1[k].tobytes() == p2[k].tobytes(), k
    for k in s1:
        assert s1[k].tobytes() == s2[k].tobytes(), k


def test_adam_state_of_another_dtype_is_left_to_numpy(monkeypatch):
    def step():
        p = {"W": np.ones(3, np.float32)}
        opt = optim.Adam(lr=0.1)
        opt.load_state_arrays({"W/m": np.full(3, 0.5), "W/v": np.full(3, 0.25)}, t=1)  # float64
        opt.step(p, {"W": np.full(3, 2.0, np.float32)})
        return p["W"], opt.state["W"]["m"]

    compiled = step()
    monkeypatch.setattr(optim, "_compiled_adam", None)
    for a, b in zip(compiled, step(), strict=True):
        assert a.dtype == b.dtype == np.float64 and a.tobytes() == b.tobytes()  # promoted
