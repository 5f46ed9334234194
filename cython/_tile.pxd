# Register-tiled kernels of cython/_tile.h, fused over float/double: the per-step recurrent product with
# its constant operand packed once (pack, gemm_packed), and the Elman recurrence of one sequence.
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
    int FB_NV_MAX
    int FB_TB
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
    Py_ssize_t fb_elman_fwd_tiled_d(int act, const double* PW, const double* A, const double* X,
                                    Py_ssize_t I, const double* PU, const double* bias, double* H,
                                    Py_ssize_t T, Py_ssize_t B, Py_ssize_t n, Py_ssize_t O,
                                    const double* V, const double* PV, const double* c,
                                    double* out, int n_threads) noexcept
    Py_ssize_t fb_elman_fwd_tiled_f(int act, const float* PW, const float* A, const float* X,
                                    Py_ssize_t I, const float* PU, const float* bias, float* H,
                                    Py_ssize_t T, Py_ssize_t B, Py_ssize_t n, Py_ssize_t O,
                                    const float* V, const float* PV, const float* c,
                                    float* out, int n_threads) noexcept
    size_t fb_gemm_tn_cat_work_d() noexcept
    size_t fb_gemm_tn_cat_work_f() noexcept
    Py_ssize_t fb_elman_bwd_tiled_d(int act, const double* P, const double* H, const double* dH,
                                    const double* dO, Py_ssize_t O, const double* PV,
                                    int fold_dO, double* dA, double* dh, const double* X,
                                    Py_ssize_t I, double* G, Py_ssize_t ldg, double* db,
                                    double* ring, double* work, Py_ssize_t span, Py_ssize_t T,
                                    Py_ssize_t B, Py_ssize_t n, int n_threads) noexcept
    Py_ssize_t fb_elman_bwd_tiled_f(int act, const float* P, const float* H, const float* dH,
                                    const float* dO, Py_ssize_t O, const float* PV, int fold_dO,
                                    float* dA, float* dh, const float* X, Py_ssize_t I, float* G,
                                    Py_ssize_t ldg, float* db, float* ring, float* work,
                                    Py_ssize_t span, Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                                    int n_threads) noexcept
    Py_ssize_t fb_elman_fwd_d(int nv, int act, Py_ssize_t T, const double* Wt, const double* A,
                              Py_ssize_t sa, const double* X, Py_ssize_t sx, Py_ssize_t I,
                              const double* Ut, const double* bias, double* H, Py_ssize_t sh,
                              Py_ssize_t O, const double* V, const double* c, double* out,
                              Py_ssize_t so) noexcept
    Py_ssize_t fb_elman_fwd_f(int nv, int act, Py_ssize_t T, const float* Wt, const float* A,
                              Py_ssize_t sa, const float* X, Py_ssize_t sx, Py_ssize_t I,
                              const float* Ut, const float* bias, float* H, Py_ssize_t sh,
                              Py_ssize_t O, const float* V, const float* c, float* out,
                              Py_ssize_t so) noexcept
    Py_ssize_t fb_elman_bwd_d(int nv, int act, Py_ssize_t T, const double* W, const double* H,
                              Py_ssize_t sh, const double* dH, Py_ssize_t sg, const double* dO,
                              Py_ssize_t so, Py_ssize_t O, const double* V, double* dA,
                              Py_ssize_t sa, double* dh, const double* X, Py_ssize_t sx,
                              Py_ssize_t I, double* G, double* db, double* ring,
                              double* work) noexcept
    Py_ssize_t fb_elman_bwd_f(int nv, int act, Py_ssize_t T, const float* W, const float* H,
                              Py_ssize_t sh, const float* dH, Py_ssize_t sg, const float* dO,
                              Py_ssize_t so, Py_ssize_t O, const float* V, float* dA,
                              Py_ssize_t sa, float* dh, const float* X, Py_ssize_t sx,
                              Py_ssize_t I, float* G, float* db, float* ring,
                              float* work) noexcept


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


cdef inline Py_ssize_t elman_seq_forward(int nv, int act, Py_ssize_t T, const floating* Wt,
                                         const floating* A, Py_ssize_t sa, const floating* X,
                                         Py_ssize_t sx, Py_ssize_t I, const floating* Ut,
                                         const floating* bias, floating* H, Py_ssize_t sh,
                                         Py_ssize_t O, const floating* V, const floating* c,
                                         floating* out, Py_ssize_t so) noexcept nogil:
    """One sequence through all T steps; a_t from A, or bias + U x_t when X is not NULL; with out
    (rows so apart), the logits V h_t + c of each step too (V (O, n) as given)."""
    if floating is float:
        return fb_elman_fwd_f(nv, act, T, Wt, A, sa, X, sx, I, Ut, bias, H, sh, O, V, c, out, so)
    else:
        return fb_elman_fwd_d(nv, act, T, Wt, A, sa, X, sx, I, Ut, bias, H, sh, O, V, c, out, so)


