/* FULLY_CONNECTED int8 (TFLite Micro's reference_integer_ops::FullyConnected[PerChannel]):
   weights [out_n][in_n]. */
#include "tkws_nn.h"
#include "tkws_support.h"

/* Input-prioritized: for each output, the dot product of the input with its weight row. */
void tkws_fc_s8_ref(TKWS_FC_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    (void)scratch;
    for (int32_t o = 0; o < p->out_n; o++) {
        int32_t acc = bias ? bias[o] : 0;
        const int8_t *wp = wt + o * p->in_n;
        for (int32_t i = 0; i < p->in_n; i++)
            acc += (in[i] + p->in_offset) * wp[i];
        out[o] = tkws_out_s8(acc, mult[o], shift[o], p->out_offset, p->act_min, p->act_max);
    }
}

/* Weight-prioritized: each input times each of its weights into the out_n int32 accumulators
   (scratch). */
void tkws_fc_s8_ref_wo(TKWS_FC_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    int32_t *acc = (int32_t *)scratch;
    for (int32_t o = 0; o < p->out_n; o++)
        acc[o] = bias ? bias[o] : 0;
    for (int32_t i = 0; i < p->in_n; i++) {
        const int32_t x = in[i] + p->in_offset;
        for (int32_t o = 0; o < p->out_n; o++)
            acc[o] += x * wt[o * p->in_n + i];
    }
    for (int32_t o = 0; o < p->out_n; o++)
        out[o] = tkws_out_s8(acc[o], mult[o], shift[o], p->out_offset, p->act_min, p->act_max);
}

/* Fast, bias with the input offset folded in: the input widened once to int16 pairs (scratch),
   each weight row's 4 bytes widened with SXTB16, 4 MACs per 2 SMLAD. */
void tkws_fc_s8_fast(TKWS_FC_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    const int32_t n = p->in_n, n4 = n & ~3;
    int16_t *x = (int16_t *)scratch;
    tkws_widen_row(in, x, n);
    for (int32_t o = 0; o < p->out_n; o++) {
        const int8_t *wp = wt + o * n;
        int32_t acc = bias[o];
        int32_t i = 0;
        for (; i < n4; i += 4) {
            const int32_t v = tkws_read32(wp + i);
            acc = tkws_smlad(tkws_read32(x + i), tkws_sxtb16(v), acc);
            acc = tkws_smlad(tkws_read32(x + i + 2), tkws_sxtb16_ror8(v), acc);
        }
        for (; i < n; i++)
            acc += x[i] * wp[i];
        out[o] = tkws_out_s8(acc, mult[o], shift[o], p->out_offset, p->act_min, p->act_max);
    }
}

/* Fast, weight-prioritized, bias folded: each input (raw) times its weights into the int32
   accumulators (scratch: out_n int32). */
void tkws_fc_s8_fast_wo(TKWS_FC_ARGS)
{
    const int8_t *wt = (const int8_t *)w;
    int32_t *acc = (int32_t *)scratch;
    for (int32_t o = 0; o < p->out_n; o++)
        acc[o] = bias[o];
    for (int32_t i = 0; i < p->in_n; i++) {
        const int32_t x = in[i];
        const int8_t *wp = wt + i;
        for (int32_t o = 0; o < p->out_n; o++, wp += p->in_n)
            acc[o] += x * *wp;
    }
    for (int32_t o = 0; o < p->out_n; o++)
        out[o] = tkws_out_s8(acc[o], mult[o], shift[o], p->out_offset, p->act_min, p->act_max);
}
