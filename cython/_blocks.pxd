# Shared by the gated cells' kernels, which cut a batch into blocks of rows (one thread a block, each
# running the whole time loop), advance only the rows still running, and take a hand-written
# product for one sequence a block.
from cython cimport floating


cdef inline Py_ssize_t active_rows(const Py_ssize_t* bs, Py_ssize_t t, Py_ssize_t b0,
                                   Py_ssize_t rows) noexcept nogil:
    """Rows of the block starting at batch row b0 that step t advances (all without batch_sizes)."""
    cdef Py_ssize_t r
    if bs == NULL:
        return rows
    r = bs[t] - b0
    return 0 if r < 0 else (rows if r > rows else r)


cdef inline Py_ssize_t widest(const Py_ssize_t[::1] starts) noexcept nogil:
    """Rows of the largest block, from each block's first row and B at the end."""
    cdef Py_ssize_t c, most = 0
    for c in range(starts.shape[0] - 1):
        if starts[c + 1] - starts[c] > most:
            most = starts[c + 1] - starts[c]
    return most


cdef inline Py_ssize_t earliest_bad(const Py_ssize_t* bad, Py_ssize_t k, bint forward) noexcept nogil:
    """The step a serial loop would have stopped at, from each block's first bad step (-1: none)."""
    cdef Py_ssize_t j, first = -1
    for j in range(k):
        if bad[j] >= 0 and (first < 0 or (bad[j] < first if forward else bad[j] > first)):
            first = bad[j]
    return first


cdef extern from "_dispatch.h" nogil:
    void fb_add_rows_d(const double* X, const double* v, const double* y0, double* y, Py_ssize_t p,
                       Py_ssize_t m) noexcept
    void fb_add_rows_f(const float* X, const float* v, const float* y0, float* y, Py_ssize_t p,
                       Py_ssize_t m) noexcept


cdef inline void add_rows(const floating* X, const floating* v, const floating* y0,
                          floating* y, Py_ssize_t p, Py_ssize_t m) noexcept nogil:
    """y (m) = y0 (m) + v (p) @ X (p, m), X row-major; y0 may be y itself (the SIMD set's kernel,
    four rows of X a pass)."""
    if floating is float:
        fb_add_rows_f(X, v, y0, y, p, m)
    else:
        fb_add_rows_d(X, v, y0, y, p, m)
