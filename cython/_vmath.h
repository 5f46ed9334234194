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

#include "_vec.h"

#if defined(FASTBPTT_LIBMVEC) && defined(__AVX2__)
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

/* Inline tanh and sigmoid on whole registers of the set's width (_vec.h), for kernels that keep their
 * tile in registers (no call, no spill).
 *
 * tanh|x| = e / (e + 2) with e = expm1(2|x|): no cancellation near 0. expm1(y) = 2^n (1 + p(r)) - 1 with
 * y = n ln2 + r, |r| <= ln2 / 2, p(r) = r + r^2 q(r), q the minimax polynomial (Remez, weighted for relative
 * error in p) for (expm1(r) - r) / r^2: degree 9 for double (fit error 0.16 x 2^-53), degree 5 for float
 * (0.004 x 2^-24). |x| is clamped where tanh rounds to 1 (20 for double, 9.1 for float); NaN passes through
 * the clamp, the sign is put back last (tanh(-0) = -0). Measured max error against tanhl: double 2.67 ulp
 * near |x| = 0.22 (1e8 points over [-25, 25]), float 2.46 ulp at x = 0.0311 (every float in [0, 10]);
 * the roundings of e + 2 and of the division account for most of it.
 * sigmoid(x) = 1 / (1 + E), E = exp(-x) = 2^n (1 + p(r)) with the same p, relative error: max 1.7 ulp for
 * x > -36.4 (double) / -16.3 (float), 2.45 ulp below (n > 52 / 23: s + 1 no longer exact, results under
 * 2e-16 / 9e-8); exactly 1 for large x, exactly 0 below the clamp (-708 / -87).
 */

/* p(r) = r + r^2 q(r) ~ expm1(r) for |r| <= ln2 / 2, Estrin's scheme for a short dependency chain;
 * q's coefficients lowest first, FB_PAIR(k) = c[k] + c[k + 1] r */
static const double fb_expm1_q_d[10] = {
    0.50000000000000056, 0.16666666666666588, 0.041666666666576813, 0.008333333333389514,
    0.0013888888931544163, 0.00019841269719067829, 2.4801505300369403e-05, 2.7557407513162235e-06,
    2.7626026743057467e-07, 2.505377485262692e-08};
static const float fb_expm1_q_f[6] = {
    0.5f, 0.1666666567325592f, 0.041666362434625626f, 0.008333389647305012f, 0.0013940618373453617f,
    0.00019845877250190824f};

#define FB_PAIR(k) fb_fma_d(r, fb_set1_d(fb_expm1_q_d[k + 1]), fb_set1_d(fb_expm1_q_d[k]))
static inline fb_vd fb_expm1_poly_d(fb_vd r) {
    fb_vd r2 = r * r, r4 = r2 * r2;
    fb_vd q47 = fb_fma_d(r2, FB_PAIR(6), FB_PAIR(4));
    fb_vd q03 = fb_fma_d(r2, FB_PAIR(2), FB_PAIR(0));
    fb_vd q = fb_fma_d(r4, fb_fma_d(r4, FB_PAIR(8), q47), q03);
    return fb_fma_d(r2, q, r);
}
#undef FB_PAIR

#define FB_PAIR(k) fb_fma_f(r, fb_set1_f(fb_expm1_q_f[k + 1]), fb_set1_f(fb_expm1_q_f[k]))
static inline fb_vf fb_expm1_poly_f(fb_vf r) {
    fb_vf r2 = r * r, r4 = r2 * r2;
    fb_vf q = fb_fma_f(r4, FB_PAIR(4), fb_fma_f(r2, FB_PAIR(2), FB_PAIR(0)));
    return fb_fma_f(r2, q, r);
}
#undef FB_PAIR

/* n = round(y / ln2) + bias sits in the low mantissa bits of y / ln2 + 1.5 * 2^52 + bias; shifted up, those
 * bits are the exponent field of 2^n */
#define FB_SHIFT_D (6755399441055744.0 + 1023.0)
#define FB_SHIFT_F (12582912.0f + 127.0f)

static inline fb_vd fb_tanh_vd(fb_vd x) {
    const fb_vd sign = fb_set1_d(-0.0), shift = fb_set1_d(FB_SHIFT_D);
    fb_vd ax = fb_min_d(fb_set1_d(20.0), fb_andnot_d(sign, x));
    /* t from |x| directly (2 / ln2) so that y = 2|x| is off the critical path */
    fb_vd t = fb_fma_d(ax, fb_set1_d(2.8853900817779268), shift);
    fb_vd n = t - shift;
    fb_vd r = fb_fnma_d(n, fb_set1_d(6.93147180369123816490e-01), ax + ax);
    r = fb_fnma_d(n, fb_set1_d(1.90821492927058770002e-10), r);
    fb_vd p = fb_expm1_poly_d(r);
    /* s = 2^n; e = s p + (s - 1), exact when n = 0 */
    fb_vd s = fb_shl_d(t, 52);
    fb_vd e = fb_fma_d(s, p, s - fb_set1_d(1.0));
    fb_vd th = e / (e + fb_set1_d(2.0));
    return fb_or_d(th, fb_and_d(sign, x));
}

