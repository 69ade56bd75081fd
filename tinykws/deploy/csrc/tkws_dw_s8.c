/* DEPTHWISE_CONV_2D int8 (TFLite Micro's reference_integer_ops::DepthwiseConvPerChannel): weights
   [k_h][k_w][out_c], output channel c * depth_multiplier + m reads input channel c. */
#include "tkws_nn.h"
#include "tkws_support.h"
#include "tkws_dw_s8_fast.h"

/* Input-prioritized: for each output pixel and channel, sum over the window (padding skipped). */
void tkws_dw_s8_ref(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t dm = p->depth_multiplier > 0 ? p->depth_multiplier : 1;
    (void)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
            for (int32_t oc = 0; oc < p->out_c; oc++) {
                const int32_t ic = oc / dm;
                int32_t acc = bias ? bias[oc] : 0;
                for (int32_t ky = 0; ky < p->k_h; ky++) {
                    const int32_t iy = y0 + ky;
                    if (iy < 0 || iy >= p->in_h)
                        continue;
                    for (int32_t kx = 0; kx < p->k_w; kx++) {
                        const int32_t ix = x0 + kx;
                        if (ix < 0 || ix >= p->in_w)
                            continue;
                        acc += (in[(iy * p->in_w + ix) * p->in_c + ic] + p->in_offset)
                               * wt[(ky * p->k_w + kx) * p->out_c + oc];
                    }
                }
                out[(oy * p->out_w + ox) * p->out_c + oc] =
                    tkws_out_s8(acc, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}

/* Weight-prioritized: per output channel, each weight accumulated into every output pixel it
   touches (scratch: out_h * out_w int32). */
void tkws_dw_s8_ref_wo(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t dm = p->depth_multiplier > 0 ? p->depth_multiplier : 1;
    int32_t *acc = (int32_t *)scratch;
    const int32_t n = p->out_h * p->out_w;
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        const int32_t ic = oc / dm;
        for (int32_t i = 0; i < n; i++)
            acc[i] = bias ? bias[oc] : 0;
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                const int32_t wv = wt[(ky * p->k_w + kx) * p->out_c + oc];
                for (int32_t oy = 0; oy < p->out_h; oy++) {
                    const int32_t iy = oy * p->stride_h - p->pad_top + ky;
                    if (iy < 0 || iy >= p->in_h)
                        continue;
                    for (int32_t ox = 0; ox < p->out_w; ox++) {
                        const int32_t ix = ox * p->stride_w - p->pad_left + kx;
                        if (ix < 0 || ix >= p->in_w)
                            continue;
                        acc[oy * p->out_w + ox] += (in[(iy * p->in_w + ix) * p->in_c + ic] + p->in_offset) * wv;
                    }
                }
            }
        }
        for (int32_t i = 0; i < n; i++)
            out[i * p->out_c + oc] = tkws_out_s8(acc[i], mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
    }
}

TKWS_DW_FAST_ATTR void tkws_dw_s8_fast(TKWS_CONV_ARGS)
{
#define DW_FAST(m) tkws_dw_s8_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, DW_FAST);
#undef DW_FAST
}
