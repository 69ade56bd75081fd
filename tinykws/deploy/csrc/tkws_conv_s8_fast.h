/* the fast variants' bodies, inline: tkws_conv_s8.c instantiates them for any shape (the library's
   functions), the generator once per layer with the layer's constant params struct, so every
   shape, offset and loop bound is a compile-time constant (tinykws/deploy/codegen.py) */
#ifndef TKWS_CONV_S8_FAST_H
#define TKWS_CONV_S8_FAST_H

#include "tkws_nn.h"
#include "tkws_gemm.h"


/* one output pixel's window as int8 (padding: the raw zero point), k bytes */
TKWS_INLINE void tkws_conv_window(const tkws_conv_params *p, const int8_t *in, int32_t pix, int8_t *d)
{
    const int32_t oy = pix / p->out_w, ox = pix - oy * p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int8_t zp = (int8_t)(-p->in_offset);
    const int32_t c = p->in_c, rowlen = p->k_w * c;
    const int x_inside = x0 >= 0 && x0 + p->k_w <= p->in_w;
    for (int32_t ky = 0; ky < p->k_h; ky++, d += rowlen) {
        const int32_t iy = y0 + ky;
        if (iy < 0 || iy >= p->in_h) {
            memset(d, zp, (size_t)rowlen);
        } else if (x_inside) {
            memcpy(d, in + (iy * p->in_w + x0) * c, (size_t)rowlen);
        } else {
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                const int32_t ix = x0 + kx;
                if (ix >= 0 && ix < p->in_w)
                    memcpy(d + kx * c, in + (iy * p->in_w + ix) * c, (size_t)c);
                else
                    memset(d + kx * c, zp, (size_t)c);
            }
        }
    }
}

/* one output pixel's window as an int16 column in TKWS_PAIR_ORDER: gathered as int8 into `tmp`
   (k bytes), then widened 4 at a time */
TKWS_INLINE void tkws_conv_col(const tkws_conv_params *p, const int8_t *in, int32_t pix, int16_t *col, int8_t *tmp)
{
    tkws_conv_window(p, in, pix, tmp);
    tkws_widen_row(tmp, col, p->k_h * p->k_w * p->in_c);
}

/* fast: the input offset is folded into the bias (kernels.py fold_bias). The windows of two
   output pixels are gathered into int16 columns in TKWS_PAIR_ORDER (padding = the raw zero
   point), then dotted with 2 output channels at a time: 4 accumulators, each weight word widened once
   for 2 pixels (SXTB16 + SMLAD). Weights as packed by kernels.pack_conv_fast
   (same bytes as OHWI int8, reordered): block A, for each group of 4 output channels and each
   4 k-values, the 4 channels' words one after another; block B, the groups' k % 4 tails, row by
   row; block C, the out_c % 4 last channels' rows whole. scratch: 2 columns of k (rounded up to
   even) int16, then k int8. */
TKWS_INLINE void tkws_conv_s8_fast_body(TKWS_CONV_ARGS, const int mode)
{
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
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
            oa[oc] = tkws_rq_out(a0, mult[oc], shift + 2 * (oc), mode, out_off, amin, amax);
            oa[oc + 1] = tkws_rq_out(a1, mult[oc + 1], shift + 2 * (oc + 1), mode, out_off, amin, amax);
            if (two) {
                ob[oc] = tkws_rq_out(b0, mult[oc], shift + 2 * (oc), mode, out_off, amin, amax);
                ob[oc + 1] = tkws_rq_out(b1, mult[oc + 1], shift + 2 * (oc + 1), mode, out_off, amin, amax);
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
            oa[oc] = tkws_rq_out(a, mult[oc], shift + 2 * (oc), mode, out_off, amin, amax);
            if (two)
                ob[oc] = tkws_rq_out(b, mult[oc], shift + 2 * (oc), mode, out_off, amin, amax);
        }
    }
}


/* wide: int16 weights packed by kernels.py pack_wide (2x the flash of int8), any k = k_h*k_w*in_c
   and out_c. The windows of two output pixels are gathered as int8, widened and interleaved once,
   then run through the int16 GEMM of tkws_gemm.h (2 channels x 2 pixels, 8 MACs per 6
   instructions). scratch: 2 windows of int8 (k rounded up to 4 each), then 2 widened columns of
   int16 (k rounded up to even). */
TKWS_INLINE void tkws_conv_s8_fast_wide_body(TKWS_CONV_ARGS, const int mode)
{
    const int32_t k = p->k_h * p->k_w * p->in_c, oc_n = p->out_c, n = p->out_h * p->out_w;
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    const int32_t k4 = (k + 3) & ~3;
    int8_t *ta = (int8_t *)scratch, *tb = ta + k4;
    int32_t *x = (int32_t *)(void *)(tb + k4);
    for (int32_t i = 0; i < n; i += 2) {
        const int two = i + 1 < n;
        tkws_conv_window(p, in, i, ta);
        tkws_conv_window(p, in, two ? i + 1 : i, tb);
        tkws_widen_two(ta, tb, x, k);
        int8_t *o0 = out + i * oc_n;
        tkws_gemm_wide_2px(x, k, (const int32_t *)w, oc_n, bias, mult, shift, o0, two ? o0 + oc_n : o0, out_off,
                           amin, amax, mode);
    }
}

#endif /* TKWS_CONV_S8_FAST_H */
