"""DEPTHWISE_CONV_2D (dt_depthwise_conv.c): one bias with the input offset folded in and raw products; a
border window adds minus the offset times each weight outside the input, whose tap the reference kernel
skips. The model's own bias is not stored: it would be the folded one's second copy in flash."""
from __future__ import annotations

from dslite_tiny.engine.ops import OpKernel, Work, register
from dslite_tiny.engine.ops.convolution import (CONV_PARAMS, conv_multipliers, conv_rows, conv_values,
                                                window_overlap)
from dslite_tiny.measure.graph import Graph, Op

DECLARATIONS = """\
/* folded_bias: bias plus the input offset times each output channel's weight sum. ``zeros`` (in_c bytes) for
 * a 3×3 window with dilation 1 and depth multiplier 1, else NULL: the kernel fills it with the input zero
 * point, which its border pixels read for every tap outside the input. */
void dt_depthwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *folded_bias,
                          const int32_t *multiplier, const int8_t *shift, int8_t *zeros, int8_t *out);"""


def emit(writer, op: Op) -> str:
    x, w, out = writer.tensor(op, 0), writer.tensor(op, 1), writer.output(op)
    out_c = out.shape[-1]
    params = writer.params(CONV_PARAMS, op, conv_values(writer, op, depthwise=True))
    multipliers, shifts = conv_multipliers(writer, op)
    folded = writer.folded_bias(op, w.data.reshape(-1, out_c).sum(axis=0), -x.zero_point)
    writer.need("dt_depthwise_conv.c")
    arrays = writer.weights(op, bias=folded, multipliers=multipliers, shifts=shifts)
    zeros = writer.scratch(op, "int8_t") if _unrolled(writer.graph, op) else "NULL"
    return writer.call("dt_depthwise_conv_s8", params, writer.input_at(op), *arrays, zeros,
                       writer.output_at(op))


def overlap(graph: Graph, op: Op, sparse: bool) -> int:
    return window_overlap(graph, op)


def _unrolled(graph: Graph, op: Op) -> bool:
    """dt_depthwise_conv.c's 3×3 path (dilation 1, depth multiplier 1)."""
    o = op.options
    return graph.tensors[op.inputs[1]].shape[1:3] == (3, 3) \
        and (o["dilationHFactor"], o["dilationWFactor"]) == (1, 1) and o.get("depthMultiplier", 1) == 1


def scratch(graph: Graph, op: Op, sparse) -> int:
    """The 3×3 path's ``zeros``: one input pixel of the zero point."""
    return graph.tensors[op.inputs[0]].shape[-1] if _unrolled(graph, op) else 0


def work(graph: Graph, op: Op, sparse) -> Work:
    w, out = graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    kind = "depthwise_3x3" if _unrolled(graph, op) else "depthwise"
    return Work(kind, out.elements * w.shape[1] * w.shape[2], out.elements)


register(OpKernel("DEPTHWISE_CONV_2D", emit, DECLARATIONS, CONV_PARAMS, weights_axis=3, overlap=overlap, work=work,
                  scratch=scratch, rows=conv_rows))
