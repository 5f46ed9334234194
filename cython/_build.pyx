"""How the compiled kernels were built (read by fastbptt.show_config), the value tests every
call's checks run (finiteness, a range), the bce head's elementwise pass, and the work areas the
compiled drivers keep between calls (Area)."""

from libc.stdint cimport uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free

from _workarea cimport big_alloc

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


cdef extern from "math.h" nogil:
    double exp(double x)
    double log1p(double x)
    float expf(float x)
    float log1pf(float x)

# NumPy's NPY_LOGE2 / NPY_LOGE2f
cdef double LOGE2_D = 0.693147180559945309417232121458176568
cdef float LOGE2_F = 0.693147180559945309417232121458176568


# log(1 + e^o) as NumPy's logaddexp(0, o) computes it, and 1 / (1 + e^-o) as SciPy's expit,
# operation for operation and through the same libm calls, so the bits are theirs
cdef inline double _softplus_d(double o) noexcept nogil:
    cdef double tmp
    if o == 0.0:
        return 0.0 + LOGE2_D
    tmp = 0.0 - o
    if tmp > 0:
        return 0.0 + log1p(exp(-tmp))
    if tmp <= 0:
        return o + log1p(exp(tmp))
    return tmp


cdef inline float _softplus_f(float o) noexcept nogil:
    cdef float tmp
    if o == 0.0:
        return <float> 0.0 + LOGE2_F
    tmp = <float> 0.0 - o
    if tmp > 0:
        return <float> 0.0 + log1pf(expf(-tmp))
    if tmp <= 0:
        return o + log1pf(expf(tmp))
    return tmp


cdef void _bce_d(const double* o, const double* y, double* terms, double* dO,
                 Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        terms[i] = _softplus_d(o[i]) - y[i] * o[i]
        dO[i] = 1.0 / (1.0 + exp(-o[i])) - y[i]


cdef void _bce_f(const float* o, const float* y, float* terms, float* dO,
                 Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        terms[i] = _softplus_f(o[i]) - y[i] * o[i]
        dO[i] = <float> 1.0 / (<float> 1.0 + expf(-o[i])) - y[i]


cdef void _bce(const void* o, const void* y, void* terms, void* dO, Py_ssize_t n,
               bint single) noexcept nogil:
    if single:
        _bce_f(<const float*> o, <const float*> y, <float*> terms, <float*> dO, n)
    else:
        _bce_d(<const double*> o, <const double*> y, <double*> terms, <double*> dO, n)


def bce_terms(cnp.ndarray o not None, cnp.ndarray y not None, cnp.ndarray terms not None,
              cnp.ndarray dO not None):
    """terms = logaddexp(0, o) - y o and dO = expit(o) - y, the bce loss's terms and its gradient
    at the logits o, in one pass with the bits of those NumPy / SciPy expressions; False (nothing
    written) unless all four are C-contiguous arrays of one float dtype and size."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(o)
    cdef int kind = cnp.PyArray_TYPE(o)
    cdef cnp.ndarray a
    for a in (y, terms, dO):
        if (cnp.PyArray_TYPE(a) != kind or cnp.PyArray_SIZE(a) != n
                or not cnp.PyArray_IS_C_CONTIGUOUS(a)):
            return False
    if not cnp.PyArray_IS_C_CONTIGUOUS(o) or not (kind == cnp.NPY_FLOAT or kind == cnp.NPY_DOUBLE):
        return False
    if not (cnp.PyArray_ISWRITEABLE(terms) and cnp.PyArray_ISWRITEABLE(dO)):
        return False
    cdef const void* po = cnp.PyArray_DATA(o)
    cdef const void* py = cnp.PyArray_DATA(y)
    cdef void* pt = cnp.PyArray_DATA(terms)
    cdef void* pd = cnp.PyArray_DATA(dO)
    if n < NOGIL_FROM:
        _bce(po, py, pt, pd, n, kind == cnp.NPY_FLOAT)
    else:
        with nogil:
            _bce(po, py, pt, pd, n, kind == cnp.NPY_FLOAT)
    return True


cdef class Area:
    """`nbytes` of uninitialised memory on a 64-byte boundary (on huge pages from 1 MB up, where
    the OS gives them: _alloc.h), freed with the object: the work areas and packed weights the
    compiled drivers keep between calls. `address` is where it starts."""

    cdef void* start
    cdef readonly Py_ssize_t nbytes

    def __cinit__(self, Py_ssize_t nbytes):
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self.start = big_alloc(max(nbytes, 1))
        if self.start == NULL:
            raise MemoryError(f"cannot allocate {nbytes} bytes")
        self.nbytes = nbytes

    def __dealloc__(self):
        free(self.start)

    def __len__(self):
        return self.nbytes

    @property
    def address(self):
        return <uintptr_t> self.start
