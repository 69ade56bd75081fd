/* tinykws kernel library: int8 neural-network kernels for Cortex-M (and any C99 host).
 *
 * Conventions (CMSIS-NN / TFLite Micro style):
 *  - activations NHWC, batch 1 per call, int8;
 *  - weights int8, symmetric, per output channel: conv OHWI [out_c][k_h][k_w][in_c],
 *    depthwise [k_h][k_w][out_c], fully connected [out_n][in_n]; a variant that wants another
 *    layout says so in tinykws/deploy/kernels.py, whose packer produces it;
 *  - per-output-channel requantization `mult`/`shift` arrays (TFLite convention, shift > 0 is a
 *    left shift; the _fast variants read `shift` as pairs {shift, rounding}, see tkws_support.h), `in_offset = -input_zero_point`, `out_offset = output_zero_point`, output clamp
 *    [act_min, act_max] (fused ReLU / ReLU6);
 *  - every variant of an op has the same signature; `scratch` holds what kernels.py's
 *    scratch_bytes() says (NULL where that is 0);
 *  - variant names: _ref (input-prioritized loop order: for each output, sum over its window),
 *    _ref_wo (weight-prioritized: for each weight, accumulate into every output it touches),
 *    _fast (SIMD with the DSP extension where __ARM_FEATURE_DSP is defined, the same arithmetic in
 *    portable C otherwise; bit-exact either way).
 * No malloc, no floating point.
 */
#ifndef TKWS_NN_H
#define TKWS_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* conv, pointwise 1x1 and depthwise. Padding: pad_top/pad_left; the bottom/right padding follows
   from out_h/out_w (asymmetric SAME padding included). depthwise: output channel
   c * depth_multiplier + m reads input channel c (depth_multiplier = out_c / in_c). */
typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t depth_multiplier;
    int32_t in_offset, out_offset;
    int32_t act_min, act_max;
    int32_t requant; /* fast kernels: TKWS_RQ_* of tkws_support.h (kernels.py requant_mode); ref kernels ignore it */
} tkws_conv_params;

typedef struct {
    int32_t in_n, out_n;
    int32_t in_offset, out_offset;
    int32_t act_min, act_max;
    int32_t requant; /* as in tkws_conv_params */
} tkws_fc_params;

/* average and max pool: the window is clipped to the input (TFLite); avg divides by the number of
   valid elements, rounding half away from zero */
typedef struct {
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t f_h, f_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;
} tkws_pool_params;

/* element-wise add of two same-shape tensors (TFLite Micro's int8 ADD) */
typedef struct {
    int32_t size;
    int32_t in1_offset, in2_offset;
    int32_t left_shift;
    int32_t in1_mult, in1_shift;
    int32_t in2_mult, in2_shift;
    int32_t out_mult, out_shift;
    int32_t out_offset;
    int32_t act_min, act_max;
} tkws_add_params;

/* int8 softmax over the last dimension (rows x depth), output scale 1/256, zero point -128 */
typedef struct {
    int32_t rows, depth;
    int32_t input_multiplier, input_left_shift;
    int32_t diff_min;
} tkws_softmax_params;

#define TKWS_CONV_ARGS const tkws_conv_params *p, const int8_t *in, const void *w, const int32_t *bias, \
    const int32_t *mult, const int32_t *shift, int8_t *out, void *scratch
#define TKWS_FC_ARGS const tkws_fc_params *p, const int8_t *in, const void *w, const int32_t *bias, \
    const int32_t *mult, const int32_t *shift, int8_t *out, void *scratch

/* ---- CONV_2D (any kernel size, stride, padding) */
void tkws_conv_s8_ref(TKWS_CONV_ARGS);
void tkws_conv_s8_ref_wo(TKWS_CONV_ARGS);   /* scratch: out_h*out_w int32 */
void tkws_conv_s8_fast(TKWS_CONV_ARGS);     /* bias has the input offset folded in; scratch: k_h*k_w*in_c int16 */
void tkws_conv_s8_fast_wo(TKWS_CONV_ARGS);  /* bias folded; scratch: out_h*out_w int32 */
void tkws_conv_s8_fast_wide(TKWS_CONV_ARGS); /* int16 weights packed by kernels.py (2x flash), bias folded;
                                                k_h*k_w*in_c a multiple of 4, out_c even; scratch: 2 windows
                                                of int8 + 2 of int16 */

