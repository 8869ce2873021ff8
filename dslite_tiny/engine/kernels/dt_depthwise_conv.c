/* DEPTHWISE_CONV_2D. */
#include "dt_engine.h"
#include "dt_arith.h"

#if defined(__ARM_FEATURE_DSP)
/* One tap of the window in depthwise3x3_four and depthwise3x3_taps_four: the four channels' inputs (``load``
 * puts them in xv) and weights at w + woff (an offset register, or none). SXTB16 splits each word into
 * channels (0, 2) and (1, 3), and SMLABB / SMLATT multiply lane by lane (a depthwise sum never crosses
 * channels). */
#define DT_DEPTHWISE_MAC(load, woff)                                                                            \
  load                                                                                                         \
  "ldr %[wv], [%[w]" woff "]\n\t"                                                                               \
  "sxtb16 %[xe], %[xv]\n\t"                                                                                    \
  "sxtb16 %[we], %[wv]\n\t"                                                                                    \
  "smlabb %[a0], %[xe], %[we], %[a0]\n\t"                                                                      \
  "smlatt %[a2], %[xe], %[we], %[a2]\n\t"                                                                      \
  "sxtb16 %[xv], %[xv], ror #8\n\t"                                                                            \
  "sxtb16 %[wv], %[wv], ror #8\n\t"                                                                            \
  "smlabb %[a1], %[xv], %[wv], %[a1]\n\t"                                                                      \
  "smlatt %[a3], %[xv], %[wv], %[a3]\n\t"
#define DT_DEPTHWISE_TAP(xoff, woff) DT_DEPTHWISE_MAC("ldr %[xv], [%[x]" xoff "]\n\t", woff)
#define DT_DEPTHWISE_ROW DT_DEPTHWISE_TAP("", "") DT_DEPTHWISE_TAP(", %[c]", ", %[c]") \
  DT_DEPTHWISE_TAP(", %[c], lsl #1", ", %[c], lsl #1")
