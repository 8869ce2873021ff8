/* The dot products of the pointwise-convolution and fully-connected kernels, dense (rows of weights) and
 * block-sparse (engine/sparse.py: per row, masks of the kept blocks of four weights, then their values). */
#ifndef DT_DOT_H_
#define DT_DOT_H_

#include "dt_arith.h"

/* acc[r] += Σ_k w[r * stride + k] · x[k] for the four rows r of w (int8 · int8: offsets already folded). */
static inline void dot4(const int8_t *x, const int8_t *w, int32_t stride, int32_t n, int32_t acc[4]) {
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
static inline void dot2x2(const int8_t *x0, const int8_t *x1, const int8_t *w0, const int8_t *w1, int32_t n,
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

static inline int32_t dot1(const int8_t *x, const int8_t *w, int32_t n) {
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
static inline void rows_s8(const int8_t *x, const int8_t *w, int32_t depth, int32_t rows, const int32_t *bias,
                    const int32_t *multiplier, const int8_t *shift, int32_t per_channel, int32_t low,
                           int32_t high, int8_t *out) {
  const int32_t base = multiplier[0], *mul = multiplier + 1; /* read once: int8 stores may alias them */
  int32_t r = 0, j;
  for (; r + 4 <= rows; r += 4) {
    int32_t acc[4];
    for (j = 0; j < 4; ++j) acc[j] = bias[r + j];
    dot4(x, &w[r * depth], depth, depth, acc);
    for (j = 0; j < 4; ++j) {
      const int32_t k = per_channel ? r + j : 0;
      out[r + j] = (int8_t)requantize_values(acc[j], mul[k], base, shift[k], low, high);
    }
  }
  for (; r < rows; ++r) {
    const int32_t k = per_channel ? r : 0;
    out[r] = (int8_t)requantize_values(bias[r] + dot1(x, &w[r * depth], depth), mul[k], base, shift[k], low, high);
  }
}

/* The block-sparse kernels' input: ``rows`` rows of ``depth`` int8 values (``x``, ``x + depth``, ...) widened
 * once to int16, so that each kept block's products for all rows cost two loads and two SMLAD per row. Per
 * block b of four values and row j, four int16 at ``s + 4 (b rows + j)``: values 0 and 2, then 1 and 3 (the
 * pairs SXTB16 makes of a word, and of the block's weights). A block's inputs for every row are adjacent. */
static inline void widen_blocks(const int8_t *x, int32_t depth, int32_t rows, int16_t *s) {
  int32_t j, k;
  for (j = 0; j < rows; ++j, x += depth) {
    int16_t *t = s + 4 * j;
    for (k = 0; k < depth; k += 4, t += 4 * rows) {
#if defined(__ARM_FEATURE_DSP)
      const uint32_t v = load4(x + k);
      const int32_t pairs[2] = {__sxtb16(v), sxtb16_odd(v)};
      memcpy(t, pairs, 8);
#else
      t[0] = x[k];
      t[1] = x[k + 2];
      t[2] = x[k + 1];
      t[3] = x[k + 3];
#endif
    }
  }
}

#if defined(__ARM_FEATURE_DSP)
/* acc + the products of a block's weights (pairs we, wo) with the row of widened inputs at byte ``offset``
 * (a constant) from t: one LDRD (the scratch is word-aligned) and two SMLAD. A macro, as LDRD's immediate
 * offset must be a constant at every optimization level; the "m" operand tells the compiler what it reads. */
#define DT_BLOCK_MAC(t, offset, we, wo, acc)                                                                   \
  do {                                                                                                         \
    int32_t even_, odd_;                                                                                       \
    __asm__("ldrd %0, %1, [%2, %3]"                                                                            \
            : "=r"(even_), "=r"(odd_)                                                                          \
            : "r"(t), "n"(offset), "m"(*(const struct { int16_t v[4]; } *)((t) + (offset) / 2)));           \
    (acc) = __smlad((wo), odd_, __smlad((we), even_, (acc)));                                                  \
  } while (0)
#else
static inline int32_t block_mac(const int16_t *t, const int8_t *w, int32_t acc) {
  return acc + w[0] * t[0] + w[2] * t[1] + w[1] * t[2] + w[3] * t[3];
}
#endif

/* *a0..*a3 += one block's four weights (at w) times the widened inputs of four rows (at t, 16 int16): what
 * the dense and the sparse pointwise loops do per block. */
static inline void block4(const int16_t *t, const int8_t *w, int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3) {
#if defined(__ARM_FEATURE_DSP)
  const uint32_t wv = load4(w);
  const int32_t we = __sxtb16(wv), wo = sxtb16_odd(wv);
  DT_BLOCK_MAC(t, 0, we, wo, *a0);
  DT_BLOCK_MAC(t, 8, we, wo, *a1);
  DT_BLOCK_MAC(t, 16, we, wo, *a2);
  DT_BLOCK_MAC(t, 24, we, wo, *a3);
#else
  *a0 = block_mac(t, w, *a0);
  *a1 = block_mac(t + 4, w, *a1);
  *a2 = block_mac(t + 8, w, *a2);
  *a3 = block_mac(t + 12, w, *a3);
#endif
}

/* block4 for one row's widened inputs. */
static inline void block1(const int16_t *t, const int8_t *w, int32_t *acc) {
#if defined(__ARM_FEATURE_DSP)
  const uint32_t wv = load4(w);
  const int32_t we = __sxtb16(wv), wo = sxtb16_odd(wv);
  DT_BLOCK_MAC(t, 0, we, wo, *acc);
#else
  *acc = block_mac(t, w, *acc);
#endif
}

#if defined(__ARM_FEATURE_DSP)
/* sparse_dot4's block loop for one mask ``m`` (a uint16_t, shifted to the top half first): 20 instructions a
 * block (CLZ, ADD, LSR, EORS for the walk; LDR, two SXTB16, four LDRD and eight SMLAD for the products),
 * where GCC's own code for the same loop keeps neither the top-bit constant nor every accumulator in a
 * register and takes 21 to 24. Returns the weights after the mask's blocks. */
static inline const int8_t *sparse_blocks4(const int16_t *s, uint32_t m, const int8_t *w, int32_t *a0,
                                           int32_t *a1, int32_t *a2, int32_t *a3) {
  int32_t b0 = *a0, b1 = *a1, b2 = *a2, b3 = *a3;
  const int16_t *t;
  uint32_t v, we, x0, x1;
  __asm__("lsls %[m], %[m], #16\n\t"
          "beq 2f\n"
          "1:\n\t"
          "clz %[v], %[m]\n\t"
          "add %[t], %[s], %[v], lsl #5\n\t"
          "lsr %[v], %[top], %[v]\n\t"
          "eors %[m], %[m], %[v]\n\t"
          "ldr %[v], [%[w]], #4\n\t"
          "sxtb16 %[we], %[v]\n\t"
          "sxtb16 %[v], %[v], ror #8\n\t"
          "ldrd %[x0], %[x1], [%[t]]\n\t"
          "smlad %[b0], %[we], %[x0], %[b0]\n\t"
          "smlad %[b0], %[v], %[x1], %[b0]\n\t"
          "ldrd %[x0], %[x1], [%[t], #8]\n\t"
          "smlad %[b1], %[we], %[x0], %[b1]\n\t"
          "smlad %[b1], %[v], %[x1], %[b1]\n\t"
          "ldrd %[x0], %[x1], [%[t], #16]\n\t"
          "smlad %[b2], %[we], %[x0], %[b2]\n\t"
          "smlad %[b2], %[v], %[x1], %[b2]\n\t"
          "ldrd %[x0], %[x1], [%[t], #24]\n\t"
          "smlad %[b3], %[we], %[x0], %[b3]\n\t"
          "smlad %[b3], %[v], %[x1], %[b3]\n\t"
          "bne 1b\n"
          "2:"
          : [m] "+&r"(m), [w] "+&r"(w), [b0] "+&r"(b0), [b1] "+&r"(b1), [b2] "+&r"(b2), [b3] "+&r"(b3),
            [t] "=&r"(t), [v] "=&r"(v), [we] "=&r"(we), [x0] "=&r"(x0), [x1] "=&r"(x1)
          : [s] "r"(s), [top] "r"(UINT32_C(0x80000000))
          : "cc", "memory");
  *a0 = b0;
  *a1 = b1;
  *a2 = b2;
  *a3 = b3;
  return w;
}
#endif

/* Σ over the kept blocks of one weight row (masks ``mask[0..words)``, words >= 1; kept weights from ``w``)
 * of the block's four weights times the widened inputs of four rows (``s``, from widen_blocks), added to
 * acc[0..4). Returns the weights after this row's. A mask's block b is its bit 15 - b (engine/sparse.py),
 * so in the top half of a word the next kept block is the count of leading zeros, and clearing it one shift
 * of the top bit. The word loop runs on the mask pointer alone: with a counter beside it GCC spills one of
 * them around the block loop, every row. */
static inline const int8_t *sparse_dot4(const int16_t *s, const uint16_t *mask, int32_t words, const int8_t *w,
                                        int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  const uint16_t *end = mask + words;
  do {
#if defined(__ARM_FEATURE_DSP)
    w = sparse_blocks4(s, *mask++, w, &a0, &a1, &a2, &a3);
#else
    uint32_t m = (uint32_t)*mask++ << 16;
    while (m) {
      const int32_t b = leading_zeros(m);
      block4(s + 16 * b, w, &a0, &a1, &a2, &a3);
      m ^= UINT32_C(0x80000000) >> b;
      w += 4;
    }
#endif
    s += 16 * 16;
  } while (mask != end);
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w;
}

/* acc[0..4) + Σ over all ``blocks`` blocks of four weights (``w``) times the widened inputs of four rows
 * (``s``, from widen_blocks): the dense pointwise kernel's inner loop, 1 LDR, 2 SXTB16, 4 LDRD and 8 SMLAD
 * per block on the DSP path. */
static inline void dense_dot4(const int16_t *s, const int8_t *w, int32_t blocks, int32_t acc[4]) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], b;
  for (b = 0; b < blocks; ++b, s += 16, w += 4) block4(s, w, &a0, &a1, &a2, &a3);
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* dense_dot4 for the widened inputs of one row. */
static inline int32_t dense_dot1(const int16_t *s, const int8_t *w, int32_t blocks, int32_t acc) {
  int32_t b;
  for (b = 0; b < blocks; ++b, s += 4, w += 4) block1(s, w, &acc);
  return acc;
}

/* The outputs of ``rows`` (4 or 1) widened input rows at ``s`` (widen_blocks', or dt_conv.c's gathered
 * windows): each of ``n`` filters of ``blocks`` blocks of four weights once for the rows, requantized
 * (``multiplier``: the layer's base, then one per filter) and stored at y + filter, the rows n bytes apart.
 * Every per-filter pointer is walked (GCC kept indexed ones on the stack) and the base is read once (int8
 * stores may alias it). */
static DT_NOINLINE void dense_rows_out(const int16_t *s, int32_t rows, const int8_t *w, int32_t blocks, int32_t n,
                                       const int32_t *bias, const int32_t *multiplier, const int8_t *code,
                                       int32_t low, int32_t high, int8_t *y) {
  const int32_t base = multiplier[0], *m = multiplier + 1;
  const int8_t *end = y + n;
  if (rows == 4) {
    for (; y != end; ++y, ++bias, ++m, ++code, w += 4 * blocks) {
      int32_t acc[4];
      acc[0] = acc[1] = acc[2] = acc[3] = *bias;
      dense_dot4(s, w, blocks, acc);
      requantize4(acc, *m, base, *code, low, high, y, n);
    }
    return;
  }
  for (; y != end; ++y, ++bias, ++m, ++code, w += 4 * blocks) {
    *y = (int8_t)requantize_values(dense_dot1(s, w, blocks, *bias), *m, base, *code, low, high);
  }
}

/* sparse_dot4 for the widened inputs of one row. Not inlined: inside sparse_rows_s8's loop GCC spills the
 * mask and the weight pairs to the stack on every block (~23 instructions per block instead of 12). */
static DT_NOINLINE const int8_t *sparse_dot1(const int16_t *s, const uint16_t *mask, int32_t words,
                                             const int8_t *w, int32_t *acc) {
  int32_t a = *acc;
  const uint16_t *end = mask + words;
  do {
    uint32_t m = (uint32_t)*mask++ << 16;
    while (m) {
      const int32_t b = leading_zeros(m);
      block1(s + 4 * b, w, &a);
      m ^= UINT32_C(0x80000000) >> b;
      w += 4;
    }
    s += 16 * 4;
  } while (mask != end);
  *acc = a;
  return w;
}

/* rows_s8 over block-sparse weights for one input row x (widened into ``scratch``, 2 depth bytes): one pixel
 * of a pointwise convolution, or a fully connected layer. */
static inline void sparse_rows_s8(const int8_t *x, const uint16_t *mask, const int8_t *values, int32_t depth,
                                  int32_t rows, const int32_t *bias, const int32_t *multiplier,
                                  const int8_t *shift, int32_t per_channel, int32_t low, int32_t high,
                                  int16_t *scratch, int8_t *out) {
  const int32_t base = multiplier[0], *mul = multiplier + 1; /* read once: int8 stores may alias them */
  const int32_t words = (depth / 4 + 15) / 16;
  const int8_t *w = values;
  int32_t r;
  widen_blocks(x, depth, 1, scratch);
  for (r = 0; r < rows; ++r, mask += words) {
    const int32_t k = per_channel ? r : 0;
    int32_t acc = bias[r];
    w = sparse_dot1(scratch, mask, words, w, &acc);
    out[r] = (int8_t)requantize_values(acc, mul[k], base, shift[k], low, high);
  }
}

#endif /* DT_DOT_H_ */
