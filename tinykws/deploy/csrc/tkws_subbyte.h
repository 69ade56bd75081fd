/* tinykws kernel library: sub-byte (4- and 2-bit) packed weights. The shared unpacking, the column
   widening and the inline bodies of the fast packed kernels (tkws_pw_s4.c, tkws_conv_s4.c,
   tkws_fc_s4.c instantiate them for any shape; the generator once per layer with constant params).

   Weights: signed, symmetric, in [-8, 7] (4 bits) or [-2, 1] (2 bits); each output channel's row of
   k values (conv: k = k_h*k_w*in_c in OHWI order, fc: in_n) is zero-padded to a multiple of G
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
   The plain references (_ref) unpack one weight at a time (SBFX on the M7) and keep TFLite's
   arithmetic as written. */
#ifndef TKWS_SUBBYTE_H
#define TKWS_SUBBYTE_H

#include "tkws_nn.h"
#include "tkws_gemm.h"

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

/* two int8 rows a, b of n values widened and interleaved as tkws_widen_two does (per group of 4:
   a(0,2), b(0,2), a(1,3), b(1,3)), the last partial group and then whole groups of zeros up to np
   values (np a multiple of 4, >= n) */
TKWS_INLINE void tkws_sb_widen_two(const int8_t *a, const int8_t *b, int32_t *x, int32_t n, int32_t np)
{
    const int32_t n4 = n & ~3;
    tkws_widen_two(a, b, x, n4);
    x += n4;
    int32_t i = n4;
    if (i < n) {
        int8_t ta[4] = {0, 0, 0, 0}, tb[4] = {0, 0, 0, 0};
        for (int32_t j = n4; j < n; j++) {
            ta[j - n4] = a[j];
            tb[j - n4] = b[j];
        }
        tkws_widen_two(ta, tb, x, 4);
        x += 4;
        i += 4;
    }
    for (; i < np; i += 4, x += 4)
        x[0] = x[1] = x[2] = x[3] = 0;
}

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

/* one field (4 weights) of both channels' words against both pixels: 2 LDRD, 8 SMLAD */
#define SB_FIELD_2X2(f)                                                     \
    do {                                                                    \
        const int32_t fa_ = TKWS_SB_FIELD(va, bits, f), fb_ = TKWS_SB_FIELD(vb, bits, f); \
        int32_t u_, v_;                                                     \
        const int32_t wa02_ = tkws_sxtb16(fa_), wb02_ = tkws_sxtb16(fb_);   \
        TKWS_LDRD_INC(q, u_, v_);                                           \
        a0 = tkws_smlad(u_, wa02_, a0);                                     \
        a1 = tkws_smlad(v_, wa02_, a1);                                     \
        b0 = tkws_smlad(u_, wb02_, b0);                                     \
        b1 = tkws_smlad(v_, wb02_, b1);                                     \
        const int32_t wa13_ = tkws_sxtb16_ror8(fa_), wb13_ = tkws_sxtb16_ror8(fb_); \
        TKWS_LDRD_INC(q, u_, v_);                                           \
        a0 = tkws_smlad(u_, wa13_, a0);                                     \
        a1 = tkws_smlad(v_, wa13_, a1);                                     \
        b0 = tkws_smlad(u_, wb13_, b0);                                     \
        b1 = tkws_smlad(v_, wb13_, b1);                                     \
    } while (0)

/* one field of one channel's word against both pixels */
#define SB_FIELD_1X2(f)                                                     \
    do {                                                                    \
        const int32_t fa_ = TKWS_SB_FIELD(va, bits, f);                     \
        int32_t u_, v_;                                                     \
        const int32_t wa02_ = tkws_sxtb16(fa_), wa13_ = tkws_sxtb16_ror8(fa_); \
        TKWS_LDRD_INC(q, u_, v_);                                           \
        a0 = tkws_smlad(u_, wa02_, a0);                                     \
        a1 = tkws_smlad(v_, wa02_, a1);                                     \
        TKWS_LDRD_INC(q, u_, v_);                                           \
        a0 = tkws_smlad(u_, wa13_, a0);                                     \
        a1 = tkws_smlad(v_, wa13_, a1);                                     \
    } while (0)

#define SB_SHL(b) ((int32_t)((uint32_t)(b) << (8 - bits)))

/* The packed GEMM: two widened columns x (tkws_sb_widen_two, nw * G values) times every output
   channel's packed row (nw words), 2 channels x 2 pixels, 4 accumulators scaled by 2^(8-bits);
   results to o0, o1 (o1 == o0 when the pass has one pixel). */
