/* Sparse pointwise 1x1 CONV_2D int8 (no padding, any stride), bias with the input offset folded
   in, fast requantization (tkws_rq_out; TKWS_RQ_EXACT is TFLite's arithmetic as written). The
   weights come compressed by kernels.py (pack_sparse, pack_block4) as int32 words:

   zero-skip (unstructured): start[out_c + 1] (entry index of each output channel's first nonzero),
     then one uint16 per nonzero weight: (input channel << 8) | (uint8)value (in_c <= 256);
   block-sparse 1x4 (4 consecutive input channels): start[out_c + 1] (block index of each output
     channel's first kept block), then one word per kept block (its 4 int8 weights, as stored: SXTB16
     and SXTB16 ROR 8 give the pairs (0, 2) and (1, 3)), then one uint16 per kept block: the block's
     word offset in the widened pixels (8 * group);
   block-sparse 1x8 (8 consecutive input channels): the same with two words per kept block (its 8
     int8 weights as stored) and the offset 16 * block. */
#ifndef TKWS_PW_S8_SPARSE_H
#define TKWS_PW_S8_SPARSE_H

#include "tkws_nn.h"
#include "tkws_gemm.h"

/* pixel k of the output grid -> its input pixel */
TKWS_INLINE const int8_t *tkws_sp_pixel(const tkws_conv_params *p, const int8_t *in, int32_t k)
{
    const int32_t oy = k / p->out_w, ox = k - oy * p->out_w;
    return in + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
}

/* the 4 (cnt) pixels' outputs of one output channel */
#define SP_OUT4(o, oc, a0, a1, a2, a3)                                                   \
    do {                                                                                 \
        const int32_t m_ = mult[oc], *er_ = shift + 2 * (oc);                            \
        (o)[oc] = tkws_rq_out(a0, m_, er_, mode, out_off, amin, amax);                   \
        if (cnt > 1)                                                                     \
            (o)[oc_n + (oc)] = tkws_rq_out(a1, m_, er_, mode, out_off, amin, amax);      \
        if (cnt > 2)                                                                     \
            (o)[2 * oc_n + (oc)] = tkws_rq_out(a2, m_, er_, mode, out_off, amin, amax);  \
        if (cnt > 3)                                                                     \
            (o)[3 * oc_n + (oc)] = tkws_rq_out(a3, m_, er_, mode, out_off, amin, amax);  \
    } while (0)

/* one pass of tkws_pw_s8_sparse over 4 (cnt) pixels pa..pd, cnt a constant where inlined */
TKWS_INLINE void tkws_zs_pass(const tkws_conv_params *p, const int8_t *pa, const int8_t *pb, const int8_t *pc,
                              const int8_t *pd, const int32_t *st, const uint16_t *ent, const int32_t *bias,
                              const int32_t *mult, const int32_t *shift, int8_t *o, const int32_t cnt, const int mode)
{
    const int32_t oc_n = p->out_c, out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    for (int32_t oc = 0; oc < oc_n; oc++) {
        int32_t a0 = bias[oc], a1 = a0, a2 = a0, a3 = a0;
        for (const uint16_t *e = ent + st[oc], *e_end = ent + st[oc + 1]; e < e_end; e++) {
            const uint32_t v = *e;
            const int32_t i = (int32_t)(v >> 8), wv = (int8_t)v;
            a0 += pa[i] * wv;
            a1 += pb[i] * wv;
            a2 += pc[i] * wv;
            a3 += pd[i] * wv;
        }
        SP_OUT4(o, oc, a0, a1, a2, a3);
    }
}

/* Zero-skip, input-prioritized: 4 output pixels at a time; for each output channel only its nonzero
   weights, each one multiplied with the 4 pixels' raw inputs (4 MACs per weight decoded). No scratch. */
