/* tinykws kernel library: the int16 GEMM shared by the wide pointwise and conv kernels (two
   widened columns times 2 output channels' int16 weights, fast requantization). */
#ifndef TKWS_GEMM_H
#define TKWS_GEMM_H

#include "tkws_support.h"

/* two pixels (n values each) widened to int16 and interleaved word by word: each full group of 4
   as pairs (0, 2), (1, 3) (SXTB16), the n % 4 tail as pairs in order, an odd last value paired with
   a zero; (n + 1) / 2 pairs, so (n + 1) & ~1 words */
TKWS_INLINE void tkws_widen_two(const int8_t *a, const int8_t *b, int32_t *x, int32_t n)
{
    const int32_t n4 = n & ~3;
    for (int32_t i = 0; i < n4; i += 4) {
        const int32_t va = tkws_read32(a + i), vb = tkws_read32(b + i);
        x[0] = tkws_sxtb16(va);
        x[1] = tkws_sxtb16(vb);
        x[2] = tkws_sxtb16_ror8(va);
        x[3] = tkws_sxtb16_ror8(vb);
        x += 4;
    }
    for (int32_t i = n4; i < n; i += 2) {  /* the tail: one or two pairs */
        const int32_t hi_a = i + 1 < n ? a[i + 1] : 0, hi_b = i + 1 < n ? b[i + 1] : 0;
        x[0] = (int32_t)(((uint32_t)hi_a << 16) | (uint16_t)a[i]);
        x[1] = (int32_t)(((uint32_t)hi_b << 16) | (uint16_t)b[i]);
        x += 2;
    }
}

#define PW_OUT(o, k, acc) (o)[k] = tkws_rq_out(acc, mult[k], shift + 2 * (k), mode, out_off, amin, amax)
/* channel k of both pixels, its requantization parameters loaded once; o1 == o0 when the pass has
   one pixel (both accumulators then hold the same value) */
#define PW_OUT2(k, acc0, acc1)                                                      \
    do {                                                                            \
        const int32_t m_ = mult[k], *e_ = shift + 2 * (k);                          \
        const int8_t r0_ = tkws_rq_out(acc0, m_, e_, mode, out_off, amin, amax);    \
        const int8_t r1_ = tkws_rq_out(acc1, m_, e_, mode, out_off, amin, amax);    \
        o0[k] = r0_;                                                                \
        o1[k] = r1_;                                                                \
    } while (0)

/* The GEMM of the wide kernels: two int16 columns of n values (two pixels, or two im2col
   windows; any n) interleaved word by word as widen_two writes them, (n + 1) / 2 pairs, times
   int16 weights packed by kernels.py (pack_wide: for each pair of output channels and each int16
   pair of the column, the 2 channels' weight pairs; an odd last channel's pairs alone). 2 output
   channels x 2 pixels, 4 accumulators: per pair of inputs one LDRD for both pixels and one for
   both channels' weights, then 4 SMLAD (8 MACs in 6 instructions). Any out_c: the pairs of
   channels (4 at a time where n is a compile-time constant), then an odd last channel against
   both pixels (4 MACs per LDRD + LDR + 2 SMLAD). */
#define GW_STEP()                          \
    do {                                   \
        int32_t u_, v_, wa_, wb_;          \
        TKWS_LDRD_INC(q, u_, v_);          \
        TKWS_LDRD_INC(wp, wa_, wb_);       \
        a0 = tkws_smlad(u_, wa_, a0);      \
        a1 = tkws_smlad(v_, wa_, a1);      \
        b0 = tkws_smlad(u_, wb_, b0);      \
        b1 = tkws_smlad(v_, wb_, b1);      \
    } while (0)

/* 4 output channels (two packed pairs, the second n int16 further on: an immediate LDRD offset
   when n is a compile-time constant) x 2 pixels, 8 accumulators, 8 MACs per 5.5 instructions;
   fully unrolled, so no loop-end register is needed (8 accumulators, 4 operands and 2 pointers
   fill the 14 registers). Only for per-layer instances with constant n. */