TKWS_INLINE void tkws_sb_gemm_2px(const int32_t *x, int32_t nw, const int32_t *w, int32_t oc_n, const int32_t *bias,
                                  const int32_t *mult, const int32_t *shift, int8_t *o0, int8_t *o1, int32_t out_off,
                                  int32_t amin, int32_t amax, const int bits, const int mode)
{
    int32_t oc = 0;
    for (; oc + 2 <= oc_n; oc += 2) {
        const int32_t *wa = w + oc * nw, *wb = wa + nw;
        int32_t a0 = SB_SHL(bias[oc]), a1 = a0, b0 = SB_SHL(bias[oc + 1]), b1 = b0;
        const int32_t *q = x;
        for (int32_t g = 0; g < nw; g++) {
            const int32_t va = wa[g], vb = wb[g];
            SB_FIELD_2X2(0);
            SB_FIELD_2X2(1);
            if (bits == 2) {
                SB_FIELD_2X2(2);
                SB_FIELD_2X2(3);
            }
        }
        a0 >>= 8 - bits, a1 >>= 8 - bits, b0 >>= 8 - bits, b1 >>= 8 - bits;
        const int32_t ma = mult[oc], mb = mult[oc + 1], *ea = shift + 2 * oc, *eb = ea + 2;
        const int8_t ra0 = tkws_rq_out(a0, ma, ea, mode, out_off, amin, amax);
        const int8_t ra1 = tkws_rq_out(a1, ma, ea, mode, out_off, amin, amax);
        const int8_t rb0 = tkws_rq_out(b0, mb, eb, mode, out_off, amin, amax);
        const int8_t rb1 = tkws_rq_out(b1, mb, eb, mode, out_off, amin, amax);
        o0[oc] = ra0;
        o0[oc + 1] = rb0;
        o1[oc] = ra1;
        o1[oc + 1] = rb1;
    }
    if (oc < oc_n) { /* odd output channel count: the last one alone */
        const int32_t *wa = w + oc * nw;
        int32_t a0 = SB_SHL(bias[oc]), a1 = a0;
        const int32_t *q = x;
        for (int32_t g = 0; g < nw; g++) {
            const int32_t va = wa[g];
            SB_FIELD_1X2(0);
            SB_FIELD_1X2(1);
            if (bits == 2) {
                SB_FIELD_1X2(2);
                SB_FIELD_1X2(3);
            }
        }
        a0 >>= 8 - bits, a1 >>= 8 - bits;
        const int8_t r0 = tkws_rq_out(a0, mult[oc], shift + 2 * oc, mode, out_off, amin, amax);
        const int8_t r1 = tkws_rq_out(a1, mult[oc], shift + 2 * oc, mode, out_off, amin, amax);
        o0[oc] = r0;
        o1[oc] = r1;
    }
}

/* input pixel of output pixel k of a 1x1 conv without padding */
TKWS_INLINE const int8_t *tkws_sb_pixel(const tkws_conv_params *p, const int8_t *in, int32_t k)
{
    const int32_t oy = k / p->out_w, ox = k - oy * p->out_w;
    return in + (oy * p->stride_h * p->in_w + ox * p->stride_w) * p->in_c;
}

/* fast pointwise 1x1 conv (no padding, any stride), packed weights, bias with the input offset
   folded in: two pixels widened (zero-padded to the packed row) into scratch, then the packed
   GEMM. Scratch: 2 pixels of int16, in_c rounded up to G. */
TKWS_INLINE void tkws_pw_sb_fast_body(TKWS_CONV_ARGS, const int bits, const int mode)
{
    const int32_t n = p->in_c, nw = tkws_sb_row_words(n, bits), np = nw * (bits == 4 ? 8 : 16);
    const int32_t oc_n = p->out_c, pixels = p->out_h * p->out_w;
    int32_t *x = (int32_t *)scratch;
    for (int32_t k = 0; k < pixels; k += 2) {
        const int two = k + 1 < pixels;
        tkws_sb_widen_two(tkws_sb_pixel(p, in, k), tkws_sb_pixel(p, in, two ? k + 1 : k), x, n, np);
        int8_t *o0 = out + k * oc_n;
        tkws_sb_gemm_2px(x, nw, (const int32_t *)w, oc_n, bias, mult, shift, o0, two ? o0 + oc_n : o0, p->out_offset,
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

/* fast im2col conv, packed weights, bias folded: the windows of two output pixels gathered as
   int8, widened and interleaved (zero-padded to the packed row), then the packed GEMM. Scratch:
   2 windows of int8 (k each, rounded up to 4), then 2 columns of int16 (k rounded up to G). */
TKWS_INLINE void tkws_conv_sb_fast_body(TKWS_CONV_ARGS, const int bits, const int mode)
{
    const int32_t k = p->k_h * p->k_w * p->in_c, k4 = (k + 3) & ~3;
    const int32_t nw = tkws_sb_row_words(k, bits), np = nw * (bits == 4 ? 8 : 16);
    const int32_t oc_n = p->out_c, n = p->out_h * p->out_w;
    int8_t *ta = (int8_t *)scratch, *tb = ta + k4;
    int32_t *x = (int32_t *)(void *)(tb + k4);
    for (int32_t i = 0; i < n; i += 2) {
        const int two = i + 1 < n;
        tkws_sb_window(p, in, i, ta);
        if (two)
            tkws_sb_window(p, in, i + 1, tb);
        tkws_sb_widen_two(ta, two ? tb : ta, x, k, np);
        int8_t *o0 = out + i * oc_n;
        tkws_sb_gemm_2px(x, nw, (const int32_t *)w, oc_n, bias, mult, shift, o0, two ? o0 + oc_n : o0, p->out_offset,
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

#endif /* TKWS_SUBBYTE_H */
