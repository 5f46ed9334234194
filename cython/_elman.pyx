"""Elman recurrence: h_t = f(a_t + W h_{t-1}) forward, and its backward pass through time.

The caller (fastbptt.cells) has already formed a_t = U x_t + b for every step in one GEMM, and forms the
weight gradients from dA in single GEMMs afterwards; only the sequential recurrence lives here.

Layers, as in every kernel module:
  (a) `cdef inline ... noexcept nogil` helpers for one step of one sequence;
  (b) the `def` drivers `forward` / `backward` over typed memoryviews, the whole time loop inside one
      `with nogil:`, no allocation inside it (the small path mallocs one transposed W before it);
  (c) the Python layer in src/fastbptt validates, allocates outputs with np.empty and dispatches.
The NumPy twin with the same signatures, the ground truth, is src/fastbptt/reference/elman.py.

Activations: 0 tanh, 1 relu, 2 step (Heaviside, h = 1 where a > 0; forward only).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from _blas cimport gemm
from _vmath cimport all_finite, vtanh

TANH = 0
RELU = 1
STEP = 2

# Below this much work per step (B * H * H multiply-adds) and H <= 64 the hand-written loops beat a
# BLAS call per step: the call's fixed cost is larger than the arithmetic.
cdef Py_ssize_t SMALL_WORK = 32768
cdef Py_ssize_t SMALL_H = 64


# ---------------------------------------------------------------------------------------------------
# (a) one step
# ---------------------------------------------------------------------------------------------------

cdef inline void _activate(int act, floating* h, Py_ssize_t n) noexcept nogil:
    """h <- f(h) in place."""
    cdef Py_ssize_t i
    if act == 0:
        vtanh(h, n)
    elif act == 1:
        for i in range(n):
            h[i] = h[i] if h[i] > 0 else 0
    else:
        for i in range(n):
            h[i] = 1 if h[i] > 0 else 0


cdef inline void _times_fprime(int act, const floating* h, floating* d, Py_ssize_t n) noexcept nogil:
    """d <- d * f'(a), with f' written through the output h = f(a)."""
    cdef Py_ssize_t i
    if act == 0:
        for i in range(n):
            d[i] = d[i] * (1 - h[i] * h[i])
    else:
        for i in range(n):
            d[i] = d[i] if h[i] > 0 else 0


cdef inline void _step_small(int act, const floating* wt, const floating* a, const floating* h_prev,
                             floating* h, Py_ssize_t n) noexcept nogil:
    """h = f(a + W h_prev) for one sequence, W given transposed so the inner loop is contiguous."""
    cdef Py_ssize_t i, j
    cdef floating hj
    cdef const floating* col
    for i in range(n):
        h[i] = a[i]
    for j in range(n):
        hj = h_prev[j]
        col = wt + j * n
        for i in range(n):
            h[i] += col[i] * hj
    _activate(act, h, n)


cdef inline void _back_small(int act, const floating* w, const floating* h, const floating* dh_out,
                             floating* da, floating* dh, Py_ssize_t n) noexcept nogil:
    """da = (dh_out + dh) * f'(a); then dh <- W^T da, for one sequence (dh is read, then rewritten)."""
    cdef Py_ssize_t i, j
    cdef floating dai
    cdef const floating* row
    for i in range(n):
        da[i] = dh_out[i] + dh[i]
    _times_fprime(act, h, da, n)
    memset(dh, 0, n * sizeof(floating))
    for i in range(n):
        dai = da[i]
        row = w + i * n
        for j in range(n):
            dh[j] += row[j] * dai


# ---------------------------------------------------------------------------------------------------
# time loops (serial in t; optionally parallel over the batch inside a step)
# ---------------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward_small(int act, const floating* wt, const floating* A, floating* H,
                               Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                               int n_threads) noexcept nogil:
    cdef Py_ssize_t t, b, step = B * n
    for t in range(T):
        if n_threads > 1 and B > 1:
            for b in prange(B, num_threads=n_threads, schedule="static"):
                _step_small(act, wt, A + t * step + b * n, H + t * step + b * n,
                            H + (t + 1) * step + b * n, n)
        else:
            for b in range(B):
                _step_small(act, wt, A + t * step + b * n, H + t * step + b * n,
                            H + (t + 1) * step + b * n, n)
        if not all_finite(H + (t + 1) * step, step):
            return t
    return -1


cdef Py_ssize_t _forward_blas(int act, const floating* W, const floating* A, floating* H,
                              Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                              int n_threads) noexcept nogil:
    cdef Py_ssize_t t, b, step = B * n
    cdef floating* h
    for t in range(T):
        h = H + (t + 1) * step
        memcpy(h, A + t * step, step * sizeof(floating))
        # h += h_prev @ W^T for the whole batch
        gemm(False, True, <int> B, <int> n, <int> n, 1, H + t * step, <int> n, W, <int> n,
             1, h, <int> n)
        if n_threads > 1 and B > 1:
            for b in prange(B, num_threads=n_threads, schedule="static"):
                _activate(act, h + b * n, n)
        else:
            _activate(act, h, step)
        if not all_finite(h, step):
            return t
    return -1


