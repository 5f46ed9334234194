# Elementwise transcendental functions over contiguous arrays, in place, for every cell's kernels.
# One place for them, so the vectorised implementation (cython/_vmath.h) serves all cells at once.
from cython cimport floating

cdef extern from "_dispatch.h" nogil:
    int FASTBPTT_VECTOR_MATH
    void fb_vtanh_d(double* x, Py_ssize_t n) noexcept
    void fb_vtanh_f(float* x, Py_ssize_t n) noexcept
    void fb_vsigmoid_d(double* x, Py_ssize_t n) noexcept
    void fb_vsigmoid_f(float* x, Py_ssize_t n) noexcept
    bint fb_all_finite_d(const double* x, Py_ssize_t n) noexcept
    bint fb_all_finite_f(const float* x, Py_ssize_t n) noexcept
    void fb_tanh_d(double* x, Py_ssize_t n) noexcept
    void fb_tanh_f(float* x, Py_ssize_t n) noexcept


cdef inline void vtanh(floating* x, Py_ssize_t n) noexcept nogil:
    """x <- tanh(x)."""
    if floating is float:
        fb_vtanh_f(x, n)
    else:
        fb_vtanh_d(x, n)


cdef inline void vtanh_fast(floating* x, Py_ssize_t n) noexcept nogil:
    """x <- tanh(x), inline on whole registers of the SIMD set (a few ulp, several times libmvec's
    throughput)."""
    if floating is float:
        fb_tanh_f(x, n)
    else:
        fb_tanh_d(x, n)


cdef inline void vsigmoid(floating* x, Py_ssize_t n) noexcept nogil:
    """x <- 1 / (1 + exp(-x))."""
    if floating is float:
        fb_vsigmoid_f(x, n)
    else:
        fb_vsigmoid_d(x, n)


cdef inline bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    """True when no x[i] is NaN or +-inf."""
    if floating is float:
        return fb_all_finite_f(x, n)
    else:
        return fb_all_finite_d(x, n)