/* Tap ``t`` of a table of nine input pointers, at channel ch (two loads: the pointer, then the inputs). */
#define DT_DEPTHWISE_TABLE_TAP(t, woff) \
  DT_DEPTHWISE_MAC("ldr %[xv], [%[taps], #" #t " * 4]\n\tldr %[xv], [%[xv], %[ch]]\n\t", woff)
#define DT_DEPTHWISE_TABLE_ROW(t0, t1, t2) DT_DEPTHWISE_TABLE_TAP(t0, "") DT_DEPTHWISE_TABLE_TAP(t1, ", %[c]") \
  DT_DEPTHWISE_TABLE_TAP(t2, ", %[c], lsl #1")

/* *a0..*a3 += the 3×3 window of four adjacent channels, inside the input (offset folded): one block of
 * assembly, 10 instructions a tap (two LDR, four SXTB16, four SMLAxx) with the four sums, both pointers and
 * the two strides in registers, where GCC's code for the same loop kept some of them on the stack (~150
 * instructions for the window instead of 96). With depthwise3x3_taps_four on the border and
 * requantize_adjacent4, FSDD's DS-CNN's depthwise layers went from 59 to 44 Cortex-M4 instructions per
 * output. The "memory" clobber keeps the stores of earlier pixels, which may overlap this input
 * (engine.plan), before it. */
static inline void depthwise3x3_four(const int8_t *x, int32_t row, int32_t c, const int8_t *w, int32_t *a0,
                                     int32_t *a1, int32_t *a2, int32_t *a3) {
  int32_t b0 = *a0, b1 = *a1, b2 = *a2, b3 = *a3;
  uint32_t xv, wv, xe, we;
  __asm__(DT_DEPTHWISE_ROW
          "add %[x], %[x], %[row]\n\t"
          "add %[w], %[w], %[c], lsl #1\n\t"
          "add %[w], %[w], %[c]\n\t"
          DT_DEPTHWISE_ROW
          "add %[x], %[x], %[row]\n\t"
          "add %[w], %[w], %[c], lsl #1\n\t"
          "add %[w], %[w], %[c]\n\t"
          DT_DEPTHWISE_ROW
          : [a0] "+r"(b0), [a1] "+r"(b1), [a2] "+r"(b2), [a3] "+r"(b3), [x] "+r"(x), [w] "+r"(w),
            [xv] "=&r"(xv), [wv] "=&r"(wv), [xe] "=&r"(xe), [we] "=&r"(we)
          : [c] "r"(c), [row] "r"(row)
          : "memory");
  *a0 = b0;
  *a1 = b1;
  *a2 = b2;
  *a3 = b3;
}

/* depthwise3x3_four for a window that leaves the input: the nine taps' input pointers come from a table
 * (a tap outside points at the input zero point, ``zeros`` of dt_depthwise_conv_s8), 11 instructions a tap. */
static inline void depthwise3x3_taps_four(const int8_t *const taps[9], int32_t ch, int32_t c, const int8_t *w,
                                          int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3) {
  int32_t b0 = *a0, b1 = *a1, b2 = *a2, b3 = *a3;
  uint32_t xv, wv, xe, we;
  __asm__(DT_DEPTHWISE_TABLE_ROW(0, 1, 2)
          "add %[w], %[w], %[c], lsl #1\n\t"
          "add %[w], %[w], %[c]\n\t"
          DT_DEPTHWISE_TABLE_ROW(3, 4, 5)
          "add %[w], %[w], %[c], lsl #1\n\t"
          "add %[w], %[w], %[c]\n\t"
          DT_DEPTHWISE_TABLE_ROW(6, 7, 8)
          : [a0] "+r"(b0), [a1] "+r"(b1), [a2] "+r"(b2), [a3] "+r"(b3), [w] "+r"(w),
            [xv] "=&r"(xv), [wv] "=&r"(wv), [xe] "=&r"(xe), [we] "=&r"(we)
          : [taps] "r"(taps), [ch] "r"(ch), [c] "r"(c)
          : "memory");
  *a0 = b0;
  *a1 = b1;
  *a2 = b2;
  *a3 = b3;
}
#endif

/* One output pixel of a 3×3 depthwise convolution (dilation 1, depth multiplier 1) whose window, from x, lies
 * inside the input. */
static DT_NOINLINE void depthwise3x3_inside(const dt_conv_params *q, const int8_t *x, const int8_t *filter,
                                            const int32_t *folded_bias, const int32_t *multiplier,
                                            const int8_t *shift, int8_t *pixel) {
  const int32_t c = q->in_c, row = q->in_w * c, c2 = 2 * c, low = q->act_min, high = q->act_max;
  const int32_t base = multiplier[0], *mul = multiplier + 1;
  const int8_t *x1 = x + row, *x2 = x1 + row;
  int32_t ch = 0;
#if defined(__ARM_FEATURE_DSP)
  for (; ch + 4 <= c; ch += 4) {
    int32_t a0 = folded_bias[ch], a1 = folded_bias[ch + 1], a2 = folded_bias[ch + 2], a3 = folded_bias[ch + 3];
    depthwise3x3_four(&x[ch], row, c, &filter[ch], &a0, &a1, &a2, &a3);
    requantize_adjacent4(a0, a1, a2, a3, &mul[ch], base, &shift[ch], low, high, &pixel[ch]);
  }
#endif
  for (; ch < c; ++ch) {
    const int8_t *w = &filter[ch];
    int32_t acc = folded_bias[ch];
    acc += w[0] * x[ch] + w[c] * x[ch + c] + w[c2] * x[ch + c2];
    acc += w[3 * c] * x1[ch] + w[4 * c] * x1[ch + c] + w[5 * c] * x1[ch + c2];
    acc += w[6 * c] * x2[ch] + w[7 * c] * x2[ch + c] + w[8 * c] * x2[ch + c2];
    pixel[ch] = (int8_t)requantize_values(acc, mul[ch], base, shift[ch], low, high);
  }
}

/* One output pixel of a 3×3 depthwise convolution (stride any, dilation 1, depth multiplier 1) whose window
 * leaves the input: a tap outside reads ``zeros``, the input zero point (raw value -in_offset) in every
 * channel, so that with the folded bias it adds exactly nothing, as the reference kernel's skipped taps; the
 * border then runs the interior's four-channel products from a table of tap pointers. */
static DT_NOINLINE void depthwise3x3_edge(const dt_conv_params *q, const int8_t *in, const int8_t *filter,
                                          const int32_t *folded_bias, const int32_t *multiplier,
                                          const int8_t *shift, const int8_t *zeros, int32_t y0, int32_t x0,
                                          int8_t *pixel) {
  const int32_t base = multiplier[0], *mul = multiplier + 1; /* read once: int8 stores may alias them */
  const int32_t c = q->in_c, row = q->in_w * c;
  const int8_t *tap[9];
  int32_t ch = 0, t, j;
  for (t = 0; t < 9; ++t) { /* each tap's input pixel, or the zero point outside */
    const int32_t y = y0 + t / 3, x = x0 + t % 3;
    tap[t] = y >= 0 && y < q->in_h && x >= 0 && x < q->in_w ? &in[y * row + x * c] : zeros;
  }
#if defined(__ARM_FEATURE_DSP)
  for (; ch + 4 <= c; ch += 4) {
    int32_t a0 = folded_bias[ch], a1 = folded_bias[ch + 1], a2 = folded_bias[ch + 2], a3 = folded_bias[ch + 3];
    depthwise3x3_taps_four(tap, ch, c, &filter[ch], &a0, &a1, &a2, &a3);
    requantize_adjacent4(a0, a1, a2, a3, &mul[ch], base, &shift[ch], q->act_min, q->act_max, &pixel[ch]);
  }
#endif
  for (; ch < c; ++ch) {
    int32_t acc = folded_bias[ch];
    for (j = 0; j < 9; ++j) acc += filter[j * c + ch] * tap[j][ch];
    pixel[ch] = (int8_t)requantize_values(acc, mul[ch], base, shift[ch], q->act_min, q->act_max);
  }
}

/* The taps [*first, *last) of a filter axis whose input index origin + dilation * tap lies in [0, size):
 * one contiguous range, so a border pixel's loops need no per-tap check. */
static void taps_inside(int32_t origin, int32_t dilation, int32_t taps, int32_t size, int32_t *first, int32_t *last) {
  int32_t a = 0, b = taps;
  while (a < taps && origin + dilation * a < 0) ++a;
  while (b > a && origin + dilation * (b - 1) >= size) --b;
  *first = a;
  *last = b;
}

/* One output pixel of a depthwise convolution whose window may leave the input (or whose depth multiplier is
 * not 1): the folded bias, the taps inside the input raw, and each tap outside minus the input offset times
 * its weight, which takes back the folded bias's share of a tap the reference kernel skips. */
static void depthwise_pixel(const dt_conv_params *p, const int8_t *in, const int8_t *filter,
                            const int32_t *folded_bias, const int32_t *multiplier, const int8_t *shift, int32_t oy,
                            int32_t ox, int8_t *out) {
  const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  const int32_t in_offset = p->in_offset, in_c = p->in_c, out_c = p->out_c, dm = p->depth_multiplier;
  int32_t oc, fy, fx, fy0, fy1, fx0, fx1;
  taps_inside(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
  taps_inside(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
  for (oc = 0; oc < out_c; ++oc) {
    const int8_t *x = &in[oc / dm];
    int32_t acc = folded_bias[oc];
    for (fy = 0; fy < p->k_h; ++fy) {
      const int8_t *w = &filter[fy * p->k_w * out_c + oc];
      for (fx = 0; fx < p->k_w; ++fx) {
        const int inside = fy >= fy0 && fy < fy1 && fx >= fx0 && fx < fx1;
        const int32_t y = y0 + p->dil_h * fy, xx = x0 + p->dil_w * fx;
        acc += w[fx * out_c] * (inside ? x[(y * p->in_w + xx) * in_c] : -in_offset);
      }
    }
    out[oc] = (int8_t)requantize_values(acc, multiplier[1 + oc], multiplier[0], shift[oc], p->act_min, p->act_max);
  }
}

void dt_depthwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *folded_bias,
                          const int32_t *multiplier, const int8_t *shift, int8_t *zeros, int8_t *out) {
  const int32_t base = multiplier[0], *mul = multiplier + 1; /* read once: int8 stores may alias them */
  const dt_conv_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  const int32_t c = q.in_c, row = q.in_w * q.in_c;
  const int32_t span_h = (q.k_h - 1) * q.dil_h, span_w = (q.k_w - 1) * q.dil_w;
  int32_t oy, ox, ch, fy, fx;
  if (zeros != NULL) memset(zeros, -q.in_offset, (size_t)c);
  for (oy = 0; oy < q.out_h; ++oy) {
    const int32_t y0 = oy * q.stride_h - q.pad_h;
    for (ox = 0; ox < q.out_w; ++ox) {
      const int32_t x0 = ox * q.stride_w - q.pad_w;
      int8_t *pixel = &out[(oy * q.out_w + ox) * q.out_c];
      const int unrolled = q.k_h == 3 && q.k_w == 3 && q.dil_h == 1 && q.dil_w == 1 && q.depth_multiplier == 1;
      if (y0 < 0 || x0 < 0 || y0 + span_h >= q.in_h || x0 + span_w >= q.in_w || q.depth_multiplier != 1) {
        if (unrolled) {
          depthwise3x3_edge(&q, in, filter, folded_bias, multiplier, shift, zeros, y0, x0, pixel);
        } else {
          depthwise_pixel(&q, in, filter, folded_bias, multiplier, shift, oy, ox, pixel);
        }
        continue;
      }
      if (unrolled) { /* the common case */
        depthwise3x3_inside(&q, &in[y0 * row + x0 * c], filter, folded_bias, multiplier, shift, pixel);
      } else { /* the window lies inside the input: the offset's share is in folded_bias */
        const int8_t *corner = &in[y0 * row + x0 * c];
        for (ch = 0; ch < c; ++ch) {
          int32_t acc = folded_bias[ch];
          for (fy = 0; fy < q.k_h; ++fy) {
            const int8_t *x = &corner[fy * q.dil_h * row + ch];
            const int8_t *w = &filter[fy * q.k_w * c + ch];
            for (fx = 0; fx < q.k_w; ++fx) acc += w[fx * c] * x[fx * q.dil_w * c];
          }
          pixel[ch] = (int8_t)requantize_values(acc, mul[ch], base, shift[ch], q.act_min, q.act_max);
        }
      }
    }
  }
}
