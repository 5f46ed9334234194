# Shared by the gated cells' kernels, which cut a batch into blocks of rows (one thread a block, each
# running the whole time loop), advance only the rows still running, and take a hand-written
# product for one sequence a block.
from cython cimport floating
from libc.string cimport memcpy


cdef inline Py_ssize_t active_rows(const Py_ssize_t* bs, Py_ssize_t t, Py_ssize_t b0,
                                   Py_ssize_t rows) noexcept nogil:
    """Rows of the block starting at batch row b0 that step t advances (all without batch_sizes)."""
    cdef Py_ssize_t r
    if bs == NULL:
        return rows
    r = bs[t] - b0
    return 0 if r < 0 else (rows if r > rows else r)


cdef inline Py_ssize_t earliest_bad(const Py_ssize_t* bad, Py_ssize_t k, bint forward) noexcept nogil:
    """The step a serial loop would have stopped at, from each block's first bad step (-1: none)."""
    cdef Py_ssize_t j, first = -1
    for j in range(k):
        if bad[j] >= 0 and (first < 0 or (bad[j] < first if forward else bad[j] > first)):
            first = bad[j]
    return first


cdef inline void add_rows(const floating* X, const floating* v, const floating* y0,
                          floating* y, Py_ssize_t p, Py_ssize_t m) noexcept nogil:
    """y (m) = y0 (m) + v (p) @ X (p, m), X row-major; y0 may be y itself.

    The inner loop runs contiguous along rows of X, four rows per pass, so y is loaded and stored
    once per four rows (a store-to-load chain through y per row is what limits the plain loop at
    small sizes). The first pass reads y0, so the caller needs no copy into y beforehand.
    """
    cdef Py_ssize_t j, k
    cdef floating v0, v1, v2, v3
    cdef const floating* src = y0
    cdef const floating* x0
    cdef const floating* x1
    cdef const floating* x2
    cdef const floating* x3
    for j in range(0, p - 3, 4):
        v0 = v[j]
        v1 = v[j + 1]
        v2 = v[j + 2]
        v3 = v[j + 3]
        x0 = X + j * m
        x1 = x0 + m
        x2 = x1 + m
        x3 = x2 + m
        for k in range(m):
            y[k] = src[k] + (x0[k] * v0 + x1[k] * v1 + x2[k] * v2 + x3[k] * v3)
        src = y
    for j in range(p - p % 4, p):
        v0 = v[j]
        x0 = X + j * m
        for k in range(m):
            y[k] = src[k] + x0[k] * v0
        src = y
    if src != y:
        memcpy(y, src, m * sizeof(floating))
