/* MEAN over height and width. */
#include "dt_engine.h"
#include "dt_arith.h"

void dt_mean_hw_s8(const dt_mean_params *p, const int8_t *in, int8_t *out) {
  const int32_t count = p->h * p->w;
  int32_t c, i;
  for (c = 0; c < p->c; ++c) {
    int32_t sum = 0;
    for (i = 0; i < count; ++i) sum += in[i * p->c + c];
    sum -= p->in_zero_point * count;
    out[c] = (int8_t)clamp(multiply_by_quantized_multiplier(sum, p->multiplier, p->shift) + p->out_zero_point,
                           INT8_MIN, INT8_MAX);
  }
}
