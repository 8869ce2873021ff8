"""FULLY_CONNECTED (dt_fully_connected.c): [1, depth] × [units, depth]^T with symmetric int8 weights, dense or
block-sparse."""
from __future__ import annotations

import numpy as np

from dslite_tiny.engine import quant
from dslite_tiny.engine.ops import OpKernel, Struct, Work, register
from dslite_tiny.engine.sparse import BlockSparse, smaller_block_sparse
from dslite_tiny.measure.graph import Graph, Op

FC_PARAMS = Struct("dt_fc_params", ("depth", "out_c", "per_channel", "act_min", "act_max"),
                   "FULLY_CONNECTED: per_channel selects one multiplier per output (else multiplier[0] for all). "
                   "The bias comes with the input offset folded in (weights have zero point 0).")
DECLARATIONS = """\
void dt_fully_connected_s8(const dt_fc_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                           const int32_t *multiplier, const int8_t *shift, int8_t *out);
/* Its block-sparse form, as dt_pointwise_conv_sparse_s8's; the depth is a multiple of 4 and ``scratch``
 * holds depth int16, word-aligned. */
void dt_fully_connected_sparse_s8(const dt_fc_params *p, const int8_t *in, const uint16_t *mask,
                                  const int8_t *values, const int32_t *bias, const int32_t *multiplier,
                                  const int8_t *shift, int16_t *scratch, int8_t *out);"""


def emit(writer, op: Op) -> str:
    x, w, out = writer.tensor(op, 0), writer.tensor(op, 1), writer.output(op)
    o = op.options
    if o.get("keepNumDims") or len(out.shape) != 2 or x.elements != w.shape[1] or w.dtype != "int8":
        raise writer.refuse(op, "is not a [1, depth] × [units, depth]^T int8 product")
    if np.any(w.zero_points):
        raise writer.refuse(op, "has asymmetric int8 weights; TFLite's are symmetric")
    act_min, act_max = quant.activation_range(o["fusedActivationFunction"], out.scale, out.zero_point)
    multipliers, shifts = quant.conv_multipliers(x.scale, w.scales, out.scale)
    params = writer.params(FC_PARAMS, op, {"depth": w.shape[1], "out_c": w.shape[0],
                                           "per_channel": int(len(w.scales) > 1), "act_min": act_min,
                                           "act_max": act_max})
    folded = writer.folded_bias(op, w.data.sum(axis=1), -x.zero_point)
    writer.need("dt_fully_connected.c")
    arrays = writer.weights(op, bias=folded, multipliers=multipliers, shifts=shifts)
    if op.index in writer.sparse:
        return writer.call("dt_fully_connected_sparse_s8", params, writer.where(op.inputs[0]), *arrays,
                           writer.scratch(op), writer.where(op.outputs[0]))
    return writer.call("dt_fully_connected_s8", params, writer.where(op.inputs[0]), *arrays,
                       writer.where(op.outputs[0]))


def sparse_weights(graph: Graph, op: Op) -> BlockSparse | None:
    w = graph.tensors[op.inputs[1]]
    if w.data is None or w.data.ndim != 2:
        return None
    return smaller_block_sparse(w.data)


def scratch(graph: Graph, op: Op, sparse: BlockSparse | None) -> int:
    """The sparse kernel widens the input to int16."""
    return 0 if sparse is None else graph.tensors[op.inputs[1]].shape[1] * 2


def work(graph: Graph, op: Op, sparse: BlockSparse | None) -> Work:
    w = graph.tensors[op.inputs[1]]
    if sparse is not None:
        return Work("fully_connected_sparse", sparse.kept * 4, w.shape[0])
    return Work("fully_connected", w.elements, w.shape[0])


register(OpKernel("FULLY_CONNECTED", emit, DECLARATIONS, FC_PARAMS, weights_axis=0, sparse=sparse_weights,
                  work=work, scratch=scratch))