TKWS_INLINE void tkws_pw_s8_sparse_body(TKWS_CONV_ARGS, const int mode)
{
    const int32_t oc_n = p->out_c, pixels = p->out_h * p->out_w;
    const int32_t *st = (const int32_t *)w;
    const uint16_t *ent = (const uint16_t *)(st + oc_n + 1);
    (void)scratch;
    for (int32_t k = 0; k < pixels; k += 4) {
        const int32_t cnt = pixels - k < 4 ? pixels - k : 4;
        const int8_t *pa = tkws_sp_pixel(p, in, k);
        const int8_t *pb = tkws_sp_pixel(p, in, cnt > 1 ? k + 1 : k);
        const int8_t *pc = tkws_sp_pixel(p, in, cnt > 2 ? k + 2 : k);
        const int8_t *pd = tkws_sp_pixel(p, in, cnt > 3 ? k + 3 : k);
        if (cnt == 4)
            tkws_zs_pass(p, pa, pb, pc, pd, st, ent, bias, mult, shift, out + k * oc_n, 4, mode);
        else
            tkws_zs_pass(p, pa, pb, pc, pd, st, ent, bias, mult, shift, out + k * oc_n, cnt, mode);
    }
}

/* Zero-skip, weight-prioritized: for each output channel, its int32 plane of accumulators in scratch
   (out_h*out_w), each nonzero weight swept over every pixel, then the plane requantized. */
TKWS_INLINE void tkws_pw_s8_sparse_wo_body(TKWS_CONV_ARGS, const int mode)
{
    const int32_t oc_n = p->out_c, pixels = p->out_h * p->out_w, ow = p->out_w;
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    const int32_t step = p->stride_w * p->in_c, row = p->stride_h * p->in_w * p->in_c;
    const int32_t *st = (const int32_t *)w;
    const uint16_t *ent = (const uint16_t *)(st + oc_n + 1);
    int32_t *acc = (int32_t *)scratch;
    for (int32_t oc = 0; oc < oc_n; oc++) {
        for (int32_t k = 0; k < pixels; k++)
            acc[k] = bias[oc];
        for (const uint16_t *e = ent + st[oc], *e_end = ent + st[oc + 1]; e < e_end; e++) {
            const uint32_t v = *e;
            const int32_t wv = (int8_t)v;
            const int8_t *r = in + (v >> 8);
            int32_t *a = acc;
            for (int32_t oy = 0; oy < p->out_h; oy++, r += row) {
                const int8_t *x = r;
                for (int32_t ox = 0; ox < ow; ox++, x += step)
                    *a++ += *x * wv;
            }
        }
        const int32_t m = mult[oc], *er = shift + 2 * oc;
        int8_t *o = out + oc;
        for (int32_t k = 0; k < pixels; k++, o += oc_n)
            *o = tkws_rq_out(acc[k], m, er, mode, out_off, amin, amax);
    }
}

/* 4 pixels' full groups of 4 (n4 values each) widened and interleaved: for group g the words
   8g..8g+3 hold pair (0, 2) of pixels a..d, 8g+4..8g+7 pair (1, 3) */
TKWS_INLINE void tkws_widen_four(const int8_t *a, const int8_t *b, const int8_t *c, const int8_t *d, int32_t *x,
                                 int32_t n4)
{
    for (int32_t i = 0; i < n4; i += 4) {
        const int32_t va = tkws_read32(a + i), vb = tkws_read32(b + i);
        const int32_t vc = tkws_read32(c + i), vd = tkws_read32(d + i);
        x[0] = tkws_sxtb16(va);
        x[1] = tkws_sxtb16(vb);
        x[2] = tkws_sxtb16(vc);
        x[3] = tkws_sxtb16(vd);
        x[4] = tkws_sxtb16_ror8(va);
        x[5] = tkws_sxtb16_ror8(vb);
        x[6] = tkws_sxtb16_ror8(vc);
        x[7] = tkws_sxtb16_ror8(vd);
        x += 8;
    }
}

