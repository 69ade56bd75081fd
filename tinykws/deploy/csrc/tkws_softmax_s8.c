/* SOFTMAX int8 -> int8 (TFLite reference_ops::Softmax with gemmlowp fixed point): output scale
   1/256, zero point -128. Each input is read before its output is written: in place is safe. */
#include "tkws_nn.h"
#include "tkws_support.h"

/* gemmlowp SaturatingRoundingMultiplyByPOT */
static int32_t tkws_sat_mul_pot(int32_t x, int32_t e)
{
    if (e > 0) {
        const int32_t thr = (int32_t)((1LL << (31 - e)) - 1);
        if (x > thr)
            return INT32_MAX;
        if (x < -thr)
            return INT32_MIN;
        return (int32_t)((uint32_t)x << e);
    }
    return e < 0 ? tkws_rdbpot(x, -e) : x;
}

/* exp(x) for x in [-1/4, 0), Q0.31 */
static int32_t tkws_exp_quarter(int32_t a)
{
    const int32_t const_term = 1895147668, one_third = 715827883;
    const int32_t x = a + (1 << 28);
    const int32_t x2 = tkws_srdhm(x, x), x3 = tkws_srdhm(x2, x), x4 = tkws_srdhm(x2, x2);
    const int32_t x4_over_4 = tkws_sat_mul_pot(x4, -2);
    const int32_t poly = tkws_sat_mul_pot(tkws_srdhm(x4_over_4 + x3, one_third) + x2, -1);
    return const_term + tkws_srdhm(const_term, x + poly);
}

/* gemmlowp exp_on_negative_values for Q5.26 input, Q0.31 output */
static int32_t tkws_exp_on_negative_values(int32_t a)
{
    static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t frac_bits = 26, quarter = 1 << (frac_bits - 2);
    const int32_t a_mod = (a & (quarter - 1)) - quarter;
    int32_t result = tkws_exp_quarter(tkws_sat_mul_pot(a_mod, 5));
    const int32_t remainder = (int32_t)((uint32_t)a_mod - (uint32_t)a);
    for (int32_t k = 0; k < 7; k++)
        if (remainder & (1 << (frac_bits - 2 + k)))
            result = tkws_srdhm(result, mults[k]);
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1, Q0.31 */
static int32_t tkws_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + tkws_srdhm(half_denominator, -1010580540);
    for (int k = 0; k < 3; k++) {
        const int32_t hdx = tkws_srdhm(half_denominator, x);
        x = x + tkws_sat_mul_pot(tkws_srdhm(x, (1 << 29) - hdx), 2);
    }
    return tkws_sat_mul_pot(x, 1);
}

static int32_t tkws_clz(uint32_t x)
{
    int32_t n = 0;
    if (x == 0)
        return 32;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        n++;
    }
    return n;
}

void tkws_softmax_s8_ref(const tkws_softmax_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    (void)scratch;
    for (int32_t r = 0; r < p->rows; r++) {
        const int8_t *x = in + r * p->depth;
        int8_t *y = out + r * p->depth;
        int32_t max = -128;
        for (int32_t c = 0; c < p->depth; c++)
            max = x[c] > max ? x[c] : max;
        int32_t sum = 0;
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t diff = x[c] - max;
            if (diff >= p->diff_min) {
                const int32_t scaled = tkws_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
                sum += tkws_rdbpot(tkws_exp_on_negative_values(scaled), 12);
            }
        }
        const int32_t headroom = tkws_clz((uint32_t)sum);
        const int32_t num_bits_over_unit = 12 - headroom;
        const int32_t shifted_minus_one = (int32_t)(((uint32_t)sum << headroom) - (1u << 31));
        const int32_t scale = tkws_one_over_one_plus_x(shifted_minus_one);
        for (int32_t c = 0; c < p->depth; c++) {
            const int32_t diff = x[c] - max;
            if (diff >= p->diff_min) {
                const int32_t scaled = tkws_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
                const int32_t e = tkws_exp_on_negative_values(scaled);
                int32_t v = tkws_rdbpot(tkws_srdhm(scale, e), num_bits_over_unit + 31 - 8) - 128;
                v = v < -128 ? -128 : v;
                v = v > 127 ? 127 : v;
                y[c] = (int8_t)v;
            } else {
                y[c] = -128;
            }
        }
    }
}
