/* CONV_2D with any window, stride, dilation and padding: a window of up to DT_SMALL_WINDOW values (dt_engine.h)
 * is gathered once per output pixel, a larger one read in place for every output channel. */
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
    out[oc] = requantize(acc, multiplier[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
  }
}

/* The window of output pixel (oy, ox), offset, 0 outside the input: what the reference kernel multiplies. */
static void gather_window(const dt_conv_params *p, const int8_t *in, int32_t oy, int32_t ox, int32_t *window) {
  const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  int32_t fy, fx, ic, k = 0;
  for (fy = 0; fy < p->k_h; ++fy) {
    const int32_t y = y0 + p->dil_h * fy;
    for (fx = 0; fx < p->k_w; ++fx) {
      const int32_t x = x0 + p->dil_w * fx;
      const int inside = y >= 0 && y < p->in_h && x >= 0 && x < p->in_w;
      for (ic = 0; ic < p->in_c; ++ic) window[k++] = inside ? in[(y * p->in_w + x) * p->in_c + ic] + p->in_offset : 0;
    }
  }
}

/* One output pixel of a convolution with a small window: the window is gathered once and each output
 * channel is a dot product with its weights, four channels at a time (each window value loaded once). */
static void conv_pixel_small(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                             const int32_t *multiplier, const int8_t *shift, int32_t oy, int32_t ox, int8_t *out) {
  const int32_t taps = p->k_h * p->k_w * p->in_c;
  int32_t window[DT_SMALL_WINDOW];
  int32_t oc = 0, k;
  gather_window(p, in, oy, ox, window);
  for (; oc + 4 <= p->out_c; oc += 4) {
    const int8_t *w0 = &filter[oc * taps], *w1 = w0 + taps, *w2 = w1 + taps, *w3 = w2 + taps;
    int32_t a0 = bias ? bias[oc] : 0, a1 = bias ? bias[oc + 1] : 0, a2 = bias ? bias[oc + 2] : 0;
    int32_t a3 = bias ? bias[oc + 3] : 0;
    for (k = 0; k < taps; ++k) {
      const int32_t v = window[k];
      a0 += w0[k] * v;
      a1 += w1[k] * v;
      a2 += w2[k] * v;
      a3 += w3[k] * v;
    }
    out[oc] = requantize(a0, multiplier[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
    out[oc + 1] = requantize(a1, multiplier[oc + 1], shift[oc + 1], p->out_offset, p->act_min, p->act_max);
    out[oc + 2] = requantize(a2, multiplier[oc + 2], shift[oc + 2], p->out_offset, p->act_min, p->act_max);
    out[oc + 3] = requantize(a3, multiplier[oc + 3], shift[oc + 3], p->out_offset, p->act_min, p->act_max);
  }
  for (; oc < p->out_c; ++oc) {
    const int8_t *w = &filter[oc * taps];
    int32_t acc = bias ? bias[oc] : 0;
    for (k = 0; k < taps; ++k) acc += w[k] * window[k];
    out[oc] = requantize(acc, multiplier[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
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
