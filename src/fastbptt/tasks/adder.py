"""Seed 002's hand-set binary adder as a ready model.

Three threshold units count how many of (bit of a, bit of b, carry in) are on: with s their sum,
h1 = [s >= 1], h2 = [s >= 2], h3 = [s >= 3] (biases -0.5, -1.5, -2.5 on step units). The sum bit is
s mod 2 = h1 - h2 + h3, read as y = h1 - h2 + h3 - 0.5 > 0, and the carry out is h2.

The report sets every recurrent weight to 1 (W all ones). Then each unit receives h1 + h2 + h3 = s
of the previous step instead of its carry, and the adder goes wrong as soon as a step leaves exactly
one bit on: 0 + 1 comes out as 511 with 8-bit operands (h1 keeps itself on). The report's expanded
equations use W = identity instead, which fails the same way.

The correction keeps U, b, v and c and changes W only. Shipped: every unit is fed back the carry
alone, h2, so W = [[0, 1, 0]] * 3 and each unit sees the report's intended x1 + x2 + carry + b_i.
That changes six entries; five is the least. Let r_i = W_i . h over the four reachable states
(0,0,0), (1,0,0), (1,1,0), (1,1,1). Unit i is right iff r_i lies in these ranges:

    unit   without a carry   with a carry
    1      (-0.5, 0.5]       (0.5, inf)
    2      (-0.5, 0.5]       (0.5, 1.5]
    3      (-inf, 0.5]       (0.5, 1.5]

From (1, 1, 1), unit 1 needs one change (W_1 = (0, 1, 1) works: it saturates, as h3 on implies h2
on) and units 2 and 3 need two each. The six-change W is shipped because every unit's input then
equals the count it thresholds; the tests enumerate W in {-1, 0, 1}^(3x3) and find exactly these
two.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hand_set_adder", "hand_set_adder_weights"]


def hand_set_adder_weights(corrected: bool = True) -> dict[str, np.ndarray]:
    """The adder's parameters in fastbptt's names: U (3, 2), W (3, 3), b (3,), V (1, 3), c (1,).

    corrected=False gives the report's weights as written (W all ones), which do not add correctly.
    """
    if corrected:
        # Each unit is fed back the carry (h2) only.
        W = np.array([[0.0, 1.0, 0.0]] * 3)
    else:
        W = np.ones((3, 3))
    return {
        "U": np.ones((3, 2)),
        "W": W,
        "b": np.array([-0.5, -1.5, -2.5]),
        "V": np.array([[1.0, -1.0, 1.0]]),
        "c": np.array([-0.5]),
    }


def hand_set_adder(corrected: bool = True, *, dtype=np.float64, backend=None):
    """Seed 002's adder: fb.RNN(2, 3, 1, cell="step", output="linear") with hand-set weights.

    Feed it `binary_addition(...)` inputs (bits least-significant first, with the carry-out step);
    the output bit is `Y_hat > 0` (`model.predict_classes(X)`, or
    `bit_accuracy(Y_hat, Y, threshold=0)`).
    The default is the corrected adder, exact for any width; corrected=False gives the report's
    weights as written (see the module docstring for why they fail). The step cell is forward only.
    """
    from ..model import RNN

    model = RNN(
        input_size=2,
        hidden_size=3,
        output_size=1,
        cell="step",
        output="linear",
        dtype=dtype,
        backend=backend,
    )
    model.params.update(hand_set_adder_weights(corrected))
    return model