cdef inline Py_ssize_t elman_seq_backward(int nv, int act, Py_ssize_t T, const floating* W,
                                          const floating* H, Py_ssize_t sh, const floating* dH,
                                          Py_ssize_t sg, const floating* dO, Py_ssize_t so,
                                          Py_ssize_t O, const floating* V, floating* dA,
                                          Py_ssize_t sa, floating* dh, const floating* X,
                                          Py_ssize_t sx, Py_ssize_t I, floating* G, floating* db,
                                          floating* ring, floating* work) noexcept nogil:
    """One sequence backward through all T steps, the loss gradient at h_t being dH's row t (dH
    may be NULL) plus dO_t V when dO is not NULL; with G, also dU^T / dW^T (G) and db
    (work: gemm_tn_work(max(I, n), n) elements)."""
    if floating is float:
        return fb_elman_bwd_f(nv, act, T, W, H, sh, dH, sg, dO, so, O, V, dA, sa, dh, X, sx, I,
                              G, db, ring, work)
    else:
        return fb_elman_bwd_d(nv, act, T, W, H, sh, dH, sg, dO, so, O, V, dA, sa, dh, X, sx, I,
                              G, db, ring, work)


cdef inline Py_ssize_t tile_chunks(int n_threads, Py_ssize_t rows) noexcept nogil:
    """Chunks the tiled loops cut `rows` into for n_threads (1: no tasks)."""
    return fb_chunks_d(n_threads, rows)


cdef inline Py_ssize_t elman_tiled_forward(int act, const floating* PW, const floating* A,
                                           const floating* X, Py_ssize_t I, const floating* PU,
                                           const floating* bias, floating* H, Py_ssize_t T,
                                           Py_ssize_t B, Py_ssize_t n, Py_ssize_t O,
                                           const floating* V, const floating* PV,
                                           const floating* c, floating* out,
                                           int n_threads) noexcept nogil:
    """All T steps of the batch, one tiled product per step (chunks as OpenMP tasks); with out
    (T, B, O), the logits c + h_t V^T of each chunk's rows after its states (V (O, n) as given;
    by the register tile over PV = V^T packed when not NULL, else by dot products)."""
    if floating is float:
        return fb_elman_fwd_tiled_f(act, PW, A, X, I, PU, bias, H, T, B, n, O, V, PV, c, out,
                                    n_threads)
    else:
        return fb_elman_fwd_tiled_d(act, PW, A, X, I, PU, bias, H, T, B, n, O, V, PV, c, out,
                                    n_threads)


cdef inline Py_ssize_t gemm_tn_cat_work(const floating* like) noexcept nogil:
    """Elements of scratch one chunk of elman_tiled_backward's weight-gradient fold needs."""
    if floating is float:
        return fb_gemm_tn_cat_work_f()
    else:
        return fb_gemm_tn_cat_work_d()


cdef inline Py_ssize_t elman_tiled_backward(int act, const floating* P, const floating* H,
                                            const floating* dH, const floating* dO, Py_ssize_t O,
                                            const floating* PV, bint fold_dO, floating* dA,
                                            floating* dh, const floating* X, Py_ssize_t I,
                                            floating* G, Py_ssize_t ldg, floating* db,
                                            floating* ring, floating* work, Py_ssize_t span,
                                            Py_ssize_t T, Py_ssize_t B, Py_ssize_t n,
                                            int n_threads) noexcept nogil:
    """Backward through all T steps of the batch, the loss gradient at h_t being dH_t (dH may be
    NULL) plus dO_t V when dO is not NULL (PV: V packed); with G, the weight gradients folded into
    G = [dW | dU] (ldg columns) and db, and with fold_dO also [dV | dO^T X] in G's O rows below."""
    if floating is float:
        return fb_elman_bwd_tiled_f(act, P, H, dH, dO, O, PV, fold_dO, dA, dh, X, I, G, ldg, db,
                                    ring, work, span, T, B, n, n_threads)
    else:
        return fb_elman_bwd_tiled_d(act, P, H, dH, dO, O, PV, fold_dO, dA, dh, X, I, G, ldg, db,
                                    ring, work, span, T, B, n, n_threads)


cdef inline int bind_set(str name) except -1:
    """From now on this module calls the kernels of SIMD set `name` (fastbptt._simd checked the CPU)."""
    if fb_bind(name.encode()) != 0:
        raise ValueError(f"this build has no {name!r} kernels")
    return 0
