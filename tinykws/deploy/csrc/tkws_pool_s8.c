/* AVERAGE_POOL_2D and MAX_POOL_2D int8 (TFLite Micro's reference_integer_ops): the window is
   clipped to the input; average divides by the number of valid elements, rounding half away
   from zero. */
#include "tkws_nn.h"
#include "tkws_support.h"

static inline int32_t clamp_s8(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* [*start, *end) of the window at output position o along one axis, clipped to the input */
static inline void window(int32_t o, int32_t stride, int32_t pad, int32_t f, int32_t n, int32_t *start, int32_t *end)
{
    const int32_t w0 = o * stride - pad;
    *start = w0 < 0 ? 0 : w0;
    *end = w0 + f > n ? n : w0 + f;
}

/* the average of a sum over count values, rounding half away from zero (TFLite Micro) */
static inline int32_t avg_round(int32_t sum, int32_t count)
{
    return count > 0 ? (sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count) : 0;
}

void tkws_avgpool_s8_ref(const tkws_pool_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    (void)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        int32_t ys, ye;
        window(oy, p->stride_h, p->pad_top, p->f_h, p->in_h, &ys, &ye);
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            int32_t xs, xe;
            window(ox, p->stride_w, p->pad_left, p->f_w, p->in_w, &xs, &xe);
            const int32_t count = (ye - ys) * (xe - xs);
            for (int32_t c = 0; c < p->channels; c++) {
                int32_t sum = 0;
                for (int32_t y = ys; y < ye; y++)
                    for (int32_t x = xs; x < xe; x++)
                        sum += in[(y * p->in_w + x) * p->channels + c];
                out[(oy * p->out_w + ox) * p->channels + c] = (int8_t)clamp_s8(avg_round(sum, count), p->act_min, p->act_max);
            }
        }
    }
}

/* fast: each 32-bit load of 4 channels is added to two int16x2 accumulators (SXTAB16 and
   SXTAB16 ROR 8: channels 0, 2 and 1, 3), 3 instructions per 4 values; the int16 sums are flushed
   into int32 at least every 256 values (|sum| <= 128 * 256 fits int16). The C % 4 last channels
   are summed one by one. */
void tkws_avgpool_s8_fast(const tkws_pool_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t C = p->channels, C4 = C & ~3;
    (void)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        int32_t ys, ye;
        window(oy, p->stride_h, p->pad_top, p->f_h, p->in_h, &ys, &ye);
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            int32_t xs, xe;
            window(ox, p->stride_w, p->pad_left, p->f_w, p->in_w, &xs, &xe);
            const int32_t count = (ye - ys) * (xe - xs), row_n = xe - xs;
            const int32_t rows_per_flush = row_n > 0 ? (row_n > 256 ? 1 : 256 / row_n) : 1;
            int8_t *o = out + (oy * p->out_w + ox) * C;
            for (int32_t c = 0; c < C4; c += 4) {
                int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                for (int32_t y0 = ys; y0 < ye; y0 += rows_per_flush) {
                    const int32_t y1 = y0 + rows_per_flush < ye ? y0 + rows_per_flush : ye;
                    int32_t a02 = 0, a13 = 0;
                    for (int32_t y = y0; y < y1; y++) {
                        const int8_t *ip = in + (y * p->in_w + xs) * C + c;
                        for (int32_t x = 0; x < row_n; x++, ip += C) {
                            const int32_t v = tkws_read32(ip);
                            a02 = tkws_sxtab16(a02, v);
                            a13 = tkws_sxtab16_ror8(a13, v);
                            if (row_n > 256 && x % 256 == 255) { /* a row longer than 256: flush inside it */
                                s0 += (int16_t)a02, s2 += a02 >> 16, s1 += (int16_t)a13, s3 += a13 >> 16;
                                a02 = a13 = 0;
                            }
                        }
                    }
                    s0 += (int16_t)a02, s2 += a02 >> 16, s1 += (int16_t)a13, s3 += a13 >> 16;
                }
                o[c] = (int8_t)clamp_s8(avg_round(s0, count), p->act_min, p->act_max);
                o[c + 1] = (int8_t)clamp_s8(avg_round(s1, count), p->act_min, p->act_max);
                o[c + 2] = (int8_t)clamp_s8(avg_round(s2, count), p->act_min, p->act_max);
                o[c + 3] = (int8_t)clamp_s8(avg_round(s3, count), p->act_min, p->act_max);
            }
            for (int32_t c = C4; c < C; c++) {
                int32_t s = 0;
                for (int32_t y = ys; y < ye; y++) {
                    const int8_t *ip = in + (y * p->in_w + xs) * C + c;
                    for (int32_t x = 0; x < row_n; x++, ip += C)
                        s += *ip;
                }
                o[c] = (int8_t)clamp_s8(avg_round(s, count), p->act_min, p->act_max);
            }
        }
    }
}

void tkws_maxpool_s8_ref(const tkws_pool_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    (void)scratch;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        int32_t ys, ye;
        window(oy, p->stride_h, p->pad_top, p->f_h, p->in_h, &ys, &ye);
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            int32_t xs, xe;
            window(ox, p->stride_w, p->pad_left, p->f_w, p->in_w, &xs, &xe);
            for (int32_t c = 0; c < p->channels; c++) {
                int32_t m = -128;
                for (int32_t y = ys; y < ye; y++)
                    for (int32_t x = xs; x < xe; x++) {
                        const int32_t v = in[(y * p->in_w + x) * p->channels + c];
                        m = v > m ? v : m;
                    }
                out[(oy * p->out_w + ox) * p->channels + c] = (int8_t)clamp_s8(m, p->act_min, p->act_max);
            }
        }
    }
}