cdef Py_ssize_t _backward_small(int act, const floating* W, const floating* H, const floating* dH,
                                floating* dA, floating* dh, Py_ssize_t T, Py_ssize_t B,
                                Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t t, b, step = B * n
    for t in range(T - 1, -1, -1):
        if n_threads > 1 and B > 1:
            for b in prange(B, num_threads=n_threads, schedule="static"):
                _back_small(act, W, H + (t + 1) * step + b * n, dH + t * step + b * n,
                            dA + t * step + b * n, dh + b * n, n)
        else:
            for b in range(B):
                _back_small(act, W, H + (t + 1) * step + b * n, dH + t * step + b * n,
                            dA + t * step + b * n, dh + b * n, n)
        if not all_finite(dh, step):
            return t
    return -1


cdef Py_ssize_t _backward_blas(int act, const floating* W, const floating* H, const floating* dH,
                               floating* dA, floating* dh, Py_ssize_t T, Py_ssize_t B,
                               Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t t, k, step = B * n
    cdef floating* da
    for t in range(T - 1, -1, -1):
        da = dA + t * step
        for k in range(step):
            da[k] = dH[t * step + k] + dh[k]
        _times_fprime(act, H + (t + 1) * step, da, step)
        # dh = da @ W for the whole batch
        gemm(False, False, <int> B, <int> n, <int> n, 1, da, <int> n, W, <int> n, 0, dh, <int> n)
        if not all_finite(dh, step):
            return t
    return -1


cdef inline bint _small(Py_ssize_t B, Py_ssize_t n) noexcept nogil:
    return n <= SMALL_H and B * n * n <= SMALL_WORK


# ---------------------------------------------------------------------------------------------------
# (b) drivers
# ---------------------------------------------------------------------------------------------------

def _check(name, shape, expected):
    if tuple(shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(shape)}, expected {tuple(expected)}")


def forward(int act,
            const floating[:, ::1] W,       # IN  (H, H) recurrent weights
            const floating[:, :, ::1] A,    # IN  (T, B, H) input projections U x_t + b
            const floating[:, ::1] h0,      # IN  (B, H) initial state
            floating[:, :, ::1] H,          # OUT (T+1, B, H) states, H[0] = h0
            int n_threads=1):
    """Unroll h_t = f(A[t] + W h_{t-1}) over all T steps; raise FloatingPointError on a non-finite state."""
    cdef Py_ssize_t T = A.shape[0], B = A.shape[1], n = A.shape[2]
    cdef Py_ssize_t i, j, bad = -1
    cdef floating* wt = NULL
    if act not in (TANH, RELU, STEP):
        raise ValueError(f"unknown activation code {act}")
    _check("W", (W.shape[0], W.shape[1]), (n, n))
    _check("h0", (h0.shape[0], h0.shape[1]), (B, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    if B == 0 or n == 0:
        return
    if _small(B, n) and T > 0:
        wt = <floating*> malloc(n * n * sizeof(floating))
        if wt == NULL:
            raise MemoryError()
    with nogil:
        memcpy(&H[0, 0, 0], &h0[0, 0], B * n * sizeof(floating))
        if T > 0:
            if wt != NULL:
                for i in range(n):
                    for j in range(n):
                        wt[j * n + i] = W[i, j]
                bad = _forward_small(act, wt, &A[0, 0, 0], &H[0, 0, 0], T, B, n, n_threads)
                free(wt)
            else:
                bad = _forward_blas(act, &W[0, 0], &A[0, 0, 0], &H[0, 0, 0], T, B, n, n_threads)
    if bad >= 0:
        raise FloatingPointError(f"non-finite hidden state at time step {bad}")


def backward(int act,
             const floating[:, ::1] W,       # IN  (H, H)
             const floating[:, :, ::1] H,    # IN  (T+1, B, H) states from forward
             const floating[:, :, ::1] dH,   # IN  (T, B, H) loss gradient reaching each h_t, t = 1..T
             const floating[:, ::1] dh_T,    # IN  (B, H) gradient arriving from a later chunk
             floating[:, :, ::1] dA,         # OUT (T, B, H) gradient at every pre-activation
             floating[:, ::1] dh0,           # OUT (B, H) gradient at the initial state
             int n_threads=1):
    """Backpropagate through time; raise FloatingPointError on a non-finite gradient."""
    cdef Py_ssize_t T = dH.shape[0], B = dH.shape[1], n = dH.shape[2]
    cdef Py_ssize_t bad = -1
    if act == STEP:
        raise ValueError("the step cell is forward only: its derivative is zero almost everywhere")
    if act not in (TANH, RELU):
        raise ValueError(f"unknown activation code {act}")
    _check("W", (W.shape[0], W.shape[1]), (n, n))
    _check("H", (H.shape[0], H.shape[1], H.shape[2]), (T + 1, B, n))
    _check("dh_T", (dh_T.shape[0], dh_T.shape[1]), (B, n))
    _check("dA", (dA.shape[0], dA.shape[1], dA.shape[2]), (T, B, n))
    _check("dh0", (dh0.shape[0], dh0.shape[1]), (B, n))
    if B == 0 or n == 0:
        return
    with nogil:
        # dh0 doubles as the running gradient dL/dh_t, so the loop needs no buffer of its own
        memcpy(&dh0[0, 0], &dh_T[0, 0], B * n * sizeof(floating))
        if T > 0:
            if _small(B, n):
                bad = _backward_small(act, &W[0, 0], &H[0, 0, 0], &dH[0, 0, 0], &dA[0, 0, 0],
                                      &dh0[0, 0], T, B, n, n_threads)
            else:
                bad = _backward_blas(act, &W[0, 0], &H[0, 0, 0], &dH[0, 0, 0], &dA[0, 0, 0],
                                     &dh0[0, 0], T, B, n, n_threads)
    if bad >= 0:
        raise FloatingPointError(f"non-finite gradient at time step {bad}")
