"""Seed 002's hand-set adder: the corrected weights add exactly, the report's do not."""

import itertools

import numpy as np
import pytest

import fastbptt as fb
from fastbptt.tasks import (
    binary_addition,
    bit_accuracy,
    decode_bits,
    hand_set_adder,
    hand_set_adder_weights,
    sample_pairs,
    sequence_accuracy,
)

BACKENDS = ["numpy"] + (["cython"] if fb.HAVE_CYTHON else [])


def _grid(n_bits):
    """Every operand pair, a major and b minor."""
    values = np.arange(2**n_bits)
    return np.stack(np.meshgrid(values, values, indexing="ij"), axis=-1).reshape(-1, 2)


@pytest.fixture(scope="module")
def all_8bit():
    return binary_addition(None, 8, pairs=_grid(8))


def _sums(model, X):
    return decode_bits(model.predict(X) > 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_corrected_adder_is_exact_on_every_8bit_pair(all_8bit, backend, dtype):
    X, Y, a, b = all_8bit
    assert X.shape == (9, 65536, 2)
    model = hand_set_adder(dtype=dtype, backend=backend)
    assert model.backend == backend and model.cell_name == "step"
    Y_hat = model.predict(X.astype(dtype))
    assert bit_accuracy(Y_hat, Y, threshold=0.0) == 1.0
    assert sequence_accuracy(Y_hat, Y, threshold=0.0) == 1.0
    np.testing.assert_array_equal(decode_bits(Y_hat > 0), a + b)
    np.testing.assert_array_equal(model.predict_classes(X), Y.astype(np.int64))


def test_corrected_adder_pure_python_backend_agrees(seed):
    X, _, a, b = binary_addition(300, 8, seed)
    np.testing.assert_array_equal(_sums(hand_set_adder(backend="python"), X), a + b)


@pytest.mark.parametrize("n_bits", [1, 2, 31, 62])
def test_corrected_adder_is_exact_at_any_width(n_bits, seed):
    top = 2**n_bits - 1
    pairs = np.concatenate(
        [[[0, 0], [top, top], [top, 1], [0, top]], sample_pairs(500, n_bits, seed)]
    )
    X, _, a, b = binary_addition(None, n_bits, pairs=pairs)
    expected = [int(p) + int(q) for p, q in pairs]
    assert _sums(hand_set_adder(), X).tolist() == expected


def test_report_weights_fail_and_show_where(all_8bit):
    X, Y, a, b = all_8bit
    model = hand_set_adder(corrected=False)
    np.testing.assert_array_equal(model.params["W"], np.ones((3, 3)))
    got = _sums(model, X)
    wrong = np.flatnonzero(got != a + b)
    assert wrong.size > 0.99 * len(a), f"only {wrong.size} of {len(a)} sums are wrong"
    first = int(wrong[0])
    # By hand: 0 + 1 turns on h1 alone at step 0; with W all ones h1 feeds itself back as if it were
    # a carry, so h1 stays on and every later output bit is 1: 0 + 1 comes out as 2**9 - 1 = 511.
    assert (int(a[first]), int(b[first])) == (0, 1), f"first failing pair {a[first]} + {b[first]}"
    assert int(got[first]) == 511
    # Single steps are still right (nothing has been fed back yet): 1-bit sums without a carry out.
    assert np.all((got & 1) == ((a + b) & 1))


def test_report_expanded_equations_fail_too(all_8bit):
    # The report's expanded h_i(t) = x1 + x2 + h_i(t-1) + b_i means W = identity: wrong as well.
    X, _, a, b = all_8bit
    model = hand_set_adder(corrected=False)
    model.params["W"] = np.eye(3)
    assert np.any(_sums(model, X) != a + b)
    assert _sums(model, X[:, 1:2])[0] == 511  # the pair (0, 1) again


def _exact_recurrent_weights(candidates, n_bits):
    """Which of the (K, 3, 3) W make the report's other weights add every n_bits pair exactly.

    A NumPy simulation of the step network, independent of fastbptt's kernels.
    """
    p = hand_set_adder_weights()
    X, Y, _, _ = binary_addition(None, n_bits, pairs=_grid(n_bits))
    drive = X @ p["U"].T + p["b"]  # (T, P, 3), the same for every W
    K, P = len(candidates), X.shape[1]
    h = np.zeros((K, P, 3))
    exact = np.ones(K, dtype=bool)
    for t in range(X.shape[0]):
        h = (drive[t] + h @ np.transpose(candidates, (0, 2, 1)) > 0).astype(float)
        bit = (h @ p["V"][0] + p["c"][0]) > 0
        exact &= np.all(bit == (Y[t, :, 0] == 1), axis=1)
    return exact


def test_recurrent_weight_corrections_enumerated():
    # Every W with entries in {-1, 0, 1}, the report's U, b, V and c kept: exactly two add all 4-bit
    # pairs. The shipped one feeds back the carry only (six entries of the report's W changed); the
    # other also lets unit 1 see h3, which it tolerates by saturating (five changes, the fewest).
    candidates = np.array(list(itertools.product((-1.0, 0.0, 1.0), repeat=9))).reshape(-1, 3, 3)
    exact = candidates[_exact_recurrent_weights(candidates, 4)]
    report = hand_set_adder_weights(corrected=False)
    n_changed = (exact != report["W"]).sum(axis=(1, 2))
    by_changes = dict(zip(n_changed.tolist(), exact, strict=True))
    assert sorted(by_changes) == [5, 6], f"exact matrices: {exact.tolist()}"
    np.testing.assert_array_equal(by_changes[6], hand_set_adder_weights()["W"])
    np.testing.assert_array_equal(by_changes[6], [[0, 1, 0], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(by_changes[5], [[0, 1, 1], [0, 1, 0], [0, 1, 0]])
    for name in ("U", "b", "V", "c"):
        np.testing.assert_array_equal(hand_set_adder_weights()[name], report[name])


def test_five_change_correction_is_exact_on_8bit_pairs_too(all_8bit):
    X, _, a, b = all_8bit
    model = hand_set_adder()
    model.params["W"] = [[0, 1, 1], [0, 1, 0], [0, 1, 0]]
    np.testing.assert_array_equal(_sums(model, X), a + b)


def test_weights_are_fresh_copies():
    first = hand_set_adder_weights()
    first["W"][:] = 7.0
    assert hand_set_adder_weights()["W"].max() == 1.0
    model = hand_set_adder()
    assert model.params["U"].shape == (3, 2) and model.params["V"].shape == (1, 3)
