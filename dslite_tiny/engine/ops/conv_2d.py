"""CONV_2D: a 1×1, stride-1 convolution on the pointwise kernels (dense, or block-sparse where pruning made
that pay), any other on the general one (dt_conv.c)."""
from __future__ import annotations

import numpy as np

from dslite_tiny.engine.ops import OpKernel, Work, register
from dslite_tiny.engine.ops.convolution import (CONV_PARAMS, conv_multipliers, conv_rows, conv_values,
                                                is_pointwise, pointwise_overlap, widened_pointwise_overlap,
                                                window_overlap)
from dslite_tiny.engine.sparse import BlockSparse, smaller_block_sparse
from dslite_tiny.measure.graph import Graph, Op

# Taps (height · width · input channels) up to which dt_conv.c gathers a pixel's window once (into the scratch,
# four pixels at a time) instead of reading the input again for every output channel: MLPerf Tiny's 10×4 first
# convolution has 40, and on the generic path cost ~1670 Cortex-M4 instructions per output (engine_costs.md).
# A multiple of 4 (whole blocks).
SMALL_WINDOW = 64
DECLARATIONS = f"""\
#define DT_SMALL_WINDOW {SMALL_WINDOW} /* taps of a window dt_conv_s8 gathers once per output pixel */
/* ``scratch`` (4 · 4 ceil(taps / 4) int16, word-aligned) where the window has at most DT_SMALL_WINDOW taps,
 * else NULL. */
void dt_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                const int32_t *multiplier, const int8_t *shift, int16_t *scratch, int8_t *out);
/* A 1×1 convolution with stride 1 and no padding; bias has the input offset folded in. ``scratch`` (4 in_c
 * int16, word-aligned) where in_c is a multiple of 4, else NULL. */
void dt_pointwise_conv_s8(const dt_conv_params *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                          const int32_t *multiplier, const int8_t *shift, int16_t *scratch, int8_t *out);
/* Its block-sparse form (engine/sparse.py): per output channel, (in_c / 4 + 15) / 16 16-bit masks of which
 * blocks of four input channels are kept (in ``mask``), and the kept blocks' four weights each (in
 * ``values``); the skipped blocks are zeros. in_c is a multiple of 4; ``scratch`` holds 4 in_c int16,
 * word-aligned. */
void dt_pointwise_conv_sparse_s8(const dt_conv_params *p, const int8_t *in, const uint16_t *mask,
                                 const int8_t *values, const int32_t *bias, const int32_t *multiplier,
                                 const int8_t *shift, int16_t *scratch, int8_t *out);"""
WIDENED_ROWS = 4  # pixels the pointwise kernels widen into their scratch at a time


def emit(writer, op: Op) -> str:
    x, w, out = writer.tensor(op, 0), writer.tensor(op, 1), writer.output(op)
    if w.shape[3] != x.shape[3]:
        raise writer.refuse(op, "is a grouped convolution; the engine runs ungrouped ones")
    params = writer.params(CONV_PARAMS, op, conv_values(writer, op, depthwise=False))
    multipliers, shifts = conv_multipliers(writer, op)
    if not is_pointwise(writer.graph, op):
        writer.need("dt_conv.c")
        taps = _small_taps(writer.graph, op)
        small = taps is not None
        stored = small_window_filters(w.data.reshape(w.shape[0], taps)) if small else None
        # the small-window kernel reads a bias for every filter: zeros where the model has none
        bias = None if not small or writer.bias(op) is not None else np.zeros(w.shape[0], np.int64)
        arrays = writer.weights(op, bias=bias, multipliers=multipliers, shifts=shifts, values=stored)
        return writer.call("dt_conv_s8", params, writer.input_at(op), *arrays,
                           writer.scratch(op) if small else "NULL", writer.output_at(op))
    out_c = out.shape[-1]
    folded = writer.folded_bias(op, w.data.reshape(out_c, -1).sum(axis=1), -x.zero_point)
    writer.need("dt_pointwise_conv.c")
    arrays = writer.weights(op, bias=folded, multipliers=multipliers, shifts=shifts)
    if op.index in writer.sparse:
        return writer.call("dt_pointwise_conv_sparse_s8", params, writer.input_at(op), *arrays,
                           writer.scratch(op), writer.output_at(op))
    scratch = writer.scratch(op) if _widened(writer.graph, op) else "NULL"
    return writer.call("dt_pointwise_conv_s8", params, writer.input_at(op), *arrays, scratch,
                       writer.output_at(op))


