/* tinykws kernel library: sub-byte (4- and 2-bit) packed weights. The shared unpacking, the column
   widening and the inline bodies of the fast packed kernels (tkws_pw_s4.c, tkws_conv_s4.c,
   tkws_dw_s4.c, tkws_fc_s4.c instantiate them for any shape; the generator once per layer with
   constant params).

   Weights: signed, symmetric, in [-8, 7] (4 bits) or [-2, 1] (2 bits); each output channel's row of
   k values (conv: k = k_h*k_w*in_c in OHWI order, depthwise: the whole [k_h][k_w][C] as one row,
   fc: in_n) is zero-padded to a multiple of G
   (8 or 16) and packed into k/G little-endian 32-bit words (kernels.py pack_s4 / pack_s2):

     4 bits, G = 8:  byte j (0..3) of word g = w[8g + j] (bits 0-3) | w[8g + 4 + j] (bits 4-7)
     2 bits, G = 16: byte j of word g = w[16g + j] | w[16g + 4 + j] << 2 | w[16g + 8 + j] << 4
                                        | w[16g + 12 + j] << 6

   so every field f of a word holds 4 consecutive weights, one per byte. Moving a field to the top
   of its bytes and masking the rest, (v << (8 - b*(f+1))) & mask, leaves 2^(8-b) * w in each byte;
   SXTB16 and SXTB16 ROR 8 then give the int16 pairs (w0, w2) and (w1, w3) of those 4 weights, the
   order SXTB16 widens the activations in (TKWS_PAIR_ORDER): per word, 2 (4 bits) or 4 (2 bits)
   AND-with-shift plus SXTB16s, no per-weight work. The fast kernels hence accumulate
   2^(8-b) * acc (the bias shifted in at the start); the generator (kernels.packed_choice) proves
   |acc| * 2^(8-b) < 2^31 for every input, so the final arithmetic shift right is exact.
   The plain references (_ref) unpack one weight at a time (shift, mask, sign extension) and keep
   TFLite's arithmetic as written. */
#ifndef TKWS_SUBBYTE_H
#define TKWS_SUBBYTE_H

#include "tkws_nn.h"
#include "tkws_gemm.h"
#include "tkws_dw_s8_fast.h"

/* weight i of a packed row (plain unpack: one field, sign-extended) */
TKWS_INLINE int32_t tkws_sb_weight(const int32_t *row, int32_t i, const int bits)
{
    if (bits == 4) {
        const uint32_t v = (uint32_t)row[i >> 3];
        const int32_t j = i & 7, at = 8 * (j & 3) + 4 * (j >> 2);
        return (int32_t)(((v >> at) & 15u) ^ 8u) - 8;
    }
    const uint32_t v = (uint32_t)row[i >> 4];
    const int32_t j = i & 15, at = 8 * (j & 3) + 2 * (j >> 2);
    return (int32_t)(((v >> at) & 3u) ^ 2u) - 2;
}

/* words per packed row of k weights */
TKWS_INLINE int32_t tkws_sb_row_words(int32_t k, const int bits) { return bits == 4 ? (k + 7) >> 3 : (k + 15) >> 4; }

/* field f of word v, scaled by 2^(8-bits), in each byte */
#define TKWS_SB_FIELD(v, bits, f) \
    ((int32_t)(((uint32_t)(v) << (8 - (bits) * ((f) + 1))) & ((bits) == 4 ? 0xF0F0F0F0u : 0xC0C0C0C0u)))

/* one row of n int8 widened in TKWS_PAIR_ORDER, zero-padded to np values: per group of 4 the
   words (0,2), (1,3) */
TKWS_INLINE void tkws_sb_widen_one(const int8_t *a, int32_t *x, int32_t n, int32_t np)
{
    const int32_t n4 = n & ~3;
    int32_t i = 0;
    for (; i < n4; i += 4, x += 2) {
        const int32_t v = tkws_read32(a + i);
        x[0] = tkws_sxtb16(v);
        x[1] = tkws_sxtb16_ror8(v);
    }
    if (i < n) {
        int8_t t[4] = {0, 0, 0, 0};
        for (int32_t j = n4; j < n; j++)
            t[j - n4] = a[j];
        const int32_t v = tkws_read32(t);
        x[0] = tkws_sxtb16(v);
        x[1] = tkws_sxtb16_ror8(v);
        x += 2;
        i += 4;
    }
    for (; i < np; i += 4, x += 2)
        x[0] = x[1] = 0;
}

