/* Pointwise 1x1 CONV_2D int8 without im2col (no padding, any stride): OHWI weights [out_c][in_c],
   bias with the input offset folded in. Each input pixel is widened once to int16 pairs (in the
   0,2,1,3 order of SXTB16) and dotted with the weights of several output channels at once. */
#include "tkws_nn.h"
#include "tkws_support.h"

static inline const int8_t *pixel(const tkws_conv_params *p, const int8_t *in, int32_t k)
{
    const int32_t oy = k / p->out_w, ox = k - oy * p->out_w;
    return in + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
}

/* one output value, scalar (tails) */
static inline int32_t dot_tail(const int16_t *x, const int8_t *w, int32_t from, int32_t n, int32_t acc)
{
    for (int32_t i = from; i < n; i++)
        acc += x[i] * w[i];
    return acc;
}

/* int8 weights as stored (no extra flash): 2 output channels x 2 pixels, 4 accumulators;
   scratch: 2 widened pixels. */
void tkws_pw_s8_fast(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t n = p->in_c, n4 = n & ~3, oc_n = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    int16_t *x0 = (int16_t *)scratch, *x1 = x0 + ((n + 1) & ~1);
    for (int32_t k = 0; k < pixels; k += 2) {
        const int two = k + 1 < pixels;
        tkws_widen_row(pixel(p, in, k), x0, n);
        if (two)
            tkws_widen_row(pixel(p, in, k + 1), x1, n);
        int8_t *o0 = out + k * oc_n, *o1 = o0 + oc_n;
        int32_t oc = 0;
        for (; oc + 2 <= oc_n; oc += 2) {
            const int8_t *wa = wt + oc * n, *wb = wa + n;
            int32_t a0 = bias[oc], a1 = a0, b0 = bias[oc + 1], b1 = b0;
            for (int32_t i = 0; i < n4; i += 4) {
                const int32_t va = tkws_read32(wa + i), vb = tkws_read32(wb + i);
                const int32_t wa0 = tkws_sxtb16(va), wa1 = tkws_sxtb16_ror8(va);
                const int32_t wb0 = tkws_sxtb16(vb), wb1 = tkws_sxtb16_ror8(vb);
                const int32_t p00 = tkws_read32(x0 + i), p01 = tkws_read32(x0 + i + 2);
                const int32_t p10 = tkws_read32(x1 + i), p11 = tkws_read32(x1 + i + 2);
                a0 = tkws_smlad(p00, wa0, a0);
                a0 = tkws_smlad(p01, wa1, a0);
                b0 = tkws_smlad(p00, wb0, b0);
                b0 = tkws_smlad(p01, wb1, b0);
                a1 = tkws_smlad(p10, wa0, a1);
                a1 = tkws_smlad(p11, wa1, a1);
                b1 = tkws_smlad(p10, wb0, b1);
                b1 = tkws_smlad(p11, wb1, b1);
            }
            a0 = dot_tail(x0, wa, n4, n, a0);
            b0 = dot_tail(x0, wb, n4, n, b0);
            o0[oc] = tkws_out_s8(a0, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            o0[oc + 1] = tkws_out_s8(b0, mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
            if (two) {
                a1 = dot_tail(x1, wa, n4, n, a1);
                b1 = dot_tail(x1, wb, n4, n, b1);
                o1[oc] = tkws_out_s8(a1, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
                o1[oc + 1] = tkws_out_s8(b1, mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
            }
        }
        if (oc < oc_n) {  /* odd output channel count: the last one alone, the tail order matches */
            const int8_t *wa = wt + oc * n;
            int32_t a0 = bias[oc], a1 = a0;
            for (int32_t i = 0; i < n4; i += 4) {
                const int32_t va = tkws_read32(wa + i);
                const int32_t wa0 = tkws_sxtb16(va), wa1 = tkws_sxtb16_ror8(va);
                a0 = tkws_smlad(tkws_read32(x0 + i), wa0, a0);
                a0 = tkws_smlad(tkws_read32(x0 + i + 2), wa1, a0);
                a1 = tkws_smlad(tkws_read32(x1 + i), wa0, a1);
                a1 = tkws_smlad(tkws_read32(x1 + i + 2), wa1, a1);
            }
            a0 = dot_tail(x0, wa, n4, n, a0);
            o0[oc] = tkws_out_s8(a0, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            if (two) {
                a1 = dot_tail(x1, wa, n4, n, a1);
                o1[oc] = tkws_out_s8(a1, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}

/* int16 weights widened and interleaved by kernels.py (2x the flash of int8): for each block of
   4 output channels and each int16 pair of the widened row, the 4 channels' weight pairs one
   after another. 4 output channels x 2 pixels, 8 accumulators, one load per weight pair.
   Needs in_c and out_c multiples of 4 (kernels.py selects it only then). */
void tkws_pw_s8_fast_wide(TKWS_CONV_ARGS)
{
    const int32_t n = p->in_c, oc_n = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    int16_t *x0 = (int16_t *)scratch, *x1 = x0 + n;
    for (int32_t k = 0; k < pixels; k += 2) {
        const int two = k + 1 < pixels;
        tkws_widen_row(pixel(p, in, k), x0, n);
        tkws_widen_row(pixel(p, in, two ? k + 1 : k), x1, n);
        int8_t *o0 = out + k * oc_n, *o1 = o0 + oc_n;
        const int32_t *wp = (const int32_t *)w;
        for (int32_t oc = 0; oc < oc_n; oc += 4) {
            int32_t a0 = bias[oc], b0 = bias[oc + 1], c0 = bias[oc + 2], d0 = bias[oc + 3];
            int32_t a1 = a0, b1 = b0, c1 = c0, d1 = d0;
            const int16_t *q0 = x0, *q1 = x1;
            for (int32_t i = 0; i < n; i += 2) {
                const int32_t u = tkws_read32(q0), v = tkws_read32(q1);
                q0 += 2;
                q1 += 2;
                a0 = tkws_smlad(u, wp[0], a0);
                a1 = tkws_smlad(v, wp[0], a1);
                b0 = tkws_smlad(u, wp[1], b0);
                b1 = tkws_smlad(v, wp[1], b1);
                c0 = tkws_smlad(u, wp[2], c0);
                c1 = tkws_smlad(v, wp[2], c1);
                d0 = tkws_smlad(u, wp[3], d0);
                d1 = tkws_smlad(v, wp[3], d1);
                wp += 4;
            }
            o0[oc] = tkws_out_s8(a0, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            o0[oc + 1] = tkws_out_s8(b0, mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
            o0[oc + 2] = tkws_out_s8(c0, mult[oc + 2], shift[oc + 2], p->out_offset, p->act_min, p->act_max);
            o0[oc + 3] = tkws_out_s8(d0, mult[oc + 3], shift[oc + 3], p->out_offset, p->act_min, p->act_max);
            if (two) {
                o1[oc] = tkws_out_s8(a1, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
                o1[oc + 1] = tkws_out_s8(b1, mult[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
                o1[oc + 2] = tkws_out_s8(c1, mult[oc + 2], shift[oc + 2], p->out_offset, p->act_min, p->act_max);
                o1[oc + 3] = tkws_out_s8(d1, mult[oc + 3], shift[oc + 3], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}
