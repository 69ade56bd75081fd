/* DEPTHWISE_CONV_2D int8 (TFLite Micro's reference_integer_ops::DepthwiseConvPerChannel): weights
   [k_h][k_w][out_c], output channel c * depth_multiplier + m reads input channel c. */
#include "tkws_nn.h"
#include "tkws_support.h"

/* Input-prioritized: for each output pixel and channel, sum over the window (padding skipped). */
void tkws_dw_s8_ref(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t dm = p->depth_multiplier > 0 ? p->depth_multiplier : 1;
    (void)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
            for (int32_t oc = 0; oc < p->out_c; oc++) {
                const int32_t ic = oc / dm;
                int32_t acc = bias ? bias[oc] : 0;
                for (int32_t ky = 0; ky < p->k_h; ky++) {
                    const int32_t iy = y0 + ky;
                    if (iy < 0 || iy >= p->in_h)
                        continue;
                    for (int32_t kx = 0; kx < p->k_w; kx++) {
                        const int32_t ix = x0 + kx;
                        if (ix < 0 || ix >= p->in_w)
                            continue;
                        acc += (in[(iy * p->in_w + ix) * p->in_c + ic] + p->in_offset)
                               * wt[(ky * p->k_w + kx) * p->out_c + oc];
                    }
                }
                out[(oy * p->out_w + ox) * p->out_c + oc] =
                    tkws_out_s8(acc, mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
            }
        }
    }
}

/* Weight-prioritized: per output channel, each weight accumulated into every output pixel it
   touches (scratch: out_h * out_w int32). */
