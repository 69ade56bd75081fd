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
                int32_t avg = count > 0 ? (sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count) : 0;
                out[(oy * p->out_w + ox) * p->channels + c] = (int8_t)clamp_s8(avg, p->act_min, p->act_max);
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
