/* SOFTMAX, int8 in and out, with gemmlowp's fixed-point exp and reciprocal. */
#include "dt_engine.h"
#include "dt_arith.h"

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
