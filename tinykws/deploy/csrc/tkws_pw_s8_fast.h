/* the fast variants' bodies, inline: tkws_pw_s8.c instantiates them for any shape (the library's
   functions), the generator once per layer with the layer's constant params struct, so every
   shape, offset and loop bound is a compile-time constant (tinykws/deploy/codegen.py) */
#ifndef TKWS_PW_S8_FAST_H
#define TKWS_PW_S8_FAST_H

#include "tkws_nn.h"
#include "tkws_gemm.h"

TKWS_INLINE const int8_t *tkws_pw_pixel(const tkws_conv_params *p, const int8_t *in, int32_t k)
{
    const int32_t oy = k / p->out_w, ox = k - oy * p->out_w;
    return in + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
}

/* int8 weights as stored (no extra flash): 2 output channels x 2 pixels, 4 accumulators.
   Scratch: 2 pixels of int16. */
TKWS_INLINE void tkws_pw_s8_fast_body(TKWS_CONV_ARGS, const int mode)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t n = p->in_c, n4 = n & ~3, oc_n = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    int32_t *x = (int32_t *)scratch;
    const int32_t *x_end = x + n4 / 2 * 2;
    for (int32_t k = 0; k < pixels; k += 2) {
        const int two = k + 1 < pixels;
        const int8_t *pa = tkws_pw_pixel(p, in, k), *pb = tkws_pw_pixel(p, in, two ? k + 1 : k);
        tkws_widen_two(pa, pb, x, n4);
        int8_t *o0 = out + k * oc_n, *o1 = o0 + oc_n;
        int32_t oc = 0;
        for (; oc + 2 <= oc_n; oc += 2) {
            const int8_t *wa = wt + oc * n, *wb = wa + n;
            int32_t a0 = bias[oc], a1 = a0, b0 = bias[oc + 1], b1 = b0;
            for (const int32_t *q = x; q < x_end; q += 4) {
                const int32_t va = tkws_read32(wa), vb = tkws_read32(wb);
                wa += 4;
                wb += 4;
                const int32_t wa0 = tkws_sxtb16(va), wa1 = tkws_sxtb16_ror8(va);
                const int32_t wb0 = tkws_sxtb16(vb), wb1 = tkws_sxtb16_ror8(vb);
                a0 = tkws_smlad(q[0], wa0, a0);
                a1 = tkws_smlad(q[1], wa0, a1);
                b0 = tkws_smlad(q[0], wb0, b0);
                b1 = tkws_smlad(q[1], wb0, b1);
                a0 = tkws_smlad(q[2], wa1, a0);
                a1 = tkws_smlad(q[3], wa1, a1);
                b0 = tkws_smlad(q[2], wb1, b0);
                b1 = tkws_smlad(q[3], wb1, b1);
            }
            for (int32_t i = n4; i < n; i++) {  /* tail: raw inputs (the offset is in the bias) */
                a0 += pa[i] * wa[i - n4];
                b0 += pa[i] * wb[i - n4];
                a1 += pb[i] * wa[i - n4];
                b1 += pb[i] * wb[i - n4];
            }
            PW_OUT(o0, oc, a0);
            PW_OUT(o0, oc + 1, b0);
            if (two) {
                PW_OUT(o1, oc, a1);
                PW_OUT(o1, oc + 1, b1);
            }
        }
        if (oc < oc_n) {  /* odd output channel count: the last one alone */
            const int8_t *wa = wt + oc * n;
            int32_t a0 = bias[oc], a1 = a0;
            for (const int32_t *q = x; q < x_end; q += 4) {
                const int32_t va = tkws_read32(wa);
                wa += 4;
                const int32_t wa0 = tkws_sxtb16(va), wa1 = tkws_sxtb16_ror8(va);
                a0 = tkws_smlad(q[0], wa0, a0);
                a1 = tkws_smlad(q[1], wa0, a1);
                a0 = tkws_smlad(q[2], wa1, a0);
                a1 = tkws_smlad(q[3], wa1, a1);
            }
            for (int32_t i = n4; i < n; i++) {
                a0 += pa[i] * wa[i - n4];
                a1 += pb[i] * wa[i - n4];
            }
            PW_OUT(o0, oc, a0);
            if (two)
                PW_OUT(o1, oc, a1);
        }
    }
}

/* int16 weights widened and interleaved by kernels.py (2x the flash of int8), any in_c and out_c
   (the GEMM's tails: an in_c % 4 pair or two, an odd last channel). Scratch: 2 pixels of int16
   (in_c rounded up to even). */
TKWS_INLINE void tkws_pw_s8_fast_wide_body(TKWS_CONV_ARGS, const int mode)
{
    const int32_t n = p->in_c, oc_n = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    int32_t *x = (int32_t *)scratch;
    for (int32_t k = 0; k < pixels; k += 2) {
        const int two = k + 1 < pixels;
        tkws_widen_two(tkws_pw_pixel(p, in, k), tkws_pw_pixel(p, in, two ? k + 1 : k), x, n);
        int8_t *o0 = out + k * oc_n;
        tkws_gemm_wide_2px(x, n, (const int32_t *)w, oc_n, bias, mult, shift, o0, two ? o0 + oc_n : o0, out_off, amin,
                      amax, mode);
    }
}

#endif /* TKWS_PW_S8_FAST_H */
