/* CONV_2D int8, per output channel: the reference kernels (input- and weight-prioritized loop
   orders) and the fast variants (input offset folded into the bias; the input-prioritized one
   with an int16 im2col column and dual 16-bit MACs). */
#include "tkws_nn.h"
#include "tkws_support.h"

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

/* weight-prioritized with the input offset folded into the bias: padding taps are skipped and
   corrected once per output (their raw value is the zero point) */
void tkws_conv_s8_fast_wo(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    int32_t *acc = (int32_t *)scratch;
    const int32_t n = p->out_h * p->out_w, zp = -p->in_offset;
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        for (int32_t i = 0; i < n; i++)
            acc[i] = bias ? bias[oc] : 0;
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                for (int32_t ic = 0; ic < p->in_c; ic++) {
                    const int32_t wv = wt[((oc * p->k_h + ky) * p->k_w + kx) * p->in_c + ic];
                    const int32_t pad_term = zp * wv;
                    for (int32_t oy = 0; oy < p->out_h; oy++) {
                        const int32_t iy = oy * p->stride_h - p->pad_top + ky;
                        int32_t *a = acc + oy * p->out_w;
                        if (iy < 0 || iy >= p->in_h) {
                            for (int32_t ox = 0; ox < p->out_w; ox++)
                                a[ox] += pad_term;
                            continue;
                        }
                        const int8_t *row = in + iy * p->in_w * p->in_c + ic;
                        for (int32_t ox = 0; ox < p->out_w; ox++) {
                            const int32_t ix = ox * p->stride_w - p->pad_left + kx;
                            a[ox] += (ix < 0 || ix >= p->in_w) ? pad_term : row[ix * p->in_c] * wv;
                        }
                    }
                }
            }
        }
        for (int32_t i = 0; i < n; i++)
            out[i * p->out_c + oc] = tkws_out_s8(acc[i], mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
    }
}

/* fast: the input offset is folded into the bias (kernels.py fold_bias). Per output pixel, the
   window is gathered once into an int16 column in TKWS_PAIR_ORDER (padding = the raw zero point),
   then dotted with 4 output channels' int8 rows at a time (SXTB16 + SMLAD: one weight word gives
   4 MACs per channel). scratch: k_h*k_w*in_c int16, rounded up to 4 bytes. */
void tkws_conv_s8_fast(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t k = p->k_h * p->k_w * p->in_c, k4 = k & ~3, oc_n = p->out_c;
    const int16_t zp = (int16_t)(-p->in_offset);
    int16_t *col = (int16_t *)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
            int32_t j = 0;
            for (int32_t ky = 0; ky < p->k_h; ky++) {
                const int32_t iy = y0 + ky;
                for (int32_t kx = 0; kx < p->k_w; kx++) {
                    const int32_t ix = x0 + kx;
                    if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                        for (int32_t c = 0; c < p->in_c; c++, j++)
                            col[TKWS_PAIR_ORDER(j, k4)] = zp;
                    } else {
                        const int8_t *src = in + (iy * p->in_w + ix) * p->in_c;
                        for (int32_t c = 0; c < p->in_c; c++, j++)
                            col[TKWS_PAIR_ORDER(j, k4)] = src[c];
                    }
                }
            }
            int8_t *o = out + (oy * p->out_w + ox) * oc_n;
            int32_t oc = 0;
            for (; oc + 4 <= oc_n; oc += 4) {
                const int8_t *w0 = wt + oc * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
                int32_t a = bias[oc], b = bias[oc + 1], c = bias[oc + 2], d = bias[oc + 3];
                const int16_t *x = col;
                for (int32_t i = 0; i < k4; i += 4, x += 4) {
                    const int32_t x02 = tkws_read32(x), x13 = tkws_read32(x + 2);
                    const int32_t u = tkws_read32(w0 + i), v = tkws_read32(w1 + i);
                    const int32_t s = tkws_read32(w2 + i), t = tkws_read32(w3 + i);
                    a = tkws_smlad(tkws_sxtb16(u), x02, a);
                    a = tkws_smlad(tkws_sxtb16_ror8(u), x13, a);
                    b = tkws_smlad(tkws_sxtb16(v), x02, b);
                    b = tkws_smlad(tkws_sxtb16_ror8(v), x13, b);
                    c = tkws_smlad(tkws_sxtb16(s), x02, c);
                    c = tkws_smlad(tkws_sxtb16_ror8(s), x13, c);
                    d = tkws_smlad(tkws_sxtb16(t), x02, d);
                    d = tkws_smlad(tkws_sxtb16_ror8(t), x13, d);
                }
                for (int32_t i = k4; i < k; i++) {
                    a += col[i] * w0[i];
                    b += col[i] * w1[i];
                    c += col[i] * w2[i];
                    d += col[i] * w3[i];
                }
                o[oc] = tkws_out_s8(a, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
                o[oc + 1] = tkws_out_s8(b, mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
                o[oc + 2] = tkws_out_s8(c, mult[oc + 2], shift[oc + 2], p->out_offset, p->act_min, p->act_max);
                o[oc + 3] = tkws_out_s8(d, mult[oc + 3], shift[oc + 3], p->out_offset, p->act_min, p->act_max);
            }
            for (; oc < oc_n; oc++) {
                const int8_t *w0 = wt + oc * k;
                int32_t a = bias[oc];
                for (int32_t i = 0; i < k4; i += 4) {
                    const int32_t u = tkws_read32(w0 + i);
                    a = tkws_smlad(tkws_sxtb16(u), tkws_read32(col + i), a);
                    a = tkws_smlad(tkws_sxtb16_ror8(u), tkws_read32(col + i + 2), a);
                }
                for (int32_t i = k4; i < k; i++)
                    a += col[i] * w0[i];
                o[oc] = tkws_out_s8(a, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}