void tkws_dw_s8_ref_wo(TKWS_CONV_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t dm = p->depth_multiplier > 0 ? p->depth_multiplier : 1;
    int32_t *acc = (int32_t *)scratch;
    const int32_t n = p->out_h * p->out_w;
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        const int32_t ic = oc / dm;
        for (int32_t i = 0; i < n; i++)
            acc[i] = bias ? bias[oc] : 0;
        for (int32_t ky = 0; ky < p->k_h; ky++) {
            for (int32_t kx = 0; kx < p->k_w; kx++) {
                const int32_t wv = wt[(ky * p->k_w + kx) * p->out_c + oc];
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
        for (int32_t i = 0; i < n; i++)
            out[i * p->out_c + oc] = tkws_out_s8(acc[i], mult[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
    }
}

/* Fast (depth multiplier 1), bias with the input offset folded in, no scratch. 4 channels at a
   time: per tap one 32-bit load of inputs and one of weights, widened to int16 pairs with SXTB16,
   4 MACs with SMLABB/SMLATT. Interior pixels run the taps without checks; at the border the taps
   outside the input read the raw zero point (4 copies in one word) instead of a load. */
#define DW_MAC4(xv, wv)                                                        \
    do {                                                                       \
        const int32_t x02_ = tkws_sxtb16(xv), x13_ = tkws_sxtb16_ror8(xv);     \
        const int32_t w02_ = tkws_sxtb16(wv), w13_ = tkws_sxtb16_ror8(wv);     \
        a0 = tkws_smlabb(x02_, w02_, a0);                                      \
        a2 = tkws_smlatt(x02_, w02_, a2);                                      \
        a1 = tkws_smlabb(x13_, w13_, a1);                                      \
        a3 = tkws_smlatt(x13_, w13_, a3);                                      \
    } while (0)

#define DW_OUT4(op, c)                                                                                   \
    do {                                                                                                 \
        (op)[c] = tkws_out_s8(a0, mult[c], shift[c], out_off, amin, amax);             \
        (op)[c + 1] = tkws_out_s8(a1, mult[c + 1], shift[c + 1], out_off, amin, amax); \
        (op)[c + 2] = tkws_out_s8(a2, mult[c + 2], shift[c + 2], out_off, amin, amax); \
        (op)[c + 3] = tkws_out_s8(a3, mult[c + 3], shift[c + 3], out_off, amin, amax); \
    } while (0)

/* 3x3, depth multiplier 1, C a multiple of 4: the weights packed by kernels.py as
   [C/4][9 taps][4 channels], so the 9 weight words of a channel group are consecutive (immediate
   offsets); inputs through 3 row pointers and the offsets C, 2C. DW3_TAP(r, j, inside): tap at
   row pointer r, column j; outside the input it reads the zero-point word. */
#define DW3_TAP(rp, j, t, inside)                                                                  \
    do {                                                                                           \
        const int32_t xv_ = (inside) ? tkws_read32((rp) + ((j) == 0 ? 0 : (j) == 1 ? C : C2)) : zp4; \
        const int32_t wv_ = tkws_read32(wp + 4 * (t));                                             \
        DW_MAC4(xv_, wv_);                                                                         \
    } while (0)
#define DW3_ALL(CHK)                                                                               \
    do {                                                                                           \
        DW3_TAP(r0, 0, 0, CHK(0, 0)); DW3_TAP(r0, 1, 1, CHK(0, 1)); DW3_TAP(r0, 2, 2, CHK(0, 2));  \
        DW3_TAP(r1, 0, 3, CHK(1, 0)); DW3_TAP(r1, 1, 4, CHK(1, 1)); DW3_TAP(r1, 2, 5, CHK(1, 2));  \
        DW3_TAP(r2, 0, 6, CHK(2, 0)); DW3_TAP(r2, 1, 7, CHK(2, 1)); DW3_TAP(r2, 2, 8, CHK(2, 2));  \
    } while (0)
#define DW3_IN(ky, kx) 1
#define DW3_CHECK(ky, kx) ((ky) >= ky0 && (ky) < ky1 && (kx) >= kx0 && (kx) < kx1)

/* gcc's pre-allocation scheduler hoists every SXTB16 of the unrolled taps and spills them */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-schedule-insns")))
#endif
static void dw3x3_fast(const tkws_conv_params *p, const int8_t *in, const int8_t *wt, const int32_t *bias,
                       const int32_t *mult, const int32_t *shift, int8_t *out)
{
    const int32_t C = p->out_c, C2 = 2 * C, row = p->in_w * C;
    const int32_t zp4 = (int32_t)((uint32_t)(uint8_t)(-p->in_offset) * 0x01010101u);
    const int32_t out_off = p->out_offset, amin = p->act_min, amax = p->act_max;  /* out may alias *p */
    const int32_t in_h = p->in_h, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
    const int32_t sh = p->stride_h, sw = p->stride_w, pt = p->pad_top, pl = p->pad_left;
    for (int32_t oy = 0; oy < out_h; oy++) {
        const int32_t y0 = oy * sh - pt;
        const int32_t ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + 3 > in_h ? in_h - y0 : 3;
        for (int32_t ox = 0; ox < out_w; ox++) {
            const int32_t x0 = ox * sw - pl;
            const int32_t kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + 3 > in_w ? in_w - x0 : 3;
            int8_t *op = out + (oy * out_w + ox) * C;
            const int8_t *r0 = in + y0 * row + x0 * C, *r1 = r0 + row, *r2 = r1 + row;
            const int8_t *wp = wt;
            if (ky0 == 0 && ky1 == 3 && kx0 == 0 && kx1 == 3) {
                for (int32_t c = 0; c < C; c += 4, r0 += 4, r1 += 4, r2 += 4, wp += 36) {
                    int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                    DW3_ALL(DW3_IN);
                    DW_OUT4(op, c);
                }
            } else {
                for (int32_t c = 0; c < C; c += 4, r0 += 4, r1 += 4, r2 += 4, wp += 36) {
                    int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                    DW3_ALL(DW3_CHECK);
                    DW_OUT4(op, c);
                }
            }
        }
    }
}

void tkws_dw_s8_fast(TKWS_CONV_ARGS)
{
    if (p->k_h == 3 && p->k_w == 3 && (p->out_c & 3) == 0) {  /* kernels.py dw_packed() */
        dw3x3_fast(p, in, (const int8_t *)w, bias, mult, shift, out);
        return;
    }
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
                op[c] = tkws_out_s8(acc, mult[c], shift[c], out_off, amin, amax);
            }
        }
    }
}
