/* Pointwise 1x1 CONV_2D int8 without im2col (no padding, any stride): OHWI weights [out_c][in_c],
   bias with the input offset folded in. Two input pixels at a time are widened once to int16
   pairs (SXTB16 order: bytes 0,2 then 1,3 of each 4) and interleaved word by word in scratch
   (pair s of pixel 0, pair s of pixel 1, ...), so one LDRD feeds both pixels; each weight pair
   then serves two pixels with two SMLAD. */
#include "tkws_nn.h"
#include "tkws_support.h"

static inline const int8_t *pixel(const tkws_conv_params *p, const int8_t *in, int32_t k)
{
    const int32_t oy = k / p->out_w, ox = k - oy * p->out_w;
    return in + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
}

/* the full groups of 4 of two pixels (n4 values each), widened and interleaved */
static inline void widen_two(const int8_t *a, const int8_t *b, int32_t *x, int32_t n4)
{
    for (int32_t i = 0; i < n4; i += 4) {
        const int32_t va = tkws_read32(a + i), vb = tkws_read32(b + i);
        x[0] = tkws_sxtb16(va);
        x[1] = tkws_sxtb16(vb);
        x[2] = tkws_sxtb16_ror8(va);
        x[3] = tkws_sxtb16_ror8(vb);
        x += 4;
    }
}

/* the params copied to locals first: stores through int8_t pointers may alias the struct */
#define PW_OUT(o, k, acc) (o)[k] = tkws_out_s8(acc, mult[k], shift[k], out_off, amin, amax)

/* int8 weights as stored (no extra flash): 2 output channels x 2 pixels, 4 accumulators.
   Scratch: 2 pixels of int16. */
void tkws_pw_s8_fast(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t n = p->in_c, n4 = n & ~3, oc_n = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    int32_t *x = (int32_t *)scratch;
    const int32_t *x_end = x + n4 / 2 * 2;
    for (int32_t k = 0; k < pixels; k += 2) {
        const int two = k + 1 < pixels;
        const int8_t *pa = pixel(p, in, k), *pb = pixel(p, in, two ? k + 1 : k);
        widen_two(pa, pb, x, n4);
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

/* int16 weights widened and interleaved by kernels.py (2x the flash of int8): for each block of
   4 output channels and each int16 pair of the widened row, the 4 channels' weight pairs one
   after another. 4 output channels x 2 pixels, 8 accumulators: per pair of inputs one LDRD, per
   weight pair one LDR and two SMLAD. Needs in_c and out_c multiples of 4 (kernels.py selects it
   only then). Scratch: 2 pixels of int16. */
void tkws_pw_s8_fast_wide(TKWS_CONV_ARGS)
{
    const int32_t n = p->in_c, oc_n = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    int32_t *x = (int32_t *)scratch;
    const int32_t *x_end = x + n;  /* n/2 pairs x 2 pixels */
    for (int32_t k = 0; k < pixels; k += 2) {
        const int two = k + 1 < pixels;
        widen_two(pixel(p, in, k), pixel(p, in, two ? k + 1 : k), x, n);
        int8_t *o0 = out + k * oc_n, *o1 = o0 + oc_n;
        const int32_t *wp = (const int32_t *)w;
        for (int32_t oc = 0; oc < oc_n; oc += 4) {
            int32_t a0 = bias[oc], b0 = bias[oc + 1], c0 = bias[oc + 2], d0 = bias[oc + 3];
            int32_t a1 = a0, b1 = b0, c1 = c0, d1 = d0;
            for (const int32_t *q = x; q < x_end; q += 4, wp += 8) {  /* 2 pairs per pass (in_c % 4 == 0) */
                int32_t u = q[0], v = q[1];
                a0 = tkws_smlad(u, wp[0], a0);
                a1 = tkws_smlad(v, wp[0], a1);
                b0 = tkws_smlad(u, wp[1], b0);
                b1 = tkws_smlad(v, wp[1], b1);
                c0 = tkws_smlad(u, wp[2], c0);
                c1 = tkws_smlad(v, wp[2], c1);
                d0 = tkws_smlad(u, wp[3], d0);
                d1 = tkws_smlad(v, wp[3], d1);
                u = q[2];
                v = q[3];
                a0 = tkws_smlad(u, wp[4], a0);
                a1 = tkws_smlad(v, wp[4], a1);
                b0 = tkws_smlad(u, wp[5], b0);
                b1 = tkws_smlad(v, wp[5], b1);
                c0 = tkws_smlad(u, wp[6], c0);
                c1 = tkws_smlad(v, wp[6], c1);
                d0 = tkws_smlad(u, wp[7], d0);
                d1 = tkws_smlad(v, wp[7], d1);
            }
            PW_OUT(o0, oc, a0);
            PW_OUT(o0, oc + 1, b0);
            PW_OUT(o0, oc + 2, c0);
            PW_OUT(o0, oc + 3, d0);
            if (two) {
                PW_OUT(o1, oc, a1);
                PW_OUT(o1, oc + 1, b1);
                PW_OUT(o1, oc + 2, c1);
                PW_OUT(o1, oc + 3, d1);
            }
        }
    }
}
