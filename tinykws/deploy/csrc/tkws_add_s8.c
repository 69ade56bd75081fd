/* ADD int8 of two same-shape tensors (TFLite Micro's reference_integer_ops::Add): both inputs onto
   a common scale with left_shift bits of headroom, added, rescaled to the output. out may equal
   in1 or in2 (element by element). */
#include "tkws_nn.h"
#include "tkws_support.h"

void tkws_add_s8_ref(const tkws_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out, void *scratch)
{
    (void)scratch;
    for (int32_t i = 0; i < p->size; i++) {
        const int32_t a = (int32_t)((uint32_t)(in1[i] + p->in1_offset) << p->left_shift);
        const int32_t b = (int32_t)((uint32_t)(in2[i] + p->in2_offset) << p->left_shift);
        const int32_t sa = tkws_requantize(a, p->in1_mult, p->in1_shift);
        const int32_t sb = tkws_requantize(b, p->in2_mult, p->in2_shift);
        int32_t v = tkws_requantize(sa + sb, p->out_mult, p->out_shift) + p->out_offset;
        v = v < p->act_min ? p->act_min : v;
        v = v > p->act_max ? p->act_max : v;
        out[i] = (int8_t)v;
    }
}
