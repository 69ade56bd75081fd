/* DEPTHWISE_CONV_2D with sub-byte packed weights (4 or 2 bits; [k_h][k_w][out_c] as one packed row,
   layout in tkws_subbyte.h). The reference unpacks one weight at a time (TFLite's arithmetic as
   written, any depth multiplier); the fast variant (depth multiplier 1) unpacks the layer's few
   weights once per call into scratch, in the layout tkws_dw_s8_fast reads (int16 [C/4][9][c0, c2,
   c1, c3] for 3x3 with C % 4 == 0, else int8 as stored), and runs its body: the flash of 4 or 2
   bits per weight for the RAM of one weight copy and ~10 instructions per weight per call. */
#include "tkws_nn.h"
#include "tkws_subbyte.h"

TKWS_INLINE void tkws_dw_sb_ref(TKWS_CONV_ARGS, const int bits)
{
    const int32_t *row = (const int32_t *)w;
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
                               * tkws_sb_weight(row, (ky * p->k_w + kx) * p->out_c + oc, bits);
                    }
                }
                out[(oy * p->out_w + ox) * p->out_c + oc] =
                    tkws_out_s8(acc, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}

void tkws_dw_s4_ref(TKWS_CONV_ARGS) { tkws_dw_sb_ref(p, in, w, bias, mult, shift, out, scratch, 4); }
void tkws_dw_s2_ref(TKWS_CONV_ARGS) { tkws_dw_sb_ref(p, in, w, bias, mult, shift, out, scratch, 2); }

TKWS_DW_FAST_ATTR void tkws_dw_s4_fast(TKWS_CONV_ARGS)
{
#define DW_S4(m) tkws_dw_s4_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, DW_S4);
#undef DW_S4
}

TKWS_DW_FAST_ATTR void tkws_dw_s2_fast(TKWS_CONV_ARGS)
{
#define DW_S2(m) tkws_dw_s2_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, DW_S2);
#undef DW_S2
}
