"""Binary addition as a sequence task (seeds 000, 001 and 002).

At step t the network reads bit t of both operands (least-significant bit first) and must emit bit t
of their sum, so the only thing it has to remember between steps is the carry.

Seeds 000 and 001 add two 7-bit numbers (0..127) and read 8 output bits: that is
`binary_addition(n, n_bits=7)` (carry_out=True gives T = 8, the last step reading zeros and emitting
the carry-out). Seed 002's hand-set adder runs on the same data; see `fastbptt.tasks.adder`.

Pairs are (B, 2) int64 arrays of operands (a, b). `split_pairs` and `train_test_pairs` hold out
pairs that training never sees; the order matters ((3, 5) and (5, 3) are different pairs, since the
operands arrive on different input channels).
"""

from __future__ import annotations

import numpy as np

from ._common import SeedLike, as_rng, decode_predictions, float_dtype, positive_int

__all__ = [
    "MAX_BITS",
    "MAX_GRID_BITS",
    "binary_addition",
    "bit_accuracy",
    "decode_bits",
    "encode_bits",
    "sample_pairs",
    "sequence_accuracy",
    "split_pairs",
    "train_test_pairs",
]

# a + b < 2**63 must fit in int64.
MAX_BITS = 62
# The full grid holds 4**n_bits pairs: 16.7 million at 12 bits is the most we enumerate.
MAX_GRID_BITS = 12

_PAIR_RECORD = np.dtype([("a", np.int64), ("b", np.int64)])


def _check_bits(n_bits, limit: int = MAX_BITS) -> int:
    n_bits = positive_int("n_bits", n_bits)
    if n_bits > limit:
        raise ValueError(f"n_bits must be at most {limit}, got {n_bits}")
    return n_bits


