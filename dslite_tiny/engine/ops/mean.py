"""MEAN over the height and width of an NHWC tensor (dt_mean.c): global average pooling."""
from __future__ import annotations

import numpy as np

from dslite_tiny.engine import quant
from dslite_tiny.engine.ops import OpKernel, Struct, Work, register
from dslite_tiny.measure.graph import Graph, Op

MEAN_PARAMS = Struct("dt_mean_params", ("h", "w", "c", "in_zero_point", "out_zero_point", "multiplier", "shift"),
                     "MEAN over the height and width of an [h][w][c] tensor; multiplier and shift fold in 1 / (h * w).")
DECLARATIONS = "void dt_mean_hw_s8(const dt_mean_params *p, const int8_t *in, int8_t *out);"


def emit(writer, op: Op) -> str:
    x, axis, out = writer.tensor(op, 0), writer.tensor(op, 1), writer.output(op)
    axes = sorted(int(a) % len(x.shape) for a in np.ravel(axis.data)) if axis.data is not None else []
    if len(x.shape) != 4 or axes != [1, 2]:
        raise writer.refuse(op, f"reduces axes {axes}; the engine reduces height and width of an NHWC tensor")
    _, h, w, c = x.shape
    multiplier, shift = quant.mean_multiplier(x.scale, out.scale, h * w)
    params = writer.params(MEAN_PARAMS, op, {"h": h, "w": w, "c": c, "in_zero_point": x.zero_point,
                                             "out_zero_point": out.zero_point, "multiplier": multiplier,
                                             "shift": shift})
    writer.need("dt_mean.c")
    return writer.call("dt_mean_hw_s8", params, writer.where(op.inputs[0]), writer.where(op.outputs[0]))


def work(graph: Graph, op: Op, sparse) -> Work:
    return Work("mean", graph.tensors[op.inputs[0]].elements, graph.tensors[op.outputs[0]].elements)


register(OpKernel("MEAN", emit, DECLARATIONS, MEAN_PARAMS, parameter_inputs=(1,), work=work))