#define GW4_STEP(off)                          \
    do {                                       \
        int32_t u_, v_, w0_, w1_;              \
        TKWS_LDRD_INC(q, u_, v_);              \
        TKWS_LDRD_AT(wp, (off), w0_, w1_);     \
        c0 = tkws_smlad(u_, w0_, c0);          \
        c1 = tkws_smlad(v_, w0_, c1);          \
        d0 = tkws_smlad(u_, w1_, d0);          \
        d1 = tkws_smlad(v_, w1_, d1);          \
        TKWS_LDRD_INC(wp, w0_, w1_);           \
        a0 = tkws_smlad(u_, w0_, a0);          \
        a1 = tkws_smlad(v_, w0_, a1);          \
        b0 = tkws_smlad(u_, w1_, b0);          \
        b1 = tkws_smlad(v_, w1_, b1);          \
    } while (0)

/* one pair of the column for both pixels against a single channel's weight pair */
#define GW1_STEP()                         \
    do {                                   \
        int32_t u_, v_;                    \
        TKWS_LDRD_INC(q, u_, v_);          \
        const int32_t w_ = *wp++;          \
        a0 = tkws_smlad(u_, w_, a0);       \
        a1 = tkws_smlad(v_, w_, a1);       \
    } while (0)

TKWS_INLINE void tkws_gemm_wide_2px(const int32_t *x, int32_t n, const int32_t *wp, int32_t oc_n, const int32_t *bias,
                               const int32_t *mult, const int32_t *shift, int8_t *o0, int8_t *o1,
                               int32_t out_off, int32_t amin, int32_t amax, const int mode)
{
    const int32_t n2 = (n + 1) & ~1; /* words per pixel pair block: (n + 1) / 2 pairs x 2 pixels */
    const int32_t *x_end = x + n2, *x_end4 = x + (n2 & ~7), *x_end2 = x + (n2 & ~3);
    int32_t oc = 0;
#if defined(__GNUC__) && defined(__OPTIMIZE__)
    if (__builtin_constant_p(n) && n2 <= 252) {
        for (; oc + 4 <= oc_n; oc += 4) {
            int32_t a0 = bias[oc], b0 = bias[oc + 1], c0 = bias[oc + 2], d0 = bias[oc + 3];
            int32_t a1 = a0, b1 = b0, c1 = c0, d1 = d0;
            const int32_t *q = x;
#pragma GCC unroll 126
            for (int32_t s = 0; s < n2 / 2; s++)
                GW4_STEP(4 * n2); /* the next pair block lies n2 words (4 n2 bytes) on */
            wp += n2; /* past the second pair block */
            PW_OUT2(oc, a0, a1);
            PW_OUT2(oc + 1, b0, b1);
            PW_OUT2(oc + 2, c0, c1);
            PW_OUT2(oc + 3, d0, d1);
        }
    }
#endif
    for (; oc + 2 <= oc_n; oc += 2) {
        int32_t a0 = bias[oc], b0 = bias[oc + 1];
        int32_t a1 = a0, b1 = b0;
        const int32_t *q = x;
        while (q != x_end4) {
            GW_STEP();
            GW_STEP();
            GW_STEP();
            GW_STEP();
        }
        if (q != x_end2) {
            GW_STEP();
            GW_STEP();
        }
        if (q != x_end)
            GW_STEP();
        PW_OUT2(oc, a0, a1);
        PW_OUT2(oc + 1, b0, b1);
    }
    if (oc < oc_n) { /* an odd last channel: its n2 / 2 weight pairs */
        int32_t a0 = bias[oc], a1 = a0;
        const int32_t *q = x;
        while (q != x_end2) {
            GW1_STEP();
            GW1_STEP();
        }
        if (q != x_end)
            GW1_STEP();
        const int32_t m_ = mult[oc], *e_ = shift + 2 * oc;
        const int8_t r0_ = tkws_rq_out(a0, m_, e_, mode, out_off, amin, amax);
        const int8_t r1_ = tkws_rq_out(a1, m_, e_, mode, out_off, amin, amax);
        o0[oc] = r0_;
        o1[oc] = r1_;
    }
}

#endif /* TKWS_GEMM_H */