#define SB_SHL(b) ((int32_t)((uint32_t)(b) << (8 - bits)))

/* four int8 rows a..d of n values widened and interleaved: per group of 4 values the words
   a(0,2), b(0,2), c(0,2), d(0,2), a(1,3), b(1,3), c(1,3), d(1,3); the last partial group and then
   whole groups of zeros up to np values (np a multiple of 4, >= n) */
TKWS_INLINE void tkws_sb_widen_four(const int8_t *a, const int8_t *b, const int8_t *c, const int8_t *d, int32_t *x,
                                    int32_t n, int32_t np)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4, x += 8) {
        const int32_t va = tkws_read32(a + i), vb = tkws_read32(b + i), vc = tkws_read32(c + i), vd = tkws_read32(d + i);
        x[0] = tkws_sxtb16(va);
        x[1] = tkws_sxtb16(vb);
        x[2] = tkws_sxtb16(vc);
        x[3] = tkws_sxtb16(vd);
        x[4] = tkws_sxtb16_ror8(va);
        x[5] = tkws_sxtb16_ror8(vb);
        x[6] = tkws_sxtb16_ror8(vc);
        x[7] = tkws_sxtb16_ror8(vd);
    }
    if (i < n) {
        int8_t t[4][4] = {{0}};
        for (int32_t j = i; j < n; j++) {
            t[0][j - i] = a[j];
            t[1][j - i] = b[j];
            t[2][j - i] = c[j];
            t[3][j - i] = d[j];
        }
        for (int32_t r = 0; r < 4; r++) {
            const int32_t v = tkws_read32(t[r]);
            x[r] = tkws_sxtb16(v);
            x[4 + r] = tkws_sxtb16_ror8(v);
        }
        x += 8;
        i += 4;
    }
    for (; i < np; i += 4, x += 8)
        x[0] = x[1] = x[2] = x[3] = x[4] = x[5] = x[6] = x[7] = 0;
}

/* one field (4 weights) of a channel's word against 4 pixels: 2 SXTB16, 4 LDRD, 8 SMLAD */
#define SB_FIELD_1X4(f)                                                     \
    do {                                                                    \
        const int32_t t_ = TKWS_SB_FIELD(v, bits, f);                       \
        const int32_t w02_ = tkws_sxtb16(t_), w13_ = tkws_sxtb16_ror8(t_);  \
        int32_t u_, s_;                                                     \
        TKWS_LDRD_INC(q, u_, s_);                                           \
        a0 = tkws_smlad(u_, w02_, a0);                                      \
        a1 = tkws_smlad(s_, w02_, a1);                                      \
        TKWS_LDRD_INC(q, u_, s_);                                           \
        a2 = tkws_smlad(u_, w02_, a2);                                      \
        a3 = tkws_smlad(s_, w02_, a3);                                      \
        TKWS_LDRD_INC(q, u_, s_);                                           \
        a0 = tkws_smlad(u_, w13_, a0);                                      \
        a1 = tkws_smlad(s_, w13_, a1);                                      \
        TKWS_LDRD_INC(q, u_, s_);                                           \
        a2 = tkws_smlad(u_, w13_, a2);                                      \
        a3 = tkws_smlad(s_, w13_, a3);                                      \
    } while (0)

/* The packed GEMM: four widened columns x (tkws_sb_widen_four, nw * G values) times every output
   channel's packed row (nw words), one channel x 4 pixels: each word unpacked once for 4 pixels
   (about one instruction per MAC), 4 accumulators scaled by 2^(8-bits); the outputs of the first
   cnt pixels written (o, rows of oc_n). */