/* ---- pointwise 1x1 conv, no padding, any stride */
void tkws_pw_s8_fast(TKWS_CONV_ARGS);       /* int8 OHWI weights, bias folded; scratch: 2 pixels of int16 */
void tkws_pw_s8_fast_wide(TKWS_CONV_ARGS);  /* int16 weights interleaved by kernels.py (2x flash), bias folded;
                                               in_c a multiple of 4, out_c even; scratch: 2 pixels of int16 */
/* sparse pointwise (weights compressed by kernels.py pack_sparse / pack_block4 / pack_block8), bias folded */
void tkws_pw_s8_sparse(TKWS_CONV_ARGS);     /* zero-skip, input order; in_c <= 256; no scratch */
void tkws_pw_s8_sparse_wo(TKWS_CONV_ARGS);  /* zero-skip, weight order; in_c <= 256; scratch: out_h*out_w int32 */
void tkws_pw_s8_block4(TKWS_CONV_ARGS);     /* 1x4 blocks along in_c, SIMD; in_c % 4 == 0; scratch: 4 pixels of int16 */
void tkws_pw_s8_block8(TKWS_CONV_ARGS);     /* 1x8 blocks along in_c, SIMD; in_c % 8 == 0; scratch: 4 pixels of int16 */

/* ---- DEPTHWISE_CONV_2D */
void tkws_dw_s8_ref(TKWS_CONV_ARGS);
void tkws_dw_s8_ref_wo(TKWS_CONV_ARGS);     /* scratch: out_h*out_w int32 */
void tkws_dw_s8_fast(TKWS_CONV_ARGS);       /* bias folded; depth_multiplier 1; no scratch */

/* ---- FULLY_CONNECTED */
void tkws_fc_s8_ref(TKWS_FC_ARGS);
void tkws_fc_s8_ref_wo(TKWS_FC_ARGS);       /* scratch: out_n int32 */
void tkws_fc_s8_fast(TKWS_FC_ARGS);         /* bias folded; scratch: in_n int16 */
void tkws_fc_s8_fast_wo(TKWS_FC_ARGS);      /* bias folded; scratch: out_n int32 */

/* ---- sub-byte packed weights (4 or 2 bits per weight, layout in tkws_subbyte.h; kernels.py
   pack_s4 / pack_s2); the _fast ones fold the input offset into the bias */
void tkws_conv_s4_ref(TKWS_CONV_ARGS);      /* any conv, pointwise included */
void tkws_conv_s2_ref(TKWS_CONV_ARGS);
void tkws_conv_s4_fast(TKWS_CONV_ARGS);     /* im2col; scratch: 4 windows of int8 + 4 columns of int16 */
void tkws_conv_s2_fast(TKWS_CONV_ARGS);
void tkws_pw_s4_fast(TKWS_CONV_ARGS);       /* 1x1, no padding; scratch: 4 pixels of int16 */
void tkws_pw_s2_fast(TKWS_CONV_ARGS);
void tkws_dw_s4_ref(TKWS_CONV_ARGS);        /* any depth multiplier */
void tkws_dw_s2_ref(TKWS_CONV_ARGS);
void tkws_dw_s4_fast(TKWS_CONV_ARGS);       /* depth multiplier 1; scratch: the weights unpacked (tkws_dw_s8_fast's layout) */
void tkws_dw_s2_fast(TKWS_CONV_ARGS);
void tkws_fc_s4_ref(TKWS_FC_ARGS);
void tkws_fc_s2_ref(TKWS_FC_ARGS);
void tkws_fc_s4_fast(TKWS_FC_ARGS);         /* scratch: in_n int16 */
void tkws_fc_s2_fast(TKWS_FC_ARGS);

/* ---- pooling */
void tkws_avgpool_s8_ref(const tkws_pool_params *p, const int8_t *in, int8_t *out, void *scratch);
void tkws_avgpool_s8_fast(const tkws_pool_params *p, const int8_t *in, int8_t *out, void *scratch);
void tkws_maxpool_s8_ref(const tkws_pool_params *p, const int8_t *in, int8_t *out, void *scratch);

/* ---- ADD (in place allowed: out may equal in1 or in2) */
void tkws_add_s8_ref(const tkws_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out, void *scratch);

/* ---- SOFTMAX (in place allowed) */
void tkws_softmax_s8_ref(const tkws_softmax_params *p, const int8_t *in, int8_t *out, void *scratch);

#ifdef __cplusplus
}
#endif
#endif /* TKWS_NN_H */