static inline fb_vf fb_tanh_vf(fb_vf x) {
    const fb_vf sign = fb_set1_f(-0.0f), shift = fb_set1_f(FB_SHIFT_F);
    fb_vf ax = fb_min_f(fb_set1_f(9.1f), fb_andnot_f(sign, x));
    fb_vf t = fb_fma_f(ax, fb_set1_f(2.88539008f), shift);
    fb_vf n = t - shift;
    /* one-step reduction: n <= 26 and ln2's float error (1.9e-9) cost under 0.1 ulp */
    fb_vf r = fb_fnma_f(n, fb_set1_f(0.693147182f), ax + ax);
    fb_vf p = fb_expm1_poly_f(r);
    fb_vf s = fb_shl_f(t, 23);
    fb_vf e = fb_fma_f(s, p, s - fb_set1_f(1.0f));
    fb_vf th = e / (e + fb_set1_f(2.0f));
    return fb_or_f(th, fb_and_f(sign, x));
}

/* The clamp keeps 2^n normal; below it the result is forced to 0 (NaN kept: the compare is unordered-true) */
static inline fb_vd fb_sigmoid_vd(fb_vd x) {
    const fb_vd shift = fb_set1_d(FB_SHIFT_D);
    fb_vd xc = fb_max_d(fb_set1_d(-708.0), fb_min_d(fb_set1_d(708.0), x));
    fb_vd t = fb_fnma_d(xc, fb_set1_d(1.4426950408889634), shift);
    fb_vd n = t - shift;
    /* r = -x - n ln2 */
    fb_vd r = fb_fnms_d(n, fb_set1_d(6.93147180369123816490e-01), xc);
    r = fb_fnma_d(n, fb_set1_d(1.90821492927058770002e-10), r);
    fb_vd p = fb_expm1_poly_d(r);
    fb_vd s = fb_shl_d(t, 52);
    /* 1 + E = s p + (s + 1) in one rounding (s + 1 exact while n <= 52) */
    fb_vd den = fb_fma_d(s, p, s + fb_set1_d(1.0));
    return fb_and_d(fb_set1_d(1.0) / den, fb_nle_d(x, fb_set1_d(-708.0)));
}

static inline fb_vf fb_sigmoid_vf(fb_vf x) {
    const fb_vf shift = fb_set1_f(FB_SHIFT_F);
    fb_vf xc = fb_max_f(fb_set1_f(-87.0f), fb_min_f(fb_set1_f(87.0f), x));
    fb_vf t = fb_fnma_f(xc, fb_set1_f(1.44269504f), shift);
    fb_vf n = t - shift;
    /* two-step reduction: n reaches 126 here */
    fb_vf r = fb_fnms_f(n, fb_set1_f(0.693145752f), xc);
    r = fb_fnma_f(n, fb_set1_f(1.42860677e-06f), r);
    fb_vf p = fb_expm1_poly_f(r);
    fb_vf s = fb_shl_f(t, 23);
    fb_vf den = fb_fma_f(s, p, s + fb_set1_f(1.0f));
    return fb_and_f(fb_set1_f(1.0f) / den, fb_nle_f(x, fb_set1_f(-87.0f)));
}

/* Arrays, in place; the tail goes through a zero-padded register. */
#define FB_TANH_ARRAY(T, SFX, W)                                                                     \
    static inline void fb_tanh_##SFX(T* x, ptrdiff_t n) {                                           \
        ptrdiff_t i = 0;                                                                            \
        for (; i + W <= n; i += W) fb_store_##SFX(x + i, fb_tanh_v##SFX(fb_load_##SFX(x + i)));     \
        if (i < n) {                                                                                \
            T buf[W] = {0};                                                                         \
            memcpy(buf, x + i, (size_t)(n - i) * sizeof(T));                                        \
            fb_store_##SFX(buf, fb_tanh_v##SFX(fb_load_##SFX(buf)));                                \
            memcpy(x + i, buf, (size_t)(n - i) * sizeof(T));                                        \
        }                                                                                           \
    }
FB_TANH_ARRAY(double, d, FB_WD)
FB_TANH_ARRAY(float, f, FB_WF)
#undef FB_TANH_ARRAY

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
