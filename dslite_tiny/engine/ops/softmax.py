"""SOFTMAX over the last dimension, int8 in and out (dt_softmax.c)."""
from __future__ import annotations

from dslite_tiny.engine import quant
from dslite_tiny.engine.ops import OpKernel, Struct, register
from dslite_tiny.measure.graph import Op

SOFTMAX_PARAMS = Struct("dt_softmax_params", ("rows", "depth", "input_multiplier", "input_left_shift", "diff_min"),
                        "SOFTMAX over the last dimension (depth) of rows; the output is int8 with scale 1/256, "
                        "zero point -128.")
DECLARATIONS = "void dt_softmax_s8(const dt_softmax_params *p, const int8_t *in, int8_t *out);"


def emit(writer, op: Op) -> str:
    x, out = writer.tensor(op, 0), writer.output(op)
    if out.zero_point != -128 or out.scale != 1 / 256:
        raise writer.refuse(op, f"has output scale {out.scale} and zero point {out.zero_point}; int8 softmax "
                                f"needs 1/256 and -128")
    multiplier, shift, diff_min = quant.softmax_parameters(op.options["beta"], x.scale)
    depth = x.shape[-1]
    params = writer.params(SOFTMAX_PARAMS, op, {"rows": x.elements // depth, "depth": depth,
                                                "input_multiplier": multiplier, "input_left_shift": shift,
                                                "diff_min": diff_min})
    writer.need("dt_softmax.c")
    return writer.call("dt_softmax_s8", params, writer.where(op.inputs[0]), writer.where(op.outputs[0]))


register(OpKernel("SOFTMAX", emit, DECLARATIONS, SOFTMAX_PARAMS))
