/* The int8 kernels of dslite-tiny's generated engine: TFLite's integer arithmetic written out in C99, so
 * that a generated model gives TFLite Micro's reference kernels' outputs bit for bit. Tensors are NHWC,
 * batch 1; weights are TFLite's layouts (conv [out][h][w][in], depthwise [h][w][out], FC [out][in]).
 * Multipliers and shifts come precomputed by the generator, as TFLite Micro's Prepare computes them. */
#ifndef DT_ENGINE_H_
#define DT_ENGINE_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CONV_2D and DEPTHWISE_CONV_2D. in_offset is minus the input zero point. */
typedef struct {
  int32_t in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t depth_multiplier; /* depthwise only */
  int32_t in_offset, out_offset, act_min, act_max;
} dt_conv_params;

/* FULLY_CONNECTED: per_channel selects one multiplier per output (else multiplier[0] for all). The bias
 * comes with the input offset folded in (weights have zero point 0). */
typedef struct {
  int32_t depth, out_c, per_channel, out_offset, act_min, act_max;
} dt_fc_params;

/* MEAN over the height and width of an [h][w][c] tensor; multiplier and shift fold in 1 / (h * w). */
typedef struct {
  int32_t h, w, c, in_zero_point, out_zero_point, multiplier, shift;
} dt_mean_params;

/* SOFTMAX over the last dimension (depth) of rows; the output is int8 with scale 1/256, zero point -128. */
typedef struct {
  int32_t rows, depth, input_multiplier, input_left_shift, diff_min;
} dt_softmax_params;

typedef struct {
  int32_t elements, in_zero_point, out_zero_point;
  int32_t alpha_multiplier, alpha_shift, identity_multiplier, identity_shift;
} dt_leaky_relu_params;

/* ADD: in2 has ``elements`` values or ``in2_elements`` = the last dimension's (broadcast over the rest);
 * offsets are minus the input zero points. */
typedef struct {
  int32_t elements, in2_elements, in1_offset, in2_offset, out_offset, left_shift;
  int32_t in1_multiplier, in1_shift, in2_multiplier, in2_shift, out_multiplier, out_shift, act_min, act_max;
} dt_add_params;

/* MUL, broadcast as ADD. */
typedef struct {
  int32_t elements, in2_elements, in1_offset, in2_offset, out_offset, multiplier, shift, act_min, act_max;
} dt_mul_params;

/* PAD of height and width with the output zero point. */
typedef struct {
  int32_t in_h, in_w, c, out_h, out_w, top, left, value;
} dt_pad_params;

/* MAX_POOL_2D and AVERAGE_POOL_2D (input and output share their quantization). */
typedef struct {
  int32_t in_h, in_w, c, out_h, out_w, k_h, k_w, stride_h, stride_w, pad_h, pad_w, act_min, act_max;
} dt_pool_params;

void dt_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                const int32_t *multiplier, const int32_t *shift, int8_t *out);
/* A 1×1 convolution with stride 1 and no padding; bias has the input offset folded in. */
void dt_pointwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                          const int32_t *multiplier, const int32_t *shift, int8_t *out);
/* folded_bias: bias plus the input offset times each channel's weight sum, for windows inside the input. */
void dt_depthwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                          const int32_t *folded_bias, const int32_t *multiplier, const int32_t *shift, int8_t *out);
void dt_fully_connected_s8(const dt_fc_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                           const int32_t *multiplier, const int32_t *shift, int8_t *out);
/* The block-sparse forms of the two (engine/sparse.py): per output channel, (depth / 4 + 31) / 32 32-bit
 * masks of which blocks of four depth values are kept (in ``mask``), and the kept blocks' four weights each
 * (in ``values``); the skipped blocks are zeros. bias has the input offset folded in; the depth is a
 * multiple of 4. */
void dt_pointwise_conv_sparse_s8(const dt_conv_params *p, const int8_t *in, const uint32_t *mask,
                                 const int8_t *values, const int32_t *bias, const int32_t *multiplier,
                                 const int32_t *shift, int8_t *out);
void dt_fully_connected_sparse_s8(const dt_fc_params *p, const int8_t *in, const uint32_t *mask,
                                  const int8_t *values, const int32_t *bias, const int32_t *multiplier,
                                  const int32_t *shift, int8_t *out);
void dt_mean_hw_s8(const dt_mean_params *p, const int8_t *in, int8_t *out);
void dt_softmax_s8(const dt_softmax_params *p, const int8_t *in, int8_t *out);
void dt_leaky_relu_s8(const dt_leaky_relu_params *p, const int8_t *in, int8_t *out);
void dt_add_s8(const dt_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void dt_mul_s8(const dt_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void dt_pad_s8(const dt_pad_params *p, const int8_t *in, int8_t *out);
void dt_max_pool_s8(const dt_pool_params *p, const int8_t *in, int8_t *out);
void dt_average_pool_s8(const dt_pool_params *p, const int8_t *in, int8_t *out);
/* CONCATENATION of ``count`` tensors sharing the output's quantization: ``outer`` blocks, each the
 * concatenation of sizes[k] bytes of each in[k]. */
void dt_concat_s8(int32_t outer, int32_t count, const int8_t *const *in, const int32_t *sizes, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* DT_ENGINE_H_ */
