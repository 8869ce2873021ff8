/* LEAKY_RELU. */
#include "dt_engine.h"
#include "dt_arith.h"

void dt_leaky_relu_s8(const dt_leaky_relu_params *p, const int8_t *in, int8_t *out) {
  const int negative_alpha = p->alpha_multiplier < 0;
  const int32_t alpha = negative_alpha ? -p->alpha_multiplier : p->alpha_multiplier;
  int32_t i;
  for (i = 0; i < p->elements; ++i) {
    const int32_t value = in[i] - p->in_zero_point;
    int32_t result = p->out_zero_point;
    if (value >= 0) {
      result += multiply_by_quantized_multiplier(value, p->identity_multiplier, p->identity_shift);
    } else {
      const int32_t scaled = multiply_by_quantized_multiplier(value, alpha, p->alpha_shift);
      result += negative_alpha ? -scaled : scaled;
    }
    out[i] = (int8_t)clamp(result, INT8_MIN, INT8_MAX);
  }
}
