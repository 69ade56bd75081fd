/* SOFTMAX int8 -> int8 (TFLite Micro's reference_ops::Softmax with gemmlowp fixed point): output
   scale 1/256, zero point -128. Rows of `depth` values; out may equal in. */
#include "tkws_nn.h"
#include "tkws_support.h"

/* gemmlowp SaturatingRoundingMultiplyByPOT */
static inline int32_t sat_mul_pot(int32_t x, int32_t e)
{
    if (e > 0) {
        const int32_t thr = (int32_t)((1u << (31 - e)) - 1);
        if (x > thr)
            return INT32_MAX;
        if (x < -thr)
            return INT32_MIN;
        return (int32_t)((uint32_t)x << e);
    }
    return e < 0 ? tkws_rdbpot(x, -e) : x;
}

/* exp(x) for x in [-1/4, 0), Q0.31 in and out */
static int32_t exp_quarter(int32_t a)
{
    const int32_t const_term = 1895147668, one_third = 715827883;
    const int32_t x = a + (1 << 28);
    const int32_t x2 = tkws_srdhm(x, x), x3 = tkws_srdhm(x2, x), x4 = tkws_srdhm(x2, x2);
    const int32_t x4_over_4 = tkws_rdbpot(x4, 2);
    const int32_t poly = tkws_rdbpot(tkws_srdhm(x4_over_4 + x3, one_third) + x2, 1);
    return const_term + tkws_srdhm(const_term, x + poly);
}

/* gemmlowp exp_on_negative_values with 5 integer bits: Q5.26 in, Q0.31 out */
static int32_t exp_neg_q5_26(int32_t a)
{
    static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t quarter = 1 << 24;
    const int32_t a_mod = (a & (quarter - 1)) - quarter;
    int32_t result = exp_quarter(sat_mul_pot(a_mod, 5));
    const int32_t remainder = a_mod - a;
    for (int32_t k = 0; k < 7; k++)
        if (remainder & (1 << (24 + k)))  /* bit 26 + exponent, exponent -2..4 */
            result = tkws_srdhm(result, mults[k]);
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 in and out, Newton-Raphson */
static int32_t one_over_one_plus_x(int32_t a)
{
    const int64_t s = (int64_t)a + INT32_MAX;  /* RoundingHalfSum(a, One) */
    const int32_t half_den = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + tkws_srdhm(half_den, -1010580540);  /* 48/17 - 32/17 * d, Q2.29 */
    const int32_t one_f2 = 1 << 29;
    for (int k = 0; k < 3; k++) {
        const int32_t hdx = tkws_srdhm(half_den, x);
        x = x + sat_mul_pot(tkws_srdhm(x, one_f2 - hdx), 2);
    }
    return sat_mul_pot(x, 1);
}

static inline int32_t clz32(uint32_t v)
{
#if defined(__GNUC__)
    return v ? __builtin_clz(v) : 32;
#else
    int32_t n = 0;
    if (!v)
        return 32;
    while (!(v & 0x80000000u)) {
        v <<= 1;
        n++;
    }
    return n;
#endif
}

void tkws_softmax_s8_ref(const tkws_softmax_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    (void)scratch;
    for (int32_t r = 0; r < p->rows; r++) {
        const int8_t *x = in + r * p->depth;
        int8_t *y = out + r * p->depth;
        int32_t mx = -128;
        for (int32_t i = 0; i < p->depth; i++)
            mx = x[i] > mx ? x[i] : mx;
        int32_t sum = 0;
        for (int32_t i = 0; i < p->depth; i++) {
            const int32_t diff = x[i] - mx;
            if (diff >= p->diff_min) {
                const int32_t scaled = tkws_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
                sum += tkws_rdbpot(exp_neg_q5_26(scaled), 12);  /* Q12.19 */
            }
        }
        const int32_t headroom = clz32((uint32_t)sum);
        const int32_t exponent = 12 - headroom + 31 - 8;
        const int32_t shifted_minus_one = (int32_t)(((uint32_t)sum << headroom) - 0x80000000u);
        const int32_t scale = one_over_one_plus_x(shifted_minus_one);
        for (int32_t i = 0; i < p->depth; i++) {
            const int32_t diff = x[i] - mx;
            int32_t v = -128;
            if (diff >= p->diff_min) {
                const int32_t scaled = tkws_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
                v = tkws_rdbpot(tkws_srdhm(scale, exp_neg_q5_26(scaled)), exponent) - 128;
                v = v < -128 ? -128 : (v > 127 ? 127 : v);
            }
            y[i] = (int8_t)v;
        }
    }
}
