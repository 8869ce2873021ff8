"""TensorFlow Lite's integer quantization arithmetic, done once at export time exactly as TFLite Micro's
kernels do it in their Prepare step, so the generated engine's constants equal the interpreter's.

Every scale comes from the flatbuffer as float32. Where TFLite Micro multiplies or divides them in float
(LEAKY_RELU) the arithmetic here is float32 too; where it does so in double (convolutions, MEAN, SOFTMAX),
it is Python float. Rounding is TfLiteRound (half away from zero) and frexp is C's.
"""
from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
# Fused activations of the TFLite schema (ActivationFunctionType).
NONE, RELU, RELU_N1_TO_1, RELU6 = 0, 1, 2, 3
SOFTMAX_DIFF_INTEGER_BITS = 5  # kScaledDiffIntegerBits of TFLite's int8 softmax
ADD_LEFT_SHIFT = 20  # int8 ADD's headroom shift (15 for int16)
FOLDED_LIMIT = 1 << 30  # |K| of a folded requantization: its 64-bit sum's high word cannot overflow
MAX_SHIFT = 30  # the largest left shift a requantization may take: the kernels shift int32 values


class QuantRangeError(ValueError):
    """A model's scales give a constant the kernels cannot use without undefined C (the message says which)."""


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: ``real`` ≈ multiplier · 2^(shift − 31), multiplier in [2^30, 2^31). A scale ratio
    that is not finite or needs a shift above ``MAX_SHIFT`` (a ratio of 2^30 or more) is refused."""
    if not math.isfinite(real):
        raise QuantRangeError(f"a requantization scale of {real}")
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    fixed = _round(fraction * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > MAX_SHIFT:
        raise QuantRangeError(f"a requantization scale of {real:.3g}, beyond 2^{MAX_SHIFT}")
    return fixed, shift


def conv_multipliers(input_scale: float, filter_scales: np.ndarray, output_scale: float) -> tuple[list[int], list[int]]:
    """Per output channel (or one, per tensor) of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED:
    double(input_scale) · double(filter_scale) / double(output_scale)."""
    pairs = [quantize_multiplier(float(input_scale) * float(s) / float(output_scale)) for s in filter_scales]
    return [m for m, _ in pairs], [s for _, s in pairs]


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8: the fused activation's bounds, quantized in float32."""
    def quantize(value: float) -> int:
        return zero_point + int(_round(float(np.float32(value) / np.float32(scale))))

    if activation == RELU:
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if activation == RELU6:
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    if activation == RELU_N1_TO_1:
        return max(INT8_MIN, quantize(-1.0)), min(INT8_MAX, quantize(1.0))
    if activation == NONE:
        return INT8_MIN, INT8_MAX
    raise QuantRangeError(f"fused activation {activation}")


def channel_requantization(multipliers: list[int], shifts: list[int], out_offset: int, *,
                           full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """What ``requantize_values`` (kernels/dt_arith.h) takes: the layer's multiplier array (its base
    2 out_offset + 1, then each channel's multiplier) and per channel a code. Where the clamp is int8's whole
    range (``full_range``) and the right shift e = -shift is 2 or more, the code is e - 2 and the kernel folds
    the rounding and the output offset into K = base 2^code, if |K| < 2^30; every other channel gets code
    shift - 31 (<= -1), the general path."""
    base = 2 * out_offset + 1
    codes = []
    for shift in shifts:
        code = -shift - 2
        folded = full_range and code >= 0 and abs(base * (1 << code)) < FOLDED_LIMIT
        codes.append(code if folded else shift - 31)
    return np.asarray([base, *multipliers], np.int64), np.asarray(codes, np.int64)


def mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """MEAN over ``count`` elements: QuantizeMultiplier(input/output scale), then the reference kernel's
    folding of 1/count into it (``QuantizedMeanOrSum``)."""
    multiplier, shift = quantize_multiplier(float(input_scale) / float(output_scale))
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    return (multiplier << fold) // count, shift - fold


def leaky_relu_multipliers(input_scale: float, alpha: float, output_scale: float) -> tuple[int, int, int, int]:
    """LEAKY_RELU's (alpha multiplier, shift, identity multiplier, shift), from float32 arithmetic."""
    i, a, o = np.float32(input_scale), np.float32(alpha), np.float32(output_scale)
    alpha_m, alpha_s = quantize_multiplier(float(np.float32(i * a) / o))
    identity_m, identity_s = quantize_multiplier(float(i / o))
    return alpha_m, alpha_s, identity_m, identity_s


def softmax_parameters(beta: float, input_scale: float) -> tuple[int, int, int]:
    """int8 SOFTMAX's (input multiplier, left shift, diff_min): PreprocessSoftmaxScaling and
    CalculateInputRadius with 5 integer bits."""
    bits = SOFTMAX_DIFF_INTEGER_BITS
    real = min(float(beta) * float(input_scale) * (1 << (31 - bits)), (1 << 31) - 1.0)
    if not real > 1.0:  # QuantizeMultiplierGreaterThanOne: TFLite Micro aborts, our left shift would be negative
        raise QuantRangeError(f"softmax beta {beta} × input scale {input_scale:.3g} is at most 2^-{31 - bits}")
    multiplier, shift = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << bits) - 1) * (1 << (31 - bits)) / (1 << shift))
    return multiplier, shift, -radius


def add_multipliers(scale1: float, scale2: float, output_scale: float) -> tuple[int, int, int, int, int, int]:
    """int8 ADD's (input1 multiplier, shift, input2 multiplier, shift, output multiplier, shift): both inputs
    are shifted left by ADD_LEFT_SHIFT and rescaled to twice the larger input scale (TFLite's add_common)."""
    twice_max = 2 * float(max(np.float32(scale1), np.float32(scale2)))
    m1, s1 = quantize_multiplier(float(scale1) / twice_max)
    m2, s2 = quantize_multiplier(float(scale2) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * float(output_scale)))
    return m1, s1, m2, s2, mo, so


def same_padding(stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    """ComputePaddingWithOffset's leading padding (0 for VALID, whose total is never positive)."""
    effective = (filter_size - 1) * dilation + 1
    return max(0, (out_size - 1) * stride + effective - in_size) // 2


def _round(value: float) -> int:
    """TfLiteRound: half away from zero."""
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)
