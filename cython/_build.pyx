"""How the compiled kernels were built (read by fastbptt.show_config), the value tests every
call's checks run (finiteness, a range), the bce head's loss and gradients, and the work areas the
compiled drivers keep between calls (Area)."""

from libc.stdint cimport uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc

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
    int fb_l1d_bytes()
    long fb_l2_bytes()

OPENMP = bool(FASTBPTT_OPENMP)
VECTOR_MATH = bool(FASTBPTT_HAVE_LIBMVEC)
CFLAGS = FASTBPTT_CFLAGS.decode()
NATIVE = bool(FASTBPTT_NATIVE)
# the SIMD sets whose kernels this build holds, best first
SIMD_BUILT = tuple(fb_kernels_built().decode().split(","))
# the caches the kernels size their blocks by (csrc/cpu.c)
L1D_BYTES = fb_l1d_bytes()
L2_BYTES = fb_l2_bytes()


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
    double sqrt(double x)
    float sqrtf(float x)
    double fabs(double x)
    bint isfinite(double x)
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


# The bce head in one pass, with the bits of the NumPy head (heads.py) it stands for. That head
# sums with add.reduce, whose order this follows: a run of one dtype is summed pairwise (blocks of
# at most 128 in 8 lanes; see NumPy's loops_utils.h.src); a cast to float64 starts from the first
# entry and adds the pairwise sum of each buffer of BUFSIZE cast entries; a reduction over an
# outer axis adds whole rows in order. Every sum starts from +0.0, the identity.
ctypedef fused real:
    float
    double

cdef Py_ssize_t BUFSIZE = 8192


cdef inline double _bce_at(const real* o, const real* y, real* dO, Py_ssize_t i,
                           real scale) noexcept nogil:
    """The loss term at entry i (cast to float64, as the NumPy head's sum does); dO[i] written."""
    if real is float:
        dO[i] = (<float> 1.0 / (<float> 1.0 + expf(-o[i])) - y[i]) * scale
        return _softplus_f(o[i]) - y[i] * o[i]
    else:
        dO[i] = (1.0 / (1.0 + exp(-o[i])) - y[i]) * scale
        return _softplus_d(o[i]) - y[i] * o[i]


cdef double _bce_pairwise(const real* o, const real* y, real* dO, Py_ssize_t s, Py_ssize_t n,
                          real scale) noexcept nogil:
    """The pairwise sum of the terms at entries [s, s + n), each formed (and dO with it) once."""
    cdef double r[8]
    cdef double res
    cdef Py_ssize_t i, k
    if n < 8:
        res = 0.0
        for i in range(s, s + n):
            res += _bce_at(o, y, dO, i, scale)
        return res
    if n <= 128:
        for k in range(8):
            r[k] = _bce_at(o, y, dO, s + k, scale)
        i = 8
        while i < n - n % 8:
            for k in range(8):
                r[k] += _bce_at(o, y, dO, s + i + k, scale)
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += _bce_at(o, y, dO, s + i, scale)
            i += 1
        return res
    i = n // 2
    i -= i % 8
    return (_bce_pairwise(o, y, dO, s, i, scale)
            + _bce_pairwise(o, y, dO, s + i, n - i, scale))


cdef real _pairwise(const real* a, Py_ssize_t n, Py_ssize_t stride) noexcept nogil:
    cdef real r[8]
    cdef real res
    cdef Py_ssize_t i, k
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i * stride]
        return res
    if n <= 128:
        for k in range(8):
            r[k] = a[k * stride]
        i = 8
        while i < n - n % 8:
            for k in range(8):
                r[k] += a[(i + k) * stride]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += a[i * stride]
            i += 1
        return res
    i = n // 2
    i -= i % 8
    return _pairwise(a, i, stride) + _pairwise(a + i * stride, n - i, stride)


cdef void _sum_rows(const real* a, Py_ssize_t rows, Py_ssize_t cols, real* out) noexcept nogil:
    """out (cols,) = add.reduce over the outer axis of (rows, cols) contiguous a."""
    cdef Py_ssize_t t, k
    if cols == 1:  # NumPy makes it one contiguous run
        out[0] = 0.0 + _pairwise(a, rows, 1)
        return
    for k in range(cols):
        out[k] = 0.0 + a[k]
    for t in range(1, rows):
        for k in range(cols):
            out[k] += a[t * cols + k]


cdef double _bce_grad(const real* o, const real* y, real* dO, real* dc, real* rows, Py_ssize_t T,
                      Py_ssize_t B, Py_ssize_t O, real scale) noexcept nogil:
    """The summed loss; dO = (expit(o) - y) * scale and dc its sum over (T, B), `rows` (B O)
    taking the sums over T first."""
    cdef Py_ssize_t s, m, n = T * B * O
    cdef double loss
    if real is float:  # summed in float64 (a cast), a buffer at a time
        loss = 0.0 + _bce_at(o, y, dO, 0, scale)
        s = 1
        while s < n:
            m = min(BUFSIZE, n - s)
            loss += _bce_pairwise(o, y, dO, s, m, scale)
            s += m
    else:
        loss = 0.0 + _bce_pairwise(o, y, dO, 0, n, scale)
    if B == 1:
        _sum_rows(dO, T, O, dc)
    else:
        _sum_rows(dO, T, B * O, rows)
        _sum_rows(rows, B, O, dc)
    return loss


