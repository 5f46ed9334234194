/* The vector type of the SIMD set this translation unit is compiled for, and its operations, so that
 * every kernel is written once over the width: 512-bit registers under AVX-512, 256-bit under AVX2 +
 * FMA, 128-bit elsewhere (SSE2 on x86-64, NEON on aarch64: GCC / Clang vector extensions).
 *
 * fb_vd / fb_vf hold FB_WD doubles / FB_WF floats; fb_vdi / fb_vfi are integer vectors of the same
 * size (the lanes of compares and bit operations). Arithmetic is written with C operators; fma, min
 * and max take the instruction where the set has one (min / max return b when either is NaN, as
 * the x86 instructions do).
 */
#ifndef FASTBPTT_VEC_H
#define FASTBPTT_VEC_H

#include <stddef.h>
#include <stdint.h>

/* FB_VBYTES_MAX = 32 caps an AVX-512 build at 256-bit registers (the narrow table of _kernels_impl.h) */
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__FMA__) && \
    !(defined(FB_VBYTES_MAX) && FB_VBYTES_MAX < 64)
#include <immintrin.h>
#define FB_VBYTES 64
#define FB_SET_AVX512 1
typedef __m512d fb_vd;
typedef __m512 fb_vf;
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FB_VBYTES 32
#define FB_SET_AVX2 1
typedef __m256d fb_vd;
typedef __m256 fb_vf;
#else
#define FB_VBYTES 16
typedef double fb_vd __attribute__((vector_size(16)));
typedef float fb_vf __attribute__((vector_size(16)));
#endif
typedef int64_t fb_vdi __attribute__((vector_size(FB_VBYTES)));
typedef int32_t fb_vfi __attribute__((vector_size(FB_VBYTES)));
#define FB_WD (FB_VBYTES / 8)
#define FB_WF (FB_VBYTES / 4)

#if FB_VBYTES == 64
static inline fb_vd fb_load_d(const double* p) { return _mm512_loadu_pd(p); }
static inline fb_vf fb_load_f(const float* p) { return _mm512_loadu_ps(p); }
static inline void fb_store_d(double* p, fb_vd v) { _mm512_storeu_pd(p, v); }
static inline void fb_store_f(float* p, fb_vf v) { _mm512_storeu_ps(p, v); }
static inline fb_vd fb_set1_d(double x) { return _mm512_set1_pd(x); }
static inline fb_vf fb_set1_f(float x) { return _mm512_set1_ps(x); }
#elif FB_VBYTES == 32
static inline fb_vd fb_load_d(const double* p) { return _mm256_loadu_pd(p); }
static inline fb_vf fb_load_f(const float* p) { return _mm256_loadu_ps(p); }
static inline void fb_store_d(double* p, fb_vd v) { _mm256_storeu_pd(p, v); }
static inline void fb_store_f(float* p, fb_vf v) { _mm256_storeu_ps(p, v); }
static inline fb_vd fb_set1_d(double x) { return _mm256_set1_pd(x); }
static inline fb_vf fb_set1_f(float x) { return _mm256_set1_ps(x); }
#else
static inline fb_vd fb_load_d(const double* p) {
    fb_vd v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
static inline fb_vf fb_load_f(const float* p) {
    fb_vf v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
static inline void fb_store_d(double* p, fb_vd v) { __builtin_memcpy(p, &v, sizeof v); }
static inline void fb_store_f(float* p, fb_vf v) { __builtin_memcpy(p, &v, sizeof v); }
static inline fb_vd fb_set1_d(double x) { return (fb_vd){x, x}; }
static inline fb_vf fb_set1_f(float x) { return (fb_vf){x, x, x, x}; }
#endif

#define FB_VEC_OPS(T, V, VI, SFX, W)                                                                 \
    static inline V fb_zero_##SFX(void) { return fb_set1_##SFX((T)0); }                             \
    static inline V fb_and_##SFX(V a, V b) { return (V)((VI)a & (VI)b); }                           \
    static inline V fb_or_##SFX(V a, V b) { return (V)((VI)a | (VI)b); }                            \
    /* ~a & b */                                                                                    \
    static inline V fb_andnot_##SFX(V a, V b) { return (V)(~(VI)a & (VI)b); }                       \
    /* all-ones lanes where a > b (ordered), as V */                                                 \
    static inline V fb_gt_##SFX(V a, V b) { return (V)(a > b); }                                    \
    /* all-ones lanes where !(a <= b): a > b, or either is NaN */                                   \
    static inline V fb_nle_##SFX(V a, V b) { return (V)(~(a <= b)); }                               \
    static inline int fb_any_nan_##SFX(V a) {                                                       \
        VI m = (VI)(a != a);                                                                        \
        for (int i = 0; i < W; i++)                                                                 \
            if (m[i]) return 1;                                                                     \
        return 0;                                                                                   \
    }                                                                                               \
    /* the bits of t's low lanes shifted up by s (to the exponent field) */                          \
    static inline V fb_shl_##SFX(V t, int s) { return (V)((VI)t << s); }                            \
    /* the sum of a's lanes, in lane order */                                                        \
    static inline T fb_hsum_##SFX(V a) {                                                            \
        T s = a[0];                                                                                 \
        for (int i = 1; i < W; i++) s += a[i];                                                      \
        return s;                                                                                   \
    }

