/* For the Cython modules: the per-step kernels under their fb_* names, called through the table this
 * module bound at import (fb_bind, from fastbptt._simd). Each module holds its own pointer. */
#ifndef FASTBPTT_DISPATCH_H
#define FASTBPTT_DISPATCH_H

#include "_kernels.h"

static const fb_kernels* fb_K = &fb_kernels_baseline;

/* 0 when bound, -1 when this build has no such set (the caller checked the CPU) */
static int fb_bind(const char* name) {
    const fb_kernels* k = fb_kernels_named(name);
    if (!k) return -1;
    fb_K = k;
    return 0;
}

#define FASTBPTT_TILED (fb_K->tiled)
#define FASTBPTT_VECTOR_MATH (fb_K->vector_math)
#define fb_chunks_d (fb_K->chunks)
#define fb_lanes_d() (fb_K->lanes_d)
#define fb_lanes_f() (fb_K->lanes_f)
#define fb_pack_size_d (fb_K->pack_size_d)
#define fb_pack_size_f (fb_K->pack_size_f)
#define fb_pack_d (fb_K->pack_d)
#define fb_pack_f (fb_K->pack_f)
#define fb_gemm_packed_d (fb_K->gemm_packed_d)
#define fb_gemm_packed_f (fb_K->gemm_packed_f)
#define fb_gemm_tn_work_d (fb_K->gemm_tn_work_d)
#define fb_gemm_tn_work_f (fb_K->gemm_tn_work_f)
#define fb_gemm_tn_d (fb_K->gemm_tn_d)
#define fb_gemm_tn_f (fb_K->gemm_tn_f)
#define fb_elman_seq_ok_d (fb_K->elman_seq_ok_d)
#define fb_elman_seq_ok_f (fb_K->elman_seq_ok_f)
#define fb_elman_bwd_work_d (fb_K->elman_bwd_work_d)
#define fb_elman_bwd_work_f (fb_K->elman_bwd_work_f)
#define fb_elman_fwd_d (fb_K->elman_fwd_d)
#define fb_elman_fwd_f (fb_K->elman_fwd_f)
#define fb_elman_bwd_d (fb_K->elman_bwd_d)
#define fb_elman_bwd_f (fb_K->elman_bwd_f)
#define fb_elman_act_d (fb_K->elman_act_d)
#define fb_elman_act_f (fb_K->elman_act_f)
#define fb_elman_dact_d (fb_K->elman_dact_d)
#define fb_elman_dact_f (fb_K->elman_dact_f)
#define fb_logits_rows_d (fb_K->logits_rows_d)
#define fb_logits_rows_f (fb_K->logits_rows_f)
#define fb_elman_fold_work_d (fb_K->elman_fold_work_d)
#define fb_elman_fold_work_f (fb_K->elman_fold_work_f)
#define fb_elman_fold_d (fb_K->elman_fold_d)
#define fb_elman_fold_f (fb_K->elman_fold_f)
#define fb_all_finite_d (fb_K->all_finite_d)
#define fb_all_finite_f (fb_K->all_finite_f)
#define fb_vtanh_d (fb_K->vtanh_d)
#define fb_vtanh_f (fb_K->vtanh_f)
#define fb_tanh_d (fb_K->tanh_d)
#define fb_tanh_f (fb_K->tanh_f)
#define fb_vsigmoid_d (fb_K->vsigmoid_d)
#define fb_vsigmoid_f (fb_K->vsigmoid_f)
#define fb_lstm_fwd_d (fb_K->lstm_fwd_d)
#define fb_lstm_fwd_f (fb_K->lstm_fwd_f)
#define fb_lstm_bwd_d (fb_K->lstm_bwd_d)
#define fb_lstm_bwd_f (fb_K->lstm_bwd_f)
#define fb_gru_bwd_d (fb_K->gru_bwd_d)
#define fb_gru_bwd_f (fb_K->gru_bwd_f)
#define fb_cols_d (fb_K->cols_d)
#define fb_cols_f (fb_K->cols_f)
#define fb_add_rows_d (fb_K->add_rows_d)
#define fb_add_rows_f (fb_K->add_rows_f)

#endif