TKWS_INLINE void tkws_sb_gemm_4px(const int32_t *x, int32_t nw, const int32_t *w, int32_t oc_n, const int32_t *bias,
                                  const int32_t *mult, const int32_t *shift, int8_t *o, const int32_t cnt,
                                  int32_t out_off, int32_t amin, int32_t amax, const int bits, const int mode)
{
    const int32_t *wp = w;
    for (int32_t oc = 0; oc < oc_n; oc++) {
        int32_t a0 = SB_SHL(bias[oc]), a1 = a0, a2 = a0, a3 = a0;
        const int32_t *q = x, *w_end = wp + nw;
        for (; wp < w_end; wp++) {
            const int32_t v = *wp;
            SB_FIELD_1X4(0);
            SB_FIELD_1X4(1);
            if (bits == 2) {
                SB_FIELD_1X4(2);
                SB_FIELD_1X4(3);
            }
        }
        const int32_t m = mult[oc], *e = shift + 2 * oc;
        o[oc] = tkws_rq_out(a0 >> (8 - bits), m, e, mode, out_off, amin, amax);
        if (cnt > 1)
            o[oc_n + oc] = tkws_rq_out(a1 >> (8 - bits), m, e, mode, out_off, amin, amax);
        if (cnt > 2)
            o[2 * oc_n + oc] = tkws_rq_out(a2 >> (8 - bits), m, e, mode, out_off, amin, amax);
        if (cnt > 3)
            o[3 * oc_n + oc] = tkws_rq_out(a3 >> (8 - bits), m, e, mode, out_off, amin, amax);
    }
}

/* input pixel of output pixel k of a 1x1 conv without padding */
TKWS_INLINE const int8_t *tkws_sb_pixel(const tkws_conv_params *p, const int8_t *in, int32_t k)
{
    const int32_t oy = k / p->out_w, ox = k - oy * p->out_w;
    return in + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
}

/* fast pointwise 1x1 conv (no padding, any stride), packed weights, bias with the input offset
   folded in: four pixels widened (zero-padded to the packed row) into scratch, then the packed
   GEMM (a last pass of 1-3 pixels repeats its last pixel). Scratch: 4 pixels of int16, in_c
   rounded up to G. */
TKWS_INLINE void tkws_pw_sb_fast_body(TKWS_CONV_ARGS, const int bits, const int mode)
{
    const int32_t n = p->in_c, nw = tkws_sb_row_words(n, bits), np = nw * (bits == 4 ? 8 : 16);
    const int32_t oc_n = p->out_c, pixels = p->out_h * p->out_w;
    int32_t *x = (int32_t *)scratch;
    for (int32_t k = 0; k < pixels; k += 4) {
        const int32_t cnt = pixels - k < 4 ? pixels - k : 4;
        tkws_sb_widen_four(tkws_sb_pixel(p, in, k), tkws_sb_pixel(p, in, cnt > 1 ? k + 1 : k),
                           tkws_sb_pixel(p, in, cnt > 2 ? k + 2 : k), tkws_sb_pixel(p, in, cnt > 3 ? k + 3 : k), x, n,
                           np);
        if (cnt == 4)
            tkws_sb_gemm_4px(x, nw, (const int32_t *)w, oc_n, bias, mult, shift, out + k * oc_n, 4, p->out_offset,
                             p->act_min, p->act_max, bits, mode);
        else
            tkws_sb_gemm_4px(x, nw, (const int32_t *)w, oc_n, bias, mult, shift, out + k * oc_n, cnt, p->out_offset,
                             p->act_min, p->act_max, bits, mode);
    }
}

/* one output pixel's window as int8 (padding: the raw zero point), k bytes */
TKWS_INLINE void tkws_sb_window(const tkws_conv_params *p, const int8_t *in, int32_t pix, int8_t *d)
{
    const int32_t oy = pix / p->out_w, ox = pix - oy * p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int8_t zp = (int8_t)(-p->in_offset);
    const int32_t c = p->in_c;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t iy = y0 + ky;
        for (int32_t kx = 0; kx < p->k_w; kx++, d += c) {
            const int32_t ix = x0 + kx;
            if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w)
                memcpy(d, in + (iy * p->in_w + ix) * c, (size_t)c);
            else
                memset(d, zp, (size_t)c);
        }
    }
}

/* fast im2col conv, packed weights, bias folded: the windows of four output pixels gathered as
   int8, widened and interleaved (zero-padded to the packed row), then the packed GEMM. Scratch:
   4 windows of int8 (k each, rounded up to 4), then 4 columns of int16 (k rounded up to G). */
