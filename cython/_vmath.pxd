# Elementwise transcendental functions over contiguous arrays, in place, for every cell's kernels.
# One place for them so a faster (vectorised) implementation lands in all cells at once.
from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf


cdef inline void vtanh(floating* x, Py_ssize_t n) noexcept nogil:
    """x <- tanh(x)."""
    cdef Py_ssize_t i
    for i in range(n):
        if floating is float:
            x[i] = tanhf(x[i])
        else:
            x[i] = tanh(x[i])


cdef inline void vsigmoid(floating* x, Py_ssize_t n) noexcept nogil:
    """x <- 1 / (1 + exp(-x)); exp overflowing to inf gives exactly 0, never NaN."""
    cdef Py_ssize_t i
    for i in range(n):
        if floating is float:
            x[i] = 1 / (1 + expf(-x[i]))
        else:
            x[i] = 1 / (1 + exp(-x[i]))
