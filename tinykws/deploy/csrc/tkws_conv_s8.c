/* CONV_2D int8, per output channel: the reference kernels (input- and weight-prioritized loop
   orders) and the fast variants (input offset folded into the bias; the input-prioritized one
   with an int16 im2col column and dual 16-bit MACs). */
#include "tkws_nn.h"
#include "tkws_gemm.h"
#include "tkws_conv_s8_fast.h"

/* input-prioritized: for each output pixel and channel, the sum over its window */
void tkws_conv_s8_ref(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    (void)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
            for (int32_t oc = 0; oc < p->out_c; oc++) {
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
                        const int8_t *wi = wt + ((oc * p->k_h + ky) * p->k_w + kx) * p->in_c;
                        for (int32_t ic = 0; ic < p->in_c; ic++)
                            acc += (xi[ic] + p->in_offset) * wi[ic];
                    }
                }
                out[(oy * p->out_w + ox) * p->out_c + oc] =
                    tkws_out_s8(acc, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}

/* weight-prioritized: for each output channel, each weight is accumulated into every output it
   touches (int32 accumulators of one channel's output map in scratch) */
void tkws_conv_s8_ref_wo(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    int32_t *acc = (int32_t *)scratch;
    const int32_t n = p->out_h * p->out_w;
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        for (int32_t i = 0; i < n; i++)
            acc[i] = bias ? bias[oc] : 0;
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                for (int32_t ic = 0; ic < p->in_c; ic++) {
                    const int32_t wv = wt[((oc * p->k_h + ky) * p->k_w + kx) * p->in_c + ic];
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
        }
        for (int32_t i = 0; i < n; i++)
            out[i * p->out_c + oc] = tkws_out_s8(acc[i], mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
    }
}

/* first output index o in [0, n) with o * s + off >= 0, and one past the last with o * s + off < lim */
static void tkws_valid_range(int32_t n, int32_t s, int32_t off, int32_t lim, int32_t *lo, int32_t *hi)
{
    int32_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int32_t b = lim - off <= 0 ? 0 : (lim - off - 1) / s + 1;
    a = a > n ? n : a;
    b = b > n ? n : b;
    *lo = a;
    *hi = b < a ? a : b;
}

/* weight-prioritized with the input offset folded into the bias: for each output channel and tap,
   4 input channels' weights at a time (widened once, kept in registers) are accumulated into every
   output they touch with SMLAD (int32 accumulators of one channel's map in scratch); taps in the
   padding add the raw zero point times the weights. scratch: out_h*out_w int32 */
void tkws_conv_s8_fast_wo(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    int32_t *acc = (int32_t *)scratch;
    const int32_t n = p->out_h * p->out_w, zp = -p->in_offset, c_n = p->in_c, c4 = c_n & ~3;
    const int32_t step = p->stride_w * c_n;
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        for (int32_t i = 0; i < n; i++)
            acc[i] = bias[oc];
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            int32_t oy0, oy1;
            tkws_valid_range(p->out_h, p->stride_h, ky - p->pad_top, p->in_h, &oy0, &oy1);
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                int32_t ox0, ox1;
                tkws_valid_range(p->out_w, p->stride_w, kx - p->pad_left, p->in_w, &ox0, &ox1);
                const int8_t *wk = wt + ((oc * p->k_h + ky) * p->k_w + kx) * c_n;
                for (int32_t ic = 0; ic < c_n; ic += 4) {
                    const int32_t quad = ic < c4;
                    int32_t w02 = 0, w13 = 0, wsum = 0, w0 = wk[ic];
                    if (quad) {
                        const int32_t wv = tkws_read32(wk + ic);
                        w02 = tkws_sxtb16(wv), w13 = tkws_sxtb16_ror8(wv);
                        wsum = wk[ic] + wk[ic + 1] + wk[ic + 2] + wk[ic + 3];
                    } else {
                        wsum = w0;
                    }
                    const int32_t pad = zp * wsum;
                    for (int32_t oy = 0; oy < p->out_h; oy++) {
                        int32_t *a = acc + oy * p->out_w;
                        if (oy < oy0 || oy >= oy1) {
                            if (pad)
                                for (int32_t ox = 0; ox < p->out_w; ox++)
                                    a[ox] += pad;
                            continue;
                        }
                        if (pad) {
                            for (int32_t ox = 0; ox < ox0; ox++)
                                a[ox] += pad;
                            for (int32_t ox = ox1; ox < p->out_w; ox++)
                                a[ox] += pad;
                        }
                        if (ox0 >= ox1)
                            continue;
                        const int32_t iy = oy * p->stride_h - p->pad_top + ky;
                        const int8_t *x = in + (iy * p->in_w + ox0 * p->stride_w - p->pad_left + kx) * c_n + ic;
                        if (quad) {
                            for (int32_t ox = ox0; ox < ox1; ox++, x += step) {
                                const int32_t xv = tkws_read32(x);
                                a[ox] = tkws_smlad(tkws_sxtb16_ror8(xv), w13, tkws_smlad(tkws_sxtb16(xv), w02, a[ox]));
                            }
                        } else {
                            for (int32_t ox = ox0; ox < ox1; ox++, x += step)
                                a[ox] += *x * w0;
                        }
                    }
                    if (!quad)
                        ic -= 3; /* the in_c % 4 tail one channel at a time */
                }
            }
        }
        for (int32_t i = 0; i < n; i++)
            out[i * p->out_c + oc] = tkws_out_s8(acc[i], mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
    }
}

void tkws_conv_s8_fast(TKWS_CONV_ARGS)
{
#define CONV_INT8(m) tkws_conv_s8_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, CONV_INT8);
#undef CONV_INT8
}

void tkws_conv_s8_fast_wide(TKWS_CONV_ARGS)
{
#define CONV_WIDE(m) tkws_conv_s8_fast_wide_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, CONV_WIDE);
#undef CONV_WIDE
}
