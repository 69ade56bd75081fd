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

/* one output pixel's window as an int16 column in TKWS_PAIR_ORDER (padding: the raw zero point):
   gathered as int8 rows into `tmp` (k bytes), then widened 4 at a time */
static void tkws_conv_col(const tkws_conv_params *p, const int8_t *in, int32_t pix, int16_t *col, int8_t *tmp)
{
    const int32_t oy = pix / p->out_w, ox = pix - oy * p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int8_t zp = (int8_t)(-p->in_offset);
    const int32_t c = p->in_c, rowlen = p->k_w * c;
    const int x_inside = x0 >= 0 && x0 + p->k_w <= p->in_w;
    int8_t *d = tmp;
    for (int32_t ky = 0; ky < p->k_h; ky++, d += rowlen) {
        const int32_t iy = y0 + ky;
        if (iy < 0 || iy >= p->in_h) {
            for (int32_t j = 0; j < rowlen; j++)
                d[j] = zp;
        } else if (x_inside) {
            const int8_t *src = in + (iy * p->in_w + x0) * c;
            for (int32_t j = 0; j < rowlen; j++)
                d[j] = src[j];
        } else {
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                const int32_t ix = x0 + kx;
                const int ok = ix >= 0 && ix < p->in_w;
                const int8_t *src = in + (iy * p->in_w + ix) * c;
                for (int32_t j = 0; j < c; j++)
                    d[kx * c + j] = ok ? src[j] : zp;
            }
        }
    }
    tkws_widen_row(tmp, col, p->k_h * rowlen);
}

/* fast: the input offset is folded into the bias (kernels.py fold_bias). The windows of two
   output pixels are gathered into int16 columns in TKWS_PAIR_ORDER (padding = the raw zero
   point), then dotted with 2 output channels at a time: 4 accumulators, each weight word widened once
   for 2 pixels (SXTB16 + SMLAD). Weights as packed by kernels.pack_conv_fast
   (same bytes as OHWI int8, reordered): block A, for each group of 4 output channels and each
   4 k-values, the 4 channels' words one after another; block B, the groups' k % 4 tails, row by
   row; block C, the out_c % 4 last channels' rows whole. scratch: 2 columns of k (rounded up to
   even) int16, then k int8. */
void tkws_conv_s8_fast(TKWS_CONV_ARGS)
{
    const int32_t k = p->k_h * p->k_w * p->in_c, k4 = k & ~3, kt = k - k4, kcol = (k + 1) & ~1;
    const int32_t oc_n = p->out_c, oc4 = oc_n & ~3, n = p->out_h * p->out_w;
    const int8_t *wa_blk = (const int8_t *)w, *wb_blk = wa_blk + oc4 * k4, *wc_blk = wb_blk + oc4 * kt;
    int16_t *ca = (int16_t *)scratch, *cb = ca + kcol;
    int8_t *tmp = (int8_t *)(cb + kcol);
    for (int32_t i = 0; i < n; i += 2) {
        const int two = i + 1 < n;
        tkws_conv_col(p, in, i, ca, tmp);
        tkws_conv_col(p, in, two ? i + 1 : i, cb, tmp);
        int8_t *oa = out + i * oc_n, *ob = oa + oc_n;
        int32_t oc = 0;
        for (; oc < oc4; oc += 2) {
            /* channels oc, oc+1: words 0,1 (or 2,3) of each group of 4 in block A */
            const int32_t *wp = (const int32_t *)wa_blk + (oc >> 2) * k4 + (oc & 2);
            int32_t a0 = bias[oc], a1 = bias[oc + 1], b0 = a0, b1 = a1;
            const int32_t *xa = (const int32_t *)ca, *xb = (const int32_t *)cb;
            for (int32_t j = 0; j < k4; j += 4) {
                const int32_t xa02 = xa[0], xa13 = xa[1], xb02 = xb[0], xb13 = xb[1];
                const int32_t u = wp[0], v = wp[1];
                const int32_t u02 = tkws_sxtb16(u), u13 = tkws_sxtb16_ror8(u);
                const int32_t v02 = tkws_sxtb16(v), v13 = tkws_sxtb16_ror8(v);
                xa += 2;
                xb += 2;
                wp += 4;
                a0 = tkws_smlad(u02, xa02, a0);
                a0 = tkws_smlad(u13, xa13, a0);
                b0 = tkws_smlad(u02, xb02, b0);
                b0 = tkws_smlad(u13, xb13, b0);
                a1 = tkws_smlad(v02, xa02, a1);
                a1 = tkws_smlad(v13, xa13, a1);
                b1 = tkws_smlad(v02, xb02, b1);
                b1 = tkws_smlad(v13, xb13, b1);
            }
            if (kt) {
                const int8_t *t = wb_blk + oc * kt;
                for (int32_t j = 0; j < kt; j++) {
                    const int32_t xa_ = ca[k4 + j], xb_ = cb[k4 + j];
                    a0 += xa_ * t[j], b0 += xb_ * t[j];
                    a1 += xa_ * t[kt + j], b1 += xb_ * t[kt + j];
                }
            }
            oa[oc] = tkws_out_s8(a0, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            oa[oc + 1] = tkws_out_s8(a1, mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
            if (two) {
                ob[oc] = tkws_out_s8(b0, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
                ob[oc + 1] = tkws_out_s8(b1, mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
            }
        }
        for (; oc < oc_n; oc++) {
            const int8_t *w0 = wc_blk + (oc - oc4) * k;
            int32_t a = bias[oc], b = a;
            for (int32_t j = 0; j < k4; j += 4) {
                const int32_t u = tkws_read32(w0 + j);
                a = tkws_smlad(tkws_sxtb16(u), tkws_read32(ca + j), a);
                a = tkws_smlad(tkws_sxtb16_ror8(u), tkws_read32(ca + j + 2), a);
                b = tkws_smlad(tkws_sxtb16(u), tkws_read32(cb + j), b);
                b = tkws_smlad(tkws_sxtb16_ror8(u), tkws_read32(cb + j + 2), b);
            }
            for (int32_t j = k4; j < k; j++) {
                a += ca[j] * w0[j];
                b += cb[j] * w0[j];
            }
            oa[oc] = tkws_out_s8(a, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            if (two)
                ob[oc] = tkws_out_s8(b, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
        }
    }
}
