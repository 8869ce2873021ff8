/* CONCATENATION. */
#include "dt_engine.h"
#include "dt_arith.h"

void dt_concat_s8(int32_t outer, int32_t count, const int8_t *const *in, const int32_t *sizes, int8_t *out) {
  int32_t i, k;
  for (i = 0; i < outer; ++i) {
    for (k = 0; k < count; ++k) {
      memcpy(out, &in[k][i * sizes[k]], (size_t)sizes[k]);
      out += sizes[k];
    }
  }
}
