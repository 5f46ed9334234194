# Row-major BLAS wrappers over scipy.linalg.cython_blas, fused over float/double.
# BLAS is column-major: a row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T,
# so every call swaps the operands (and m with n) instead of transposing anything.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm, dgemv, sgemv


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* A, int lda,
                      const floating* B, int ldb,
                      floating beta, floating* C, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, all row-major."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is double:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> B, &ldb, <double*> A, &lda,
              &beta, C, &ldc)
    else:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> B, &ldb, <float*> A, &lda,
              &beta, C, &ldc)


cdef inline void gemv(bint trans_a, int m, int n, floating alpha, const floating* A, int lda,
                      const floating* x, floating beta, floating* y) noexcept nogil:
    """y = alpha * op(A) @ x + beta * y with A (m, n) row-major."""
    # Row-major A is column-major A^T (n, m): flip the transpose flag.
    cdef char t = b'N' if trans_a else b'T'
    cdef int one = 1
    if floating is double:
        dgemv(&t, &n, &m, &alpha, <double*> A, &lda, <double*> x, &one, &beta, y, &one)
    else:
        sgemv(&t, &n, &m, &alpha, <float*> A, &lda, <float*> x, &one, &beta, y, &one)
