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

/* Inline tanh and sigmoid on whole registers, for kernels that keep their tile in registers (no call, no
 * spill).
 *
 * tanh|x| = e / (e + 2) with e = expm1(2|x|): no cancellation near 0. expm1(y) = 2^n (1 + p(r)) - 1 with
 * y = n ln2 + r, |r| <= ln2 / 2, p(r) = r + r^2 q(r), q the minimax polynomial (Remez, weighted for relative
 * error in p) for (expm1(r) - r) / r^2: degree 9 for double (fit error 0.16 x 2^-53), degree 5 for float
 * (0.004 x 2^-24). |x| is clamped where tanh rounds to 1 (20 for double, 9.1 for float); NaN passes through
 * the clamp, the sign is put back last (tanh(-0) = -0). Measured max error against tanhl: double 2.67 ulp
 * near |x| = 0.22 (1e8 points over [-25, 25]), float 2.46 ulp at x = 0.0311 (every float in [0, 10]);
 * the roundings of e + 2 and of the division account for most of it (the Taylor version before: 2.63, 2.46).
 * sigmoid(x) = 1 / (1 + E), E = exp(-x) = 2^n (1 + p(r)) with the same p, relative error: max 1.7 ulp for
 * x > -36.4 (double) / -16.3 (float), 2.45 ulp below (n > 52 / 23: s + 1 no longer exact, results under
 * 2e-16 / 9e-8); exactly 1 for large x, exactly 0 below the clamp (-708 / -87).
 */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FASTBPTT_INLINE_TANH 1
#define FASTBPTT_INLINE_SIGMOID 1

/* p(r) = r + r^2 q(r) ~ expm1(r) for |r| <= ln2 / 2, Estrin's scheme for a short dependency chain;
 * q's coefficients lowest first, FB_PAIR(k) = c[k] + c[k + 1] r */
static const double fb_expm1_q_d[10] = {
    0.50000000000000056, 0.16666666666666588, 0.041666666666576813, 0.008333333333389514,
    0.0013888888931544163, 0.00019841269719067829, 2.4801505300369403e-05, 2.7557407513162235e-06,
    2.7626026743057467e-07, 2.505377485262692e-08};
static const float fb_expm1_q_f[6] = {
    0.5f, 0.1666666567325592f, 0.041666362434625626f, 0.008333389647305012f, 0.0013940618373453617f,
    0.00019845877250190824f};

#define FB_PAIR(k) \
    _mm256_fmadd_pd(r, _mm256_set1_pd(fb_expm1_q_d[k + 1]), _mm256_set1_pd(fb_expm1_q_d[k]))
static inline __m256d fb_expm1_poly4(__m256d r) {
    __m256d r2 = _mm256_mul_pd(r, r), r4 = _mm256_mul_pd(r2, r2);
    __m256d q47 = _mm256_fmadd_pd(r2, FB_PAIR(6), FB_PAIR(4));
    __m256d q03 = _mm256_fmadd_pd(r2, FB_PAIR(2), FB_PAIR(0));
    __m256d q = _mm256_fmadd_pd(r4, _mm256_fmadd_pd(r4, FB_PAIR(8), q47), q03);
    return _mm256_fmadd_pd(r2, q, r);
}
#undef FB_PAIR

#define FB_PAIR(k) \
    _mm256_fmadd_ps(r, _mm256_set1_ps(fb_expm1_q_f[k + 1]), _mm256_set1_ps(fb_expm1_q_f[k]))
static inline __m256 fb_expm1_poly8f(__m256 r) {
    __m256 r2 = _mm256_mul_ps(r, r), r4 = _mm256_mul_ps(r2, r2);
    __m256 q = _mm256_fmadd_ps(r4, FB_PAIR(4), _mm256_fmadd_ps(r2, FB_PAIR(2), FB_PAIR(0)));
    return _mm256_fmadd_ps(r2, q, r);
}
#undef FB_PAIR

/* n = round(y / ln2) + bias sits in the low mantissa bits of y / ln2 + 1.5 * 2^52 + bias; shifted up, those
 * bits are the exponent field of 2^n */
#define FB_SHIFT_D (6755399441055744.0 + 1023.0)
#define FB_SHIFT_F (12582912.0f + 127.0f)

