/* The LSTM's elementwise work of one step, row by row, for cython/_lstm.pyx.
 *
 * Forward:  gates (i, f, g, o) = (sigmoid, sigmoid, tanh, sigmoid) of the pre-activations, in place;
 *           c = f c_prev + i g;  h = o tanh(c).
 * Backward: with th = tanh(c) recomputed, dh = dh_out + dh_next, dc' = dc + dh o (1 - th^2):
 *           di = dc' g i (1 - i),  df = dc' c_prev f (1 - f),  dg = dc' i (1 - g^2),
 *           do = dh th o (1 - o),  and dc <- dc' f.
 * Backward is one loop over a row's units with everything in registers; forward is two (the gates,
 * then the cell), over a row that stays in L1, and may stream the gates out to the array the
 * backward pass reads them from. Both run on whole registers of the set's width with
 * the inline tanh and sigmoid of _vmath.h; the last n % width units take the same formulas in scalar
 * libm (sigmoid as 1 / (1 + exp(-x))).
 */
#ifndef FASTBPTT_LSTM_POINTWISE_H
#define FASTBPTT_LSTM_POINTWISE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_vmath.h"

#define FB_LSTM_SCALAR(FT, SFX, TANH, EXP)                                                          \
    /* exp(-x) = inf gives exactly 0 */                                                             \
    static inline FT fb_lstm_sig_##SFX(FT x) { return (FT)1 / ((FT)1 + EXP(-x)); }                 \
    /* units [k0, n) of one row, as the vector loop would do them */                                \
    static inline void fb_lstm_fwd_tail_##SFX(FT* z, const FT* cp, FT* c, FT* h, ptrdiff_t k0,      \
                                              ptrdiff_t n) {                                       \
        for (ptrdiff_t k = k0; k < n; k++) {                                                        \
            FT i = fb_lstm_sig_##SFX(z[k]), f = fb_lstm_sig_##SFX(z[n + k]);                       \
            FT g = TANH(z[2 * n + k]), o = fb_lstm_sig_##SFX(z[3 * n + k]);                        \
            FT ck = f * cp[k] + i * g;                                                              \
            z[k] = i;                                                                               \
            z[n + k] = f;                                                                           \
            z[2 * n + k] = g;                                                                       \
            z[3 * n + k] = o;                                                                       \
            c[k] = ck;                                                                              \
            h[k] = o * TANH(ck);                                                                    \
        }                                                                                           \
    }                                                                                               \
    static inline void fb_lstm_bwd_tail_##SFX(const FT* G, const FT* cp, const FT* c,             \
                                              const FT* dho, const FT* dhn, FT* dc, FT* da,        \
                                              ptrdiff_t k0, ptrdiff_t n) {                         \
        for (ptrdiff_t k = k0; k < n; k++) {                                                        \
            FT i = G[k], f = G[n + k], g = G[2 * n + k], o = G[3 * n + k];                         \
            FT th = TANH(c[k]), dh = dho ? dho[k] + dhn[k] : dhn[k];                                \
            FT d = dc[k] + dh * o * ((FT)1 - th * th);                                              \
            da[k] = d * g * i * ((FT)1 - i);                                                        \
            da[n + k] = d * cp[k] * f * ((FT)1 - f);                                                \
            da[2 * n + k] = d * i * ((FT)1 - g * g);                                                \
            da[3 * n + k] = dh * th * o * ((FT)1 - o);                                              \
            dc[k] = d * f;                                                                          \
        }                                                                                           \
    }

FB_LSTM_SCALAR(double, d, tanh, exp)
FB_LSTM_SCALAR(float, f, tanhf, expf)
#undef FB_LSTM_SCALAR