TKWS_INLINE void tkws_conv_sb_fast_body(TKWS_CONV_ARGS, const int bits, const int mode)
{
    const int32_t k = p->k_h * p->k_w * p->in_c, k4 = (k + 3) & ~3;
    const int32_t nw = tkws_sb_row_words(k, bits), np = nw * (bits == 4 ? 8 : 16);
    const int32_t oc_n = p->out_c, n = p->out_h * p->out_w;
    int8_t *t0 = (int8_t *)scratch, *t1 = t0 + k4, *t2 = t1 + k4, *t3 = t2 + k4;
    int32_t *x = (int32_t *)(void *)(t3 + k4);
    for (int32_t i = 0; i < n; i += 4) {
        const int32_t cnt = n - i < 4 ? n - i : 4;
        tkws_sb_window(p, in, i, t0);
        if (cnt > 1)
            tkws_sb_window(p, in, i + 1, t1);
        if (cnt > 2)
            tkws_sb_window(p, in, i + 2, t2);
        if (cnt > 3)
            tkws_sb_window(p, in, i + 3, t3);
        tkws_sb_widen_four(t0, cnt > 1 ? t1 : t0, cnt > 2 ? t2 : t0, cnt > 3 ? t3 : t0, x, k, np);
        if (cnt == 4)
            tkws_sb_gemm_4px(x, nw, (const int32_t *)w, oc_n, bias, mult, shift, out + i * oc_n, 4, p->out_offset,
                             p->act_min, p->act_max, bits, mode);
        else
            tkws_sb_gemm_4px(x, nw, (const int32_t *)w, oc_n, bias, mult, shift, out + i * oc_n, cnt, p->out_offset,
                             p->act_min, p->act_max, bits, mode);
    }
}

/* one field of two channels' words against the single widened input */
#define SB_FIELD_FC2(f)                                                     \
    do {                                                                    \
        const int32_t fa_ = TKWS_SB_FIELD(va, bits, f), fb_ = TKWS_SB_FIELD(vb, bits, f); \
        int32_t u_, v_;                                                     \
        TKWS_LDRD_INC(q, u_, v_);                                           \
        a = tkws_smlad(u_, tkws_sxtb16(fa_), a);                            \
        b = tkws_smlad(u_, tkws_sxtb16(fb_), b);                            \
        a = tkws_smlad(v_, tkws_sxtb16_ror8(fa_), a);                       \
        b = tkws_smlad(v_, tkws_sxtb16_ror8(fb_), b);                       \
    } while (0)

#define SB_FIELD_FC1(f)                                                     \
    do {                                                                    \
        const int32_t fa_ = TKWS_SB_FIELD(va, bits, f);                     \
        int32_t u_, v_;                                                     \
        TKWS_LDRD_INC(q, u_, v_);                                           \
        a = tkws_smlad(u_, tkws_sxtb16(fa_), a);                            \
        a = tkws_smlad(v_, tkws_sxtb16_ror8(fa_), a);                       \
    } while (0)

/* fast fully connected, packed weights, bias folded: the input widened once into scratch
   (zero-padded to the packed row), then 2 output channels at a time. Scratch: in_n int16 rounded
   up to G. */
TKWS_INLINE void tkws_fc_sb_fast_body(TKWS_FC_ARGS, const int bits, const int mode)
{
    const int32_t nw = tkws_sb_row_words(p->in_n, bits), np = nw * (bits == 4 ? 8 : 16), oc_n = p->out_n;
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;
    int32_t *x = (int32_t *)scratch;
    const int32_t *wt = (const int32_t *)w;
    tkws_sb_widen_one(in, x, p->in_n, np);
    int32_t oc = 0;
    for (; oc + 2 <= oc_n; oc += 2) {
        const int32_t *wa = wt + oc * nw, *wb = wa + nw;
        int32_t a = SB_SHL(bias[oc]), b = SB_SHL(bias[oc + 1]);
        const int32_t *q = x;
        for (int32_t g = 0; g < nw; g++) {
            const int32_t va = wa[g], vb = wb[g];
            SB_FIELD_FC2(0);
            SB_FIELD_FC2(1);
            if (bits == 2) {
                SB_FIELD_FC2(2);
                SB_FIELD_FC2(3);
            }
        }
        out[oc] = tkws_rq_out(a >> (8 - bits), mult[oc], shift + 2 * oc, mode, out_off, amin, amax);
        out[oc + 1] = tkws_rq_out(b >> (8 - bits), mult[oc + 1], shift + 2 * (oc + 1), mode, out_off, amin, amax);
    }
    if (oc < oc_n) {
        const int32_t *wa = wt + oc * nw;
        int32_t a = SB_SHL(bias[oc]);
        const int32_t *q = x;
        for (int32_t g = 0; g < nw; g++) {
            const int32_t va = wa[g];
            SB_FIELD_FC1(0);
            SB_FIELD_FC1(1);
            if (bits == 2) {
                SB_FIELD_FC1(2);
                SB_FIELD_FC1(3);
            }
        }
        out[oc] = tkws_rq_out(a >> (8 - bits), mult[oc], shift + 2 * oc, mode, out_off, amin, amax);
    }
}

