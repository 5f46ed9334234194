/* One SIMD set's table: the bodies of _tile.h (with _elman_impl.h), _vmath.h, _lstm_pointwise.h
 * and _gru_pointwise.h compiled with the flags setup.py gives the including file
 * (csrc/kernel_table.c, once per set), with the table's name in FB_TABLE and the set's in
 * FB_SET_NAME. Every function here is static, so the sets never see each other's. */
#include "_kernels.h"
#include "_tile.h"
#include "_lstm_pointwise.h"
#include "_gru_pointwise.h"

#ifdef FB_NARROW_TABLE
/* The same set's table at 256 bits (setup.py builds it for AVX-512, as FB_NARROW_TABLE): its sequence
 * kernels serve layers of up to FB_NARROW_MAX_* units, where a step's latency rather than its
 * arithmetic sets the pace and full-width registers only lengthen it. */
extern const fb_kernels FB_NARROW_TABLE;
#define FB_NARROW_MAX_d 16
#define FB_NARROW_MAX_f 16
#define FB_SEQ_NARROW(FT, SFX)                                                                       \
    static int fb_narrow_##SFX(ptrdiff_t n) {                                                       \
        return n <= FB_NARROW_MAX_##SFX && FB_NARROW_TABLE.elman_seq_ok_##SFX(n);                   \
    }                                                                                               \
    static int fb_any_elman_seq_ok_##SFX(ptrdiff_t n) {                                                   \
        return fb_narrow_##SFX(n) || fb_elman_seq_ok_##SFX(n);                                      \
    }                                                                                               \
    static size_t fb_any_elman_bwd_work_##SFX(ptrdiff_t I, ptrdiff_t n) {                                 \
        return fb_narrow_##SFX(n) ? FB_NARROW_TABLE.elman_bwd_work_##SFX(I, n)                      \
                                  : fb_elman_bwd_work_##SFX(I, n);                                  \
    }                                                                                               \
    static ptrdiff_t fb_any_elman_fwd_##SFX(const fb_seq_args* a) {                                       \
        return fb_narrow_##SFX(a->n) ? FB_NARROW_TABLE.elman_fwd_##SFX(a) : fb_elman_fwd_##SFX(a);  \
    }                                                                                               \
    static ptrdiff_t fb_any_elman_bwd_##SFX(const fb_seq_args* a) {                                       \
        return fb_narrow_##SFX(a->n) ? FB_NARROW_TABLE.elman_bwd_##SFX(a) : fb_elman_bwd_##SFX(a);  \
    }
FB_SEQ_NARROW(double, d)
FB_SEQ_NARROW(float, f)
#undef FB_SEQ_NARROW
#define FB_SEQ(NAME, SFX) fb_any_##NAME##_##SFX
#else
#define FB_SEQ(NAME, SFX) fb_##NAME##_##SFX
#endif

#define FB_FIELDS(SFX)                                                                               \
    .lanes_##SFX = FB_LANES_##SFX, .pack_size_##SFX = fb_pack_size_##SFX, .pack_##SFX = fb_pack_##SFX, \
    .gemm_packed_##SFX = fb_gemm_packed_##SFX, .gemm_tn_work_##SFX = fb_gemm_tn_work_##SFX,          \
    .gemm_tn_##SFX = fb_gemm_tn_##SFX, .elman_seq_ok_##SFX = FB_SEQ(elman_seq_ok, SFX),            \
    .elman_bwd_work_##SFX = FB_SEQ(elman_bwd_work, SFX), .elman_fwd_##SFX = FB_SEQ(elman_fwd, SFX), \
    .elman_bwd_##SFX = FB_SEQ(elman_bwd, SFX), .elman_act_##SFX = fb_elman_act_##SFX,              \
    .elman_dact_##SFX = fb_elman_dact_##SFX, .logits_rows_##SFX = fb_logits_rows_##SFX,             \
    .elman_fold_work_##SFX = fb_elman_fold_work_##SFX, .elman_fold_##SFX = fb_elman_fold_##SFX,     \
    .all_finite_##SFX = fb_all_finite_##SFX,                                                         \
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
#undef FB_SEQ