cdef double _bce_grad_any(const void* o, const void* y, void* dO, void* dc, void* rows,
                          Py_ssize_t T, Py_ssize_t B, Py_ssize_t O, double scale,
                          bint single) noexcept nogil:
    if single:
        return _bce_grad(<const float*> o, <const float*> y, <float*> dO, <float*> dc,
                         <float*> rows, T, B, O, <float> scale)
    return _bce_grad(<const double*> o, <const double*> y, <double*> dO, <double*> dc,
                     <double*> rows, T, B, O, scale)


def bce_loss_grad(cnp.ndarray o not None, cnp.ndarray y not None, double scale,
                  cnp.ndarray dO not None, cnp.ndarray dc not None):
    """The bce head at the logits o (T, B, O): dO = (expit(o) - y) * scale, dc (O,) its sum over
    steps and batch, and the return value, the loss summed over every entry (float64, before
    `scale`); with the operations, and so the bits, of the NumPy head it stands for. None
    (nothing written) unless o, y and dO are C-contiguous (T, B, O) arrays of one float dtype with
    T, B, O > 0 and dc a contiguous (O,) array of it."""
    cdef int kind = cnp.PyArray_TYPE(o)
    cdef bint single = kind == cnp.NPY_FLOAT
    cdef cnp.ndarray a
    if cnp.PyArray_NDIM(o) != 3 or not (single or kind == cnp.NPY_DOUBLE):
        return None
    cdef Py_ssize_t T = o.shape[0], B = o.shape[1], O = o.shape[2]
    if T == 0 or B == 0 or O == 0:
        return None
    for a in (o, y, dO, dc):
        if cnp.PyArray_TYPE(a) != kind or not cnp.PyArray_IS_C_CONTIGUOUS(a):
            return None
    for a in (y, dO):
        if cnp.PyArray_NDIM(a) != 3 or a.shape[0] != T or a.shape[1] != B or a.shape[2] != O:
            return None
    if cnp.PyArray_NDIM(dc) != 1 or dc.shape[0] != O:
        return None
    if not (cnp.PyArray_ISWRITEABLE(dO) and cnp.PyArray_ISWRITEABLE(dc)):
        return None
    cdef double small[512]  # the per-row sums of a batch, usually
    cdef void* rows = small
    if B * O > 512:
        rows = malloc(B * O * sizeof(double))
        if rows == NULL:
            raise MemoryError()
    cdef const void* po = cnp.PyArray_DATA(o)
    cdef const void* py = cnp.PyArray_DATA(y)
    cdef void* pd = cnp.PyArray_DATA(dO)
    cdef void* pc = cnp.PyArray_DATA(dc)
    cdef double loss
    if T * B * O < NOGIL_FROM:
        loss = _bce_grad_any(po, py, pd, pc, rows, T, B, O, scale, single)
    else:
        with nogil:
            loss = _bce_grad_any(po, py, pd, pc, rows, T, B, O, scale, single)
    if rows != <void*> small:
        free(rows)
    return loss


cdef double _abs_max(const void* x, Py_ssize_t n, bint single, double amax) noexcept nogil:
    """max(amax, |x_i|) over the entries, NaN as soon as one is (as np.max gives it)."""
    cdef Py_ssize_t i
    cdef double v
    for i in range(n):
        v = fabs((<const float*> x)[i] if single else (<const double*> x)[i])
        if not v <= amax:  # larger, or NaN
            amax = v
            if amax != amax:
                return amax
    return amax


cdef void _scaled_squares(const void* x, Py_ssize_t n, bint single, double amax,
                          double* out) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s
    for i in range(n):
        s = ((<const float*> x)[i] if single else (<const double*> x)[i]) / amax
        out[i] = s * s


