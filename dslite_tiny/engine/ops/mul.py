"""MUL (dt_mul.c): a BatchNormalization's scale that could not be folded, broadcast as ADD."""
from __future__ import annotations

from dslite_tiny.engine import quant
from dslite_tiny.engine.ops import OpKernel, Struct, binary, register
from dslite_tiny.measure.graph import Op

MUL_PARAMS = Struct("dt_mul_params", ("elements", "in2_elements", "in1_offset", "in2_offset", "out_offset",
                                      "multiplier", "shift", "act_min", "act_max"), "MUL, broadcast as ADD.")
DECLARATIONS = "void dt_mul_s8(const dt_mul_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);"


def emit(writer, op: Op) -> str:
    a, b, out = binary.operands(writer, op)
    act_min, act_max = quant.activation_range(op.options["fusedActivationFunction"], out.scale, out.zero_point)
    multiplier, shift = quant.quantize_multiplier(float(a.scale) * float(b.scale) / float(out.scale))
    params = writer.params(MUL_PARAMS, op, {
        "elements": out.elements, "in2_elements": b.elements, "in1_offset": -a.zero_point, "in2_offset": -b.zero_point,
        "out_offset": out.zero_point, "multiplier": multiplier, "shift": shift, "act_min": act_min,
        "act_max": act_max})
    writer.need("dt_mul.c")
    return binary.call(writer, op, "dt_mul_s8", params)


register(OpKernel("MUL", emit, DECLARATIONS, MUL_PARAMS, overlap=binary.in_place))
