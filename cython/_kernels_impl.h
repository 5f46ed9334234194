/* One SIMD set's table: the bodies of _tile.h, _vmath.h, _lstm_pointwise.h and _gru_pointwise.h
 * compiled with the flags setup.py gives the including file (csrc/kernel_table.c, once per set), with the table's name
 * in FB_TABLE and the set's in FB_SET_NAME. Every function here is static, so the sets never see each other's. */
#include "_kernels.h"
#include "_tile.h"
#include "_lstm_pointwise.h"
#include "_gru_pointwise.h"

#define FB_FIELDS(SFX)                                                                               \
    .lanes_##SFX = FB_LANES_##SFX, .pack_size_##SFX = fb_pack_size_##SFX, .pack_##SFX = fb_pack_##SFX, \
    .gemm_packed_##SFX = fb_gemm_packed_##SFX, .gemm_tn_work_##SFX = fb_gemm_tn_work_##SFX,          \
    .gemm_tn_##SFX = fb_gemm_tn_##SFX, .elman_fwd_##SFX = fb_elman_fwd_##SFX,                       \
    .elman_bwd_##SFX = fb_elman_bwd_##SFX, .elman_fwd_tiled_##SFX = fb_elman_fwd_tiled_##SFX,       \
    .gemm_tn_cat_work_##SFX = fb_gemm_tn_cat_work_##SFX,                                             \
    .elman_bwd_tiled_##SFX = fb_elman_bwd_tiled_##SFX, .all_finite_##SFX = fb_all_finite_##SFX,     \
    .vtanh_##SFX = fb_vtanh_##SFX, .tanh_##SFX = fb_tanh_##SFX, .vsigmoid_##SFX = fb_vsigmoid_##SFX, \
    .lstm_fwd_##SFX = fb_lstm_fwd_##SFX, .lstm_bwd_##SFX = fb_lstm_bwd_##SFX,                       \
    .gru_bwd_##SFX = fb_gru_bwd_##SFX,                                                               \
    .cols_##SFX = fb_cols_##SFX, .add_rows_##SFX = fb_add_rows_##SFX

const fb_kernels FB_TABLE = {
    .name = FB_SET_NAME,
    .tiled = FASTBPTT_TILED,
    .vector_math = FASTBPTT_VECTOR_MATH,
    .chunks = fb_chunks_d,
    FB_FIELDS(d),
    FB_FIELDS(f),
};
#undef FB_FIELDS
