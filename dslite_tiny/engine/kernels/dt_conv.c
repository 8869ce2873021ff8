/* CONV_2D with any window, stride, dilation and padding: a window of up to DT_SMALL_WINDOW values (dt_engine.h)
 * is gathered once per output pixel into the scratch and multiplied as a pointwise convolution's input, a
 * larger one read in place for every output channel. */
#include "dt_engine.h"
#include "dt_dot.h"

/* One output pixel of a convolution, every tap bounds-checked and offset (the reference kernel's sum). A
 * function of its own: inlined into dt_conv_s8 beside the small-window path, its inner loop kept its
 * pointers on the stack (DenseNet121 at 64×64: 1.70 G Cortex-M4 instructions instead of 0.94 G). */
static DT_NOINLINE void conv_pixel(const dt_conv_params *p, const int8_t *in, const int8_t *filter,
                                   const int32_t *bias, const int32_t *multiplier, const int8_t *shift, int32_t oy,
                                   int32_t ox, int8_t *out) {
  const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  int32_t oc, fy, fx, ic;
  for (oc = 0; oc < p->out_c; ++oc) {
    int32_t acc = bias ? bias[oc] : 0;
    for (fy = 0; fy < p->k_h; ++fy) {
      const int32_t y = y0 + p->dil_h * fy;
      if (y < 0 || y >= p->in_h) continue;
      for (fx = 0; fx < p->k_w; ++fx) {
        const int32_t x = x0 + p->dil_w * fx;
        const int8_t *pixel, *weights;
        if (x < 0 || x >= p->in_w) continue;
        pixel = &in[(y * p->in_w + x) * p->in_c];
        weights = &filter[((oc * p->k_h + fy) * p->k_w + fx) * p->in_c];
        for (ic = 0; ic < p->in_c; ++ic) acc += weights[ic] * (pixel[ic] + p->in_offset);
      }
    }
    out[oc] = (int8_t)requantize_values(acc, multiplier[1 + oc], multiplier[0], shift[oc], p->act_min, p->act_max);
  }
}

/* One block of the widened layout (dt_dot.h, widen_blocks): taps a, b, c, d of a block stored as a, c, b, d. */
static inline void store_block(int16_t *s, int32_t a, int32_t b, int32_t c, int32_t d) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ /* two word stores */
  const uint32_t even = (uint16_t)a | (uint32_t)(uint16_t)c << 16, odd = (uint16_t)b | (uint32_t)(uint16_t)d << 16;
  memcpy(s, &even, 4);
  memcpy(s + 2, &odd, 4);
#else
  s[0] = (int16_t)a;
  s[1] = (int16_t)c;
  s[2] = (int16_t)b;
  s[3] = (int16_t)d;
#endif
}

/* Where each tap of a window lies from the window's first input value (rows, columns, channels in order). */
static void window_taps(const dt_conv_params *p, int32_t *taps) {
  int32_t fy, fx, ic, k = 0;
  for (fy = 0; fy < p->k_h; ++fy) {
    for (fx = 0; fx < p->k_w; ++fx) {
      for (ic = 0; ic < p->in_c; ++ic) taps[k++] = (fy * p->dil_h * p->in_w + fx * p->dil_w) * p->in_c + ic;
    }
  }
}

/* The window of output pixel ``pixel`` (raster order), offset, 0 outside the input (what the reference kernel
 * multiplies), as row ``j`` of ``rows`` in the pointwise kernels' widened layout: per block of four taps, the
 * taps as int16, the rows' blocks side by side; taps past the window are zeros to a whole block. A window
 * inside the input goes block by block through ``taps`` (window_taps), four loads and two word stores a
 * block, with no test per tap; one at the border is first gathered tap by tap with its bounds tests. */