FB_VEC_OPS(double, fb_vd, fb_vdi, d, FB_WD)
FB_VEC_OPS(float, fb_vf, fb_vfi, f, FB_WF)
#undef FB_VEC_OPS

/* a store that bypasses the caches (the line is not read first), where the set has one: for arrays
 * written now and read again only much later; p must be aligned to the vector's size */
#if FB_VBYTES == 64
static inline void fb_stream_d(double* p, fb_vd v) { _mm512_stream_pd(p, v); }
static inline void fb_stream_f(float* p, fb_vf v) { _mm512_stream_ps(p, v); }
static inline void fb_stream_fence(void) { _mm_sfence(); }
#elif FB_VBYTES == 32
static inline void fb_stream_d(double* p, fb_vd v) { _mm256_stream_pd(p, v); }
static inline void fb_stream_f(float* p, fb_vf v) { _mm256_stream_ps(p, v); }
static inline void fb_stream_fence(void) { _mm_sfence(); }
#else
static inline void fb_stream_d(double* p, fb_vd v) { fb_store_d(p, v); }
static inline void fb_stream_f(float* p, fb_vf v) { fb_store_f(p, v); }
static inline void fb_stream_fence(void) {}
#endif

#if FB_VBYTES == 64
static inline fb_vd fb_fma_d(fb_vd a, fb_vd b, fb_vd c) { return _mm512_fmadd_pd(a, b, c); }
static inline fb_vf fb_fma_f(fb_vf a, fb_vf b, fb_vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline fb_vd fb_fnma_d(fb_vd a, fb_vd b, fb_vd c) { return _mm512_fnmadd_pd(a, b, c); }
static inline fb_vf fb_fnma_f(fb_vf a, fb_vf b, fb_vf c) { return _mm512_fnmadd_ps(a, b, c); }
static inline fb_vd fb_fnms_d(fb_vd a, fb_vd b, fb_vd c) { return _mm512_fnmsub_pd(a, b, c); }
static inline fb_vf fb_fnms_f(fb_vf a, fb_vf b, fb_vf c) { return _mm512_fnmsub_ps(a, b, c); }
static inline fb_vd fb_min_d(fb_vd a, fb_vd b) { return _mm512_min_pd(a, b); }
static inline fb_vf fb_min_f(fb_vf a, fb_vf b) { return _mm512_min_ps(a, b); }
static inline fb_vd fb_max_d(fb_vd a, fb_vd b) { return _mm512_max_pd(a, b); }
static inline fb_vf fb_max_f(fb_vf a, fb_vf b) { return _mm512_max_ps(a, b); }
#elif FB_VBYTES == 32
static inline fb_vd fb_fma_d(fb_vd a, fb_vd b, fb_vd c) { return _mm256_fmadd_pd(a, b, c); }
static inline fb_vf fb_fma_f(fb_vf a, fb_vf b, fb_vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline fb_vd fb_fnma_d(fb_vd a, fb_vd b, fb_vd c) { return _mm256_fnmadd_pd(a, b, c); }
static inline fb_vf fb_fnma_f(fb_vf a, fb_vf b, fb_vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline fb_vd fb_fnms_d(fb_vd a, fb_vd b, fb_vd c) { return _mm256_fnmsub_pd(a, b, c); }
static inline fb_vf fb_fnms_f(fb_vf a, fb_vf b, fb_vf c) { return _mm256_fnmsub_ps(a, b, c); }
static inline fb_vd fb_min_d(fb_vd a, fb_vd b) { return _mm256_min_pd(a, b); }
static inline fb_vf fb_min_f(fb_vf a, fb_vf b) { return _mm256_min_ps(a, b); }
static inline fb_vd fb_max_d(fb_vd a, fb_vd b) { return _mm256_max_pd(a, b); }
static inline fb_vf fb_max_f(fb_vf a, fb_vf b) { return _mm256_max_ps(a, b); }
#else
/* without FMA instructions a * b + c rounds twice: results differ from the wider sets by rounding */
#define FB_VEC_PLAIN(V, SFX)                                                                         \
    static inline V fb_fma_##SFX(V a, V b, V c) { return a * b + c; }                               \
    static inline V fb_fnma_##SFX(V a, V b, V c) { return c - a * b; }                              \
    static inline V fb_fnms_##SFX(V a, V b, V c) { return -(a * b) - c; }                           \
    static inline V fb_min_##SFX(V a, V b) {                                                        \
        V m = (V)(a < b);                                                                           \
        return fb_or_##SFX(fb_and_##SFX(m, a), fb_andnot_##SFX(m, b));                             \
    }                                                                                               \
    static inline V fb_max_##SFX(V a, V b) {                                                        \
        V m = (V)(a > b);                                                                           \
        return fb_or_##SFX(fb_and_##SFX(m, a), fb_andnot_##SFX(m, b));                             \
    }
FB_VEC_PLAIN(fb_vd, d)
FB_VEC_PLAIN(fb_vf, f)
#undef FB_VEC_PLAIN
#endif

#endif
