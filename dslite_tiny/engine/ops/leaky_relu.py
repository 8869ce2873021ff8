"""LEAKY_RELU (dt_leaky_relu.c): the folded AReLU of the models' head. Element-wise, so it runs in place."""
from __future__ import annotations

from dslite_tiny.engine import quant
from dslite_tiny.engine.ops import OpKernel, Struct, register
from dslite_tiny.measure.graph import Graph, Op

LEAKY_RELU_PARAMS = Struct("dt_leaky_relu_params", ("elements", "in_zero_point", "out_zero_point", "alpha_multiplier",
                                                    "alpha_shift", "identity_multiplier", "identity_shift"),
                           "LEAKY_RELU: the identity and alpha branches each requantized.")
DECLARATIONS = "void dt_leaky_relu_s8(const dt_leaky_relu_params *p, const int8_t *in, int8_t *out);"


def emit(writer, op: Op) -> str:
    x, out = writer.tensor(op, 0), writer.output(op)
    alpha_m, alpha_s, identity_m, identity_s = quant.leaky_relu_multipliers(x.scale, op.options["alpha"], out.scale)
    params = writer.params(LEAKY_RELU_PARAMS, op, {
        "elements": x.elements, "in_zero_point": x.zero_point, "out_zero_point": out.zero_point,
        "alpha_multiplier": alpha_m, "alpha_shift": alpha_s, "identity_multiplier": identity_m,
        "identity_shift": identity_s})
    writer.need("dt_leaky_relu.c")
    return writer.call("dt_leaky_relu_s8", params, writer.where(op.inputs[0]), writer.where(op.outputs[0]))


def in_place(graph: Graph, op: Op, sparse: bool) -> int:
    return 0  # output element i reads input element i only


register(OpKernel("LEAKY_RELU", emit, DECLARATIONS, LEAKY_RELU_PARAMS, overlap=in_place))