def _check_pairs(pairs, n_bits: int) -> np.ndarray:
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (B, 2), got {pairs.shape}")
    if pairs.dtype.kind not in "iu":
        raise ValueError(f"pairs must be integers, got dtype {pairs.dtype}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= 2**n_bits):
        raise ValueError(f"pairs must lie in [0, 2**{n_bits}) for n_bits={n_bits}")
    return pairs.astype(np.int64)


def _pair_records(pairs: np.ndarray) -> np.ndarray:
    """View (B, 2) int64 pairs as (B,) records so that np.isin compares whole pairs."""
    return np.ascontiguousarray(pairs, dtype=np.int64).view(_PAIR_RECORD).reshape(-1)


def encode_bits(values, n_steps: int) -> np.ndarray:
    """Bits of non-negative integers, least-significant first: (n_steps, B) int64 of 0/1.

    Bits above the 63 an int64 holds are zero; `n_steps` may exceed the value's width (leading
    zeros).
    """
    values = np.asarray(values, dtype=np.int64)
    if values.size and values.min() < 0:
        raise ValueError("encode_bits takes non-negative integers")
    shifts = np.arange(min(n_steps, 63), dtype=np.int64)
    bits = np.zeros((n_steps,) + values.shape, dtype=np.int64)
    bits[: shifts.size] = (values[None, ...] >> shifts.reshape((-1,) + (1,) * values.ndim)) & 1
    return bits


def decode_bits(bits) -> np.ndarray:
    """Integers from bits, least-significant first: (T, B) or (T, B, 1) of 0/1 -> (B,) int64.

    T may be at most 63 (the width of a non-negative int64).
    """
    bits = np.asarray(bits)
    if bits.ndim == 3 and bits.shape[2] == 1:
        bits = bits[:, :, 0]
    if bits.ndim != 2:
        raise ValueError(f"bits must have shape (T, B) or (T, B, 1), got {bits.shape}")
    if bits.shape[0] > 63:
        raise ValueError(f"at most 63 bits fit in an int64, got T={bits.shape[0]}")
    as_int = np.rint(bits).astype(np.int64) if bits.dtype.kind == "f" else bits.astype(np.int64)
    if not np.all((as_int == 0) | (as_int == 1)) or not np.array_equal(as_int, bits):
        raise ValueError("bits must be 0 or 1; threshold model outputs first")
    shifts = np.arange(bits.shape[0], dtype=np.int64)[:, None]
    return np.sum(as_int << shifts, axis=0, dtype=np.int64)


def binary_addition(
    n_samples: int | None,
    n_bits: int = 8,
    seed: SeedLike = 0,
    *,
    dtype=np.float64,
    carry_out: bool = True,
    pairs=None,
    targets: str = "binary",
):
    """Binary addition sequences, time-major.

    Parameters
    ----------
    n_samples : number of sequences B; may be None when `pairs` is given (then B = len(pairs)).
    n_bits : operand width, 1..62. Operands are uniform in [0, 2**n_bits) unless `pairs` is given.
    seed : int, None or numpy.random.Generator; the same int gives the same data bit for bit.
    dtype : float32 or float64, for X and (binary targets) Y.
    carry_out : if True, T = n_bits + 1: the last step reads zeros and its target is the carry-out
        bit, so the targets spell the full sum. If False, T = n_bits and the targets spell the sum
        mod 2**n_bits.
    pairs : optional (B, 2) integer array of operands to use instead of random ones.
    targets : "binary" -> Y (T, B, 1) of 0/1 in `dtype` (sigmoid with BCE or MSE);
        "classes" -> Y (T, B) int64 class ids 0/1 (a 2-class softmax with cross-entropy).

    Returns
    -------
    X : (T, B, 2) bits of a (channel 0) and b (channel 1), least-significant bit first.
    Y : targets as chosen by `targets`.
    a, b : (B,) int64 operands.
    """
    n_bits = _check_bits(n_bits)
    dt = float_dtype(dtype)
    if targets not in ("binary", "classes"):
        raise ValueError(f'targets must be "binary" or "classes", got {targets!r}')
    if pairs is None:
        if n_samples is None:
            raise ValueError("give n_samples, or pairs to add")
        n_samples = positive_int("n_samples", n_samples)
        pairs = sample_pairs(n_samples, n_bits, seed)
    else:
        pairs = _check_pairs(pairs, n_bits)
        if n_samples is not None and positive_int("n_samples", n_samples) != len(pairs):
            raise ValueError(f"n_samples={n_samples} but {len(pairs)} pairs were given")
    a = np.ascontiguousarray(pairs[:, 0])
    b = np.ascontiguousarray(pairs[:, 1])
    T = n_bits + 1 if carry_out else n_bits
    X = np.empty((T, len(a), 2), dtype=dt)
    # Operands are below 2**n_bits, so their bit n_bits (the carry-out step's input) is zero.
    X[:, :, 0] = encode_bits(a, T)
    X[:, :, 1] = encode_bits(b, T)
    # Without the carry-out step the top bit is simply not emitted: the sum mod 2**n_bits.
    sum_bits = encode_bits(a + b, T)
    Y = sum_bits.astype(dt)[:, :, None] if targets == "binary" else sum_bits
    return X, Y, a, b


def sample_pairs(
    n_samples: int, n_bits: int = 8, seed: SeedLike = 0, *, exclude=None
) -> np.ndarray:
    """Operand pairs uniform in [0, 2**n_bits)**2, (n_samples, 2) int64, none of them in `exclude`.

    Draws are independent (pairs may repeat). `exclude` is a (K, 2) array of pairs, typically a
    held-out test set; rejected draws are redrawn, so the result is uniform over the pairs not
    excluded.
    """
    n_samples = positive_int("n_samples", n_samples)
    n_bits = _check_bits(n_bits)
    rng = as_rng(seed)
    high = 1 << n_bits
    if exclude is None or len(exclude) == 0:
        return rng.integers(0, high, size=(n_samples, 2), dtype=np.int64)
    excluded = np.unique(_pair_records(_check_pairs(exclude, n_bits)))
    if excluded.size >= high * high:
        raise ValueError("every pair is excluded: nothing left to sample")
    out = np.empty((n_samples, 2), dtype=np.int64)
    filled = 0
    while filled < n_samples:
        # Overdraw so that one round usually suffices even when many pairs are excluded.
        keep_rate = 1.0 - excluded.size / (high * high)
        n_draw = int((n_samples - filled) / keep_rate * 1.1) + 16
        draw = rng.integers(0, high, size=(n_draw, 2), dtype=np.int64)
        draw = draw[~np.isin(_pair_records(draw), excluded)]
        take = min(len(draw), n_samples - filled)
        out[filled : filled + take] = draw[:take]
        filled += take
    return out


def split_pairs(n_bits: int, test_fraction: float = 0.2, seed: SeedLike = 0):
    """Partition the full grid of 4**n_bits operand pairs into (train_pairs, test_pairs).

    Each is a (K, 2) int64 array with no pair in common and no pair repeated; together they cover
    the grid. The test set has round(test_fraction * 4**n_bits) pairs, chosen at random; both sets
    are in grid order (a major, b minor). Only for n_bits <= 12 (16.7 million pairs).
    """
    n_bits = _check_bits(n_bits, MAX_GRID_BITS)
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    rng = as_rng(seed)
    n_grid = 1 << (2 * n_bits)
    n_test = int(round(test_fraction * n_grid))
    is_test = np.zeros(n_grid, dtype=bool)
    is_test[rng.choice(n_grid, size=n_test, replace=False)] = True
    codes = np.arange(n_grid, dtype=np.int64)
    return _codes_to_pairs(codes[~is_test], n_bits), _codes_to_pairs(codes[is_test], n_bits)


def _codes_to_pairs(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Grid index a * 2**n_bits + b -> (a, b) pairs."""
    return np.stack([codes >> n_bits, codes & ((1 << n_bits) - 1)], axis=1)


def train_test_pairs(n_bits: int, n_test: int, seed: SeedLike = 0, *, n_train: int | None = None):
    """A held-out test set of `n_test` distinct pairs and a training set that never contains them.

    Returns (train_pairs, test_pairs), (K, 2) int64 arrays. With n_train=None (only for
    n_bits <= 12) the training set is every other pair of the grid, in grid order; otherwise it is
    `n_train` pairs drawn uniformly (with repetition) from the pairs outside the test set. For fresh
    training batches every iteration, as the seeds do, call `sample_pairs(..., exclude=test_pairs)`.
    """
    n_bits = _check_bits(n_bits)
    n_test = positive_int("n_test", n_test)
    rng = as_rng(seed)
    n_grid = 1 << (2 * n_bits)
    if n_test >= n_grid:
        raise ValueError(f"n_test={n_test} leaves no pair for training out of {n_grid}")
    if n_train is None:
        if n_bits > MAX_GRID_BITS:
            raise ValueError(f"n_train is required when n_bits > {MAX_GRID_BITS}")
        train, test = split_pairs(n_bits, n_test / n_grid, rng)
        return train, test
    n_train = positive_int("n_train", n_train)
    test = _distinct_pairs(n_test, n_bits, rng)
    return sample_pairs(n_train, n_bits, rng, exclude=test), test


def _distinct_pairs(n: int, n_bits: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct uniform pairs in draw order (n < 4**n_bits)."""
    n_grid = 1 << (2 * n_bits)
    if n_bits <= 31:
        # The grid index fits in int64: sample indices without replacement directly.
        return _codes_to_pairs(rng.choice(n_grid, size=n, replace=False), n_bits)
    pairs = np.empty((0, 2), dtype=np.int64)
    while len(pairs) < n:
        draw = np.concatenate([pairs, rng.integers(0, 1 << n_bits, size=(n, 2), dtype=np.int64)])
        _, first = np.unique(_pair_records(draw), return_index=True)
        pairs = draw[np.sort(first)]
    return pairs[:n]


def bit_accuracy(Y_hat, Y, threshold: float = 0.5) -> float:
    """Fraction of output bits right over all steps and sequences.

    Y_hat is (T, B, 1) or (T, B) scores (a bit is 1 where the score is > threshold: 0.5 for sigmoid
    outputs, 0 for logits or the hand-set adder), or (T, B, 2) class scores decoded by argmax. Y
    holds the 0/1 targets, (T, B, 1) or (T, B).
    """
    pred, true = decode_predictions(Y_hat, Y, threshold)
    return float(np.mean(pred == true))


def sequence_accuracy(Y_hat, Y, threshold: float = 0.5) -> float:
    """Fraction of sequences whose every output bit is right (the whole sum correct).

    Same conventions as `bit_accuracy`; time is axis 0, sequences axis 1.
    """
    pred, true = decode_predictions(Y_hat, Y, threshold)
    if pred.ndim < 2:
        raise ValueError("sequence_accuracy needs (T, B) targets: time on axis 0, batch on axis 1")
    right = np.all((pred == true).reshape(pred.shape[0], pred.shape[1], -1), axis=(0, 2))
    return float(np.mean(right))
