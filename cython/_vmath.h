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

/* Inline tanh on whole registers, for kernels that keep their tile in registers (no call, no spill).
 *
 * tanh|x| = e / (e + 2) with e = expm1(2|x|): no cancellation near 0, so the relative error stays within
 * a few ulp everywhere. expm1(y) = 2^n (1 + p(r)) - 1 with y = n ln2 + r, |r| <= ln2 / 2, p the Taylor
 * series of expm1 (to r^13 for double, r^7 for float: the first dropped term is below half an ulp).
 * |x| is clamped where tanh rounds to 1 (20 for double, 10 for float); NaN passes through the clamp.
 */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FASTBPTT_INLINE_TANH 1

static inline __m256d fb_tanh4(__m256d x) {
    const __m256d sign = _mm256_set1_pd(-0.0);
    __m256d ax = _mm256_min_pd(_mm256_set1_pd(20.0), _mm256_andnot_pd(sign, x));
    __m256d y = _mm256_add_pd(ax, ax);
    /* n = round(y / ln2) in the low mantissa bits of t (the 1.5 * 2^52 shift rounds to nearest) */
    const __m256d shift = _mm256_set1_pd(6755399441055744.0);
    __m256d t = _mm256_fmadd_pd(y, _mm256_set1_pd(1.4426950408889634), shift);
    __m256d n = _mm256_sub_pd(t, shift);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), y);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
    /* p(r) = r + r^2 (1/2! + r/3! + ... + r^11/13!), Estrin's scheme for a short dependency chain */
    __m256d r2 = _mm256_mul_pd(r, r), r4 = _mm256_mul_pd(r2, r2), r8 = _mm256_mul_pd(r4, r4);
    __m256d c01 = _mm256_fmadd_pd(r, _mm256_set1_pd(1.0 / 6), _mm256_set1_pd(1.0 / 2));
    __m256d c23 = _mm256_fmadd_pd(r, _mm256_set1_pd(1.0 / 120), _mm256_set1_pd(1.0 / 24));
    __m256d c45 = _mm256_fmadd_pd(r, _mm256_set1_pd(1.0 / 5040), _mm256_set1_pd(1.0 / 720));
    __m256d c67 = _mm256_fmadd_pd(r, _mm256_set1_pd(1.0 / 362880), _mm256_set1_pd(1.0 / 40320));
    __m256d c89 = _mm256_fmadd_pd(r, _mm256_set1_pd(1.0 / 39916800), _mm256_set1_pd(1.0 / 3628800));
    __m256d c1011 = _mm256_fmadd_pd(r, _mm256_set1_pd(1.0 / 6227020800.0),
                                    _mm256_set1_pd(1.0 / 479001600));
    __m256d q03 = _mm256_fmadd_pd(r2, c23, c01);
    __m256d q47 = _mm256_fmadd_pd(r2, c67, c45);
    __m256d q811 = _mm256_fmadd_pd(r2, c1011, c89);
    __m256d q = _mm256_fmadd_pd(r8, q811, _mm256_fmadd_pd(r4, q47, q03));
    __m256d p = _mm256_fmadd_pd(r2, q, r);
    /* s = 2^n through the exponent field; e = s p + (s - 1), exact when n = 0 */
    __m256i bits = _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)),
                                     52);
    __m256d s = _mm256_castsi256_pd(bits);
    __m256d e = _mm256_fmadd_pd(s, p, _mm256_sub_pd(s, _mm256_set1_pd(1.0)));
    __m256d th = _mm256_div_pd(e, _mm256_add_pd(e, _mm256_set1_pd(2.0)));
    return _mm256_or_pd(th, _mm256_and_pd(sign, x));
}

static inline __m256 fb_tanh8f(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_min_ps(_mm256_set1_ps(10.0f), _mm256_andnot_ps(sign, x));
    __m256 y = _mm256_add_ps(ax, ax);
    const __m256 shift = _mm256_set1_ps(12582912.0f);  /* 1.5 * 2^23 */
    __m256 t = _mm256_fmadd_ps(y, _mm256_set1_ps(1.44269504f), shift);
    __m256 n = _mm256_sub_ps(t, shift);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), y);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-06f), r);
    __m256 r2 = _mm256_mul_ps(r, r), r4 = _mm256_mul_ps(r2, r2);
    __m256 c01 = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 6), _mm256_set1_ps(0.5f));
    __m256 c23 = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 120), _mm256_set1_ps(1.0f / 24));
    __m256 c45 = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 5040), _mm256_set1_ps(1.0f / 720));
    __m256 q = _mm256_fmadd_ps(r4, c45, _mm256_fmadd_ps(r2, c23, c01));
    __m256 p = _mm256_fmadd_ps(r2, q, r);
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)),
                                     23);
    __m256 s = _mm256_castsi256_ps(bits);
    __m256 e = _mm256_fmadd_ps(s, p, _mm256_sub_ps(s, _mm256_set1_ps(1.0f)));
    __m256 th = _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
    return _mm256_or_ps(th, _mm256_and_ps(sign, x));
}

/* Arrays, in place; the tail goes through a zero-padded register. */
static inline void fb_tanh_d(double* x, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(x + i, fb_tanh4(_mm256_loadu_pd(x + i)));
    if (i < n) {
        double buf[4] = {0};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(double));
        _mm256_storeu_pd(buf, fb_tanh4(_mm256_loadu_pd(buf)));
        memcpy(x + i, buf, (size_t)(n - i) * sizeof(double));
    }
}

static inline void fb_tanh_f(float* x, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, fb_tanh8f(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(buf, fb_tanh8f(_mm256_loadu_ps(buf)));
        memcpy(x + i, buf, (size_t)(n - i) * sizeof(float));
    }
}
#else
#define FASTBPTT_INLINE_TANH 0
static inline void fb_tanh_d(double* x, ptrdiff_t n) { fb_vtanh_d(x, n); }
static inline void fb_tanh_f(float* x, ptrdiff_t n) { fb_vtanh_f(x, n); }
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
