/* the fast variants' bodies, inline: tkws_dw_s8.c instantiates them for any shape (the library's
   functions), the generator once per layer with the layer's constant params struct, so every
   shape, offset and loop bound is a compile-time constant (tinykws/deploy/codegen.py) */
#ifndef TKWS_DW_S8_FAST_H
#define TKWS_DW_S8_FAST_H

#include "tkws_nn.h"
#include "tkws_support.h"

/* Fast (depth multiplier 1), bias with the input offset folded in, no scratch. 4 channels at a
   time: per tap one 32-bit load of inputs, widened to int16 pairs with SXTB16, 4 MACs with
   SMLABB/SMLATT. Interior pixels run the taps without checks; at the border the taps outside the
   input read the raw zero point (4 copies in one word) instead of a load. */
#define DW_MAC4W(xv, w02, w13)                                                 \
    do {                                                                       \
        const int32_t x02_ = tkws_sxtb16(xv), x13_ = tkws_sxtb16_ror8(xv);     \
        a0 = tkws_smlabb(x02_, w02, a0);                                       \
        a2 = tkws_smlatt(x02_, w02, a2);                                       \
        a1 = tkws_smlabb(x13_, w13, a1);                                       \
        a3 = tkws_smlatt(x13_, w13, a3);                                       \
    } while (0)
#define DW_MAC4(xv, wv) DW_MAC4W(xv, tkws_sxtb16(wv), tkws_sxtb16_ror8(wv))

#define DW_OUT4(op, c)                                                                         \
    do {                                                                                       \
        (op)[c] = tkws_rq_out(a0, mult[c], shift + 2 * (c), mode, out_off, amin, amax);         \
        (op)[c + 1] = tkws_rq_out(a1, mult[c + 1], shift + 2 * (c) + 2, mode, out_off, amin, amax); \
        (op)[c + 2] = tkws_rq_out(a2, mult[c + 2], shift + 2 * (c) + 4, mode, out_off, amin, amax); \
        (op)[c + 3] = tkws_rq_out(a3, mult[c + 3], shift + 2 * (c) + 6, mode, out_off, amin, amax); \
    } while (0)

/* 3x3, depth multiplier 1, any C: the weights widened to int16 by kernels.py as
   [C/4][9 taps][(c0, c2), (c1, c3)], so a tap's two weight words come in one LDRD at a constant
   offset; inputs through one pointer at ky * row + kx * C (immediate offsets where the generator
   instantiates the body with constant shapes). Where C % 4 != 0 and C > 4, the last 4 channels
   run once more as a group (their weights packed after the others), of which only the C % 4 new
   outputs are written (the others' accumulations are dead code); with C < 4 the channels run one
   MAC per tap (weights [9 taps][C] int16). DW3_TAP(ky, kx, inside):
   outside the input the tap reads the zero-point word. */
#define DW3_TAP(ky, kx, inside)                                                                    \
    do {                                                                                           \
        const int32_t xv_ = (inside) ? tkws_read32(ip + (ky) * row + (kx) * C) : zp4;              \
        int32_t w02_, w13_;                                                                        \
        TKWS_LDRD_AT(wp, 8 * ((ky) * 3 + (kx)), w02_, w13_);                                       \
        DW_MAC4W(xv_, w02_, w13_);                                                                 \
    } while (0)
#define DW3_ALL(CHK)                                                                               \
    do {                                                                                           \
        DW3_TAP(0, 0, CHK(0, 0)); DW3_TAP(0, 1, CHK(0, 1)); DW3_TAP(0, 2, CHK(0, 2));              \
        DW3_TAP(1, 0, CHK(1, 0)); DW3_TAP(1, 1, CHK(1, 1)); DW3_TAP(1, 2, CHK(1, 2));              \
        DW3_TAP(2, 0, CHK(2, 0)); DW3_TAP(2, 1, CHK(2, 1)); DW3_TAP(2, 2, CHK(2, 2));              \
    } while (0)
#define DW3_IN(ky, kx) 1
#define DW3_NO_LEFT(ky, kx) ((kx) != 0)
#define DW3_NO_RIGHT(ky, kx) ((kx) != 2)
/* a pixel whose taps inside the input are known at compile time (CHK): the groups of 4 channels,
   then (C % 4 != 0, C > 4) the last 4 channels again, only the new outputs written */
#define DW3_GROUPS(CHK)                                                                            \
    do {                                                                                           \
        for (int32_t c = 0; c < C4; c += 4, ip += 4, wp += 36) {                                   \
            int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];            \
            DW3_ALL(CHK);                                                                          \
            DW_OUT4(op, c);                                                                        \
        }                                                                                          \
        if (T && C > 4) {                                                                          \
            const int32_t c = c_last;                                                              \
            int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];            \
            ip = ip0 + c;                                                                          \
            DW3_ALL(CHK);                                                                          \
            DW_OUT_LAST(op);                                                                       \
        }                                                                                          \
    } while (0)
