/* CONV_2D with any window, stride, dilation and padding: a window of up to DT_SMALL_WINDOW values (dt_engine.h)
 * is gathered once per output pixel (its filters stored for it, see stored_tap), a larger one read in place
 * for every output channel. */
#include "dt_engine.h"
#include "dt_arith.h"

/* One output pixel of a convolution, every tap bounds-checked and offset (the reference kernel's sum). */
static void conv_pixel(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                       const int32_t *multiplier, const int8_t *shift, int32_t oy, int32_t ox, int8_t *out) {
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
    out[oc] = requantize_channel(acc, &multiplier[2 * oc], shift[oc], p->act_min, p->act_max);
  }
}

/* A small window's filters, as the generator stores them (ops/conv_2d.py, small_window_filters): taps padded
 * with zeros to whole blocks of four, and within a block in the order 0, 2, 1, 3, so that SXTB16 of a word
 * pairs taps (0, 1) and (2, 3) as the gathered int16 window holds them (two products per SMLAD); filters in
 * groups of four, per block the four filters' words side by side (one pointer walks them); the last
 * out_c % 4 filters one after the other. stored_tap(k) is where tap k of a block sits (its own inverse). */
static inline int32_t stored_tap(int32_t k) { return ((k & 1) << 1) | ((k >> 1) & 1); }

/* The window of output pixel (oy, ox), offset, 0 outside the input (what the reference kernel multiplies),
 * widened to int16, then zeros to whole blocks of four. A window inside the input reads whole rows without a
 * test per tap (a tenth of the demo's first convolution went to those tests). */
static void gather_window(const dt_conv_params *p, const int8_t *in, int32_t oy, int32_t ox, int32_t padded,
                          int16_t *window) {
  const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  int32_t fy, fx, ic, k = 0;
  if (y0 >= 0 && x0 >= 0 && y0 + p->dil_h * (p->k_h - 1) < p->in_h && x0 + p->dil_w * (p->k_w - 1) < p->in_w
      && p->dil_w == 1) {
    const int32_t taps = p->k_w * p->in_c, offset = p->in_offset;
    const int8_t *row = &in[(y0 * p->in_w + x0) * p->in_c];
    for (fy = 0; fy < p->k_h; ++fy, row += p->dil_h * p->in_w * p->in_c) {
      for (ic = 0; ic < taps; ++ic) window[k++] = (int16_t)(row[ic] + offset);
    }
    while (k < padded) window[k++] = 0;
    return;
  }
  for (fy = 0; fy < p->k_h; ++fy) {
    const int32_t y = y0 + p->dil_h * fy;
    for (fx = 0; fx < p->k_w; ++fx) {
      const int32_t x = x0 + p->dil_w * fx;
      const int inside = y >= 0 && y < p->in_h && x >= 0 && x < p->in_w;
      const int8_t *pixel = &in[(y * p->in_w + x) * p->in_c];
      for (ic = 0; ic < p->in_c; ++ic) window[k++] = (int16_t)(inside ? pixel[ic] + p->in_offset : 0);
    }
  }
  while (k < padded) window[k++] = 0;
}

/* acc[j] += filter j · window for a group of four filters (``blocks`` blocks of 16 stored weights). */
static inline void window_dot4(const int16_t *window, const int8_t *w, int32_t blocks, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], b;
  for (b = 0; b < blocks; ++b, window += 4, w += 16) {
#if defined(__ARM_FEATURE_DSP)
    int32_t x[2];
    uint32_t wv;
    memcpy(x, window, 8);
    wv = load4(w);
    a0 = __smlad(sxtb16_odd(wv), x[1], __smlad(__sxtb16(wv), x[0], a0));
    wv = load4(w + 4);
    a1 = __smlad(sxtb16_odd(wv), x[1], __smlad(__sxtb16(wv), x[0], a1));
    wv = load4(w + 8);
    a2 = __smlad(sxtb16_odd(wv), x[1], __smlad(__sxtb16(wv), x[0], a2));
    wv = load4(w + 12);
    a3 = __smlad(sxtb16_odd(wv), x[1], __smlad(__sxtb16(wv), x[0], a3));
#else
    int32_t t;
    for (t = 0; t < 4; ++t) {
      const int32_t v = window[t], at = stored_tap(t);
      a0 += w[at] * v;
      a1 += w[4 + at] * v;
      a2 += w[8 + at] * v;
      a3 += w[12 + at] * v;
    }
#endif
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* acc + one filter (``blocks`` blocks of 4 stored weights) · window. */
static inline int32_t window_dot1(const int16_t *window, const int8_t *w, int32_t blocks, int32_t acc) {
  int32_t b, t;
  for (b = 0; b < blocks; ++b, window += 4, w += 4) {
    for (t = 0; t < 4; ++t) acc += w[stored_tap(t)] * window[t];
  }
  return acc;
}

/* One output pixel of a convolution with a small window: the window is gathered once and the output
 * channels are dot products with it, four filters at a time. */
static void conv_pixel_small(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                             const int32_t *multiplier, const int8_t *shift, int32_t oy, int32_t ox, int8_t *out) {
  const int32_t blocks = (p->k_h * p->k_w * p->in_c + 3) / 4, groups = p->out_c / 4;
  int16_t window[DT_SMALL_WINDOW];
  int32_t g, oc;
  gather_window(p, in, oy, ox, 4 * blocks, window);
  for (g = 0; g < groups; ++g) {
    int32_t acc[4];
    oc = 4 * g;
    acc[0] = bias ? bias[oc] : 0;
    acc[1] = bias ? bias[oc + 1] : 0;
    acc[2] = bias ? bias[oc + 2] : 0;
    acc[3] = bias ? bias[oc + 3] : 0;
    window_dot4(window, &filter[16 * blocks * g], blocks, acc);
    out[oc] = requantize_channel(acc[0], &multiplier[2 * oc], shift[oc], p->act_min, p->act_max);
    out[oc + 1] = requantize_channel(acc[1], &multiplier[2 * (oc + 1)], shift[oc + 1], p->act_min, p->act_max);
    out[oc + 2] = requantize_channel(acc[2], &multiplier[2 * (oc + 2)], shift[oc + 2], p->act_min, p->act_max);
    out[oc + 3] = requantize_channel(acc[3], &multiplier[2 * (oc + 3)], shift[oc + 3], p->act_min, p->act_max);
  }
  for (oc = 4 * groups; oc < p->out_c; ++oc) {
    const int32_t acc = window_dot1(window, &filter[4 * blocks * oc], blocks, bias ? bias[oc] : 0);
    out[oc] = requantize_channel(acc, &multiplier[2 * oc], shift[oc], p->act_min, p->act_max);
  }
}

void dt_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                const int32_t *multiplier, const int8_t *shift, int8_t *out) {
  const dt_conv_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  const int small = q.k_h * q.k_w * q.in_c <= DT_SMALL_WINDOW;
  int32_t oy, ox;
  for (oy = 0; oy < q.out_h; ++oy) {
    for (ox = 0; ox < q.out_w; ++ox) {
      int8_t *pixel = &out[(oy * q.out_w + ox) * q.out_c];
      if (small) {
        conv_pixel_small(&q, in, filter, bias, multiplier, shift, oy, ox, pixel);
      } else {
        conv_pixel(&q, in, filter, bias, multiplier, shift, oy, ox, pixel);
      }
    }
  }
}
