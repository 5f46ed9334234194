# Register-tiled kernels of cython/_tile.h, fused over float/double: the per-step recurrent product with
# its constant operand packed once (pack, gemm_packed), and the weight-gradient product (gemm_tn).
from cython cimport floating

cdef extern from "_dispatch.h" nogil:
    int fb_bind(const char* name)
    Py_ssize_t fb_lanes_d() noexcept
    Py_ssize_t fb_lanes_f() noexcept
    void fb_cols_d(const double* src, Py_ssize_t lds, Py_ssize_t rows, Py_ssize_t cols,
                   double* dst, Py_ssize_t ldd) noexcept
    void fb_cols_f(const float* src, Py_ssize_t lds, Py_ssize_t rows, Py_ssize_t cols,
                   float* dst, Py_ssize_t ldd) noexcept
    int FASTBPTT_TILED
    size_t fb_pack_size_d(Py_ssize_t K, Py_ssize_t N) noexcept
    size_t fb_pack_size_f(Py_ssize_t K, Py_ssize_t N) noexcept
    void fb_pack_d(const double* B, Py_ssize_t ldb, int trans, Py_ssize_t K, Py_ssize_t N,
                   double* P) noexcept
    void fb_pack_f(const float* B, Py_ssize_t ldb, int trans, Py_ssize_t K, Py_ssize_t N,
                   float* P) noexcept
    void fb_gemm_packed_d(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double* A, Py_ssize_t lda,
                          const double* P, const double* bias, const double* C0, Py_ssize_t ldc0,
                          double* C, Py_ssize_t ldc) noexcept
    void fb_gemm_packed_f(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A, Py_ssize_t lda,
                          const float* P, const float* bias, const float* C0, Py_ssize_t ldc0,
                          float* C, Py_ssize_t ldc) noexcept
    size_t fb_gemm_tn_work_d(Py_ssize_t M, Py_ssize_t N) noexcept
    size_t fb_gemm_tn_work_f(Py_ssize_t M, Py_ssize_t N) noexcept
    void fb_gemm_tn_d(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double* A, Py_ssize_t lda,
                      const double* B, Py_ssize_t ldb, double* C, Py_ssize_t ldc,
                      double* work) noexcept
    void fb_gemm_tn_f(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A, Py_ssize_t lda,
                      const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc,
                      float* work) noexcept
    Py_ssize_t fb_chunks_d(int n_threads, Py_ssize_t rows) noexcept

cdef inline Py_ssize_t lanes(const floating* p) noexcept nogil:
    """Elements per vector register (the unit n must be a multiple of for the sequence kernels)."""
    if floating is float:
        return fb_lanes_f()
    else:
        return fb_lanes_d()


cdef inline void cols(const floating* src, Py_ssize_t lds, Py_ssize_t rows, Py_ssize_t ncols,
                      floating* dst, Py_ssize_t ldd) noexcept nogil:
    """dst[k * ldd + b] = src[b * lds + k]: `rows` rows of src stored as columns of dst (a transpose,
    by register blocks where the set has them)."""
    if floating is float:
        fb_cols_f(src, lds, rows, ncols, dst, ldd)
    else:
        fb_cols_d(src, lds, rows, ncols, dst, ldd)


cdef inline Py_ssize_t pack_size(const floating* p, Py_ssize_t K, Py_ssize_t N) noexcept nogil:
    """Elements a packed K x N operand takes."""
    if floating is float:
        return fb_pack_size_f(K, N)
    else:
        return fb_pack_size_d(K, N)


cdef inline void pack(const floating* B, Py_ssize_t ldb, bint trans, Py_ssize_t K, Py_ssize_t N,
                      floating* P) noexcept nogil:
    """P <- op(B) (K x N) in panels; op(B) = B, or B^T (B then N x K) when trans."""
    if floating is float:
        fb_pack_f(B, ldb, trans, K, N, P)
    else:
        fb_pack_d(B, ldb, trans, K, N, P)


cdef inline void gemm_packed(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating* A,
                             Py_ssize_t lda, const floating* P, const floating* bias,
                             const floating* C0, Py_ssize_t ldc0, floating* C,
                             Py_ssize_t ldc) noexcept nogil:
    """C (M, N) = C0 + bias + A (M, K) @ op(B), op(B) packed by `pack`, bias (N,) added to every row;
    C0 and bias may be NULL, C0 may be C itself."""
    if floating is float:
        fb_gemm_packed_f(M, N, K, A, lda, P, bias, C0, ldc0, C, ldc)
    else:
        fb_gemm_packed_d(M, N, K, A, lda, P, bias, C0, ldc0, C, ldc)


cdef inline Py_ssize_t gemm_tn_work(const floating* like, Py_ssize_t M,
                                    Py_ssize_t N) noexcept nogil:
    """Elements of scratch gemm_tn needs for an (M, N) result."""
    if floating is float:
        return fb_gemm_tn_work_f(M, N)
    else:
        return fb_gemm_tn_work_d(M, N)


cdef inline void gemm_tn(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating* A,
                         Py_ssize_t lda, const floating* B, Py_ssize_t ldb, floating* C,
                         Py_ssize_t ldc, floating* work) noexcept nogil:
    """C (M, N) += A^T B, A (K, M) and B (K, N) row-major: a weight gradient sum_k a_k^T b_k.
    work: gemm_tn_work(M, N) elements of scratch (NULL works, slower)."""
    if floating is float:
        fb_gemm_tn_f(M, N, K, A, lda, B, ldb, C, ldc, work)
    else:
        fb_gemm_tn_d(M, N, K, A, lda, B, ldb, C, ldc, work)


cdef inline Py_ssize_t tile_chunks(int n_threads, Py_ssize_t rows) noexcept nogil:
    """Blocks of rows the tiled loops cut `rows` into for n_threads (1: run on the calling thread)."""
    return fb_chunks_d(n_threads, rows)


cdef inline int bind_set(str name) except -1:
    """From now on this module calls the kernels of SIMD set `name` (fastbptt._simd checked the CPU)."""
    if fb_bind(name.encode()) != 0:
        raise ValueError(f"this build has no {name!r} kernels")
    return 0
