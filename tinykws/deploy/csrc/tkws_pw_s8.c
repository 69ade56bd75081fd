/* Pointwise 1x1 CONV_2D int8 without im2col (no padding, any stride): OHWI weights [out_c][in_c],
   bias with the input offset folded in. Two input pixels at a time are widened once to int16
   pairs (SXTB16 order: bytes 0,2 then 1,3 of each 4) and interleaved word by word in scratch
   (pair s of pixel 0, pair s of pixel 1, ...), so one LDRD feeds both pixels; each weight pair
   then serves two pixels with two SMLAD. */
#include "tkws_nn.h"
#include "tkws_gemm.h"
#include "tkws_pw_s8_fast.h"

void tkws_pw_s8_fast(TKWS_CONV_ARGS)
{
#define PW_INT8(m) tkws_pw_s8_fast_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, PW_INT8);
#undef PW_INT8
}

void tkws_pw_s8_fast_wide(TKWS_CONV_ARGS)
{
#define PW_WIDE(m) tkws_pw_s8_fast_wide_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, PW_WIDE);
#undef PW_WIDE
}
