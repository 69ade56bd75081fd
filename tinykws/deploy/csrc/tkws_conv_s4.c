/* CONV_2D (any kernel size, stride, padding; pointwise included) with sub-byte packed weights
   (4 or 2 bits, layout in tkws_subbyte.h): the plain references, one weight unpacked at a time,
   TFLite's arithmetic as written; the fast im2col variants (bias folded, SXTB16/SMLAD). */
#include "tkws_nn.h"
#include "tkws_subbyte.h"

/* input-prioritized: for each output pixel and channel, the sum over its window */
TKWS_INLINE void tkws_conv_sb_ref(TKWS_CONV_ARGS, const int bits)
{
    const int32_t k = p->k_h * p->k_w * p->in_c, nw = tkws_sb_row_words(k, bits);
    (void)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
            for (int32_t oc = 0; oc < p->out_c; oc++) {
                const int32_t *row = (const int32_t *)w + oc * nw;
                int32_t acc = bias ? bias[oc] : 0;
                for (int32_t ky = 0; ky < p->k_h; ky++) {
                    const int32_t iy = y0 + ky;
                    if (iy < 0 || iy >= p->in_h)
                        continue; /* padding reads the input zero point: contributes 0 */
                    for (int32_t kx = 0; kx < p->k_w; kx++) {
                        const int32_t ix = x0 + kx;
                        if (ix < 0 || ix >= p->in_w)
                            continue;
                        const int8_t *xi = in + (iy * p->in_w + ix) * p->in_c;
                        const int32_t j0 = (ky * p->k_w + kx) * p->in_c;
                        for (int32_t ic = 0; ic < p->in_c; ic++)
                            acc += (xi[ic] + p->in_offset) * tkws_sb_weight(row, j0 + ic, bits);
                    }
                }
                out[(oy * p->out_w + ox) * p->out_c + oc] =
                    tkws_out_s8(acc, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}

void tkws_conv_s4_ref(TKWS_CONV_ARGS) { tkws_conv_sb_ref(p, in, w, bias, mult, shift, out, scratch, 4); }
void tkws_conv_s2_ref(TKWS_CONV_ARGS) { tkws_conv_sb_ref(p, in, w, bias, mult, shift, out, scratch, 2); }

void tkws_conv_s4_fast(TKWS_CONV_ARGS)
{
#define CONV_S4(m) tkws_conv_s4_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, CONV_S4);
#undef CONV_S4
}

void tkws_conv_s2_fast(TKWS_CONV_ARGS)
{
#define CONV_S2(m) tkws_conv_s2_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, CONV_S2);
#undef CONV_S2
}