/* the per-bit-width bodies the generator instantiates per layer (signature of the int8 bodies) */
TKWS_INLINE void tkws_pw_s4_fast_body(TKWS_CONV_ARGS, const int mode) { tkws_pw_sb_fast_body(p, in, w, bias, mult, shift, out, scratch, 4, mode); }
TKWS_INLINE void tkws_pw_s2_fast_body(TKWS_CONV_ARGS, const int mode) { tkws_pw_sb_fast_body(p, in, w, bias, mult, shift, out, scratch, 2, mode); }
TKWS_INLINE void tkws_conv_s4_fast_body(TKWS_CONV_ARGS, const int mode) { tkws_conv_sb_fast_body(p, in, w, bias, mult, shift, out, scratch, 4, mode); }
TKWS_INLINE void tkws_conv_s2_fast_body(TKWS_CONV_ARGS, const int mode) { tkws_conv_sb_fast_body(p, in, w, bias, mult, shift, out, scratch, 2, mode); }
TKWS_INLINE void tkws_fc_s4_fast_body(TKWS_FC_ARGS, const int mode) { tkws_fc_sb_fast_body(p, in, w, bias, mult, shift, out, scratch, 4, mode); }
TKWS_INLINE void tkws_fc_s2_fast_body(TKWS_FC_ARGS, const int mode) { tkws_fc_sb_fast_body(p, in, w, bias, mult, shift, out, scratch, 2, mode); }

/* the packed row unpacked into the layout of tkws_dw_s8_fast (kernels.py pack_dw_fast) */
TKWS_INLINE void tkws_dw_sb_unpack(const tkws_conv_params *p, const int32_t *row, void *dst, const int bits)
{
    const int32_t c_n = p->out_c, taps = p->k_h * p->k_w;
    if (p->k_h == 3 && p->k_w == 3 && (c_n & 3) == 0) {
        int16_t *d = (int16_t *)dst;
        for (int32_t g = 0; g < c_n; g += 4)
            for (int32_t t = 0; t < 9; t++, d += 4) {
                const int32_t i = t * c_n + g;
                d[0] = (int16_t)tkws_sb_weight(row, i, bits);
                d[1] = (int16_t)tkws_sb_weight(row, i + 2, bits);
                d[2] = (int16_t)tkws_sb_weight(row, i + 1, bits);
                d[3] = (int16_t)tkws_sb_weight(row, i + 3, bits);
            }
    } else {
        int8_t *d = (int8_t *)dst;
        for (int32_t i = 0; i < taps * c_n; i++)
            d[i] = (int8_t)tkws_sb_weight(row, i, bits);
    }
}

/* fast depthwise (depth multiplier 1): the weights unpacked into scratch, then tkws_dw_s8_fast's body */
TKWS_INLINE void tkws_dw_sb_fast_body(TKWS_CONV_ARGS, const int bits, const int mode)
{
    tkws_dw_sb_unpack(p, (const int32_t *)w, scratch, bits);
    tkws_dw_s8_fast_body(p, in, scratch, bias, mult, shift, out, 0, mode);
}

TKWS_INLINE void tkws_dw_s4_fast_body(TKWS_CONV_ARGS, const int mode) { tkws_dw_sb_fast_body(p, in, w, bias, mult, shift, out, scratch, 4, mode); }
TKWS_INLINE void tkws_dw_s2_fast_body(TKWS_CONV_ARGS, const int mode) { tkws_dw_sb_fast_body(p, in, w, bias, mult, shift, out, scratch, 2, mode); }

#endif /* TKWS_SUBBYTE_H */