#define FB_LSTM_VECTOR(FT, SFX, W, VT, LOAD, STORE, STREAM, SET1, ADD, SUB, MUL, FMA, FNMA, TANHV,  \
                       SIGV)                                                                        \
    /* z (rows, 4n) pre-activations -> activated gates; c, h, cp (rows, n). With gout (else NULL) \
     * the gates go there as well, past the caches when it is aligned: z is then a scratch that     \
     * stays in cache, and gout is not read again before the backward pass */                    \
    static inline void fb_lstm_fwd_##SFX(FT* z, const FT* cp, FT* c, FT* h, ptrdiff_t rows,         \
                                         ptrdiff_t n, FT* gout) {                                  \
        const ptrdiff_t nv = n - n % W;                                                             \
        const int stream = gout != NULL && n % W == 0 && (uintptr_t)gout % sizeof(VT) == 0;        \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                      \
            FT* zr = z + r * 4 * n;                                                                 \
            FT* gr = stream ? gout + r * 4 * n : NULL;                                              \
            const FT* cpr = cp + r * n;                                                             \
            FT* cr = c + r * n;                                                                     \
            FT* hr = h + r * n;                                                                     \
            /* two passes: the gates' chains are independent of each other, tanh(c)'s waits for   \
             * three of them; one pass with both waits on those chains (latency-bound) */       \
            for (ptrdiff_t k = 0; k < nv; k += W) {                                                 \
                STORE(zr + k, SIGV(LOAD(zr + k)));                                                  \
                STORE(zr + n + k, SIGV(LOAD(zr + n + k)));                                          \
                STORE(zr + 2 * n + k, TANHV(LOAD(zr + 2 * n + k)));                                 \
                STORE(zr + 3 * n + k, SIGV(LOAD(zr + 3 * n + k)));                                  \
            }                                                                                       \
            for (ptrdiff_t k = 0; k < nv; k += W) {                                                 \
                VT ig = MUL(LOAD(zr + k), LOAD(zr + 2 * n + k));                                    \
                VT ck = FMA(LOAD(zr + n + k), LOAD(cpr + k), ig);                                   \
                STORE(cr + k, ck);                                                                  \
                STORE(hr + k, MUL(LOAD(zr + 3 * n + k), TANHV(ck)));                                \
                if (gr) {                                                                           \
                    STREAM(gr + k, LOAD(zr + k));                                                   \
                    STREAM(gr + n + k, LOAD(zr + n + k));                                           \
                    STREAM(gr + 2 * n + k, LOAD(zr + 2 * n + k));                                   \
                    STREAM(gr + 3 * n + k, LOAD(zr + 3 * n + k));                                   \
                }                                                                                   \
            }                                                                                       \
            fb_lstm_fwd_tail_##SFX(zr, cpr, cr, hr, nv, n);                                         \
            if (gout != NULL && !stream)                                                            \
                memcpy(gout + r * 4 * n, zr, (size_t)(4 * n) * sizeof(FT));                         \
        }                                                                                           \
        if (stream) fb_stream_fence();                                                              \
    }                                                                                               \
    /* G (rows, 4n) activated gates; cp, c = c_{t-1}, c_t; dho: the loss gradient at h_t; dhn: the \
     * gradient from step t+1 (dho may be NULL: all in dhn); dc (in: dL/dc_t, out: dL/dc_{t-1}); \
     * da (rows, 4n) out */             \
    static inline void fb_lstm_bwd_##SFX(const FT* G, const FT* cp, const FT* c, const FT* dho,     \
                                         const FT* dhn, FT* dc, FT* da, ptrdiff_t rows,             \
                                         ptrdiff_t n) {                                            \
        const ptrdiff_t nv = n - n % W;                                                             \
        const VT one = SET1((FT)1);                                                                 \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                      \
            const FT* Gr = G + r * 4 * n;                                                           \
            FT* dar = da + r * 4 * n;                                                               \
            const ptrdiff_t o4 = r * n;                                                             \
            const FT* Gp = Gr + FB_PF_ROWS * 4 * n;                                                 \
            const FT* cpp = cp + o4 + FB_PF_ROWS * n;                                               \
            for (ptrdiff_t k = 0; k < nv; k += W) {                                                 \
                if (r + FB_PF_ROWS < rows) {                                                        \
                    __builtin_prefetch(Gp + k, 0, 3);                                               \
                    __builtin_prefetch(Gp + n + k, 0, 3);                                           \
                    __builtin_prefetch(Gp + 2 * n + k, 0, 3);                                       \
                    __builtin_prefetch(Gp + 3 * n + k, 0, 3);                                       \
                    __builtin_prefetch(cpp + k, 0, 3);                                              \
                }                                                                                   \
                VT i = LOAD(Gr + k), f = LOAD(Gr + n + k);                                          \
                VT g = LOAD(Gr + 2 * n + k), o = LOAD(Gr + 3 * n + k);                              \
                VT th = TANHV(LOAD(c + o4 + k));                                                    \
                VT dh = LOAD(dhn + o4 + k);                                                         \
                if (dho) dh = ADD(LOAD(dho + o4 + k), dh);                                          \
                VT d = FMA(MUL(dh, o), FNMA(th, th, one), LOAD(dc + o4 + k));                       \
                STORE(dar + k, MUL(MUL(d, g), MUL(i, SUB(one, i))));                                \
                STORE(dar + n + k, MUL(MUL(d, LOAD(cp + o4 + k)), MUL(f, SUB(one, f))));            \
                STORE(dar + 2 * n + k, MUL(MUL(d, i), FNMA(g, g, one)));                            \
                STORE(dar + 3 * n + k, MUL(MUL(dh, th), MUL(o, SUB(one, o))));                      \
                STORE(dc + o4 + k, MUL(d, f));                                                      \
            }                                                                                       \
            fb_lstm_bwd_tail_##SFX(Gr, cp + o4, c + o4, dho ? dho + o4 : dho, dhn + o4, dc + o4, dar, \
                                   nv, n);                                                      \
        }                                                                                           \
    }

