"""PAD of height and width with the zero point (dt_pad.c): DenseNet's stem."""
from __future__ import annotations

import numpy as np

from dslite_tiny.engine.ops import OpKernel, Struct, register
from dslite_tiny.measure.graph import Op

PAD_PARAMS = Struct("dt_pad_params", ("in_h", "in_w", "c", "out_h", "out_w", "top", "left", "value"),
                    "PAD of height and width with the output zero point.")
DECLARATIONS = "void dt_pad_s8(const dt_pad_params *p, const int8_t *in, int8_t *out);"


def emit(writer, op: Op) -> str:
    x, out = writer.tensor(op, 0), writer.output(op)
    pads = writer.tensor(op, 1).data
    if len(x.shape) != 4 or pads is None or np.any(pads[[0, 3]]) or (len(op.inputs) > 2 and op.inputs[2] >= 0):
        raise writer.refuse(op, "pads other than height and width of an NHWC tensor with its zero point")
    _, in_h, in_w, c = x.shape
    params = writer.params(PAD_PARAMS, op, {"in_h": in_h, "in_w": in_w, "c": c, "out_h": out.shape[1],
                                            "out_w": out.shape[2], "top": int(pads[1][0]), "left": int(pads[2][0]),
                                            "value": out.zero_point})
    writer.need("dt_pad.c")
    return writer.call("dt_pad_s8", params, writer.where(op.inputs[0]), writer.where(op.outputs[0]))


register(OpKernel("PAD", emit, DECLARATIONS, PAD_PARAMS, parameter_inputs=(1,)))
