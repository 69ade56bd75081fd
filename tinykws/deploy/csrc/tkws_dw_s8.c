/* DEPTHWISE_CONV_2D int8 (TFLite Micro's reference_integer_ops::DepthwiseConvPerChannel): weights
   [k_h][k_w][out_c], output channel c * depth_multiplier + m reads input channel c. */
#include "tkws_nn.h"
#include "tkws_support.h"

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

/* one output pixel at the border: every tap of the window, padding read as the raw zero point */
static void dw_border(const tkws_conv_params *p, const int8_t *in, const int8_t *wt, const int32_t *bias,
                      const int32_t *mult, const int32_t *shift, int8_t *op, int32_t y0, int32_t x0)
{
    const int32_t zp = -p->in_offset;
    for (int32_t c = 0; c < p->out_c; c++) {
        int32_t acc = bias[c];
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            const int32_t iy = y0 + ky;
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                const int32_t ix = x0 + kx;
                const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                const int32_t x = inside ? in[(iy * p->in_w + ix) * p->in_c + c] : zp;
                acc += x * wt[(ky * p->k_w + kx) * p->out_c + c];
            }
        }
        op[c] = tkws_out_s8(acc, mult[c], shift[c], p->out_offset, p->act_min, p->act_max);
    }
}

/* Fast (depth multiplier 1), bias with the input offset folded in. Border pixels take every tap
   with the zero point for padding; interior pixels need no bounds checks: 4 channels at a time,
   one 32-bit load of inputs and one of weights per tap, widened to int16 pairs, 4 MACs with
   SMLABB/SMLATT. */
void tkws_dw_s8_fast(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t C = p->out_c, C4 = C & ~3, row = p->in_w * C;
    (void)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int rows_in = y0 >= 0 && y0 + p->k_h <= p->in_h;
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int8_t *op = out + (oy * p->out_w + ox) * C;
            if (!rows_in || x0 < 0 || x0 + p->k_w > p->in_w) {
                dw_border(p, in, wt, bias, mult, shift, op, y0, x0);
                continue;
            }
            const int8_t *base = in + y0 * row + x0 * C;
            int32_t c = 0;
            for (; c < C4; c += 4) {
                int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                const int8_t *wp = wt + c;
                for (int32_t ky = 0; ky < p->k_h; ky++) {
                    const int8_t *ip = base + ky * row + c;
                    for (int32_t kx = 0; kx < p->k_w; kx++) {
                        const int32_t xv = tkws_read32(ip), wv = tkws_read32(wp);
                        const int32_t x02 = tkws_sxtb16(xv), x13 = tkws_sxtb16_ror8(xv);
                        const int32_t w02 = tkws_sxtb16(wv), w13 = tkws_sxtb16_ror8(wv);
                        a0 = tkws_smlabb(x02, w02, a0);
                        a2 = tkws_smlatt(x02, w02, a2);
                        a1 = tkws_smlabb(x13, w13, a1);
                        a3 = tkws_smlatt(x13, w13, a3);
                        ip += C;
                        wp += C;
                    }
                }
                op[c] = tkws_out_s8(a0, mult[c], shift[c], p->out_offset, p->act_min, p->act_max);
                op[c + 1] = tkws_out_s8(a1, mult[c + 1], shift[c + 1], p->out_offset, p->act_min, p->act_max);
                op[c + 2] = tkws_out_s8(a2, mult[c + 2], shift[c + 2], p->out_offset, p->act_min, p->act_max);
                op[c + 3] = tkws_out_s8(a3, mult[c + 3], shift[c + 3], p->out_offset, p->act_min, p->act_max);
            }
            for (; c < C; c++) {
                int32_t acc = bias[c];
                for (int32_t ky = 0; ky < p->k_h; ky++)
                    for (int32_t kx = 0; kx < p->k_w; kx++)
                        acc += base[ky * row + kx * C + c] * wt[(ky * p->k_w + kx) * C + c];
                op[c] = tkws_out_s8(acc, mult[c], shift[c], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}
