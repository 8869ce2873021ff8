/* FULLY_CONNECTED, dense or block-sparse weights. */
#include "dt_engine.h"
#include "dt_dot.h"

void dt_fully_connected_s8(const dt_fc_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                           const int32_t *multiplier, const int8_t *shift, int8_t *out) {
  rows_s8(in, filter, p->depth, p->out_c, bias, multiplier, shift, p->per_channel, p->act_min, p->act_max,
          out);
}

void dt_fully_connected_sparse_s8(const dt_fc_params *p, const int8_t *in, const uint16_t *mask,
                                  const int8_t *values, const int32_t *bias, const int32_t *multiplier,
                                  const int8_t *shift, int16_t *scratch, int8_t *out) {
  sparse_rows_s8(in, mask, values, p->depth, p->out_c, bias, multiplier, shift, p->per_channel, p->act_min,
                 p->act_max, scratch, out);
}
