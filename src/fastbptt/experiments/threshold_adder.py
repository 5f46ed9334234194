"""Seed 002's hand-set threshold adder, checked on every pair of n-bit numbers."""

from __future__ import annotations

import time

import numpy as np

from .. import tasks
from .tracking import dtype_name


def adder_check(n_bits: int = 8, corrected: bool = True, block: int = 65536,
                backend: str | None = None, dtype=np.float64, max_examples: int = 5) -> dict:
    """Seed 002's hand-set adder on every pair of n-bit operands (4**n_bits sums, n_bits + 1 bits).

    Parameters
    ----------
    n_bits : int, default 8
        Operand width, 1 to 12.
    corrected : bool, default True
        False runs the report's weights as written (W all ones), which fail.
    block : int, default 65536
        Pairs per call of the model.
    backend : str, optional
        The kernels.
    dtype : numpy dtype
        float32 or float64.
    max_examples : int, default 5
        How many wrong sums to keep as examples.

    Returns
    -------
    dict
        "pairs", "correct", "exact", "accuracy", "bit_accuracy", "wrong_examples" (the first few
        (a, b, the adder's sum, a + b)), "seconds" and the "model".
    """
    if not 1 <= n_bits <= tasks.MAX_GRID_BITS:
        raise ValueError(f"n_bits must lie in 1..{tasks.MAX_GRID_BITS} to check every pair, "
                         f"got {n_bits}")
    started = time.perf_counter()
    model = tasks.hand_set_adder(corrected, dtype=dtype, backend=backend)
    n_pairs = 4 ** n_bits
    mask = (1 << n_bits) - 1
    correct, bits_right, bits_total, examples = 0, 0, 0, []
    for start in range(0, n_pairs, block):
        codes = np.arange(start, min(start + block, n_pairs), dtype=np.int64)
        pairs = np.stack([codes >> n_bits, codes & mask], axis=1)
        X, Y, a, b = tasks.binary_addition(None, n_bits, pairs=pairs, dtype=dtype)
        bits = model.predict(X) > 0  # the adder's output unit reads a bit as y > 0
        got = tasks.decode_bits(bits)
        right = got == a + b
        correct += int(right.sum())
        bits_right += int(np.sum(bits == (Y > 0.5)))
        bits_total += bits.size
        for i in np.flatnonzero(~right)[: max_examples - len(examples)]:
            examples.append([int(a[i]), int(b[i]), int(got[i]), int(a[i] + b[i])])
    return {
        "task": "adder",
        "label": "seed 002's adder" + ("" if corrected else " as written (W all ones)"),
        "config": dict(n_bits=n_bits, corrected=corrected, dtype=dtype_name(dtype)),
        "pairs": n_pairs,
        "correct": correct,
        "exact": correct == n_pairs,
        "accuracy": correct / n_pairs,
        "bit_accuracy": bits_right / bits_total,
        "wrong_examples": examples,
        "seconds": time.perf_counter() - started,
        "model": model,
    }
