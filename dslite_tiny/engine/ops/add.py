"""ADD (dt_add.c): residual connections and a BatchNormalization's shift, with TFLite's int8 rescaling."""
from __future__ import annotations

from dslite_tiny.engine import quant
from dslite_tiny.engine.ops import OpKernel, Struct, binary, register
from dslite_tiny.measure.graph import Op

ADD_PARAMS = Struct("dt_add_params", (
    "elements", "in2_elements", "in1_offset", "in2_offset", "out_offset", "left_shift", "in1_multiplier", "in1_shift",
    "in2_multiplier", "in2_shift", "out_multiplier", "out_shift", "act_min", "act_max"),
    "ADD: in2 has ``elements`` values, or ``in2_elements`` (the last dimension's, or one) repeated over them; "
    "offsets are minus the input zero points.")
DECLARATIONS = "void dt_add_s8(const dt_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);"


def emit(writer, op: Op) -> str:
    a, b, out = binary.operands(writer, op)
    act_min, act_max = quant.activation_range(op.options["fusedActivationFunction"], out.scale, out.zero_point)
    m1, s1, m2, s2, mo, so = quant.add_multipliers(a.scale, b.scale, out.scale)
    params = writer.params(ADD_PARAMS, op, {
        "elements": out.elements, "in2_elements": b.elements, "in1_offset": -a.zero_point, "in2_offset": -b.zero_point,
        "out_offset": out.zero_point, "left_shift": quant.ADD_LEFT_SHIFT, "in1_multiplier": m1, "in1_shift": s1,
        "in2_multiplier": m2, "in2_shift": s2, "out_multiplier": mo, "out_shift": so, "act_min": act_min,
        "act_max": act_max})
    writer.need("dt_add.c")
    return binary.call(writer, op, "dt_add_s8", params)


register(OpKernel("ADD", emit, DECLARATIONS, ADD_PARAMS, overlap=binary.in_place))
