/* Pointwise 1x1 CONV_2D (no padding, any stride) with sub-byte packed weights (4 or 2 bits,
   layout in tkws_subbyte.h), no im2col: four pixels widened once, each packed word unpacked to
   int16 pairs once for four pixels (SXTB16/SMLAD). Bias folded. */
#include "tkws_nn.h"
#include "tkws_subbyte.h"

void tkws_pw_s4_fast(TKWS_CONV_ARGS)
{
#define PW_S4(m) tkws_pw_s4_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, PW_S4);
#undef PW_S4
}

void tkws_pw_s2_fast(TKWS_CONV_ARGS)
{
#define PW_S2(m) tkws_pw_s2_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, PW_S2);
#undef PW_S2
}
