"""fastbptt.sample: stepwise generation carrying the state, temperatures, and examples/char_lm.py."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastbptt as fb
from fastbptt.sampling import _draw

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "char_lm.py"

MODELS = [dict(cell="tanh"), dict(cell="gru"), dict(cell="lstm", num_layers=2)]


def _model(**kw):
    rng = np.random.default_rng(3)
    m = fb.RNN(6, 10, 6, output="softmax", loss="ce", seed=1, **kw)
    for name, value in m.params.items():  # larger weights than the initialiser's: peaked outputs
        m.params[name] = 1.5 * rng.normal(size=value.shape)
    return m


@pytest.mark.parametrize("kw", MODELS, ids=lambda kw: kw["cell"])
def test_greedy_steps_match_the_whole_sequence_run(kw):
    m = _model(**kw)
    prime = [0, 3, 5, 1]
    drawn, state = fb.sample(m, prime, 12, temperature=0, return_state=True)
    # the same symbols run as one sequence: each drawn symbol is the arg-max after the ones before
    full = np.concatenate([prime, drawn])
    probs, state_full = m.forward(np.eye(6)[full])
    np.testing.assert_array_equal(drawn, probs[len(prime) - 1 : -1].argmax(axis=1))
    for got, want in zip(state, state_full, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kw", MODELS, ids=lambda kw: kw["cell"])
def test_continuing_from_the_returned_state(kw):
    m = _model(**kw)
    whole = fb.sample(m, [2], 10, temperature=1.0, seed=7)
    head, state = fb.sample(m, [2], 4, temperature=1.0, seed=7, return_state=True)
    assert np.array_equal(head, whole[:4])
    # the 5th symbol is drawn from the state after the 4th; feed the 4th again from the state before
    _, before = fb.sample(m, [2], 3, temperature=1.0, seed=7, return_state=True)
    _, after = m.forward(np.eye(6)[[head[3]]], h0=before[0],
                             c0=before[1] if len(before) > 1 else None)
    for got, want in zip(state, after, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_temperature_reshapes_the_distribution():
    p = np.array([0.5, 0.25, 0.25, 0.0])
    rng = np.random.default_rng(0)
    n = 20000
    for temperature, expected in ((1.0, p), (0.5, [2 / 3, 1 / 6, 1 / 6, 0.0]),
                                  (2.0, np.sqrt(p) / np.sqrt(p).sum())):
        counts = np.bincount([_draw(p, temperature, rng) for _ in range(n)], minlength=4)
        np.testing.assert_allclose(counts / n, expected, atol=0.012)
        assert counts[3] == 0  # a zero probability is never drawn
    assert _draw(p, 0.0, rng) == 0


def test_seed_makes_draws_reproducible():
    m = _model(cell="tanh")
    a = fb.sample(m, [1, 2], 20, seed=5)
    assert np.array_equal(a, fb.sample(m, [1, 2], 20, seed=5))
    assert not np.array_equal(a, fb.sample(m, [1, 2], 20, seed=6))
    assert fb.sample(m, [1], 0).shape == (0,)


def test_bad_arguments():
    m = _model(cell="tanh")
    with pytest.raises(ValueError, match=r"prime\[1\] = 6"):
        fb.sample(m, [0, 6], 3)
    with pytest.raises(TypeError, match="prime"):
        fb.sample(m, [0.5], 3)
    with pytest.raises(ValueError, match="prime"):
        fb.sample(m, [], 3)
    with pytest.raises(ValueError, match="temperature"):
        fb.sample(m, [0], 3, temperature=-1)
    with pytest.raises(ValueError, match="steps"):
        fb.sample(m, [0], -1)
    with pytest.raises(ValueError, match="softmax"):
        fb.sample(fb.RNN(6, 4, 6), [0], 3)
    with pytest.raises(ValueError, match="bidirectional"):
        fb.sample(fb.RNN(6, 4, 6, output="softmax", loss="ce", bidirectional=True), [0], 3)
    with pytest.raises(ValueError, match="input_size"):
        fb.sample(fb.RNN(5, 4, 6, output="softmax", loss="ce"), [0], 3)


def test_char_lm_example_trains_and_samples(capsys):
    spec = importlib.util.spec_from_file_location("char_lm", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    loss = example.main(["--epochs", "4", "--hidden", "24", "--cell", "gru", "--length", "60",
                         "--prime", "fast"])
    out = capsys.readouterr().out
    first, second = out.splitlines()[1].split("per character ")[1].split(" (")[0].split(" -> ")
    assert float(second) == pytest.approx(loss, abs=1e-3) and loss < float(first) - 0.5
    written = out.split("---\n", 2)[-1].rstrip("\n")
    assert written.startswith("fast") and len(written) == 4 + 60
