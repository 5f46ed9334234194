/* The GRU's elementwise work of one backward step, row by row, for cython/_gru.pyx.
 *
 * From the activated gates (r, z, n), gh_n = Wh_n h_{t-1} + bh_n and h_{t-1}, with
 * dh = dh_out + dh_next:  dA_n = dh (1 - z)(1 - n^2),  dA_r = dA_n gh_n r (1 - r),
 * dA_z = dh (h_{t-1} - n) z (1 - z);  dGh is dA with its n part times r (gh_n enters through
 * r * gh_n), and dh_next <- dh z, the direct path to h_{t-1}.
 * One loop over a row's units with everything in registers, on whole registers of the set's width;
 * the last n % width units take the same formulas in scalar code.
 */
#ifndef FASTBPTT_GRU_POINTWISE_H
#define FASTBPTT_GRU_POINTWISE_H

#include <stddef.h>

#include "_vec.h"

#define FB_GRU_SCALAR(FT, SFX)                                                                      \
    static inline void fb_gru_bwd_tail_##SFX(const FT* G, const FT* hn, const FT* hp,              \
                                             const FT* dho, FT* dh, FT* da, FT* dg, ptrdiff_t k0,  \
                                             ptrdiff_t n) {                                        \
        for (ptrdiff_t k = k0; k < n; k++) {                                                        \
            FT r = G[k], z = G[n + k], nk = G[2 * n + k];                                           \
            FT d = dho ? dho[k] + dh[k] : dh[k];                                                    \
            FT dan = d * ((FT)1 - z) * ((FT)1 - nk * nk);                                           \
            FT dar = dan * hn[k] * r * ((FT)1 - r);                                                 \
            FT daz = d * (hp[k] - nk) * z * ((FT)1 - z);                                            \
            da[k] = dar;                                                                            \
            da[n + k] = daz;                                                                        \
            da[2 * n + k] = dan;                                                                    \
            dg[k] = dar;                                                                            \
            dg[n + k] = daz;                                                                        \
            dg[2 * n + k] = dan * r;                                                                \
            dh[k] = d * z;                                                                          \
        }                                                                                           \
    }

FB_GRU_SCALAR(double, d)
FB_GRU_SCALAR(float, f)
#undef FB_GRU_SCALAR

#define FB_GRU_VECTOR(FT, SFX, W, VT, LOAD, STORE, SET1)                                            \
    /* G (rows, 3n) activated gates; hn, hp, dh (rows, n): gh_n, h_{t-1}, and the gradient from  \
     * step t+1 (out: the direct path z dh); dho the loss gradient at h_t, or NULL; da, dg out */ \
    static inline void fb_gru_bwd_##SFX(const FT* G, const FT* hn, const FT* hp, const FT* dho,     \
                                        FT* dh, FT* da, FT* dg, ptrdiff_t rows, ptrdiff_t n) {      \
        const ptrdiff_t nv = n - n % W;                                                             \
        const VT one = SET1((FT)1);                                                                 \
        for (ptrdiff_t b = 0; b < rows; b++) {                                                      \
            const FT* Gr = G + b * 3 * n;                                                           \
            FT* dab = da + b * 3 * n;                                                               \
            FT* dgb = dg + b * 3 * n;                                                               \
            const ptrdiff_t o = b * n;                                                              \
            for (ptrdiff_t k = 0; k < nv; k += W) {                                                 \
                VT r = LOAD(Gr + k), z = LOAD(Gr + n + k), nk = LOAD(Gr + 2 * n + k);               \
                VT d = LOAD(dh + o + k);                                                            \
                if (dho) d = LOAD(dho + o + k) + d;                                                 \
                VT dan = d * (one - z) * (one - nk * nk);                                           \
                VT dar = dan * LOAD(hn + o + k) * r * (one - r);                                    \
                VT daz = d * (LOAD(hp + o + k) - nk) * z * (one - z);                               \
                STORE(dab + k, dar);                                                                \
                STORE(dab + n + k, daz);                                                            \
                STORE(dab + 2 * n + k, dan);                                                        \
                STORE(dgb + k, dar);                                                                \
                STORE(dgb + n + k, daz);                                                            \
                STORE(dgb + 2 * n + k, dan * r);                                                    \
                STORE(dh + o + k, d * z);                                                           \
            }                                                                                       \
            fb_gru_bwd_tail_##SFX(Gr, hn + o, hp + o, dho ? dho + o : dho, dh + o, dab, dgb, nv, n);\
        }                                                                                           \
    }

FB_GRU_VECTOR(double, d, FB_WD, fb_vd, fb_load_d, fb_store_d, fb_set1_d)
FB_GRU_VECTOR(float, f, FB_WF, fb_vf, fb_load_f, fb_store_f, fb_set1_f)
#undef FB_GRU_VECTOR

#endif
