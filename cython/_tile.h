/* Register-tiled matrix products for the per-step recurrent GEMMs, with the constant operand packed once.
 *
 * Every time step multiplies a (B, K) block by the same recurrent matrix. BLAS packs that matrix again on
 * every call; here it is packed once per sequence into panels of NR columns (fb_pack_*), and each step
 * runs an MR x NR register tile over it (fb_gemm_packed_*): C = C0 + A @ op(B), all row-major.
 * Rows are computed independently and identically, so splitting the rows over threads changes nothing.
 *
 * The tile is FB_MR x 2 registers of the set's width (_vec.h), the same code for every SIMD set.
 * The bodies are written once in _tile_impl.h (and the Elman kernels over them in _elman_impl.h) and
 * instantiated for double (_d) and float (_f).
 */
#ifndef FASTBPTT_TILE_H
#define FASTBPTT_TILE_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"
#include "_vmath.h"

/* 1: every set has the register tiles (the table reports it for the Cython drivers) */
#define FASTBPTT_TILED 1

/* MR rows of 2 registers: 2 MR accumulators, 2 loads of the panel and a broadcast in flight.
 * AVX-512 has 32 registers: 12 rows (24 accumulators) hide the FMA latency at 2 per cycle;
 * AVX2 and 128-bit sets have 16: 6 rows (12 accumulators). */
#if FB_VBYTES == 64
#define FB_MR 12
#else
#define FB_MR 6
#endif
/* `switch (mr)` over the tile heights, each a call with a constant row count */
#if FB_MR > 6
#define FB_MR_WIDE(CALL) \
    case 12: CALL(12); break; case 11: CALL(11); break; case 10: CALL(10); break; \
    case 9: CALL(9); break; case 8: CALL(8); break; case 7: CALL(7); break;
#else
#define FB_MR_WIDE(CALL)
#endif
#define FB_MR_SWITCH(mr, CALL)                                                         \
    switch (mr) {                                                                      \
    FB_MR_WIDE(CALL)                                                                   \
    case 6: CALL(6); break; case 5: CALL(5); break; case 4: CALL(4); break;            \
    case 3: CALL(3); break; case 2: CALL(2); break; default: CALL(1); break;           \
    }
#define FB_LANES_d FB_WD
#define FB_LANES_f FB_WF
/* K is cut into chunks so one panel chunk (KC x NR, 16 KB on the vector sets) and the A rows it
 * meets stay in L1 (fb_gemm_packed takes 256 where two thirds of L1 hold that chunk) */
#if FB_VBYTES == 64
#define FB_KC 128
#else
#define FB_KC 256
#endif
/* B's block in the joined weight-gradient product takes 3/8 of L2, and 256 KB at least: 768 KB of a
 * 2 MB L2 packs all of an Elman layer's [h | x] columns at once (H=512, I=256 in doubles), so A is
 * packed once per chunk of K, not once per block */
#define FB_CAT_MIN_BYTES 262144
/* fb_gemm_tn_cat runs a packed block of B this large or larger tile by tile, a smaller one panel by
 * panel */
#define FB_BY_TILE_BYTES 262144
/* fb_gemm_packed asks for the next chunk of a packed operand of this size or more ahead (into L2):
 * one this large seldom stays in L2 from one call to the next */
#define FB_FAR_BYTES 524288
/* rows of A^T packed at once by fb_gemm_tn: KC x MC stays in L2 while every panel of B passes */
#define FB_MC 72
/* columns of B packed at once by fb_gemm_tn (a multiple of both panel widths) */
#define FB_NC 128

#define FB_VADD(a, b) ((a) + (b))
#define FB_VSUB(a, b) ((a) - (b))
#define FB_VMUL(a, b) ((a) * (b))

#define FT double
#define FB_SFX(name) name##_d
#define FB_W FB_WD
#define VT fb_vd
#define VLOAD fb_load_d
#define VSTORE fb_store_d
#define VBCAST fb_set1_d
#define VFMA fb_fma_d
#define VADD FB_VADD
#define VZERO fb_zero_d
#define VMUL FB_VMUL
#define VSUB FB_VSUB
#define VMAX fb_max_d
#define VAND fb_and_d
#define VGT fb_gt_d
#define VANY_NAN fb_any_nan_d
#define VHSUM fb_hsum_d
#define VTANH fb_tanh_vd
#define FB_TANH_ARRAY fb_tanh_d
#define FB_ALL_FINITE fb_all_finite_d
#include "_tile_impl.h"
#include "_elman_impl.h"
#undef FB_TANH_ARRAY
#undef FB_ALL_FINITE
#undef FT
#undef FB_SFX
#undef FB_W
#undef VT
#undef VLOAD
#undef VSTORE
#undef VBCAST
#undef VFMA
#undef VZERO
#undef VMAX
#undef VAND
#undef VGT
#undef VANY_NAN
#undef VHSUM
#undef VTANH

#define FT float
#define FB_SFX(name) name##_f
#define FB_W FB_WF
#define VT fb_vf
#define VLOAD fb_load_f
#define VSTORE fb_store_f
#define VBCAST fb_set1_f
#define VFMA fb_fma_f
#define VZERO fb_zero_f
#define VMAX fb_max_f
#define VAND fb_and_f
#define VGT fb_gt_f
#define VANY_NAN fb_any_nan_f
#define VHSUM fb_hsum_f
#define VTANH fb_tanh_vf
#define FB_TANH_ARRAY fb_tanh_f
#define FB_ALL_FINITE fb_all_finite_f
#include "_tile_impl.h"
#include "_elman_impl.h"
#undef FB_TANH_ARRAY
#undef FB_ALL_FINITE
#undef FT
#undef FB_SFX
#undef FB_W
#undef VT
#undef VLOAD
#undef VSTORE
#undef VBCAST
#undef VFMA
#undef VZERO
#undef VMAX
#undef VAND
#undef VGT
#undef VANY_NAN
#undef VHSUM
#undef VTANH
#undef VADD
#undef VMUL
#undef VSUB
#undef FB_VADD
#undef FB_VSUB
#undef FB_VMUL

#endif