static inline __m256d fb_tanh4(__m256d x) {
    const __m256d sign = _mm256_set1_pd(-0.0);
    const __m256d shift = _mm256_set1_pd(FB_SHIFT_D);
    __m256d ax = _mm256_min_pd(_mm256_set1_pd(20.0), _mm256_andnot_pd(sign, x));
    /* t from |x| directly (2 / ln2) so that y = 2|x| is off the critical path */
    __m256d t = _mm256_fmadd_pd(ax, _mm256_set1_pd(2.8853900817779268), shift);
    __m256d n = _mm256_sub_pd(t, shift);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), _mm256_add_pd(ax, ax));
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
    __m256d p = fb_expm1_poly4(r);
    /* s = 2^n; e = s p + (s - 1), exact when n = 0 */
    __m256d s = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), 52));
    __m256d e = _mm256_fmadd_pd(s, p, _mm256_sub_pd(s, _mm256_set1_pd(1.0)));
    __m256d th = _mm256_div_pd(e, _mm256_add_pd(e, _mm256_set1_pd(2.0)));
    return _mm256_or_pd(th, _mm256_and_pd(sign, x));
}

static inline __m256 fb_tanh8f(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 shift = _mm256_set1_ps(FB_SHIFT_F);
    __m256 ax = _mm256_min_ps(_mm256_set1_ps(9.1f), _mm256_andnot_ps(sign, x));
    __m256 t = _mm256_fmadd_ps(ax, _mm256_set1_ps(2.88539008f), shift);
    __m256 n = _mm256_sub_ps(t, shift);
    /* one-step reduction: n <= 26 and ln2's float error (1.9e-9) cost under 0.1 ulp */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147182f), _mm256_add_ps(ax, ax));
    __m256 p = fb_expm1_poly8f(r);
    __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
    __m256 e = _mm256_fmadd_ps(s, p, _mm256_sub_ps(s, _mm256_set1_ps(1.0f)));
    __m256 th = _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
    return _mm256_or_ps(th, _mm256_and_ps(sign, x));
}

/* The clamp keeps 2^n normal; below it the result is forced to 0 (NaN kept: the compare is unordered-true) */
static inline __m256d fb_sigmoid4i(__m256d x) {
    const __m256d shift = _mm256_set1_pd(FB_SHIFT_D);
    __m256d xc = _mm256_max_pd(_mm256_set1_pd(-708.0), _mm256_min_pd(_mm256_set1_pd(708.0), x));
    __m256d t = _mm256_fnmadd_pd(xc, _mm256_set1_pd(1.4426950408889634), shift);
    __m256d n = _mm256_sub_pd(t, shift);
    /* r = -x - n ln2 */
    __m256d r = _mm256_fnmsub_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), xc);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
    __m256d p = fb_expm1_poly4(r);
    __m256d s = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), 52));
    /* 1 + E = s p + (s + 1) in one rounding (s + 1 exact while n <= 52) */
    __m256d den = _mm256_fmadd_pd(s, p, _mm256_add_pd(s, _mm256_set1_pd(1.0)));
    __m256d sig = _mm256_div_pd(_mm256_set1_pd(1.0), den);
    return _mm256_and_pd(sig, _mm256_cmp_pd(x, _mm256_set1_pd(-708.0), _CMP_NLE_UQ));
}

static inline __m256 fb_sigmoid8fi(__m256 x) {
    const __m256 shift = _mm256_set1_ps(FB_SHIFT_F);
    __m256 xc = _mm256_max_ps(_mm256_set1_ps(-87.0f), _mm256_min_ps(_mm256_set1_ps(87.0f), x));
    __m256 t = _mm256_fnmadd_ps(xc, _mm256_set1_ps(1.44269504f), shift);
    __m256 n = _mm256_sub_ps(t, shift);
    /* two-step reduction: n reaches 126 here */
    __m256 r = _mm256_fnmsub_ps(n, _mm256_set1_ps(0.693145752f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-06f), r);
    __m256 p = fb_expm1_poly8f(r);
    __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
    __m256 den = _mm256_fmadd_ps(s, p, _mm256_add_ps(s, _mm256_set1_ps(1.0f)));
    __m256 sig = _mm256_div_ps(_mm256_set1_ps(1.0f), den);
    return _mm256_and_ps(sig, _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_NLE_UQ));
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
