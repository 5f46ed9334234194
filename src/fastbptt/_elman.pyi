"""Type stub for the compiled Elman kernels (cython/_elman.pyx)."""

import numpy as np
from numpy.typing import NDArray

TANH: int
RELU: int
STEP: int

def forward(
    act: int,
    W: NDArray[np.floating],   # IN  (H, H)
    A: NDArray[np.floating],   # IN  (T, B, H)
    h0: NDArray[np.floating],  # IN  (B, H)
    H: NDArray[np.floating],   # OUT (T+1, B, H)
    n_threads: int = 1,
) -> None: ...
def backward(
    act: int,
    W: NDArray[np.floating],     # IN  (H, H)
    H: NDArray[np.floating],     # IN  (T+1, B, H)
    dH: NDArray[np.floating],    # IN  (T, B, H)
    dh_T: NDArray[np.floating],  # IN  (B, H)
    dA: NDArray[np.floating],    # OUT (T, B, H)
    dh0: NDArray[np.floating],   # OUT (B, H)
    n_threads: int = 1,
) -> None: ...
