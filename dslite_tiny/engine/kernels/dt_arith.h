/* The arithmetic every kernel shares. The fixed-point helpers are gemmlowp's (SaturatingRoundingDoublingHighMul,
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
#ifndef DT_ARITH_H_
#define DT_ARITH_H_

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

#if defined(__GNUC__)
#define DT_UNLIKELY(condition) __builtin_expect(!!(condition), 0) /* kept out of the hot path's straight line */
/* A hot loop that, inlined, would share registers with its caller (unused: not every file calls it). */
#define DT_NOINLINE __attribute__((noinline, unused))
#else
#define DT_UNLIKELY(condition) (condition)
#define DT_NOINLINE
#endif

static inline int32_t wrapping_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t wrapping_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

static inline int32_t clamp(int32_t x, int32_t low, int32_t high) { return x < low ? low : (x > high ? high : x); }

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
static inline int32_t saturating_shift_left(int32_t x, int32_t exponent) {
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

/* requantize for one output channel of a convolution or fully connected layer, with the constants the
 * generator folded for its layer (engine/quant.py, channel_requantization): ``base`` is the layer's
 * 2 out_offset + 1, ``code`` the channel's right shift e less two (0..29) where the folded path applies,
 * else its TFLite shift minus 31 (negative).
 *
 * Where the layer's clamp is int8's whole range and the shift e is 2 or more, the rounding constant 2^(30+e)
 * of scale_by_multiplier and the output offset both go into the high word of the 64-bit sum before the
 * multiply-accumulate: K = 2^(e-2) + out_offset 2^(e-1) = base 2^code (|K| < 2^30, so the high word cannot
 * overflow), and (hi >> (e - 1)) is already the offset result (adding a multiple of 2^(e-1) before the shift
 * adds exactly out_offset after it). The sum's low word starts at 2^30 - [x < 0] 2^31 as before, the high
 * word at K - [x < 0]. What remains is one shift for K, one SMLAL, a shift and SSAT, whose operand shift
 * takes the last bit: no K per channel in flash (4 bytes a channel) for one instruction. Any other channel
 * (e <= 1, a left shift, a restricted clamp, or K too large) takes the general path, with the output offset
 * base >> 1. */
static DT_NOINLINE int32_t requantize_general(int32_t acc, int32_t multiplier, int32_t base, int32_t code,
                                              int32_t low, int32_t high) {
  return requantize(acc, multiplier, code + 31, base >> 1, low, high);
}

/* The folded path of requantize_values, given K = base 2^code. */
static inline int32_t requantize_folded(int32_t acc, int32_t multiplier, int32_t k, int32_t code) {
  const uint32_t sign = (uint32_t)acc & UINT32_C(0x80000000);
#if defined(__ARM_FEATURE_DSP)
  uint32_t lo = sign | UINT32_C(0x40000000);
  int32_t hi = k + (acc >> 31), y;
  __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(acc), "r"(multiplier));
  __asm__("ssat %0, #8, %1, asr #1" : "=r"(y) : "r"(hi >> code));
  return y;
#else
  const int64_t sum = (int64_t)acc * multiplier + (int64_t)(k + (acc >> 31)) * INT64_C(4294967296) +
                      (int64_t)(sign | UINT32_C(0x40000000));
  return clamp(((int32_t)(sum >> 32) >> code) >> 1, -128, 127);
#endif
}

static inline int32_t folded_k(int32_t base, int32_t code) { return (int32_t)((uint32_t)base << code); }

/* The result in [-128, 127] as an int32_t: a store of it is one STRB, with no sign extension before. A
 * kernel takes ``base`` from the first value of the layer's multiplier array (the generator's: base, then
 * one multiplier per channel, or one for a per-tensor scale) once, as int8 stores may alias the array. */
static inline int32_t requantize_values(int32_t acc, int32_t multiplier, int32_t base, int32_t code, int32_t low,
                                        int32_t high) {
  if (DT_UNLIKELY(code < 0)) return requantize_general(acc, multiplier, base, code, low, high);
  return requantize_folded(acc, multiplier, folded_k(base, code), code);
}

/* requantize_values for one channel's outputs of four pixels, stored ``stride`` bytes apart, K made once.
 * The caller reads the constants before the first store (a store through int8_t * may alias them). On the
 * DSP path the four stores are one base and ``stride`` in registers (STRB with a register offset): in C, GCC
 * keeps four output pointers, which a pointwise kernel's loop spills and reloads at every output channel. */
