/* ADD. */
#include "dt_engine.h"
#include "dt_arith.h"

void dt_add_s8(const dt_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const dt_add_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  int32_t i;
  for (i = 0; i < q.elements; ++i) {
    const int32_t a = (int32_t)((uint32_t)(in1[i] + q.in1_offset) << q.left_shift);
    const int32_t b = (int32_t)((uint32_t)(in2[i % q.in2_elements] + q.in2_offset) << q.left_shift);
    const int32_t sum = multiply_by_quantized_multiplier(a, q.in1_multiplier, q.in1_shift) +
                        multiply_by_quantized_multiplier(b, q.in2_multiplier, q.in2_shift);
    out[i] = requantize(sum, q.out_multiplier, q.out_shift, q.out_offset, q.act_min, q.act_max);
  }
}
