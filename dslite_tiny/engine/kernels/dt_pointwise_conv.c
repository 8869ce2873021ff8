/* CONV_2D with a 1×1 window, stride 1 and no padding: four pixels at a time widened to int16 in a scratch
 * (dense weights where in_c is a multiple of 4, and block-sparse weights), else dense weights two pixels by
 * two output channels at a time. */
#include "dt_engine.h"
#include "dt_dot.h"

/* Four pixels at a time, widened into the scratch before any of their outputs is written, each output
 * channel's weights once for the four (the sparse kernel's order, and its overlap rule). */
static void pointwise_widened(const dt_conv_params *q, const int8_t *in, const int8_t *filter, const int32_t *bias,
                              const int32_t *multiplier, const int8_t *shift, int16_t *scratch, int8_t *out) {
  const int32_t pixels = q->out_h * q->out_w, c = q->in_c, n = q->out_c;
  int32_t i = 0;
  for (; i + 4 <= pixels; i += 4) {
    widen_blocks(&in[i * c], c, 4, scratch);
    dense_rows_out(scratch, 4, filter, c / 4, n, bias, multiplier, shift, q->act_min, q->act_max, &out[i * n]);
  }
  for (; i < pixels; ++i) { /* the last pixels % 4 one by one, each widened before its outputs are written */
    widen_blocks(&in[i * c], c, 1, scratch);
    dense_rows_out(scratch, 1, filter, c / 4, n, bias, multiplier, shift, q->act_min, q->act_max, &out[i * n]);
  }
}

void dt_pointwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                          const int32_t *multiplier, const int8_t *shift, int16_t *scratch, int8_t *out) {
  const int32_t base = multiplier[0], *mul = multiplier + 1; /* read once: int8 stores may alias them */
  const dt_conv_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  const int32_t pixels = q.out_h * q.out_w, c = q.in_c, n = q.out_c;
  int32_t i = 0, oc;
  if (scratch != NULL) { /* the generator gives a scratch where in_c is a multiple of 4 */
    pointwise_widened(&q, in, filter, bias, multiplier, shift, scratch, out);
    return;
  }
  for (; i + 2 <= pixels; i += 2) { /* two pixels by two output channels at a time */
    const int8_t *x0 = &in[i * c], *x1 = x0 + c;
    int8_t *y0 = &out[i * n], *y1 = y0 + n;
    for (oc = 0; oc + 2 <= n; oc += 2) {
      int32_t acc[4];
      acc[0] = acc[2] = bias[oc];
      acc[1] = acc[3] = bias[oc + 1];
      dot2x2(x0, x1, &filter[oc * c], &filter[(oc + 1) * c], c, acc);
      y0[oc] = (int8_t)requantize_values(acc[0], mul[oc], base, shift[oc], q.act_min, q.act_max);
      y0[oc + 1] = (int8_t)requantize_values(acc[1], mul[oc + 1], base, shift[oc + 1], q.act_min, q.act_max);
      y1[oc] = (int8_t)requantize_values(acc[2], mul[oc], base, shift[oc], q.act_min, q.act_max);
      y1[oc + 1] = (int8_t)requantize_values(acc[3], mul[oc + 1], base, shift[oc + 1], q.act_min, q.act_max);
    }
    for (; oc < n; ++oc) {
      y0[oc] = (int8_t)requantize_values(bias[oc] + dot1(x0, &filter[oc * c], c), mul[oc], base, shift[oc],
                                          q.act_min, q.act_max);
      y1[oc] = (int8_t)requantize_values(bias[oc] + dot1(x1, &filter[oc * c], c), mul[oc], base, shift[oc],
                                          q.act_min, q.act_max);
    }
  }
  for (; i < pixels; ++i) {
    rows_s8(&in[i * q.in_c], filter, q.in_c, q.out_c, bias, multiplier, shift, 1, q.act_min,
            q.act_max, &out[i * q.out_c]);
  }
}

/* The sparse kernel's outputs of four widened pixels: each output channel's kept blocks once for the four,
 * every per-channel pointer walked (as dense_rows_out). */
static DT_NOINLINE void sparse_rows_out4(const int16_t *s, const uint16_t *mask, int32_t words, const int8_t *w,
                                         int32_t n, const int32_t *bias, const int32_t *multiplier,
                                         const int8_t *code, int32_t low, int32_t high, int8_t *y) {
  const int32_t base = multiplier[0], *m = multiplier + 1;
  const int8_t *end = y + n;
  for (; y != end; ++y, ++bias, ++m, ++code, mask += words) {
    int32_t acc[4];
    acc[0] = acc[1] = acc[2] = acc[3] = *bias;
    w = sparse_dot4(s, mask, words, w, acc);
    requantize4(acc, *m, base, *code, low, high, y, n);
  }
}

void dt_pointwise_conv_sparse_s8(const dt_conv_params *p, const int8_t *in, const uint16_t *mask,
                                 const int8_t *values, const int32_t *bias, const int32_t *multiplier,
                                 const int8_t *shift, int16_t *scratch, int8_t *out) {
  const dt_conv_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  const int32_t pixels = q.out_h * q.out_w, c = q.in_c, n = q.out_c, words = (c / 4 + 15) / 16;
  int32_t i = 0;
  /* Four pixels at a time, widened into the scratch before any of their outputs is written. */
  for (; i + 4 <= pixels; i += 4) {
    widen_blocks(&in[i * c], c, 4, scratch);
    sparse_rows_out4(scratch, mask, words, values, n, bias, multiplier, shift, q.act_min, q.act_max, &out[i * n]);
  }
  for (; i < pixels; ++i) {
    sparse_rows_s8(&in[i * c], mask, values, c, n, bias, multiplier, shift, 1, q.act_min, q.act_max,
                   scratch, &out[i * n]);
  }
}