static inline void requantize4(const int32_t acc[4], int32_t multiplier, int32_t base, int32_t code, int32_t low,
                               int32_t high, int8_t *y, int32_t stride) {
  int32_t y0, y1, y2, y3;
  if (DT_UNLIKELY(code < 0)) {
    y0 = requantize_general(acc[0], multiplier, base, code, low, high);
    y1 = requantize_general(acc[1], multiplier, base, code, low, high);
    y2 = requantize_general(acc[2], multiplier, base, code, low, high);
    y3 = requantize_general(acc[3], multiplier, base, code, low, high);
  } else {
    const int32_t k = folded_k(base, code);
    y0 = requantize_folded(acc[0], multiplier, k, code);
    y1 = requantize_folded(acc[1], multiplier, k, code);
    y2 = requantize_folded(acc[2], multiplier, k, code);
    y3 = requantize_folded(acc[3], multiplier, k, code);
  }
#if defined(__ARM_FEATURE_DSP)
  {
    int8_t *t;
    __asm__ volatile("strb %[v0], [%[y]]\n\t"
                     "strb %[v1], [%[y], %[n]]\n\t"
                     "add %[t], %[y], %[n], lsl #1\n\t"
                     "strb %[v2], [%[t]]\n\t"
                     "strb %[v3], [%[t], %[n]]"
                     : [t] "=&r"(t)
                     : [y] "r"(y), [n] "r"(stride), [v0] "r"(y0), [v1] "r"(y1), [v2] "r"(y2), [v3] "r"(y3)
                     : "memory");
  }
#else
  y[0] = (int8_t)y0;
  y[stride] = (int8_t)y1;
  y[2 * stride] = (int8_t)y2;
  y[3 * stride] = (int8_t)y3;
#endif
}

#if defined(__ARM_FEATURE_DSP)
/* requantize_folded of channel j of four, stored at y + j: 10 instructions. */
#define DT_FOLDED_STORE(a, j)                                                                                  \
  "ldrsb %[r], [%[code], #" #j "]\n\t"                                                                        \
  "ldr %[mv], [%[m], #" #j " * 4]\n\t"                                                                        \
  "lsl %[k], %[base], %[r]\n\t"                                                                               \
  "and %[lo], %[" a "], #0x80000000\n\t"                                                                      \
  "orr %[lo], %[lo], #0x40000000\n\t"                                                                         \
  "add %[k], %[k], %[" a "], asr #31\n\t"                                                                     \
  "smlal %[lo], %[k], %[" a "], %[mv]\n\t"                                                                    \
  "asr %[k], %[k], %[r]\n\t"                                                                                  \
  "ssat %[k], #8, %[k], asr #1\n\t"                                                                           \
  "strb %[k], [%[y], #" #j "]\n\t"
#endif

/* The outputs of four adjacent channels of one pixel (a depthwise convolution's), y[0..3]: sums a0..a3,
 * their multipliers m[0..3]. On the DSP path one test of the four codes' sign bits sends them all to the
 * folded requantization, written out in one block of assembly (GCC's code kept the pointers on the stack:
 * 14 instructions an output). */
static inline void requantize_adjacent4(int32_t a0, int32_t a1, int32_t a2, int32_t a3, const int32_t *m,
                                        int32_t base, const int8_t *code, int32_t low, int32_t high, int8_t *y) {
#if defined(__ARM_FEATURE_DSP)
  uint32_t codes;
  memcpy(&codes, code, 4);
  if (!(codes & UINT32_C(0x80808080))) { /* no code below 0: every channel folded */
    int32_t r, mv, k;
    uint32_t lo;
    __asm__ volatile(DT_FOLDED_STORE("a0", 0) DT_FOLDED_STORE("a1", 1) DT_FOLDED_STORE("a2", 2)
                     DT_FOLDED_STORE("a3", 3)
                     : [r] "=&r"(r), [mv] "=&r"(mv), [k] "=&r"(k), [lo] "=&r"(lo)
                     : [a0] "r"(a0), [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3), [m] "r"(m), [code] "r"(code),
                       [y] "r"(y), [base] "r"(base)
                     : "memory");
    return;
  }
#endif
  y[0] = (int8_t)requantize_values(a0, m[0], base, code[0], low, high);
  y[1] = (int8_t)requantize_values(a1, m[1], base, code[1], low, high);
  y[2] = (int8_t)requantize_values(a2, m[2], base, code[2], low, high);
  y[3] = (int8_t)requantize_values(a3, m[3], base, code[3], low, high);
}

#if defined(__ARM_FEATURE_DSP)
static inline uint32_t load4(const int8_t *p) {
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

/* The leading zeros of a non-zero mask (one CLZ on a Cortex-M4). */
static inline int32_t leading_zeros(uint32_t m) {
#if defined(__GNUC__)
  return __builtin_clz(m);
#else
  int32_t b = 0;
  while (!(m & UINT32_C(0x80000000))) {
    m <<= 1;
    ++b;
  }
  return b;
#endif
}

#endif /* DT_ARITH_H_ */
