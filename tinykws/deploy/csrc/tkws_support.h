/* tinykws kernel library: what every kernel shares. TFLite's fixed-point requantization (written
   once, used by every kernel) and the dual 16-bit MAC helpers: the DSP extension's SXTB16/SMLAD
   through arm_acle.h where __ARM_FEATURE_DSP is defined, the same arithmetic in portable C else. */
#ifndef TKWS_SUPPORT_H
#define TKWS_SUPPORT_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define TKWS_INLINE static inline __attribute__((always_inline))
#else
#define TKWS_INLINE static inline
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), ties away from zero. The
   nudged truncating division of TFLite equals an arithmetic shift of (a*b + 2^30). */
TKWS_INLINE int32_t tkws_srdhm(int32_t a, int32_t b)
{
    /* (a*b + 2^30) >> 31 lies in [INT32_MIN + 1, 2^31]; 2^31 (only for a = b = INT32_MIN) wraps
       to INT32_MIN and saturates to INT32_MAX: branch-free, two instructions */
    const uint32_t r = (uint32_t)(((int64_t)a * b + (1LL << 30)) >> 31);
    return (int32_t)(r - (r == 0x80000000u));
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounded to nearest, ties away from zero (0 <= e <= 31) */
TKWS_INLINE int32_t tkws_rdbpot(int32_t x, int32_t e)
{
    const int32_t mask = (int32_t)((1u << e) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0);
    return (x >> e) + (remainder > threshold);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding); shift > 0 is a left shift */
TKWS_INLINE int32_t tkws_requantize(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t left = shift & ~(shift >> 31);  /* max(shift, 0) without a branch */
    const int32_t right = left - shift;           /* max(-shift, 0) */
    return tkws_rdbpot(tkws_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

/* accumulator -> int8: requantize, add the output offset, clamp */
TKWS_INLINE int8_t tkws_out_s8(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset, int32_t act_min,
                               int32_t act_max)
{
    int32_t v = tkws_requantize(acc, mult, shift) + out_offset;
    v = v < act_min ? act_min : v;
    v = v > act_max ? act_max : v;
    return (int8_t)v;
}

/* two consecutive int32 at p (8-byte step), p advanced: one post-indexed LDRD on Thumb-2 (gcc splits
   64-bit loads it builds from memcpy into two LDR) */
typedef struct { int32_t v[2]; } tkws_i32x2;
#if defined(__ARM_ARCH_7EM__) && defined(__GNUC__)
#define TKWS_LDRD_INC(p, a, b) \
    __asm__("ldrd %0, %1, [%2], #8" : "=r"(a), "=r"(b), "+r"(p) : "m"(*(const tkws_i32x2 *)(p)))
/* the same at p + off bytes (a constant multiple of 4 below 1024), p unchanged */
#define TKWS_LDRD_AT(p, off, a, b) \
    __asm__("ldrd %0, %1, [%2, #%c3]" : "=r"(a), "=r"(b) : "r"(p), "i"(off), "m"(*(const tkws_i32x2 *)((const char *)(p) + (off))))
#else
#define TKWS_LDRD_AT(p, off, a, b)                                   \
    do {                                                             \
        memcpy(&(a), (const char *)(p) + (off), 4);                  \
        memcpy(&(b), (const char *)(p) + (off) + 4, 4);              \
    } while (0)
#define TKWS_LDRD_INC(p, a, b) \
    do {                        \
        (a) = (p)[0];           \
        (b) = (p)[1];           \
        (p) += 2;               \
    } while (0)
#endif

/* ---- the fast kernels' requantization. The generator (kernels.py requant_mode) proves per layer
   that |acc| < 2^30 (from the weights, bias and input range), that no channel shifts left and that
   each right shift e lies in [1, 23]; then TFLite's double rounding is exactly
       r = (2 acc * mult + 2^31) >> 32                 (one SMMULR: SRDHM(acc, mult))
       v = (r - (r < 0) + 2^(e-1) + out_offset * 2^e) >> e   (RoundingDivideByPOT, offset folded)
   with rnd = 2^(e-1) + out_offset * 2^e precomputed: about 7 instructions instead of 30. The
   per-channel `shift` array of the fast kernels holds pairs {e, rnd} (TKWS_RQ_FAST, _FULL) or
   {TFLite shift, 0} (TKWS_RQ_EXACT, which falls back to tkws_out_s8). */
#define TKWS_RQ_EXACT 0 /* TFLite's arithmetic as written */
#define TKWS_RQ_FAST 1  /* single multiply, then the [act_min, act_max] clamp */
#define TKWS_RQ_FULL 2  /* single multiply, clamp range [-128, 127]: one SSAT */

#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
TKWS_INLINE int32_t tkws_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
TKWS_INLINE int32_t tkws_ssat8(int32_t x)
{
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(x));
    return r;
}
#else
TKWS_INLINE int32_t tkws_smmulr(int32_t a, int32_t b) { return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32); }
TKWS_INLINE int32_t tkws_ssat8(int32_t x) { return x < -128 ? -128 : x > 127 ? 127 : x; }
#endif

/* accumulator -> int8 in the fast kernels; `mode` is a compile-time constant where inlined */
TKWS_INLINE int8_t tkws_rq_out(int32_t acc, int32_t mult, const int32_t *er, const int mode, int32_t out_offset,
                               int32_t act_min, int32_t act_max)
{
    if (mode == TKWS_RQ_EXACT)
        return tkws_out_s8(acc, mult, er[0], out_offset, act_min, act_max);
    int32_t r = tkws_smmulr((int32_t)((uint32_t)acc << 1), mult);
    r = (r + (r >> 31) + er[1]) >> er[0];
    r = tkws_ssat8(r);
    if (mode == TKWS_RQ_FAST) {
        r = r < act_min ? act_min : r;
        r = r > act_max ? act_max : r;
    }
    return (int8_t)r;
}

/* a fast kernel's body instantiated once per requantization mode */
#define TKWS_RQ_DISPATCH(mode_value, call)           \
    do {                                             \
        switch (mode_value) {                        \
        case TKWS_RQ_FULL: call(TKWS_RQ_FULL); break; \
        case TKWS_RQ_FAST: call(TKWS_RQ_FAST); break; \
        default: call(TKWS_RQ_EXACT); break;          \
        }                                            \
    } while (0)

/* ---- dual 16-bit MACs */
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
/* bytes 0 and 2 sign-extended to two int16 halves */
TKWS_INLINE int32_t tkws_sxtb16(int32_t x) { return __sxtb16(x); }
/* bytes 1 and 3 sign-extended to two int16 halves: one SXTB16 with its rotation (gcc 12 emits
   __sxtb16 of a rotated value as two instructions) */
#if defined(__GNUC__)
TKWS_INLINE int32_t tkws_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
TKWS_INLINE int32_t tkws_sxtb16_ror8(int32_t x) { return __sxtb16((int32_t)(((uint32_t)x >> 8) | ((uint32_t)x << 24))); }
#endif
/* acc + bytes 0, 2 of x (sign-extended) as two int16 halves; the same with bytes 1, 3 */
TKWS_INLINE int32_t tkws_sxtab16(int32_t acc, int32_t x) { return __sxtab16(acc, x); }
#if defined(__GNUC__)
TKWS_INLINE int32_t tkws_sxtab16_ror8(int32_t acc, int32_t x)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}
#else
TKWS_INLINE int32_t tkws_sxtab16_ror8(int32_t acc, int32_t x) { return __sxtab16(acc, (int32_t)(((uint32_t)x >> 8) | ((uint32_t)x << 24))); }
#endif
/* acc + lo(x)*lo(y) + hi(x)*hi(y) */
TKWS_INLINE int32_t tkws_smlad(int32_t x, int32_t y, int32_t acc) { return __smlad(x, y, acc); }
/* acc + lo(x)*lo(y), acc + hi(x)*hi(y) */
TKWS_INLINE int32_t tkws_smlabb(int32_t x, int32_t y, int32_t acc) { return __smlabb(x, y, acc); }
TKWS_INLINE int32_t tkws_smlatt(int32_t x, int32_t y, int32_t acc) { return __smlatt(x, y, acc); }
/* two int16 halves + two int16 halves */
TKWS_INLINE int32_t tkws_sadd16(int32_t x, int32_t y) { return __sadd16(x, y); }
/* pack the low halves of lo and hi */
TKWS_INLINE int32_t tkws_pkhbt(int32_t lo, int32_t hi) { return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16)); }
#else
TKWS_INLINE int32_t tkws_sxtb16(int32_t x)
{
    return (int32_t)(((uint32_t)(int16_t)(int8_t)x & 0xFFFFu) | ((uint32_t)(int16_t)(int8_t)(x >> 16) << 16));
}
TKWS_INLINE int32_t tkws_sxtb16_ror8(int32_t x)
{
    return (int32_t)(((uint32_t)(int16_t)(int8_t)(x >> 8) & 0xFFFFu) | ((uint32_t)(int16_t)(int8_t)(x >> 24) << 16));
}
TKWS_INLINE int32_t tkws_smlad(int32_t x, int32_t y, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)x * (int16_t)y)
                     + (uint32_t)((int32_t)(int16_t)(x >> 16) * (int16_t)(y >> 16)));
}
TKWS_INLINE int32_t tkws_smlabb(int32_t x, int32_t y, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)x * (int16_t)y));
}
TKWS_INLINE int32_t tkws_smlatt(int32_t x, int32_t y, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)(x >> 16) * (int16_t)(y >> 16)));
}
TKWS_INLINE int32_t tkws_sadd16(int32_t x, int32_t y)
{
    return (int32_t)((uint32_t)(uint16_t)((int16_t)x + (int16_t)y) | ((uint32_t)(uint16_t)((int16_t)(x >> 16) + (int16_t)(y >> 16)) << 16));
}
TKWS_INLINE int32_t tkws_pkhbt(int32_t lo, int32_t hi) { return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16)); }
TKWS_INLINE int32_t tkws_sxtab16(int32_t acc, int32_t x) { return tkws_sadd16(acc, tkws_sxtb16(x)); }
TKWS_INLINE int32_t tkws_sxtab16_ror8(int32_t acc, int32_t x) { return tkws_sadd16(acc, tkws_sxtb16_ror8(x)); }
#endif

/* unaligned 32-bit load (memcpy: one LDR on Cortex-M7, which allows unaligned LDR) */
TKWS_INLINE int32_t tkws_read32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

TKWS_INLINE void tkws_write32(void *p, int32_t v) { memcpy(p, &v, 4); }

/* Index j of a row widened with SXTB16: each full group of 4 (below len4) is stored in the order
   0, 2, 1, 3 (the halves of SXTB16 and SXTB16 ROR 8); the tail keeps its order. */
#define TKWS_PAIR_ORDER(j, len4) ((j) < (len4) ? (((j) & ~3) | (((j) & 1) << 1) | (((j) >> 1) & 1)) : (j))

/* a row of n int8 widened to int16 in TKWS_PAIR_ORDER */
TKWS_INLINE void tkws_widen_row(const int8_t *src, int16_t *dst, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const int32_t x = tkws_read32(src + i);
        tkws_write32(dst + i, tkws_sxtb16(x));
        tkws_write32(dst + i + 2, tkws_sxtb16_ror8(x));
    }
    for (; i < n; i++)
        dst[i] = src[i];
}

#endif /* TKWS_SUPPORT_H */
