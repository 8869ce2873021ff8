/* See dt_engine.h. The fixed-point helpers are gemmlowp's (SaturatingRoundingDoublingHighMul,
 * RoundingDivideByPOT, the exp and reciprocal of its FixedPoint class) as TFLite's int8 kernels use them;
 * additions that gemmlowp lets wrap go through uint32_t so that C does not call them undefined.
 *
 * Integer sums are exact, so neither the order of accumulation nor where the input offset is added changes
 * a result: the generator folds the input offset into the bias wherever every tap of a window is inside
 * the input (pointwise convolutions, fully connected layers, the interior of depthwise convolutions), and
 * the kernels then multiply raw int8 values. On a core with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4,
 * M7, M33 with DSP) the dot products take four bytes per load and two products per SMLAD instruction (a
 * depthwise window four channels per load, one SMLABB / SMLATT per product) and a requantization is one
 * SMLAL sum; the portable C computes the same integers. */
#include "dt_engine.h"

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

#if defined(__GNUC__)
#define DT_UNLIKELY(condition) __builtin_expect(!!(condition), 0) /* kept out of the hot path's straight line */
#else
#define DT_UNLIKELY(condition) (condition)
#endif

#define DT_SMALL_WINDOW 32 /* a convolution window of up to this many values is gathered per output pixel */

static int32_t wrapping_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static int32_t wrapping_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

static int32_t clamp(int32_t x, int32_t low, int32_t high) { return x < low ? low : (x > high ? high : x); }

/* gemmlowp SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32, rounded to nearest (VQRDMULH). gemmlowp
 * adds 2^30 or 1 - 2^30 by the product's sign and divides by 2^31 towards zero; adding 2^30 and shifting
 * (flooring) gives the same integer for every product, in one multiply-accumulate (as CMSIS-NN does). */
