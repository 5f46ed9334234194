"""How the compiled kernels were built (read by fastbptt.show_config), and the value tests every
call's checks run (finiteness, a range)."""

from libc.stdint cimport uint32_t, uint64_t

cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #ifndef FASTBPTT_OPENMP
    #define FASTBPTT_OPENMP 0
    #endif
    #ifdef FASTBPTT_LIBMVEC
    #define FASTBPTT_HAVE_LIBMVEC 1
    #else
    #define FASTBPTT_HAVE_LIBMVEC 0
    #endif
    #ifndef FASTBPTT_CFLAGS
    #define FASTBPTT_CFLAGS ""
    #endif
    #if FASTBPTT_OPENMP
    #include <omp.h>
    static int fastbptt_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastbptt_max_threads(void) { return 1; }
    #endif
    """
    int FASTBPTT_OPENMP
    int FASTBPTT_HAVE_LIBMVEC
    const char* FASTBPTT_CFLAGS
    int fastbptt_max_threads() noexcept nogil
    int FASTBPTT_NATIVE

cdef extern from "_kernels.h" nogil:
    int fb_cpu_runs(const char* name)
    const char* fb_kernels_built()

OPENMP = bool(FASTBPTT_OPENMP)
VECTOR_MATH = bool(FASTBPTT_HAVE_LIBMVEC)
CFLAGS = FASTBPTT_CFLAGS.decode()
NATIVE = bool(FASTBPTT_NATIVE)
# the SIMD sets whose kernels this build holds, best first
SIMD_BUILT = tuple(fb_kernels_built().decode().split(","))


def cpu_runs(str name):
    """True when this CPU (and its OS) can run the instructions of SIMD set `name`."""
    return bool(fb_cpu_runs(name.encode()))


def max_threads():
    """OpenMP's default thread count (1 without OpenMP)."""
    return fastbptt_max_threads()


cdef bint _finite_d(const uint64_t* x, Py_ssize_t n) noexcept nogil:
    # all exponent bits set means Inf or NaN; integer tests vectorise without reordering any sum
    cdef uint64_t bad = 0
    cdef Py_ssize_t i
    for i in range(n):
        bad |= (x[i] & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL
    return bad == 0


cdef bint _finite_f(const uint32_t* x, Py_ssize_t n) noexcept nogil:
    cdef uint32_t bad = 0
    cdef Py_ssize_t i
    for i in range(n):
        bad |= (x[i] & 0x7f800000U) == 0x7f800000U
    return bad == 0


# below this many entries a test takes less than releasing and taking back the GIL
cdef Py_ssize_t NOGIL_FROM = 1 << 12


cdef bint _finite_any(const void* x, Py_ssize_t n, bint single) noexcept nogil:
    return _finite_f(<const uint32_t*> x, n) if single else _finite_d(<const uint64_t*> x, n)


cdef int _finite(cnp.ndarray a) noexcept:
    """1 when every entry of a C-contiguous float32 or float64 array is finite, 0 when one is not,
    -1 for any other array."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(a)
    cdef int kind = cnp.PyArray_TYPE(a)
    cdef const void* x = cnp.PyArray_DATA(a)
    cdef bint ok, single = kind == cnp.NPY_FLOAT
    if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not (single or kind == cnp.NPY_DOUBLE):
        return -1
    if n < NOGIL_FROM:
        return _finite_any(x, n, single)
    with nogil:
        ok = _finite_any(x, n, single)
    return ok


def all_finite(cnp.ndarray a not None):
    """True when every entry of a C-contiguous float32 or float64 array is finite, None for any
    other array (the caller tests it another way). One pass, no temporary: a call's checks cost
    a fraction of a microsecond instead of a NumPy reduction each."""
    cdef int ok = _finite(a)
    return None if ok < 0 else ok == 1


def each_finite(arrays):
    """all_finite over every array of an iterable in one call: False at the first array with a
    non-finite entry, None when one is not a C-contiguous float32 or float64 array."""
    cdef int ok
    for a in arrays:
        if type(a) is not cnp.ndarray:
            return None
        ok = _finite(<cnp.ndarray> a)
        if ok != 1:
            return None if ok < 0 else False
    return True


cdef bint _within_d(const double* x, Py_ssize_t n, double lo, double hi) noexcept nogil:
    cdef bint ok = True
    cdef Py_ssize_t i
    for i in range(n):
        ok &= (x[i] >= lo) & (x[i] <= hi)  # false for NaN
    return ok


cdef bint _within_f(const float* x, Py_ssize_t n, float lo, float hi) noexcept nogil:
    cdef bint ok = True
    cdef Py_ssize_t i
    for i in range(n):
        ok &= (x[i] >= lo) & (x[i] <= hi)
    return ok


cdef bint _within(const void* x, Py_ssize_t n, bint single, double lo, double hi) noexcept nogil:
    if single:
        return _within_f(<const float*> x, n, <float> lo, <float> hi)
    return _within_d(<const double*> x, n, lo, hi)


def all_within(cnp.ndarray a not None, double lo, double hi):
    """True when every entry of a C-contiguous float32 or float64 array lies in [lo, hi] (a NaN
    does not), None for any other array; lo and hi must be exact in the array's dtype. One pass,
    where a NumPy minimum and maximum are two reductions of a microsecond each on short arrays."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(a)
    cdef int kind = cnp.PyArray_TYPE(a)
    cdef const void* x = cnp.PyArray_DATA(a)
    cdef bint ok, single = kind == cnp.NPY_FLOAT
    if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not (single or kind == cnp.NPY_DOUBLE):
        return None
    if n < NOGIL_FROM:
        return _within(x, n, single, lo, hi)
    with nogil:
        ok = _within(x, n, single, lo, hi)
    return ok
