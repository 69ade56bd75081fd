/* Sparse pointwise kernels (zero-skip in both loop orders, block-sparse 1x4 and 1x8 SIMD): the bodies and
   the compressed weight formats are in tkws_pw_s8_sparse.h. */
#include "tkws_nn.h"
#include "tkws_pw_s8_sparse.h"

void tkws_pw_s8_sparse(TKWS_CONV_ARGS)
{
#define PW_SP(m) tkws_pw_s8_sparse_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, PW_SP);
#undef PW_SP
}

void tkws_pw_s8_sparse_wo(TKWS_CONV_ARGS)
{
#define PW_SPWO(m) tkws_pw_s8_sparse_wo_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, PW_SPWO);
#undef PW_SPWO
}

void tkws_pw_s8_block4(TKWS_CONV_ARGS)
{
#define PW_B4(m) tkws_pw_s8_block4_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, PW_B4);
#undef PW_B4
}

void tkws_pw_s8_block8(TKWS_CONV_ARGS)
{
#define PW_B8(m) tkws_pw_s8_block8_body(p, in, w, bias, mult, shift, out, scratch, m)
    TKWS_RQ_DISPATCH(p->requant, PW_B8);
#undef PW_B8
}
