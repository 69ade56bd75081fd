/* FULLY_CONNECTED with sub-byte packed weights (4 or 2 bits, rows [out_n][in_n], layout in
   tkws_subbyte.h): the plain references (one weight unpacked at a time, TFLite's arithmetic as
   written) and the fast variants (bias folded, SXTB16/SMLAD). */
#include "tkws_nn.h"
#include "tkws_subbyte.h"

TKWS_INLINE void tkws_fc_sb_ref(TKWS_FC_ARGS, const int bits)
{
    const int32_t nw = tkws_sb_row_words(p->in_n, bits);
    (void)scratch;
    for (int32_t o = 0; o < p->out_n; o++) {
        const int32_t *row = (const int32_t *)w + o * nw;
        int32_t acc = bias ? bias[o] : 0;
        for (int32_t i = 0; i < p->in_n; i++)
            acc += (in[i] + p->in_offset) * tkws_sb_weight(row, i, bits);
        out[o] = tkws_out_s8(acc, mult[o], shift[o], p->out_offset, p->act_min, p->act_max);
    }
}

void tkws_fc_s4_ref(TKWS_FC_ARGS) { tkws_fc_sb_ref(p, in, w, bias, mult, shift, out, scratch, 4); }
void tkws_fc_s2_ref(TKWS_FC_ARGS) { tkws_fc_sb_ref(p, in, w, bias, mult, shift, out, scratch, 2); }

void tkws_fc_s4_fast(TKWS_FC_ARGS)
{
#define FC_S4(m) tkws_fc_s4_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, FC_S4);
#undef FC_S4
}

void tkws_fc_s2_fast(TKWS_FC_ARGS)
{
#define FC_S2(m) tkws_fc_s2_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, FC_S2);
#undef FC_S2
}