/* the backward reads G and c_{t-1} of a step written long before (from memory): they are fetched
 * this many rows ahead, since the hardware's prefetch starts afresh at every 4 KB page */
#define FB_PF_ROWS 2
#define FB_VADD(a, b) ((a) + (b))
#define FB_VSUB(a, b) ((a) - (b))
#define FB_VMUL(a, b) ((a) * (b))
FB_LSTM_VECTOR(double, d, FB_WD, fb_vd, fb_load_d, fb_store_d, fb_stream_d, fb_set1_d, FB_VADD,
               FB_VSUB, FB_VMUL, fb_fma_d, fb_fnma_d, fb_tanh_vd, fb_sigmoid_vd)
FB_LSTM_VECTOR(float, f, FB_WF, fb_vf, fb_load_f, fb_store_f, fb_stream_f, fb_set1_f, FB_VADD,
               FB_VSUB, FB_VMUL, fb_fma_f, fb_fnma_f, fb_tanh_vf, fb_sigmoid_vf)
#undef FB_LSTM_VECTOR
#undef FB_VADD
#undef FB_VSUB
#undef FB_VMUL

/* The weight-gradient ring's columns: dst[k * ldd + b] = src[b * lds + k] for `rows` rows b and
 * `cols` columns k, i.e. a block of (x_t | h_{t-1}) rows stored as columns. By whole 8 x 8 (float)
 * or 4 x 4 (double) register transposes: element by element, every read is strided. */
#define FB_COLS_SCALAR(FT, SFX)                                                                     \
    static inline void fb_cols_rest_##SFX(const FT* src, ptrdiff_t lds, ptrdiff_t b0, ptrdiff_t b1, \
                                          ptrdiff_t k0, ptrdiff_t k1, FT* dst, ptrdiff_t ldd) {     \
        for (ptrdiff_t k = k0; k < k1; k++)                                                         \
            for (ptrdiff_t b = b0; b < b1; b++) dst[k * ldd + b] = src[b * lds + k];                \
    }
FB_COLS_SCALAR(double, d)
FB_COLS_SCALAR(float, f)
#undef FB_COLS_SCALAR