def small_window_filters(filters: np.ndarray) -> np.ndarray:
    """[out][taps] filters as dt_conv.c's small-window kernel reads them: each filter's taps padded with zeros
    to whole blocks of four (a pointwise convolution's rows over the gathered windows)."""
    out, taps = filters.shape
    padded = np.zeros((out, _small_blocks(taps) * 4), filters.dtype)
    padded[:, :taps] = filters
    return padded


def _small_blocks(taps: int) -> int:
    return -(-taps // 4)


def _small_taps(graph: Graph, op: Op) -> int | None:
    """The window's taps where dt_conv.c gathers it (at most SMALL_WINDOW), else None."""
    w = graph.tensors[op.inputs[1]]
    taps = w.elements // w.shape[0]
    return taps if not is_pointwise(graph, op) and taps <= SMALL_WINDOW else None


def overlap(graph: Graph, op: Op, sparse: bool) -> int:
    if _small_taps(graph, op) is not None:
        return window_overlap(graph, op, rows=WIDENED_ROWS)
    if not is_pointwise(graph, op):
        return window_overlap(graph, op)
    _, h, w, c_in = graph.tensors[op.inputs[0]].shape
    c_out = graph.tensors[op.outputs[0]].shape[-1]
    return (widened_pointwise_overlap if sparse or _widened(graph, op) else pointwise_overlap)(h * w, c_in, c_out)


def _widened(graph: Graph, op: Op) -> bool:
    """A pointwise convolution whose dense kernel widens four pixels at a time (input depth a multiple of 4)."""
    return is_pointwise(graph, op) and graph.tensors[op.inputs[0]].shape[-1] % 4 == 0


def sparse_weights(graph: Graph, op: Op) -> BlockSparse | None:
    w = graph.tensors[op.inputs[1]]
    if not is_pointwise(graph, op) or w.data is None:
        return None
    return smaller_block_sparse(w.data.reshape(w.shape[0], -1))


def scratch(graph: Graph, op: Op, sparse: BlockSparse | None) -> int:
    """The sparse kernel, and the dense one where the depth is a multiple of 4, widen four pixels to int16; a
    small window's kernel gathers four pixels' windows, in whole blocks of four taps."""
    if (taps := _small_taps(graph, op)) is not None:
        return WIDENED_ROWS * _small_blocks(taps) * 4 * 2
    widened = sparse is not None or _widened(graph, op)
    return WIDENED_ROWS * graph.tensors[op.inputs[0]].shape[-1] * 2 if widened else 0


def work(graph: Graph, op: Op, sparse: BlockSparse | None) -> Work:
    x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    pixels = out.elements // out.shape[-1]
    if not is_pointwise(graph, op):
        window = w.elements // w.shape[0]
        return Work("conv_small_window" if window <= SMALL_WINDOW else "conv", out.elements * window, out.elements)
    if sparse is not None:
        return Work("pointwise_sparse", pixels * sparse.kept * 4, out.elements)
    return Work("pointwise", pixels * x.shape[-1] * out.shape[-1], out.elements)


register(OpKernel("CONV_2D", emit, DECLARATIONS, CONV_PARAMS, weights_axis=0, overlap=overlap,
                  sparse=sparse_weights, work=work, scratch=scratch, rows=conv_rows))
