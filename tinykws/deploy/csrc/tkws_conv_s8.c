/* CONV_2D int8, per output channel: the reference kernels (input- and weight-prioritized loop
   orders) and the fast variant (im2col of two output pixels widened to int16, 2 channels x 2
   pixels per pass with dual 16-bit MACs, input offset folded into the bias). */
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

/* one output pixel's window as int8 (padding = the input zero point), k = k_h*k_w*in_c bytes */
static void tkws_im2col_s8(const tkws_conv_params *p, const int8_t *in, int32_t oy, int32_t ox, int8_t *col)
{
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int8_t zp = (int8_t)(-p->in_offset);
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t iy = y0 + ky;
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const int32_t ix = x0 + kx;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w)
                memset(col, zp, (size_t)p->in_c);
            else
                memcpy(col, in + (iy * p->in_w + ix) * p->in_c, (size_t)p->in_c);
            col += p->in_c;
        }
    }
}

/* int8 -> int16 in the order the SXTB16 pair of a weight word needs: per 4 values x0 x2 x1 x3;
   the k % 4 tail plain */
TKWS_INLINE void tkws_widen_s8(const int8_t *src, int16_t *dst, int32_t k)
{
    int32_t *d = (int32_t *)dst;
    int32_t i = 0;
    for (; i + 4 <= k; i += 4) {
        const int32_t v = tkws_read32(src + i);
        *d++ = tkws_sxtb16(v);
        *d++ = tkws_sxtb16_ror8(v);
    }
    for (; i < k; i++)
        dst[i] = src[i];
}

/* 2 output channels x 2 pixels: a, b are the two widened columns, w0, w1 two weight rows of k */
TKWS_INLINE void tkws_dot_2x2(const int16_t *a, const int16_t *b, const int8_t *w0, const int8_t *w1, int32_t k,
                              int32_t *s)
{
    int32_t a0 = s[0], a1 = s[1], b0 = s[2], b1 = s[3];
    const int32_t *pa = (const int32_t *)a, *pb = (const int32_t *)b;
    int32_t i = 0;
    for (; i + 4 <= k; i += 4) {
        const int32_t u = tkws_read32(w0 + i), v = tkws_read32(w1 + i);
        const int32_t u02 = tkws_sxtb16(u), u13 = tkws_sxtb16_ror8(u);
        const int32_t v02 = tkws_sxtb16(v), v13 = tkws_sxtb16_ror8(v);
        const int32_t x02 = pa[0], x13 = pa[1], y02 = pb[0], y13 = pb[1];
        pa += 2;
        pb += 2;
        a0 = tkws_smlad(u02, x02, a0);
        a0 = tkws_smlad(u13, x13, a0);
        a1 = tkws_smlad(v02, x02, a1);
        a1 = tkws_smlad(v13, x13, a1);
        b0 = tkws_smlad(u02, y02, b0);
        b0 = tkws_smlad(u13, y13, b0);
        b1 = tkws_smlad(v02, y02, b1);
        b1 = tkws_smlad(v13, y13, b1);
    }
    for (; i < k; i++) {
        a0 += a[i] * w0[i];
        a1 += a[i] * w1[i];
        b0 += b[i] * w0[i];
        b1 += b[i] * w1[i];
    }
    s[0] = a0, s[1] = a1, s[2] = b0, s[3] = b1;
}

/* the k-long dot product of one widened column and one weight row */
TKWS_INLINE int32_t tkws_dot_1x1(const int16_t *a, const int8_t *w0, int32_t k, int32_t acc)
{
    const int32_t *pa = (const int32_t *)a;
    int32_t i = 0;
    for (; i + 4 <= k; i += 4) {
        const int32_t u = tkws_read32(w0 + i);
        acc = tkws_smlad(tkws_sxtb16(u), pa[0], acc);
        acc = tkws_smlad(tkws_sxtb16_ror8(u), pa[1], acc);
        pa += 2;
    }
    for (; i < k; i++)
        acc += a[i] * w0[i];
    return acc;
}

/* columns of two pixels (rows of out_c outputs); used by the conv and pointwise fast paths */
void tkws_gemm_s8_2px(const tkws_conv_params *p, const int16_t *ca, const int16_t *cb, int32_t k, const int8_t *wt,
                      const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *oa, int8_t *ob);
void tkws_gemm_s8_2px(const tkws_conv_params *p, const int16_t *ca, const int16_t *cb, int32_t k, const int8_t *wt,
                      const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *oa, int8_t *ob)
{
    int32_t oc = 0;
    for (; oc + 2 <= p->out_c; oc += 2) {
        int32_t s[4];
        s[0] = s[2] = bias ? bias[oc] : 0;
        s[1] = s[3] = bias ? bias[oc + 1] : 0;
        if (cb) {
            tkws_dot_2x2(ca, cb, wt + oc * k, wt + (oc + 1) * k, k, s);
        } else {
            s[0] = tkws_dot_1x1(ca, wt + oc * k, k, s[0]);
            s[1] = tkws_dot_1x1(ca, wt + (oc + 1) * k, k, s[1]);
        }
        oa[oc] = tkws_out_s8(s[0], mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
        oa[oc + 1] = tkws_out_s8(s[1], mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
        if (cb) {
            ob[oc] = tkws_out_s8(s[2], mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            ob[oc + 1] = tkws_out_s8(s[3], mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
        }
    }
    if (oc < p->out_c) {
        const int32_t b = bias ? bias[oc] : 0;
        oa[oc] = tkws_out_s8(tkws_dot_1x1(ca, wt + oc * k, k, b), mult[oc], shift[oc], p->out_offset, p->act_min,
                             p->act_max);
        if (cb)
            ob[oc] = tkws_out_s8(tkws_dot_1x1(cb, wt + oc * k, k, b), mult[oc], shift[oc], p->out_offset, p->act_min,
                                 p->act_max);
    }
}

/* fast: the input offset is folded into the bias (kernels.py fold_bias), padding is the raw zero
   point; scratch: k int8 + 2 columns of k (rounded up to 4) int16 */
void tkws_conv_s8_fast(TKWS_CONV_ARGS)
{
    const int32_t k = p->k_h * p->k_w * p->in_c, k4 = (k + 3) & ~3;
    int16_t *ca = (int16_t *)scratch, *cb = ca + k4;
    int8_t *col = (int8_t *)(cb + k4);
    const int32_t n = p->out_h * p->out_w;
    int32_t i = 0;
    for (; i + 2 <= n; i += 2) {
        tkws_im2col_s8(p, in, i / p->out_w, i % p->out_w, col);
        tkws_widen_s8(col, ca, k);
        tkws_im2col_s8(p, in, (i + 1) / p->out_w, (i + 1) % p->out_w, col);
        tkws_widen_s8(col, cb, k);
        tkws_gemm_s8_2px(p, ca, cb, k, (const int8_t *)w, bias, mult, shift, out + i * p->out_c,
                         out + (i + 1) * p->out_c);
    }
    if (i < n) {
        tkws_im2col_s8(p, in, i / p->out_w, i % p->out_w, col);
        tkws_widen_s8(col, ca, k);
        tkws_gemm_s8_2px(p, ca, 0, k, (const int8_t *)w, bias, mult, shift, out + i * p->out_c, 0);
    }
}