/* the overlapping last group (channels C-4..C-1 in a0..a3): only its T = C % 4 last channels are new */
#define DW_OUT_LAST(op)                                                                                   \
    do {                                                                                                  \
        if (T > 2)                                                                                        \
            (op)[c_last + 1] = tkws_rq_out(a1, mult[c_last + 1], shift + 2 * (c_last + 1), mode, out_off, amin, amax); \
        if (T > 1)                                                                                        \
            (op)[c_last + 2] = tkws_rq_out(a2, mult[c_last + 2], shift + 2 * (c_last + 2), mode, out_off, amin, amax); \
        (op)[c_last + 3] = tkws_rq_out(a3, mult[c_last + 3], shift + 2 * (c_last + 3), mode, out_off, amin, amax);     \
        (void)a0;                                                                                         \
    } while (0)
/* tap t through its own pointer tp[t] (the border pixels) */
#define DW3_PTAP(t)                                          \
    do {                                                     \
        const int32_t xv_ = tkws_read32(tp[t] + c);          \
        int32_t w02_, w13_;                                  \
        TKWS_LDRD_AT(wp, 8 * (t), w02_, w13_);               \
        DW_MAC4W(xv_, w02_, w13_);                           \
    } while (0)

TKWS_INLINE void tkws_dw3x3_s8_fast_body(const tkws_conv_params *p, const int8_t *in, const int16_t *wt, const int32_t *bias,
                            const int32_t *mult, const int32_t *shift, int8_t *out, const int mode)
{
    const int32_t C = p->out_c, C4 = C & ~3, row = p->in_w * C;
    const int32_t zp4 = (int32_t)((uint32_t)(uint8_t)(-p->in_offset) * 0x01010101u);
    const int16_t *wt_tail = wt + 9 * C4; /* C > 4: the last 4 channels' group; C < 4: [9 taps][T] */
    const int32_t T = C - C4, c_last = C - 4;
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;  /* out may alias *p */
    const int32_t in_h = p->in_h, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, pt = p->pad_top, pl = p->pad_left;
    int32_t zrow[(C + 3) / 4]; /* C bytes (rounded up to 4) of the input zero point */
    for (int32_t i = 0; i < (C + 3) / 4; i++)
        zrow[i] = zp4;
    for (int32_t oy = 0; oy < out_h; oy++) {
        const int32_t y0 = oy * sh - pt;
        const int32_t ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + 3 > in_h ? in_h - y0 : 3;
        for (int32_t ox = 0; ox < out_w; ox++) {
            const int32_t x0 = ox * sw - pl;
            const int32_t kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + 3 > in_w ? in_w - x0 : 3;
            int8_t *op = out + (oy * out_w + ox) * C;
            const int8_t *ip = in + y0 * row + x0 * C;
            const int16_t *wp = wt;
            if (ky0 == 0 && ky1 == 3 && kx0 == 0 && kx1 == 3) {
                const int8_t *ip0 = ip;
                DW3_GROUPS(DW3_IN);
                for (int32_t c = C4; c < (C > 4 ? C4 : C); c++) {
                    const int8_t *ic = ip0 + c;
                    const int16_t *wc = wt_tail + (c - C4);
                    int32_t a = bias[c];
                    a += ic[0] * wc[0] + ic[C] * wc[T] + ic[2 * C] * wc[2 * T];
                    a += ic[row] * wc[3 * T] + ic[row + C] * wc[4 * T] + ic[row + 2 * C] * wc[5 * T];
                    a += ic[2 * row] * wc[6 * T] + ic[2 * row + C] * wc[7 * T] + ic[2 * row + 2 * C] * wc[8 * T];
                    op[c] = tkws_rq_out(a, mult[c], shift + 2 * c, mode, out_off, amin, amax);
                }
            } else if (C >= 4 && ky0 == 0 && ky1 == 3 && kx0 == 1 && kx1 == 3) { /* left column: constant checks */
                const int8_t *ip0 = ip;
                DW3_GROUPS(DW3_NO_LEFT);
            } else if (C >= 4 && ky0 == 0 && ky1 == 3 && kx0 == 0 && kx1 == 2) { /* right column */
                const int8_t *ip0 = ip;
                DW3_GROUPS(DW3_NO_RIGHT);
            } else {
                /* at the border each tap gets its own pointer, set once per pixel: into the input,
                   or (outside it) to a row of the raw zero point, so the channel loop has no checks */
                const int8_t *tp[9];
                for (int32_t t = 0; t < 9; t++) {
                    const int32_t ky = t / 3, kx = t - 3 * (t / 3);
                    tp[t] = ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1 ? ip + ky * row + kx * C : (const int8_t *)zrow;
                }
                for (int32_t c = 0; c < C4; c += 4, wp += 36) {
                    int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                    DW3_PTAP(0); DW3_PTAP(1); DW3_PTAP(2);
                    DW3_PTAP(3); DW3_PTAP(4); DW3_PTAP(5);
                    DW3_PTAP(6); DW3_PTAP(7); DW3_PTAP(8);
                    DW_OUT4(op, c);
                }
                if (T && C > 4) {
                    const int32_t c = c_last;
                    int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                    DW3_PTAP(0); DW3_PTAP(1); DW3_PTAP(2);
                    DW3_PTAP(3); DW3_PTAP(4); DW3_PTAP(5);
                    DW3_PTAP(6); DW3_PTAP(7); DW3_PTAP(8);
                    DW_OUT_LAST(op);
                }
                for (int32_t c = C4; c < (C > 4 ? C4 : C); c++) {
                    const int16_t *wc = wt_tail + (c - C4);
                    int32_t a = bias[c];
                    for (int32_t t = 0; t < 9; t++)
                        a += tp[t][c] * wc[t * T];
                    op[c] = tkws_rq_out(a, mult[c], shift + 2 * c, mode, out_off, amin, amax);
                }
            }
        }
    }
}

