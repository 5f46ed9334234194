/* Register-tiled matrix products for the per-step recurrent GEMMs, with the constant operand packed once.
 *
 * Every time step multiplies a (B, K) block by the same recurrent matrix. BLAS packs that matrix again on
 * every call; here it is packed once per sequence into panels of NR columns (fb_pack_*), and each step
 * runs an MR x NR register tile over it (fb_gemm_packed_*): C = C0 + A @ op(B), all row-major.
 * Rows are computed independently and identically, so splitting the rows over threads changes nothing.
 *
 * With AVX2 + FMA the tile is 6 x 2 vectors (12 accumulators); without, a plain loop of the same contract.
 * The bodies are written once in _tile_impl.h and instantiated for double (_d) and float (_f).
 */
#ifndef FASTBPTT_TILE_H
#define FASTBPTT_TILE_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"
#include "_vmath.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FASTBPTT_TILED 1
#else
#define FASTBPTT_TILED 0
#endif

#define FB_MR 6
#define FB_LANES_d 4
#define FB_LANES_f 8
/* K is cut into chunks so one panel chunk (KC x NR) and the A rows it meets stay in L1 */
#define FB_KC 256
/* rows of A^T packed at once by fb_gemm_tn: KC x MC stays in L2 while every panel of B passes */
#define FB_MC 72
/* columns of B packed at once by fb_gemm_tn (a multiple of both panel widths) */
#define FB_NC 128

#define FT double
#define FB_SFX(name) name##_d
#define FB_W 4
#if FASTBPTT_TILED
#define VT __m256d
#define VLOAD _mm256_loadu_pd
#define VSTORE _mm256_storeu_pd
#define VBCAST _mm256_set1_pd
#define VFMA _mm256_fmadd_pd
#define VADD _mm256_add_pd
#define VZERO _mm256_setzero_pd
#define VMUL _mm256_mul_pd
#define VSUB _mm256_sub_pd
#define VMAX _mm256_max_pd
#define VAND _mm256_and_pd
#define VGT(a, b) _mm256_cmp_pd(a, b, _CMP_GT_OQ)
#define VANY_NAN(v) _mm256_movemask_pd(_mm256_cmp_pd(v, v, _CMP_UNORD_Q))
#define VTANH fb_tanh4
#endif
#define FB_TANH_ARRAY fb_tanh_d
#define FB_ALL_FINITE fb_all_finite_d
#include "_tile_impl.h"
#undef FB_TANH_ARRAY
#undef FB_ALL_FINITE
#undef FT
#undef FB_SFX
#undef FB_W
#if FASTBPTT_TILED
#undef VT
#undef VLOAD
#undef VSTORE
#undef VBCAST
#undef VFMA
#undef VADD
#undef VZERO
#undef VMUL
#undef VSUB
#undef VMAX
#undef VAND
#undef VGT
#undef VANY_NAN
#undef VTANH
#endif

#define FT float
#define FB_SFX(name) name##_f
#define FB_W 8
#if FASTBPTT_TILED
#define VT __m256
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VBCAST _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VADD _mm256_add_ps
#define VZERO _mm256_setzero_ps
#define VMUL _mm256_mul_ps
#define VSUB _mm256_sub_ps
#define VMAX _mm256_max_ps
#define VAND _mm256_and_ps
#define VGT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define VANY_NAN(v) _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))
#define VTANH fb_tanh8f
#endif
#define FB_TANH_ARRAY fb_tanh_f
#define FB_ALL_FINITE fb_all_finite_f
#include "_tile_impl.h"
#undef FB_TANH_ARRAY
#undef FB_ALL_FINITE
#undef FT
#undef FB_SFX
#undef FB_W
#if FASTBPTT_TILED
#undef VT
#undef VLOAD
#undef VSTORE
#undef VBCAST
#undef VFMA
#undef VADD
#undef VZERO
#undef VMUL
#undef VSUB
#undef VMAX
#undef VAND
#undef VGT
#undef VANY_NAN
#undef VTANH
#endif

#endif
