/* See dt_engine.h. The fixed-point helpers are gemmlowp's (SaturatingRoundingDoublingHighMul,
 * RoundingDivideByPOT, the exp and reciprocal of its FixedPoint class) as TFLite's int8 kernels use them;
 * additions that gemmlowp lets wrap go through uint32_t so that C does not call them undefined. Integer
 * sums are exact, so the order of accumulation does not change a result. */
#include "dt_engine.h"

#include <stdint.h>

static int32_t wrapping_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static int32_t wrapping_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

static int32_t clamp(int32_t x, int32_t low, int32_t high) { return x < low ? low : (x > high ? high : x); }

/* gemmlowp SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32, rounded to nearest (VQRDMULH). */
static int32_t srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent, rounded to nearest, ties away from zero. */
static int32_t rounding_divide_by_pot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
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

int32_t dt_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return rounding_divide_by_pot(srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

void dt_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                const int32_t *multiplier, const int32_t *shift, int8_t *out) {
  int32_t oy, ox, oc, fy, fx, ic;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int32_t y0 = oy * p->stride_h - p->pad_h;
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t x0 = ox * p->stride_w - p->pad_w;
      for (oc = 0; oc < p->out_c; ++oc) {
        int32_t acc = 0;
        for (fy = 0; fy < p->k_h; ++fy) {
          const int32_t y = y0 + p->dil_h * fy;
          if (y < 0 || y >= p->in_h) continue;
          for (fx = 0; fx < p->k_w; ++fx) {
            const int32_t x = x0 + p->dil_w * fx;
            const int8_t *pixel, *weights;
            if (x < 0 || x >= p->in_w) continue;
            pixel = &in[(y * p->in_w + x) * p->in_c];
            weights = &filter[((oc * p->k_h + fy) * p->k_w + fx) * p->in_c];
            for (ic = 0; ic < p->in_c; ++ic) acc += (int32_t)weights[ic] * ((int32_t)pixel[ic] + p->in_offset);
          }
        }
        if (bias) acc += bias[oc];
        acc = dt_multiply_by_quantized_multiplier(acc, multiplier[oc], shift[oc]) + p->out_offset;
        out[(oy * p->out_w + ox) * p->out_c + oc] = (int8_t)clamp(acc, p->act_min, p->act_max);
      }
    }
  }
}

void dt_depthwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                          const int32_t *multiplier, const int32_t *shift, int8_t *out) {
  int32_t oy, ox, ic, m, fy, fx;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int32_t y0 = oy * p->stride_h - p->pad_h;
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t x0 = ox * p->stride_w - p->pad_w;
      for (ic = 0; ic < p->in_c; ++ic) {
        for (m = 0; m < p->depth_multiplier; ++m) {
          const int32_t oc = ic * p->depth_multiplier + m;
          int32_t acc = 0;
          for (fy = 0; fy < p->k_h; ++fy) {
            const int32_t y = y0 + p->dil_h * fy;
            if (y < 0 || y >= p->in_h) continue;
            for (fx = 0; fx < p->k_w; ++fx) {
              const int32_t x = x0 + p->dil_w * fx;
              if (x < 0 || x >= p->in_w) continue;
              acc += (int32_t)filter[(fy * p->k_w + fx) * p->out_c + oc] *
                     ((int32_t)in[(y * p->in_w + x) * p->in_c + ic] + p->in_offset);
            }
          }
          if (bias) acc += bias[oc];
          acc = dt_multiply_by_quantized_multiplier(acc, multiplier[oc], shift[oc]) + p->out_offset;
          out[(oy * p->out_w + ox) * p->out_c + oc] = (int8_t)clamp(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void dt_fully_connected_s8(const dt_fc_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                           const int32_t *multiplier, const int32_t *shift, int8_t *out) {
  int32_t oc, d;
  for (oc = 0; oc < p->out_c; ++oc) {
    const int8_t *weights = &filter[oc * p->depth];
    const int32_t k = p->per_channel ? oc : 0;
    int32_t acc = 0;
    for (d = 0; d < p->depth; ++d) acc += ((int32_t)weights[d] + p->filter_offset) * ((int32_t)in[d] + p->in_offset);
    if (bias) acc += bias[oc];
    acc = dt_multiply_by_quantized_multiplier(acc, multiplier[k], shift[k]) + p->out_offset;
    out[oc] = (int8_t)clamp(acc, p->act_min, p->act_max);
  }
}

void dt_mean_hw_s8(const dt_mean_params *p, const int8_t *in, int8_t *out) {
  const int32_t count = p->h * p->w;
  int32_t c, i;
  for (c = 0; c < p->c; ++c) {
    int32_t sum = 0;
    for (i = 0; i < count; ++i) sum += in[i * p->c + c];
    sum -= p->in_zero_point * count;
    out[c] = (int8_t)clamp(dt_multiply_by_quantized_multiplier(sum, p->multiplier, p->shift) + p->out_zero_point,
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
      result += dt_multiply_by_quantized_multiplier(value, p->identity_multiplier, p->identity_shift);
    } else {
      const int32_t scaled = dt_multiply_by_quantized_multiplier(value, alpha, p->alpha_shift);
      result += negative_alpha ? -scaled : scaled;
    }
    out[i] = (int8_t)clamp(result, INT8_MIN, INT8_MAX);
  }
}