/* one pass of tkws_pw_s8_block4 over the widened pixels x (cnt of them valid; a constant where
   inlined, so the full passes test nothing per output) */
TKWS_INLINE void tkws_b4_pass(const tkws_conv_params *p, const int32_t *x, const int32_t *st, const int32_t *wv,
                              const uint16_t *bo, const int32_t *bias, const int32_t *mult, const int32_t *shift,
                              int8_t *o, const int32_t cnt, const int mode)
{
    const int32_t oc_n = p->out_c, out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    for (int32_t oc = 0; oc < oc_n; oc++) {
        int32_t a0 = bias[oc], a1 = a0, a2 = a0, a3 = a0;
        const int32_t *wp = wv + st[oc], *w_end = wv + st[oc + 1];
        const uint16_t *op = bo + st[oc];
        for (; wp < w_end; wp++, op++) {
            const int32_t v = *wp;
            const int32_t *q = x + *op;
            int32_t u0, u1, u2, u3;
            const int32_t w0 = tkws_sxtb16(v), w1 = tkws_sxtb16_ror8(v);
            TKWS_LDRD_AT(q, 0, u0, u1);
            TKWS_LDRD_AT(q, 8, u2, u3);
            a0 = tkws_smlad(u0, w0, a0);
            a1 = tkws_smlad(u1, w0, a1);
            a2 = tkws_smlad(u2, w0, a2);
            a3 = tkws_smlad(u3, w0, a3);
            TKWS_LDRD_AT(q, 16, u0, u1);
            TKWS_LDRD_AT(q, 24, u2, u3);
            a0 = tkws_smlad(u0, w1, a0);
            a1 = tkws_smlad(u1, w1, a1);
            a2 = tkws_smlad(u2, w1, a2);
            a3 = tkws_smlad(u3, w1, a3);
        }
        SP_OUT4(o, oc, a0, a1, a2, a3);
    }
}

/* Block-sparse 1x4, SIMD: 4 pixels widened once into scratch; for each output channel its kept
   blocks, each one word of weights (2 SXTB16) and 4 LDRD feeding 8 SMLAD (16 MACs). in_c % 4 == 0.
   Scratch: 4 pixels of int16. */
TKWS_INLINE void tkws_pw_s8_block4_body(TKWS_CONV_ARGS, const int mode)
{
    const int32_t oc_n = p->out_c, pixels = p->out_h * p->out_w;
    const int32_t *st = (const int32_t *)w;
    const int32_t *wv = st + oc_n + 1;
    const uint16_t *bo = (const uint16_t *)(wv + st[oc_n]);
    int32_t *x = (int32_t *)scratch;
    for (int32_t k = 0; k < pixels; k += 4) {
        const int32_t cnt = pixels - k < 4 ? pixels - k : 4;
        tkws_widen_four(tkws_sp_pixel(p, in, k), tkws_sp_pixel(p, in, cnt > 1 ? k + 1 : k),
                        tkws_sp_pixel(p, in, cnt > 2 ? k + 2 : k), tkws_sp_pixel(p, in, cnt > 3 ? k + 3 : k), x,
                        p->in_c);
        if (cnt == 4)
            tkws_b4_pass(p, x, st, wv, bo, bias, mult, shift, out + k * oc_n, 4, mode);
        else
            tkws_b4_pass(p, x, st, wv, bo, bias, mult, shift, out + k * oc_n, cnt, mode);
    }
}