static inline int32_t srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * (int64_t)b + (1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent (0..31), rounded to nearest, ties away from zero. */
static inline int32_t rounding_divide_by_pot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)((UINT32_C(1) << exponent) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent: a saturating left shift. */
static int32_t saturating_shift_left(int32_t x, int32_t exponent) {
  const int32_t threshold = (int32_t)((UINT32_C(1) << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return (int32_t)((uint32_t)x << exponent);
}

static inline int32_t multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return rounding_divide_by_pot(srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

/* multiply_by_quantized_multiplier for a multiplier in [0, 2^31), as every requantization has (TFLite's
 * QuantizeMultiplier never gives 2^31, so the doubling high multiply cannot saturate). For a right shift e
 * >= 1 the two roundings are one 64-bit sum, P = x * multiplier:
 *   RoundingDivideByPOT(floor((P + 2^30) / 2^31), e) = floor((P + 2^30 - [x < 0] 2^31 + 2^(30+e)) / 2^(31+e)),
 * because floor(floor(a / b) / c) = floor(a / (b c)), an integer added inside the inner floor may move in
 * scaled by b, and ties away from zero add 2^(e-1) - [srdhm < 0]; [x < 0] may stand for [srdhm < 0] as
 * both give 0 when P is in [-2^30, 0). The high word of that sum shifted right by e - 1 is the result: one
 * SMLAL and two additions on a Cortex-M4 instead of gemmlowp's mask, compare and add (a test compares both
 * paths with gemmlowp's arithmetic on random and extreme values). */
static inline int32_t scale_by_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
  if (DT_UNLIKELY(shift >= 0)) { /* a scale of 1 or more: no right shift, the doubling high multiply alone */
    return (int32_t)(((int64_t)(int32_t)((uint32_t)x << shift) * multiplier + (1 << 30)) >> 31);
  }
  {
    const int32_t r = -shift - 1; /* e - 1, 0..30 */
    const uint32_t t = UINT32_C(1) << r;
#if defined(__ARM_FEATURE_DSP)
    int32_t hi = x >> 31;
    uint32_t lo = UINT32_C(0x40000000) + ((uint32_t)hi << 31); /* 2^30 - [x < 0] 2^31 */
    __asm__("smlal %0, %1, %2, %3\n\t"
            "adds %0, %0, %4, lsl #31\n\t" /* + 2^(30+e) = t * 2^31 */
            "adc %1, %1, %4, lsr #1"
            : "+&r"(lo), "+&r"(hi)
            : "r"(x), "r"(multiplier), "r"(t)
            : "cc");
    return hi >> r;
#else
    const int64_t sum = (int64_t)x * multiplier + (INT64_C(1) << 30) - (x < 0 ? INT64_C(1) << 31 : 0) +
                        ((int64_t)t << 31);
    return (int32_t)(sum >> (r + 32));
#endif
  }
}

static inline int8_t requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t out_offset, int32_t low,
                                int32_t high) {
  return (int8_t)clamp(scale_by_multiplier(acc, multiplier, shift) + out_offset, low, high);
}

#if defined(__ARM_FEATURE_DSP)
static uint32_t load4(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4); /* one LDR: a Cortex-M4 loads unaligned words */
  return v;
}

/* Bytes 1 and 3 sign-extended to two int16 (SXTB16 with its ROR #8 operand, which GCC does not fuse). */
static inline int32_t sxtb16_odd(uint32_t v) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
#endif

/* acc[r] += Σ_k w[r * stride + k] · x[k] for the four rows r of w (int8 · int8: offsets already folded). */
static void dot4(const int8_t *x, const int8_t *w, int32_t stride, int32_t n, int32_t acc[4]) {
  const int8_t *w0 = w, *w1 = w + stride, *w2 = w1 + stride, *w3 = w2 + stride;
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], k = 0;
#if defined(__ARM_FEATURE_DSP)
  for (; k + 4 <= n; k += 4) {
    const uint32_t xv = load4(x + k);
    const int32_t xe = __sxtb16(xv), xo = sxtb16_odd(xv);
    uint32_t wv = load4(w0 + k);
    a0 = __smlad(__sxtb16(wv), xe, a0);
    a0 = __smlad(sxtb16_odd(wv), xo, a0);
    wv = load4(w1 + k);
    a1 = __smlad(__sxtb16(wv), xe, a1);
    a1 = __smlad(sxtb16_odd(wv), xo, a1);
    wv = load4(w2 + k);
    a2 = __smlad(__sxtb16(wv), xe, a2);
    a2 = __smlad(sxtb16_odd(wv), xo, a2);
    wv = load4(w3 + k);
    a3 = __smlad(__sxtb16(wv), xe, a3);
    a3 = __smlad(sxtb16_odd(wv), xo, a3);
  }
#endif
  for (; k < n; ++k) {
    const int32_t xk = x[k];
    a0 += w0[k] * xk;
    a1 += w1[k] * xk;
    a2 += w2[k] * xk;
    a3 += w3[k] * xk;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* The four sums of two weight rows (w0, w1) with two input rows (x0, x1): acc = {w0·x0, w1·x0, w0·x1, w1·x1}
 * added to acc; each load serves two products (CMSIS-NN's 2×2 block), so the DSP path needs 1.25
 * instructions per multiply-accumulate. */
static void dot2x2(const int8_t *x0, const int8_t *x1, const int8_t *w0, const int8_t *w1, int32_t n,
                   int32_t acc[4]) {
  int32_t a00 = acc[0], a10 = acc[1], a01 = acc[2], a11 = acc[3], k = 0;
#if defined(__ARM_FEATURE_DSP)
  for (; k + 4 <= n; k += 4) {
    const uint32_t xv0 = load4(x0 + k), xv1 = load4(x1 + k), wv0 = load4(w0 + k), wv1 = load4(w1 + k);
    const int32_t x0e = __sxtb16(xv0), x0o = sxtb16_odd(xv0), x1e = __sxtb16(xv1), x1o = sxtb16_odd(xv1);
    const int32_t w0e = __sxtb16(wv0), w0o = sxtb16_odd(wv0), w1e = __sxtb16(wv1), w1o = sxtb16_odd(wv1);
    a00 = __smlad(w0o, x0o, __smlad(w0e, x0e, a00));
    a10 = __smlad(w1o, x0o, __smlad(w1e, x0e, a10));
    a01 = __smlad(w0o, x1o, __smlad(w0e, x1e, a01));
    a11 = __smlad(w1o, x1o, __smlad(w1e, x1e, a11));
  }
#endif
  for (; k < n; ++k) {
    a00 += w0[k] * x0[k];
    a10 += w1[k] * x0[k];
    a01 += w0[k] * x1[k];
    a11 += w1[k] * x1[k];
  }
  acc[0] = a00;
  acc[1] = a10;
  acc[2] = a01;
  acc[3] = a11;
}

static int32_t dot1(const int8_t *x, const int8_t *w, int32_t n) {
  int32_t acc = 0, k = 0;
#if defined(__ARM_FEATURE_DSP)
  for (; k + 4 <= n; k += 4) {
    const uint32_t xv = load4(x + k), wv = load4(w + k);
    acc = __smlad(__sxtb16(wv), __sxtb16(xv), acc);
    acc = __smlad(sxtb16_odd(wv), sxtb16_odd(xv), acc);
  }
#endif
  for (; k < n; ++k) acc += w[k] * x[k];
  return acc;
}

/* out[r] = requantized (bias[r] + Σ_k w[r][k] · x[k]) for ``rows`` rows of ``depth`` weights: one pixel of
 * a pointwise convolution, or a fully connected layer. ``per_channel`` selects multiplier[r] over [0]. */
static void rows_s8(const int8_t *x, const int8_t *w, int32_t depth, int32_t rows, const int32_t *bias,
                    const int32_t *multiplier, const int32_t *shift, int32_t per_channel, int32_t out_offset,
                    int32_t low, int32_t high, int8_t *out) {
  int32_t r = 0, j;
  for (; r + 4 <= rows; r += 4) {
    int32_t acc[4];
    for (j = 0; j < 4; ++j) acc[j] = bias[r + j];
    dot4(x, &w[r * depth], depth, depth, acc);
    for (j = 0; j < 4; ++j) {
      const int32_t k = per_channel ? r + j : 0;
      out[r + j] = requantize(acc[j], multiplier[k], shift[k], out_offset, low, high);
    }
  }
  for (; r < rows; ++r) {
    const int32_t k = per_channel ? r : 0;
    out[r] = requantize(bias[r] + dot1(x, &w[r * depth], depth), multiplier[k], shift[k], out_offset, low, high);
  }
}

void dt_pointwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                          const int32_t *multiplier, const int32_t *shift, int8_t *out) {
  const dt_conv_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  const int32_t pixels = q.out_h * q.out_w, c = q.in_c, n = q.out_c;
  int32_t i = 0, oc;
  for (; i + 2 <= pixels; i += 2) { /* two pixels by two output channels at a time */
    const int8_t *x0 = &in[i * c], *x1 = x0 + c;
    int8_t *y0 = &out[i * n], *y1 = y0 + n;
    for (oc = 0; oc + 2 <= n; oc += 2) {
      int32_t acc[4];
      acc[0] = acc[2] = bias[oc];
      acc[1] = acc[3] = bias[oc + 1];
      dot2x2(x0, x1, &filter[oc * c], &filter[(oc + 1) * c], c, acc);
      y0[oc] = requantize(acc[0], multiplier[oc], shift[oc], q.out_offset, q.act_min, q.act_max);
      y0[oc + 1] = requantize(acc[1], multiplier[oc + 1], shift[oc + 1], q.out_offset, q.act_min, q.act_max);
      y1[oc] = requantize(acc[2], multiplier[oc], shift[oc], q.out_offset, q.act_min, q.act_max);
      y1[oc + 1] = requantize(acc[3], multiplier[oc + 1], shift[oc + 1], q.out_offset, q.act_min, q.act_max);
    }
    for (; oc < n; ++oc) {
      y0[oc] = requantize(bias[oc] + dot1(x0, &filter[oc * c], c), multiplier[oc], shift[oc], q.out_offset,
                          q.act_min, q.act_max);
      y1[oc] = requantize(bias[oc] + dot1(x1, &filter[oc * c], c), multiplier[oc], shift[oc], q.out_offset,
                          q.act_min, q.act_max);
    }
  }
  for (; i < pixels; ++i) {
    rows_s8(&in[i * q.in_c], filter, q.in_c, q.out_c, bias, multiplier, shift, 1, q.out_offset, q.act_min,
            q.act_max, &out[i * q.out_c]);
  }
}

void dt_fully_connected_s8(const dt_fc_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                           const int32_t *multiplier, const int32_t *shift, int8_t *out) {
  rows_s8(in, filter, p->depth, p->out_c, bias, multiplier, shift, p->per_channel, p->out_offset, p->act_min,
          p->act_max, out);
}

/* The index of the lowest set bit of a non-zero mask (RBIT + CLZ on a Cortex-M4). */
static inline int32_t lowest_bit(uint32_t m) {
#if defined(__GNUC__)
  return __builtin_ctz(m);
#else
  int32_t b = 0;
  while (!(m & 1u)) {
    m >>= 1;
    ++b;
  }
  return b;
#endif
}

/* Σ over the kept blocks of one weight row (masks ``mask[0..words)``, kept weights from ``w``) of the
 * block's four weights times the same four values of each of four input rows x, x + c, x + 2c, x + 3c,
 * added to acc[0..4). Returns the weights after this row's. */
static const int8_t *sparse_dot4x1(const int8_t *x, int32_t c, const uint32_t *mask, int32_t words,
                                   const int8_t *w, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], word;
  for (word = 0; word < words; ++word, x += 128) {
    uint32_t m = mask[word];
    while (m) {
      const int8_t *xk = x + 4 * lowest_bit(m);
      m &= m - 1u;
#if defined(__ARM_FEATURE_DSP)
      {
        const uint32_t wv = load4(w);
        const int32_t we = __sxtb16(wv), wo = sxtb16_odd(wv);
        uint32_t xv = load4(xk);
        a0 = __smlad(wo, sxtb16_odd(xv), __smlad(we, __sxtb16(xv), a0));
        xv = load4(xk + c);
        a1 = __smlad(wo, sxtb16_odd(xv), __smlad(we, __sxtb16(xv), a1));
        xv = load4(xk + 2 * c);
        a2 = __smlad(wo, sxtb16_odd(xv), __smlad(we, __sxtb16(xv), a2));
        xv = load4(xk + 3 * c);
        a3 = __smlad(wo, sxtb16_odd(xv), __smlad(we, __sxtb16(xv), a3));
      }
#else
      {
        int32_t j;
        for (j = 0; j < 4; ++j) {
          a0 += w[j] * xk[j];
          a1 += w[j] * xk[c + j];
          a2 += w[j] * xk[2 * c + j];
          a3 += w[j] * xk[3 * c + j];
        }
      }
#endif
      w += 4;
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}

/* sparse_dot4x1 for one input row. */
static const int8_t *sparse_dot1x1(const int8_t *x, const uint32_t *mask, int32_t words, const int8_t *w,
                                   int32_t *acc) {
  int32_t a = *acc, word;
  for (word = 0; word < words; ++word, x += 128) {
    uint32_t m = mask[word];
    while (m) {
      const int8_t *xk = x + 4 * lowest_bit(m);
      m &= m - 1u;
#if defined(__ARM_FEATURE_DSP)
      {
        const uint32_t wv = load4(w), xv = load4(xk);
        a = __smlad(sxtb16_odd(wv), sxtb16_odd(xv), __smlad(__sxtb16(wv), __sxtb16(xv), a));
      }
#else
      a += w[0] * xk[0] + w[1] * xk[1] + w[2] * xk[2] + w[3] * xk[3];
#endif
      w += 4;
    }
  }
  *acc = a;
  return w;
}

/* rows_s8 over block-sparse weights: one pixel of a pointwise convolution, or a fully connected layer. */
static void sparse_rows_s8(const int8_t *x, const uint32_t *mask, const int8_t *values, int32_t depth,
                           int32_t rows, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                           int32_t per_channel, int32_t out_offset, int32_t low, int32_t high, int8_t *out) {
  const int32_t words = (depth / 4 + 31) / 32;
  const int8_t *w = values;
  int32_t r;
  for (r = 0; r < rows; ++r, mask += words) {
    const int32_t k = per_channel ? r : 0;
    int32_t acc = bias[r];
    w = sparse_dot1x1(x, mask, words, w, &acc);
    out[r] = requantize(acc, multiplier[k], shift[k], out_offset, low, high);
  }
}

void dt_pointwise_conv_sparse_s8(const dt_conv_params *p, const int8_t *in, const uint32_t *mask,
                                 const int8_t *values, const int32_t *bias, const int32_t *multiplier,
                                 const int32_t *shift, int8_t *out) {
  const dt_conv_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  const int32_t pixels = q.out_h * q.out_w, c = q.in_c, n = q.out_c, words = (c / 4 + 31) / 32;
  int32_t i = 0, oc;
  /* Four pixels at a time, each output channel's kept blocks once for the four; the pointwise overlap the
   * planner allows (two pixels) holds: the four outputs are written after all four inputs are read. */
  for (; i + 4 <= pixels; i += 4) {
    const int8_t *x = &in[i * c], *w = values;
    const uint32_t *m = mask;
    int8_t *y = &out[i * n];
    for (oc = 0; oc < n; ++oc, m += words) {
      int32_t acc[4];
      acc[0] = acc[1] = acc[2] = acc[3] = bias[oc];
      w = sparse_dot4x1(x, c, m, words, w, acc);
      y[oc] = requantize(acc[0], multiplier[oc], shift[oc], q.out_offset, q.act_min, q.act_max);
      y[n + oc] = requantize(acc[1], multiplier[oc], shift[oc], q.out_offset, q.act_min, q.act_max);
      y[2 * n + oc] = requantize(acc[2], multiplier[oc], shift[oc], q.out_offset, q.act_min, q.act_max);
      y[3 * n + oc] = requantize(acc[3], multiplier[oc], shift[oc], q.out_offset, q.act_min, q.act_max);
    }
  }
  for (; i < pixels; ++i) {
    sparse_rows_s8(&in[i * c], mask, values, c, n, bias, multiplier, shift, 1, q.out_offset, q.act_min, q.act_max,
                   &out[i * n]);
  }
}

void dt_fully_connected_sparse_s8(const dt_fc_params *p, const int8_t *in, const uint32_t *mask,
                                  const int8_t *values, const int32_t *bias, const int32_t *multiplier,
                                  const int32_t *shift, int8_t *out) {
  sparse_rows_s8(in, mask, values, p->depth, p->out_c, bias, multiplier, shift, p->per_channel, p->out_offset,
                 p->act_min, p->act_max, out);
}

/* One output pixel of a convolution, every tap bounds-checked and offset (the reference kernel's sum). */
static void conv_pixel(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                       const int32_t *multiplier, const int32_t *shift, int32_t oy, int32_t ox, int8_t *out) {
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
                             const int32_t *multiplier, const int32_t *shift, int32_t oy, int32_t ox, int8_t *out) {
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
                const int32_t *multiplier, const int32_t *shift, int8_t *out) {
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

#if defined(__ARM_FEATURE_DSP)
/* One tap of four adjacent channels: SXTB16 splits the input word and the weight word into channels (0, 2)
 * and (1, 3), and SMLABB / SMLATT multiply lane by lane (a depthwise sum never crosses channels). */
static inline void mac_lanes(uint32_t xv, uint32_t wv, int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3) {
  const int32_t xe = __sxtb16(xv), we = __sxtb16(wv), xo = sxtb16_odd(xv), wo = sxtb16_odd(wv);
  *a0 = __smlabb(xe, we, *a0);
  *a2 = __smlatt(xe, we, *a2);
  *a1 = __smlabb(xo, wo, *a1);
  *a3 = __smlatt(xo, wo, *a3);
}

/* acc[j] += the 3×3 window of channel j of four adjacent channels, inside the input (offset folded): 2.5
 * instructions per multiply-accumulate instead of 3, and few enough live registers that nothing spills. */
static void depthwise3x3_four(const int8_t *x, int32_t row, int32_t c, const int8_t *w, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], fy;
  for (fy = 0; fy < 3; ++fy, x += row, w += 3 * c) {
    mac_lanes(load4(x), load4(w), &a0, &a1, &a2, &a3);
    mac_lanes(load4(x + c), load4(w + c), &a0, &a1, &a2, &a3);
    mac_lanes(load4(x + 2 * c), load4(w + 2 * c), &a0, &a1, &a2, &a3);
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}
#endif

/* The taps [*first, *last) of a filter axis whose input index origin + dilation * tap lies in [0, size):
 * one contiguous range, so a border pixel's loops need no per-tap check. */
static void taps_inside(int32_t origin, int32_t dilation, int32_t taps, int32_t size, int32_t *first, int32_t *last) {
  int32_t a = 0, b = taps;
  while (a < taps && origin + dilation * a < 0) ++a;
  while (b > a && origin + dilation * (b - 1) >= size) --b;
  *first = a;
  *last = b;
}

/* One output pixel of a depthwise convolution whose window may leave the input: the taps inside it, offset
 * (the reference kernel skips the others). */
static void depthwise_pixel(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                            const int32_t *multiplier, const int32_t *shift, int32_t oy, int32_t ox, int8_t *out) {
  const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  const int32_t in_offset = p->in_offset, in_c = p->in_c, out_c = p->out_c, dm = p->depth_multiplier;
  int32_t oc, fy, fx, fy0, fy1, fx0, fx1;
  taps_inside(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
  taps_inside(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
  for (oc = 0; oc < out_c; ++oc) {
    const int8_t *x = &in[oc / dm];
    int32_t acc = bias ? bias[oc] : 0;
    for (fy = fy0; fy < fy1; ++fy) {
      const int8_t *row = &x[(y0 + p->dil_h * fy) * p->in_w * in_c];
      const int8_t *w = &filter[fy * p->k_w * out_c + oc];
      for (fx = fx0; fx < fx1; ++fx) acc += w[fx * out_c] * (row[(x0 + p->dil_w * fx) * in_c] + in_offset);
    }
    out[oc] = requantize(acc, multiplier[oc], shift[oc], p->out_offset, p->act_min, p->act_max);
  }
}

void dt_depthwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                          const int32_t *folded_bias, const int32_t *multiplier, const int32_t *shift, int8_t *out) {
  const dt_conv_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  const int32_t c = q.in_c, row = q.in_w * q.in_c;
  const int32_t span_h = (q.k_h - 1) * q.dil_h, span_w = (q.k_w - 1) * q.dil_w;
  int32_t oy, ox, ch, fy, fx;
  for (oy = 0; oy < q.out_h; ++oy) {
    const int32_t y0 = oy * q.stride_h - q.pad_h;
    for (ox = 0; ox < q.out_w; ++ox) {
      const int32_t x0 = ox * q.stride_w - q.pad_w;
      int8_t *pixel = &out[(oy * q.out_w + ox) * q.out_c];
      if (q.depth_multiplier != 1 || y0 < 0 || x0 < 0 || y0 + span_h >= q.in_h || x0 + span_w >= q.in_w) {
        depthwise_pixel(&q, in, filter, bias, multiplier, shift, oy, ox, pixel);
        continue;
      }
      if (q.k_h == 3 && q.k_w == 3 && q.dil_h == 1 && q.dil_w == 1) { /* the common case, unrolled */
        const int8_t *x0p = &in[y0 * row + x0 * c], *x1p = x0p + row, *x2p = x1p + row;
        const int32_t c2 = 2 * c;
        ch = 0;
#if defined(__ARM_FEATURE_DSP)
        for (; ch + 4 <= c; ch += 4) {
          int32_t acc[4], j;
          for (j = 0; j < 4; ++j) acc[j] = folded_bias[ch + j];
          depthwise3x3_four(&x0p[ch], row, c, &filter[ch], acc);
          for (j = 0; j < 4; ++j) {
            pixel[ch + j] = requantize(acc[j], multiplier[ch + j], shift[ch + j], q.out_offset, q.act_min, q.act_max);
          }
        }
#endif
        for (; ch < c; ++ch) {
          const int8_t *w = &filter[ch];
          int32_t acc = folded_bias[ch];
          acc += w[0] * x0p[ch] + w[c] * x0p[ch + c] + w[c2] * x0p[ch + c2];
          acc += w[3 * c] * x1p[ch] + w[4 * c] * x1p[ch + c] + w[5 * c] * x1p[ch + c2];
          acc += w[6 * c] * x2p[ch] + w[7 * c] * x2p[ch + c] + w[8 * c] * x2p[ch + c2];
          pixel[ch] = requantize(acc, multiplier[ch], shift[ch], q.out_offset, q.act_min, q.act_max);
        }
      } else { /* the window lies inside the input: the offset's share is in folded_bias */
        const int8_t *base = &in[y0 * row + x0 * c];
        for (ch = 0; ch < c; ++ch) {
          int32_t acc = folded_bias[ch];
          for (fy = 0; fy < q.k_h; ++fy) {
            const int8_t *x = &base[fy * q.dil_h * row + ch];
            const int8_t *w = &filter[fy * q.k_w * c + ch];
            for (fx = 0; fx < q.k_w; ++fx) acc += w[fx * c] * x[fx * q.dil_w * c];
          }
          pixel[ch] = requantize(acc, multiplier[ch], shift[ch], q.out_offset, q.act_min, q.act_max);
        }
      }
    }
  }
}

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
/* exp(a) for a in [-1/4, 0), a in Q0.31 (gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl). */
static int32_t exp_on_quarter_interval(int32_t a) {
  const int32_t constant_term = 1895147668; /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = wrapping_add(a, 1 << 28); /* a + 1/8 */
  const int32_t x2 = srdhm(x, x), x3 = srdhm(x2, x), x4 = srdhm(x2, x2);
  const int32_t x4_over_4 = rounding_divide_by_pot(x4, 2);
  const int32_t poly = rounding_divide_by_pot(wrapping_add(srdhm(wrapping_add(x4_over_4, x3), one_third), x2), 1);
  return wrapping_add(constant_term, srdhm(constant_term, wrapping_add(x, poly)));
}

/* exp(a) for a <= 0 in Q5.26, as Q0.31 (gemmlowp exp_on_negative_values with 5 integer bits). */
static int32_t exp_on_negative_values(int32_t a) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t one_quarter = 1 << 24;
  const int32_t a_mod_quarter_minus_quarter = wrapping_sub(a & (one_quarter - 1), one_quarter);
  const int32_t remainder = wrapping_sub(a_mod_quarter_minus_quarter, a);
  int32_t result = exp_on_quarter_interval(saturating_shift_left(a_mod_quarter_minus_quarter, 5));
  int32_t k;
  for (k = 0; k < 7; ++k) { /* exp(-2^(k-2)) for each bit of the remainder from 1/4 to 16 */
    if (remainder & (1 << (24 + k))) result = srdhm(result, multipliers[k]);
  }
  return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1) in Q0.31 (gemmlowp one_over_one_plus_x_for_x_in_0_1: Newton-Raphson). */
static int32_t one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  int32_t x = wrapping_add(1515870810, srdhm(half_denominator, -1010580540)); /* 48/17 - 32/17 d, Q2.29 */
  int k;
  for (k = 0; k < 3; ++k) {
    const int32_t one_minus = wrapping_sub(1 << 29, srdhm(half_denominator, x));
    x = wrapping_add(x, saturating_shift_left(srdhm(x, one_minus), 2));
  }
  return saturating_shift_left(x, 1);
}

void dt_softmax_s8(const dt_softmax_params *p, const int8_t *in, int8_t *out) {
  int32_t row, c;
  for (row = 0; row < p->rows; ++row) {
    const int8_t *x = &in[row * p->depth];
    int8_t *y = &out[row * p->depth];
    int32_t max = INT8_MIN, sum = 0, headroom, bits_over_unit, scale, exponent;
    for (c = 0; c < p->depth; ++c) max = x[c] > max ? x[c] : max;
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = x[c] - max;
      if (diff >= p->diff_min) {
        const int32_t scaled = srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
        sum = wrapping_add(sum, rounding_divide_by_pot(exp_on_negative_values(scaled), 12));
      }
    }
    /* GetReciprocal of the sum in Q12.19 */
    headroom = 0;
    while (headroom < 32 && !((uint32_t)sum & (UINT32_C(0x80000000) >> headroom))) ++headroom;
    bits_over_unit = 12 - headroom;
    scale = one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - UINT32_C(0x80000000)));
    exponent = bits_over_unit + 31 - 8;
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = x[c] - max;
      if (diff >= p->diff_min) {
        const int32_t scaled = srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
        const int32_t unsaturated = rounding_divide_by_pot(srdhm(scale, exp_on_negative_values(scaled)), exponent);
        y[c] = (int8_t)clamp(unsaturated + INT8_MIN, INT8_MIN, INT8_MAX);
      } else {
        y[c] = INT8_MIN;
      }
    }
  }
}

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

