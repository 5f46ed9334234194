# Stub for the compiled LSTM kernel (cython/_lstm.pyx). Arrays are C-contiguous, all float32 or all
# float64 within a call; OUT arrays are preallocated by the caller and filled in place.
# With batch_sizes (T,), non-increasing, step t advances only rows [0, batch_sizes[t]).
import numpy as np
import numpy.typing as npt

_Array = npt.NDArray[np.float32] | npt.NDArray[np.float64]

def forward(
    Wh: _Array,  # IN  (4Hn, Hn) recurrent weights, gate rows i, f, g, o
    A: _Array,  # IN  (T, B, 4Hn) input projections X Wx^T + b
    h0: _Array,  # IN  (B, Hn)
    c0: _Array,  # IN  (B, Hn)
    H: _Array,  # OUT (T+1, B, Hn) hidden states, H[0] = h0
    C: _Array,  # OUT (T+1, B, Hn) cell states, C[0] = c0
    G: _Array,  # OUT (T, B, 4Hn) activated gates i, f, g, o
    n_threads: int = 1,
    batch_sizes: npt.NDArray[np.intp] | None = None,  # IN  (T,) rows advanced at step t
) -> None: ...
def backward(
    Wh: _Array,  # IN  (4Hn, Hn)
    H: _Array,  # IN  (T+1, B, Hn)
    C: _Array,  # IN  (T+1, B, Hn)
    G: _Array,  # IN  (T, B, 4Hn)
    dH: _Array,  # IN  (T, B, Hn) loss gradient reaching each h_t
    dh_T: _Array,  # IN  (B, Hn) gradient at h_T from a later chunk
    dc_T: _Array,  # IN  (B, Hn) gradient at c_T from a later chunk
    dA: _Array,  # OUT (T, B, 4Hn) gradient at the gate pre-activations
    dh0: _Array,  # OUT (B, Hn)
    dc0: _Array,  # OUT (B, Hn)
    n_threads: int = 1,
    batch_sizes: npt.NDArray[np.intp] | None = None,  # IN  (T,) rows advanced at step t
) -> None: ...
