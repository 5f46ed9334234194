/* Elementwise tanh and sigmoid over contiguous arrays, in place.
 *
 * With AVX2 and glibc's vector math library (libmvec, probed by setup.py, which then defines
 * FASTBPTT_LIBMVEC and links -lmvec) four doubles or eight floats go through one call; otherwise a
 * scalar libm loop. Both stay within a few ulp of the correctly rounded result.
 */
#ifndef FASTBPTT_VMATH_H
#define FASTBPTT_VMATH_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(FASTBPTT_LIBMVEC) && defined(__AVX2__)
#include <immintrin.h>
#define FASTBPTT_VECTOR_MATH 1
__m256d _ZGVdN4v_tanh(__m256d);
__m256d _ZGVdN4v_exp(__m256d);
__m256 _ZGVdN8v_tanhf(__m256);
__m256 _ZGVdN8v_expf(__m256);

static inline __m256d fb_sigmoid4(__m256d x) {
    const __m256d one = _mm256_set1_pd(1.0);
    __m256d e = _ZGVdN4v_exp(_mm256_sub_pd(_mm256_setzero_pd(), x));
    return _mm256_div_pd(one, _mm256_add_pd(one, e));
}

static inline __m256 fb_sigmoid8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = _ZGVdN8v_expf(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

/* The tail (n not a multiple of the width) goes through a zero-padded lane buffer. */
#define FB_APPLY(NAME, T, W, VT, LOAD, STORE, FN)                        \
    static inline void NAME(T* x, ptrdiff_t n) {                         \
        ptrdiff_t i = 0;                                                 \
        for (; i + W <= n; i += W) STORE(x + i, FN(LOAD(x + i)));        \
        if (i < n) {                                                     \
            T buf[W] = {0};                                              \
            memcpy(buf, x + i, (size_t)(n - i) * sizeof(T));             \
            STORE(buf, FN(LOAD(buf)));                                   \
            memcpy(x + i, buf, (size_t)(n - i) * sizeof(T));             \
        }                                                                \
    }

FB_APPLY(fb_vtanh_d, double, 4, __m256d, _mm256_loadu_pd, _mm256_storeu_pd, _ZGVdN4v_tanh)
FB_APPLY(fb_vtanh_f, float, 8, __m256, _mm256_loadu_ps, _mm256_storeu_ps, _ZGVdN8v_tanhf)
FB_APPLY(fb_vsigmoid_d, double, 4, __m256d, _mm256_loadu_pd, _mm256_storeu_pd, fb_sigmoid4)
FB_APPLY(fb_vsigmoid_f, float, 8, __m256, _mm256_loadu_ps, _mm256_storeu_ps, fb_sigmoid8)
#undef FB_APPLY

#else
#define FASTBPTT_VECTOR_MATH 0

static inline void fb_vtanh_d(double* x, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) x[i] = tanh(x[i]);
}
static inline void fb_vtanh_f(float* x, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}
/* exp overflowing to inf gives exactly 0, never NaN */
static inline void fb_vsigmoid_d(double* x, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) x[i] = 1.0 / (1.0 + exp(-x[i]));
}
static inline void fb_vsigmoid_f(float* x, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
}
#endif

/* 1 when every x[i] is finite: x * 0 is NaN exactly for NaN and +-inf. The simd reduction lets the
 * compiler keep several partial sums, so the check costs a fraction of a cycle per element. */
#define FB_ALL_FINITE(NAME, T)                                           \
    static inline int NAME(const T* x, ptrdiff_t n) {                    \
        T s = 0;                                                         \
        _Pragma("omp simd reduction(+:s)")                               \
        for (ptrdiff_t i = 0; i < n; i++) s += x[i] * 0;                 \
        return s == 0;                                                   \
    }
FB_ALL_FINITE(fb_all_finite_d, double)
FB_ALL_FINITE(fb_all_finite_f, float)
#undef FB_ALL_FINITE

#endif
