/* MUL. */
#include "dt_engine.h"
#include "dt_arith.h"

void dt_mul_s8(const dt_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const dt_mul_params q = *p;
  int32_t i;
  for (i = 0; i < q.elements; ++i) {
    const int32_t product = (in1[i] + q.in1_offset) * (in2[i % q.in2_elements] + q.in2_offset);
    out[i] = requantize(product, q.multiplier, q.shift, q.out_offset, q.act_min, q.act_max);
  }
}
