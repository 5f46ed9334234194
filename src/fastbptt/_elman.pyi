"""Type stub for the compiled Elman kernels (cython/_elman.pyx).

The kernel contract: docs/architecture.md. batch_sizes takes None only (ElmanCell splits a ragged
batch into runs of one batch size).
"""

import numpy as np
from numpy.typing import NDArray

TANH: int
RELU: int
STEP: int

def forward(
    act: int,
    Wh: NDArray[np.floating],  # IN  (H, H)
    A: NDArray[np.floating],   # IN  (T, B, H)
    h0: NDArray[np.floating],  # IN  (B, H)
    H: NDArray[np.floating],   # OUT (T+1, B, H)
    n_threads: int = 1,
    batch_sizes: None = None,  # IN  the contract's slot: None only
) -> None: ...
def backward(
    act: int,
    Wh: NDArray[np.floating],    # IN  (H, H)
    H: NDArray[np.floating],     # IN  (T+1, B, H)
    dH: NDArray[np.floating],    # IN  (T, B, H)
    dh_T: NDArray[np.floating],  # IN  (B, H)
    dA: NDArray[np.floating],    # OUT (T, B, H)
    dh0: NDArray[np.floating],   # OUT (B, H)
    n_threads: int = 1,
    batch_sizes: None = None,  # IN  the contract's slot: None only
) -> None: ...
def fused_ok(input_size: int, hidden_size: int, batch: int, dtype: object) -> bool: ...
def sequence_path(input_size: int, hidden_size: int, batch: int, dtype: object) -> bool: ...
def forward_fused(
    act: int,
    Wx: NDArray[np.floating],  # IN  (H, I)
    b: NDArray[np.floating],   # IN  (H,)
    Wh: NDArray[np.floating],  # IN  (H, H)
    X: NDArray[np.floating],   # IN  (T, B, I)
    h0: NDArray[np.floating],  # IN  (B, H)
    H: NDArray[np.floating],   # OUT (T+1, B, H)
    n_threads: int = 1,
    batch_sizes: None = None,  # IN  the contract's slot: None only
    V: NDArray[np.floating] | None = None,    # IN  (O, H) output layer weights
    c: NDArray[np.floating] | None = None,    # IN  (O,) output layer bias, with V
    out: NDArray[np.floating] | None = None,  # OUT (T, B, O) logits H[t+1] V^T + c, with V
) -> None: ...
def backward_fused(
    act: int,
    Wh: NDArray[np.floating],           # IN  (H, H)
    X: NDArray[np.floating],            # IN  (T, B, I)
    H: NDArray[np.floating],            # IN  (T+1, B, H)
    dH: NDArray[np.floating] | None,    # IN  (T, B, H), or None with dO and V
    dh_T: NDArray[np.floating],         # IN  (B, H)
    dh0: NDArray[np.floating],          # OUT (B, H)
    dWx: NDArray[np.floating],          # OUT (H, I)
    dWh: NDArray[np.floating],          # OUT (H, H)
    db: NDArray[np.floating],           # OUT (H,)
    n_threads: int = 1,
    batch_sizes: None = None,  # IN  the contract's slot: None only
    dA: NDArray[np.floating] | None = None,  # OUT (T, B, H) gradient at the pre-activations, or None
    dO: NDArray[np.floating] | None = None,  # IN  (T, B, O) gradient at the logits (dH = dO @ V)
    V: NDArray[np.floating] | None = None,   # IN  (O, H) the head's weights, with dO
    dV: NDArray[np.floating] | None = None,  # OUT (O, H) sum_t dO_t^T H[t+1], with dO
) -> None: ...
