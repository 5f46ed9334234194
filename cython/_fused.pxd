# Shared by the gated cells' fused entries (cython/_lstm.pyx, cython/_gru.pyx): which product a
# block takes, the fold of gathered rows into the weight gradients, and the output layer's work
# inside the time loops.
from cython cimport floating

from _blocks cimport add_rows
from _tile cimport gemm_packed, gemm_tn, pack

# Rows of (x, h) and gate gradients a block gathers before folding them into its weight gradients:
# enough for the fold to run as a full-speed product, few enough for the rings to stay in L2.
cdef enum:
    FOLD_ROWS = 128


cdef inline bint hand_path(Py_ssize_t rows) noexcept nogil:
    """Whether a block of `rows` sequences takes the hand-written products (weights transposed,
    contiguous axpy over the gates) rather than the register tiles: for one sequence a block, where
    a tile row runs latency-bound (from two rows on the tiles win)."""
    return rows == 1


cdef inline Py_ssize_t fold_cap(Py_ssize_t block_rows) noexcept nogil:
    """Ring capacity in rows for a block: whole steps, at least one."""
    cdef Py_ssize_t steps = FOLD_ROWS // block_rows
    return (steps if steps > 1 else 1) * block_rows


cdef inline void pack_panels(const floating* D, Py_ssize_t K, Py_ssize_t N,
                             floating* P) noexcept nogil:
    """P <- D (K, N) in the panels gemm_packed reads (NR = 2 vector widths of columns, zero past N),
    by the set's pack (whole panels by register copies)."""
    pack(D, N, False, K, N, P)


cdef inline void fold(const floating* Zt, Py_ssize_t cap, const floating* D, Py_ssize_t k,
                      Py_ssize_t kz, Py_ssize_t ng, floating* Gt, floating* panels,
                      bint add) noexcept nogil:
    """Gt (kz, ng) += Zt[:, :k] D[:k] (= when not `add`: the first fold needs no zeroed Gt): k rows
    z_r (inputs, states, and a last entry 1), stored as the columns of Zt (kz, cap), times their
    gate gradients d_r (rows of D, ng each). One register-tiled product gives the weights'
    gradients and (from the ones) the bias's together; D is packed into `panels` first."""
    pack_panels(D, k, ng, panels)
    gemm_packed(kz, ng, k, Zt, cap, panels, NULL, Gt if add else NULL, ng, Gt, ng)


cdef inline void head_logits(const floating* h, Py_ssize_t rows, Py_ssize_t n, const floating* vt,
                             const floating* cv, floating* out, Py_ssize_t O,
                             bint hand) noexcept nogil:
    """out (rows, O) = h (rows, n) V^T + cv while h is in cache: vt is V^T (n, O) on the hand
    path, V^T packed on the tiles."""
    cdef Py_ssize_t b
    if hand:
        for b in range(rows):
            add_rows(vt, h + b * n, cv, out + b * O, n, O)
    else:
        gemm_packed(rows, O, n, h, n, vt, cv, NULL, 0, out, O)


cdef inline void head_grad(const floating* dO, Py_ssize_t O, const floating* V,
                           const floating* PV, const floating* h, floating* dV, floating* dh,
                           Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """The output layer's share of one step for `rows` sequences: dV (O, n) += dO^T h when dV is
    given, and dh (rows, n) += dO V, the loss gradient joining the one from step t+1 (by hand over
    V when PV, V packed, is NULL)."""
    cdef Py_ssize_t b
    if dV != NULL:
        # on the register tiles: row by row, rows x O axpys would reload dV at every row
        gemm_tn(O, n, rows, dO, O, h, n, dV, n, NULL)
    if PV == NULL:
        for b in range(rows):
            add_rows(V, dO + b * O, dh + b * n, dh + b * n, O, n)
    else:
        gemm_packed(rows, n, O, dO, O, PV, NULL, dh, n, dh, n)