/* 256-bit transposes (the AVX-512 set runs them too) */
#if defined(__AVX2__)
static inline void fb_cols_f(const float* src, ptrdiff_t lds, ptrdiff_t rows, ptrdiff_t cols,
                             float* dst, ptrdiff_t ldd) {
    const ptrdiff_t rv = rows - rows % 8, cv = cols - cols % 8;
    for (ptrdiff_t b = 0; b < rv; b += 8) {
        for (ptrdiff_t k = 0; k < cv; k += 8) {
            __m256 r[8], u[8], v[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + (b + j) * lds + k);
            for (int j = 0; j < 8; j += 2) {
                u[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
                u[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
            }
            for (int j = 0; j < 8; j += 4) {
                v[j] = _mm256_shuffle_ps(u[j], u[j + 2], 0x44);
                v[j + 1] = _mm256_shuffle_ps(u[j], u[j + 2], 0xEE);
                v[j + 2] = _mm256_shuffle_ps(u[j + 1], u[j + 3], 0x44);
                v[j + 3] = _mm256_shuffle_ps(u[j + 1], u[j + 3], 0xEE);
            }
            /* v[0..3] hold columns (0, 1, 2, 3 | 4, 5, 6, 7) of rows 0-3, v[4..7] of rows 4-7 */
            for (int j = 0; j < 4; j++) {
                _mm256_storeu_ps(dst + (k + j) * ldd + b,
                                 _mm256_permute2f128_ps(v[j], v[j + 4], 0x20));
                _mm256_storeu_ps(dst + (k + j + 4) * ldd + b,
                                 _mm256_permute2f128_ps(v[j], v[j + 4], 0x31));
            }
        }
        fb_cols_rest_f(src, lds, b, b + 8, cv, cols, dst, ldd);
    }
    fb_cols_rest_f(src, lds, rv, rows, 0, cols, dst, ldd);
}

static inline void fb_cols_d(const double* src, ptrdiff_t lds, ptrdiff_t rows, ptrdiff_t cols,
                             double* dst, ptrdiff_t ldd) {
    const ptrdiff_t rv = rows - rows % 4, cv = cols - cols % 4;
    for (ptrdiff_t b = 0; b < rv; b += 4) {
        for (ptrdiff_t k = 0; k < cv; k += 4) {
            __m256d r0 = _mm256_loadu_pd(src + b * lds + k);
            __m256d r1 = _mm256_loadu_pd(src + (b + 1) * lds + k);
            __m256d r2 = _mm256_loadu_pd(src + (b + 2) * lds + k);
            __m256d r3 = _mm256_loadu_pd(src + (b + 3) * lds + k);
            __m256d u0 = _mm256_unpacklo_pd(r0, r1), u1 = _mm256_unpackhi_pd(r0, r1);
            __m256d u2 = _mm256_unpacklo_pd(r2, r3), u3 = _mm256_unpackhi_pd(r2, r3);
            _mm256_storeu_pd(dst + k * ldd + b, _mm256_permute2f128_pd(u0, u2, 0x20));
            _mm256_storeu_pd(dst + (k + 1) * ldd + b, _mm256_permute2f128_pd(u1, u3, 0x20));
            _mm256_storeu_pd(dst + (k + 2) * ldd + b, _mm256_permute2f128_pd(u0, u2, 0x31));
            _mm256_storeu_pd(dst + (k + 3) * ldd + b, _mm256_permute2f128_pd(u1, u3, 0x31));
        }
        fb_cols_rest_d(src, lds, b, b + 4, cv, cols, dst, ldd);
    }
    fb_cols_rest_d(src, lds, rv, rows, 0, cols, dst, ldd);
}
#else
static inline void fb_cols_f(const float* src, ptrdiff_t lds, ptrdiff_t rows, ptrdiff_t cols,
                             float* dst, ptrdiff_t ldd) {
    fb_cols_rest_f(src, lds, 0, rows, 0, cols, dst, ldd);
}
static inline void fb_cols_d(const double* src, ptrdiff_t lds, ptrdiff_t rows, ptrdiff_t cols,
                             double* dst, ptrdiff_t ldd) {
    fb_cols_rest_d(src, lds, 0, rows, 0, cols, dst, ldd);
}
#endif

#endif