TKWS_INLINE void tkws_dw_s8_fast_any_body(TKWS_CONV_ARGS, const int mode)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t C = p->out_c, C4 = C & ~3, row = p->in_w * C, kh = p->k_h, kw = p->k_w;
    const int32_t zp = -p->in_offset;
    const int32_t zp4 = (int32_t)((uint32_t)(uint8_t)zp * 0x01010101u);
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;  /* out may alias *p */
    const int32_t in_h = p->in_h, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, pt = p->pad_top, pl = p->pad_left;
    (void)scratch;
    for (int32_t oy = 0; oy < out_h; oy++) {
        const int32_t y0 = oy * sh - pt;
        const int32_t ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + kh > in_h ? in_h - y0 : kh;
        for (int32_t ox = 0; ox < out_w; ox++) {
            const int32_t x0 = ox * sw - pl;
            const int32_t kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + kw > in_w ? in_w - x0 : kw;
            const int interior = ky0 == 0 && ky1 == kh && kx0 == 0 && kx1 == kw;
            int8_t *op = out + (oy * out_w + ox) * C;
            const int8_t *base = in + y0 * row + x0 * C;
            int32_t c = 0;
            if (interior) {
                for (; c < C4; c += 4) {
                    int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                    const int8_t *wp = wt + c;
                    const int8_t *ir = base + c;
                    for (int32_t ky = 0; ky < kh; ky++, ir += row) {
                        const int8_t *ip = ir;
                        for (int32_t kx = 0; kx < kw; kx++, ip += C, wp += C) {
                            const int32_t xv = tkws_read32(ip), wv = tkws_read32(wp);
                            DW_MAC4(xv, wv);
                        }
                    }
                    DW_OUT4(op, c);
                }
            } else {
                for (; c < C4; c += 4) {
                    int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                    const int8_t *wp = wt + c;
                    for (int32_t ky = 0; ky < kh; ky++) {
                        const int row_ok = ky >= ky0 && ky < ky1;
                        const int8_t *ip = base + ky * row + c;
                        for (int32_t kx = 0; kx < kw; kx++, ip += C, wp += C) {
                            const int32_t xv = row_ok && kx >= kx0 && kx < kx1 ? tkws_read32(ip) : zp4;
                            const int32_t wv = tkws_read32(wp);
                            DW_MAC4(xv, wv);
                        }
                    }
                    DW_OUT4(op, c);
                }
            }
            for (; c < C; c++) {  /* the C % 4 tail, scalar */
                int32_t acc = bias[c];
                for (int32_t ky = 0; ky < kh; ky++)
                    for (int32_t kx = 0; kx < kw; kx++) {
                        const int ok = ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1;
                        acc += (ok ? base[ky * row + kx * C + c] : zp) * wt[(ky * kw + kx) * C + c];
                    }
                op[c] = tkws_rq_out(acc, mult[c], shift + 2 * c, mode, out_off, amin, amax);
            }
        }
    }
}

/* the fast depthwise: the 3x3 path where kernels.py dw_packed() packs the weights, else any shape */
TKWS_INLINE void tkws_dw_s8_fast_body(TKWS_CONV_ARGS, const int mode)
{
    if (p->k_h == 3 && p->k_w == 3)
        tkws_dw3x3_s8_fast_body(p, in, (const int16_t *)w, bias, mult, shift, out, mode);
    else
        tkws_dw_s8_fast_any_body(p, in, w, bias, mult, shift, out, scratch, mode);
}

/* gcc's pre-allocation scheduler hoists every SXTB16 of the unrolled taps and spills them: every
   function the body is inlined into carries this */
#if defined(__GNUC__) && !defined(__clang__)
#define TKWS_DW_FAST_ATTR __attribute__((optimize("no-schedule-insns")))
#else
#define TKWS_DW_FAST_ATTR
#endif

#endif /* TKWS_DW_S8_FAST_H */
