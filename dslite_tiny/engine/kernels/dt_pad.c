/* PAD of height and width. */
#include "dt_engine.h"
#include "dt_arith.h"

void dt_pad_s8(const dt_pad_params *p, const int8_t *in, int8_t *out) {
  const int32_t row = p->in_w * p->c;
  int32_t y;
  memset(out, p->value, (size_t)(p->out_h * p->out_w * p->c));
  for (y = 0; y < p->in_h; ++y) {
    memcpy(&out[((p->top + y) * p->out_w + p->left) * p->c], &in[y * row], (size_t)row);
  }
}