void dt_add_s8(const dt_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const dt_add_params q = *p; /* a local copy: stores through int8_t * cannot alias it */
  int32_t i;
  for (i = 0; i < q.elements; ++i) {
    const int32_t a = (int32_t)((uint32_t)(in1[i] + q.in1_offset) << q.left_shift);
    const int32_t b = (int32_t)((uint32_t)(in2[i % q.in2_elements] + q.in2_offset) << q.left_shift);
    const int32_t sum = multiply_by_quantized_multiplier(a, q.in1_multiplier, q.in1_shift) +
                        multiply_by_quantized_multiplier(b, q.in2_multiplier, q.in2_shift);
    out[i] = requantize(sum, q.out_multiplier, q.out_shift, q.out_offset, q.act_min, q.act_max);
  }
}

void dt_mul_s8(const dt_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const dt_mul_params q = *p;
  int32_t i;
  for (i = 0; i < q.elements; ++i) {
    const int32_t product = (in1[i] + q.in1_offset) * (in2[i % q.in2_elements] + q.in2_offset);
    out[i] = requantize(product, q.multiplier, q.shift, q.out_offset, q.act_min, q.act_max);
  }
}

void dt_pad_s8(const dt_pad_params *p, const int8_t *in, int8_t *out) {
  const int32_t row = p->in_w * p->c;
  int32_t y;
  memset(out, p->value, (size_t)(p->out_h * p->out_w * p->c));
  for (y = 0; y < p->in_h; ++y) {
    memcpy(&out[((p->top + y) * p->out_w + p->left) * p->c], &in[y * row], (size_t)row);
  }
}