static void gather_window(const dt_conv_params *p, const int8_t *in, int32_t pixel, int32_t j, int32_t rows,
                          const int32_t *taps, int16_t *s) {
  const int32_t oy = pixel / p->out_w, ox = pixel - oy * p->out_w, count = p->k_h * p->k_w * p->in_c;
  const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w, offset = p->in_offset;
  int16_t window[DT_SMALL_WINDOW]; /* a multiple of 4 */
  int32_t fy, fx, ic, k = 0;
  s += 4 * j;
  if (y0 >= 0 && x0 >= 0 && y0 + p->dil_h * (p->k_h - 1) < p->in_h && x0 + p->dil_w * (p->k_w - 1) < p->in_w) {
    const int8_t *at = &in[(y0 * p->in_w + x0) * p->in_c];
    for (; k + 4 <= count; k += 4, s += 4 * rows) {
      store_block(s, at[taps[k]] + offset, at[taps[k + 1]] + offset, at[taps[k + 2]] + offset,
                  at[taps[k + 3]] + offset);
    }
    if (k < count) { /* the last block: its taps, then zeros */
      int32_t last[4] = {0, 0, 0, 0}, i;
      for (i = 0; k + i < count; ++i) last[i] = at[taps[k + i]] + offset;
      store_block(s, last[0], last[1], last[2], last[3]);
    }
    return;
  }
  for (fy = 0; fy < p->k_h; ++fy) {
    const int32_t y = y0 + p->dil_h * fy;
    for (fx = 0; fx < p->k_w; ++fx) {
      const int32_t x = x0 + p->dil_w * fx;
      const int inside = y >= 0 && y < p->in_h && x >= 0 && x < p->in_w;
      const int8_t *at = &in[(y * p->in_w + x) * p->in_c];
      for (ic = 0; ic < p->in_c; ++ic) window[k++] = (int16_t)(inside ? at[ic] + offset : 0);
    }
  }
  while (k & 3) window[k++] = 0; /* the last block's zeros */
  for (k = 0; k < count; k += 4, s += 4 * rows) store_block(s, window[k], window[k + 1], window[k + 2], window[k + 3]);
}

/* A convolution whose window has at most DT_SMALL_WINDOW taps (a KWS model's first layer: one input channel,
 * a 3×3 to 10×4 window) as a pointwise one over its windows: four output pixels at a time, their windows
 * gathered into the scratch before any of their outputs is written, then each filter (its taps in order,
 * zeros to whole blocks of four: ops/conv_2d.py, small_window_filters) once for the four, with the
 * pointwise kernels' dense_rows_out. On FSDD's DS-CNN (3×3 taps, 64 filters) 31 Cortex-M4 instructions per
 * output, where a window per pixel, each filter read once per pixel, took 43. */
static void conv_small(const dt_conv_params *q, const int8_t *in, const int8_t *filter, const int32_t *bias,
                       const int32_t *multiplier, const int8_t *shift, int16_t *scratch, int8_t *out) {
  const int32_t pixels = q->out_h * q->out_w, n = q->out_c, blocks = (q->k_h * q->k_w * q->in_c + 3) / 4;
  int32_t i = 0, j, taps[DT_SMALL_WINDOW];
  window_taps(q, taps);
  for (; i + 4 <= pixels; i += 4) {
    for (j = 0; j < 4; ++j) gather_window(q, in, i + j, j, 4, taps, scratch);
    dense_rows_out(scratch, 4, filter, blocks, n, bias, multiplier, shift, q->act_min, q->act_max, &out[i * n]);
  }
  for (; i < pixels; ++i) { /* the last pixels % 4 one by one */
    gather_window(q, in, i, 0, 1, taps, scratch);
    dense_rows_out(scratch, 1, filter, blocks, n, bias, multiplier, shift, q->act_min, q->act_max, &out[i * n]);
  }
}

void dt_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                const int32_t *multiplier, const int8_t *shift, int16_t *scratch, int8_t *out) {
  const dt_conv_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  int32_t oy, ox;
  if (q.k_h * q.k_w * q.in_c <= DT_SMALL_WINDOW) {
    conv_small(&q, in, filter, bias, multiplier, shift, scratch, out);
    return;
  }
  for (oy = 0; oy < q.out_h; ++oy) {
    for (ox = 0; ox < q.out_w; ++ox) {
      conv_pixel(&q, in, filter, bias, multiplier, shift, oy, ox, &out[(oy * q.out_w + ox) * q.out_c]);
    }
  }
}
