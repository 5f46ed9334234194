# Stub for the compiled GRU kernel (cython/_gru.pyx). Arrays are C-contiguous, all float32 or all
# float64 within a call; OUT arrays are preallocated by the caller and filled in place.
# With batch_sizes (T,), non-increasing, step t advances only rows [0, batch_sizes[t]).
import numpy as np
import numpy.typing as npt

_Array = npt.NDArray[np.float32] | npt.NDArray[np.float64]

KEEPS_PACKED: bool  # forward_fused takes `packed=`

def forward(
    Wh: _Array,  # IN  (3Hn, Hn) recurrent weights, gate rows r, z, n
    bh: _Array,  # IN  (3Hn,) recurrent bias
    A: _Array,  # IN  (T, B, 3Hn) input projections X Wx^T + bx
    h0: _Array,  # IN  (B, Hn)
    H: _Array,  # OUT (T+1, B, Hn) states, H[0] = h0
    G: _Array,  # OUT (T, B, 3Hn) activated gates r, z, n
    HN: _Array,  # OUT (T, B, Hn) Wh_n h_{t-1} + bh_n
    n_threads: int = 1,
    batch_sizes: npt.NDArray[np.intp] | None = None,  # IN  (T,) rows advanced at step t
) -> None: ...
def backward(
    Wh: _Array,  # IN  (3Hn, Hn)
    H: _Array,  # IN  (T+1, B, Hn)
    G: _Array,  # IN  (T, B, 3Hn)
    HN: _Array,  # IN  (T, B, Hn)
    dH: _Array,  # IN  (T, B, Hn) loss gradient reaching each h_t
    dh_T: _Array,  # IN  (B, Hn) gradient at h_T from a later chunk
    dA: _Array,  # OUT (T, B, 3Hn) gradient w.r.t. A
    dGh: _Array,  # OUT (T, B, 3Hn) gradient w.r.t. Wh h_{t-1} + bh
    dh0: _Array,  # OUT (B, Hn)
    n_threads: int = 1,
    batch_sizes: npt.NDArray[np.intp] | None = None,  # IN  (T,) rows advanced at step t
) -> None: ...
def forward_fused(
    Wx: _Array,  # IN  (3Hn, I) input weights, gate rows r, z, n
    bx: _Array,  # IN  (3Hn,) input bias
    Wh: _Array,  # IN  (3Hn, Hn) recurrent weights
    bh: _Array,  # IN  (3Hn,) recurrent bias
    X: _Array,  # IN  (T, B, I) inputs
    h0: _Array,  # IN  (B, Hn)
    H: _Array,  # OUT (T+1, B, Hn) states, H[0] = h0
    G: _Array,  # OUT (T, B, 3Hn) activated gates r, z, n
    HN: _Array,  # OUT (T, B, Hn) Wh_n h_{t-1} + bh_n
    n_threads: int = 1,
    batch_sizes: npt.NDArray[np.intp] | None = None,  # IN  (T,) rows advanced at step t
    V: _Array | None = None,  # IN  (O, Hn) output layer weights
    c: _Array | None = None,  # IN  (O,) output layer bias, with V
    out: _Array | None = None,  # OUT (T, B, O) logits H[t+1] V^T + c, with V
    packed: list | None = None,  # IN/OUT the caller's slot of packed Wh and Wx, kept between calls
) -> None: ...
def backward_fused(
    Wh: _Array,  # IN  (3Hn, Hn)
    X: _Array,  # IN  (T, B, I)
    H: _Array,  # IN  (T+1, B, Hn)
    G: _Array,  # IN  (T, B, 3Hn)
    HN: _Array,  # IN  (T, B, Hn)
    dH: _Array | None,  # IN  (T, B, Hn) loss gradient reaching each h_t, or None with dO and V
    dh_T: _Array,  # IN  (B, Hn)
    dh0: _Array,  # OUT (B, Hn)
    dWx: _Array,  # OUT (3Hn, I) sum_t dA_t^T x_t
    dWh: _Array,  # OUT (3Hn, Hn) sum_t dGh_t^T h_{t-1}
    dbx: _Array,  # OUT (3Hn,) sum_t of dA_t's rows
    dbh: _Array,  # OUT (3Hn,) sum_t of dGh_t's rows
    n_threads: int = 1,
    batch_sizes: npt.NDArray[np.intp] | None = None,  # IN  (T,) rows advanced at step t
    dA: _Array | None = None,  # OUT (T, B, 3Hn) gradient at A, or None
    dO: _Array | None = None,  # IN  (T, B, O) gradient at the logits (dH = dO @ V)
    V: _Array | None = None,  # IN  (O, Hn) the head's weights, with dO
    dV: _Array | None = None,  # OUT (O, Hn) sum_t dO_t^T H[t+1], with dO
) -> None: ...