/* The pooling window of output (oy, ox) clipped to the input, as TFLite's reference pooling clips it. */
static void pool_window(const dt_pool_params *p, int32_t oy, int32_t ox, int32_t *y0, int32_t *y1, int32_t *x0,
                        int32_t *x1) {
  const int32_t top = oy * p->stride_h - p->pad_h, left = ox * p->stride_w - p->pad_w;
  *y0 = top < 0 ? 0 : top;
  *y1 = top + p->k_h < p->in_h ? top + p->k_h : p->in_h;
  *x0 = left < 0 ? 0 : left;
  *x1 = left + p->k_w < p->in_w ? left + p->k_w : p->in_w;
}

void dt_max_pool_s8(const dt_pool_params *p, const int8_t *in, int8_t *out) {
  int32_t oy, ox, ch, y, x, y0, y1, x0, x1;
  for (oy = 0; oy < p->out_h; ++oy) {
    for (ox = 0; ox < p->out_w; ++ox) {
      pool_window(p, oy, ox, &y0, &y1, &x0, &x1);
      for (ch = 0; ch < p->c; ++ch) {
        int32_t max = INT8_MIN;
        for (y = y0; y < y1; ++y) {
          for (x = x0; x < x1; ++x) max = in[(y * p->in_w + x) * p->c + ch] > max ? in[(y * p->in_w + x) * p->c + ch] : max;
        }
        out[(oy * p->out_w + ox) * p->c + ch] = (int8_t)clamp(max, p->act_min, p->act_max);
      }
    }
  }
}