/* one pass of tkws_pw_s8_block8 over the widened pixels x (cnt of them valid, a constant where inlined) */
TKWS_INLINE void tkws_b8_pass(const tkws_conv_params *p, const int32_t *x, const int32_t *st, const int32_t *wv,
                              const uint16_t *bo, const int32_t *bias, const int32_t *mult, const int32_t *shift,
                              int8_t *o, const int32_t cnt, const int mode)
{
    const int32_t oc_n = p->out_c, out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    for (int32_t oc = 0; oc < oc_n; oc++) {
        int32_t a0 = bias[oc], a1 = a0, a2 = a0, a3 = a0;
        const int32_t *wp = wv + 2 * st[oc], *w_end = wv + 2 * st[oc + 1];
        const uint16_t *op = bo + st[oc];
        for (; wp != w_end; op++) {
            int32_t v0, v1, u0, u1, u2, u3;
            TKWS_LDRD_INC(wp, v0, v1);
            const int32_t *q = x + *op;
            int32_t w0 = tkws_sxtb16(v0), w1 = tkws_sxtb16_ror8(v0);
            TKWS_LDRD_AT(q, 0, u0, u1);
            TKWS_LDRD_AT(q, 8, u2, u3);
            a0 = tkws_smlad(u0, w0, a0);
            a1 = tkws_smlad(u1, w0, a1);
            a2 = tkws_smlad(u2, w0, a2);
            a3 = tkws_smlad(u3, w0, a3);
            TKWS_LDRD_AT(q, 16, u0, u1);
            TKWS_LDRD_AT(q, 24, u2, u3);
            a0 = tkws_smlad(u0, w1, a0);
            a1 = tkws_smlad(u1, w1, a1);
            a2 = tkws_smlad(u2, w1, a2);
            a3 = tkws_smlad(u3, w1, a3);
            w0 = tkws_sxtb16(v1);
            w1 = tkws_sxtb16_ror8(v1);
            TKWS_LDRD_AT(q, 32, u0, u1);
            TKWS_LDRD_AT(q, 40, u2, u3);
            a0 = tkws_smlad(u0, w0, a0);
            a1 = tkws_smlad(u1, w0, a1);
            a2 = tkws_smlad(u2, w0, a2);
            a3 = tkws_smlad(u3, w0, a3);
            TKWS_LDRD_AT(q, 48, u0, u1);
            TKWS_LDRD_AT(q, 56, u2, u3);
            a0 = tkws_smlad(u0, w1, a0);
            a1 = tkws_smlad(u1, w1, a1);
            a2 = tkws_smlad(u2, w1, a2);
            a3 = tkws_smlad(u3, w1, a3);
        }
        SP_OUT4(o, oc, a0, a1, a2, a3);
    }
}

/* Block-sparse 1x8, SIMD: as block4, each kept block two words of weights (one LDRD, 4 SXTB16) and
   8 LDRD feeding 16 SMLAD (32 MACs), one offset per 8 input channels. in_c % 8 == 0. Scratch: 4
   pixels of int16. */
TKWS_INLINE void tkws_pw_s8_block8_body(TKWS_CONV_ARGS, const int mode)
{
    const int32_t oc_n = p->out_c, pixels = p->out_h * p->out_w;
    const int32_t *st = (const int32_t *)w;
    const int32_t *wv = st + oc_n + 1;
    const uint16_t *bo = (const uint16_t *)(wv + 2 * st[oc_n]);
    int32_t *x = (int32_t *)scratch;
    for (int32_t k = 0; k < pixels; k += 4) {
        const int32_t cnt = pixels - k < 4 ? pixels - k : 4;
        tkws_widen_four(tkws_sp_pixel(p, in, k), tkws_sp_pixel(p, in, cnt > 1 ? k + 1 : k),
                        tkws_sp_pixel(p, in, cnt > 2 ? k + 2 : k), tkws_sp_pixel(p, in, cnt > 3 ? k + 3 : k), x,
                        p->in_c);
        if (cnt == 4)
            tkws_b8_pass(p, x, st, wv, bo, bias, mult, shift, out + k * oc_n, 4, mode);
        else
            tkws_b8_pass(p, x, st, wv, bo, bias, mult, shift, out + k * oc_n, cnt, mode);
    }
}

#endif /* TKWS_PW_S8_SPARSE_H */