def norm_parts(arrays):
    """(amax, ssq) for global_norm's sqrt: amax the largest |entry| of all the arrays, ssq the
    sum of (entry / amax)^2 over them joined, in float64, with the bits of its NumPy lines (the
    sum in add.reduce's order); ssq is 0 when amax is 0, NaN or Inf. None unless every array is
    a C-contiguous float32 or float64 ndarray."""
    cdef list items = []
    cdef cnp.ndarray a
    cdef Py_ssize_t total = 0, at = 0, n
    cdef int kind
    cdef double amax = 0.0, ssq
    cdef double* buf
    for obj in arrays:
        if type(obj) is not cnp.ndarray:
            return None
        a = <cnp.ndarray> obj
        kind = cnp.PyArray_TYPE(a)
        if not (cnp.PyArray_IS_C_CONTIGUOUS(a) and (kind == cnp.NPY_FLOAT or
                                                    kind == cnp.NPY_DOUBLE)):
            return None
        items.append(a)
        total += cnp.PyArray_SIZE(a)
    for a in items:
        amax = _abs_max(cnp.PyArray_DATA(a), cnp.PyArray_SIZE(a),
                        cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT, amax)
        if amax != amax:
            break
    if total == 0 or amax == 0.0 or not isfinite(amax):
        return amax, 0.0
    buf = <double*> malloc(total * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    for a in items:
        n = cnp.PyArray_SIZE(a)
        _scaled_squares(cnp.PyArray_DATA(a), n, cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT, amax,
                        buf + at)
        at += n
    ssq = 0.0 + _pairwise(buf, total, 1)
    free(buf)
    return amax, ssq


# The optimizers' updates in one pass each, with the bits of their NumPy lines (optim.py): each
# Python scalar is first cast to the parameters' dtype, as NumPy casts it, and every operation
# rounds on its own, in the same order (this module is built without fused multiply-adds)
cdef void _sgd(const real* p, const real* g, real* out, Py_ssize_t n, real lr) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = p[i] - lr * g[i]


cdef void _adam(const real* p, const real* g, const real* m0, const real* v0, real* p1,
                real* m1, real* v1, Py_ssize_t n, real lr, real b1, real c1, real b2, real c2,
                real bc1, real bc2, real eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef real m, v, root
    for i in range(n):
        m = b1 * m0[i] + c1 * g[i]
        v = b2 * v0[i] + c2 * (g[i] * g[i])
        if real is float:
            root = sqrtf(v / bc2)
        else:
            root = sqrt(v / bc2)
        m1[i] = m
        v1[i] = v
        p1[i] = p[i] - lr * (m / bc1) / (root + eps)


cdef bint _alike(tuple arrays, bint writes_from) except -1:
    """Whether the arrays are C-contiguous float32 or float64 ndarrays of one dtype and size, the
    ones from index `writes_from` on writeable."""
    cdef cnp.ndarray a, first
    cdef Py_ssize_t i
    for i in range(len(arrays)):
        if type(arrays[i]) is not cnp.ndarray:
            return False
        a = <cnp.ndarray> arrays[i]
        if i == 0:
            first = a
            if not (cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT or cnp.PyArray_TYPE(a) == cnp.NPY_DOUBLE):
                return False
        if (cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(first) or not cnp.PyArray_IS_C_CONTIGUOUS(a)
                or cnp.PyArray_SIZE(a) != cnp.PyArray_SIZE(first)):
            return False
        if i >= writes_from and not cnp.PyArray_ISWRITEABLE(a):
            return False
    return True


def sgd_step(p, g, out, double lr):
    """out = p - lr g, as SGD's NumPy line; False (nothing written) unless the three are
    C-contiguous float arrays of one dtype and size, out writeable."""
    if not _alike((p, g, out), 2):
        return False
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray> p)
    cdef void* pp = cnp.PyArray_DATA(<cnp.ndarray> p)
    cdef void* pg = cnp.PyArray_DATA(<cnp.ndarray> g)
    cdef void* po = cnp.PyArray_DATA(<cnp.ndarray> out)
    if cnp.PyArray_TYPE(<cnp.ndarray> p) == cnp.NPY_FLOAT:
        _sgd(<const float*> pp, <const float*> pg, <float*> po, n, <float> lr)
    else:
        _sgd(<const double*> pp, <const double*> pg, <double*> po, n, lr)
    return True


def adam_step(p, g, m, v, p_out, m_out, v_out, double lr, double beta1, double beta2,
              double bc1, double bc2, double eps):
    """Adam's NumPy lines in one pass: m_out, v_out the new moments, p_out the new parameters;
    bc1, bc2 the bias corrections 1 - beta^t. False (nothing written) unless the seven are
    C-contiguous float arrays of one dtype and size, the outputs writeable."""
    if not _alike((p, g, m, v, p_out, m_out, v_out), 4):
        return False
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray> p)
    cdef void* a[7]
    cdef Py_ssize_t i
    for i, x in enumerate((p, g, m, v, p_out, m_out, v_out)):
        a[i] = cnp.PyArray_DATA(<cnp.ndarray> x)
    if cnp.PyArray_TYPE(<cnp.ndarray> p) == cnp.NPY_FLOAT:
        _adam(<const float*> a[0], <const float*> a[1], <const float*> a[2],
              <const float*> a[3], <float*> a[4], <float*> a[5], <float*> a[6], n, <float> lr,
              <float> beta1, <float> (1 - beta1), <float> beta2, <float> (1 - beta2),
              <float> bc1, <float> bc2, <float> eps)
    else:
        _adam(<const double*> a[0], <const double*> a[1], <const double*> a[2],
              <const double*> a[3], <double*> a[4], <double*> a[5], <double*> a[6], n, lr,
              beta1, 1 - beta1, beta2, 1 - beta2, bc1, bc2, eps)
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
