# Batch blocks and variable lengths, shared by the kernels that cut a batch into blocks of rows (one
# thread a block, each running the whole time loop) and advance only the rows still running.


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