void dt_average_pool_s8(const dt_pool_params *p, const int8_t *in, int8_t *out) {
  int32_t oy, ox, ch, y, x, y0, y1, x0, x1;
  for (oy = 0; oy < p->out_h; ++oy) {
    for (ox = 0; ox < p->out_w; ++ox) {
      pool_window(p, oy, ox, &y0, &y1, &x0, &x1);
      {
        const int32_t count = (y1 - y0) * (x1 - x0);
        for (ch = 0; ch < p->c; ++ch) {
          int32_t sum = 0;
          for (y = y0; y < y1; ++y) {
            for (x = x0; x < x1; ++x) sum += in[(y * p->in_w + x) * p->c + ch];
          }
          /* round half away from zero, as the reference kernel */
          sum = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
          out[(oy * p->out_w + ox) * p->c + ch] = (int8_t)clamp(sum, p->act_min, p->act_max);
        }
      }
    }
  }
}

void dt_concat_s8(int32_t outer, int32_t count, const int8_t *const *in, const int32_t *sizes, int8_t *out) {
  int32_t i, k;
  for (i = 0; i < outer; ++i) {
    for (k = 0; k < count; ++k) {
      memcpy(out, &in[k][i * sizes[k]], (size_t)sizes[k]);
      out += sizes[k];
    }
  }
}
