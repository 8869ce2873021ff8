"""What CONV_2D and DEPTHWISE_CONV_2D share: their parameter block, its values for one op, and how far their
kernels let an output overlap the input it replaces."""
from __future__ import annotations

import dataclasses

import numpy as np

from dslite_tiny.engine import quant
from dslite_tiny.engine.ops import Struct
from dslite_tiny.measure.graph import Graph, Op

CONV_PARAMS = Struct("dt_conv_params", (
    "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w", "dil_h", "dil_w",
    "pad_h", "pad_w", "depth_multiplier", "in_offset", "act_min", "act_max"),
    "CONV_2D and DEPTHWISE_CONV_2D (depth_multiplier: depthwise only). in_offset is minus the input zero point; "
    "the output offset is folded into each channel's requantization constants.")
_PADDING_SAME = 0
_UNBOUNDED = 1 << 62  # no read follows: any offset is safe


def padding(graph: Graph, op: Op) -> tuple[int, int]:
    """The leading padding (rows, columns) of a convolution: TFLite's for SAME, 0 for VALID."""
    x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    o = op.options
    if o["padding"] != _PADDING_SAME:
        return 0, 0
    return (quant.same_padding(o["strideH"], o["dilationHFactor"], x.shape[1], w.shape[1], out.shape[1]),
            quant.same_padding(o["strideW"], o["dilationWFactor"], x.shape[2], w.shape[2], out.shape[2]))


def conv_values(writer, op: Op, *, depthwise: bool) -> dict[str, int]:
    """The op's ``dt_conv_params``."""
    x, w, out = writer.tensor(op, 0), writer.tensor(op, 1), writer.output(op)
    o = op.options
    _, in_h, in_w, in_c = x.shape
    _, out_h, out_w, out_c = out.shape
    k_h, k_w = w.shape[1], w.shape[2]
    pad_h, pad_w = padding(writer.graph, op)
    act_min, act_max = quant.activation_range(o["fusedActivationFunction"], out.scale, out.zero_point)
    return {"in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w, "out_c": out_c, "k_h": k_h,
            "k_w": k_w, "stride_h": o["strideH"], "stride_w": o["strideW"], "dil_h": o["dilationHFactor"],
            "dil_w": o["dilationWFactor"], "pad_h": pad_h, "pad_w": pad_w,
            "depth_multiplier": o.get("depthMultiplier", 1) if depthwise else 1, "in_offset": -x.zero_point,
            "act_min": act_min, "act_max": act_max}


def conv_multipliers(writer, op: Op) -> tuple[list[int], list[int]]:
    """Per output channel (a per-tensor scale repeated)."""
    x, w, out = writer.tensor(op, 0), writer.tensor(op, 1), writer.output(op)
    out_c = out.shape[-1]
    multipliers, shifts = quant.conv_multipliers(x.scale, w.scales, out.scale)
    return multipliers * (out_c // len(multipliers)), shifts * (out_c // len(shifts))


@dataclasses.dataclass(frozen=True)
class Rows:
    """A convolution along its height, for running it a band of output rows at a time (``engine.bands``): a
    band is the same kernel call with ``in_h``, ``pad_h`` and ``out_h`` of ``dt_conv_params`` narrowed to it."""

    in_h: int
    out_h: int
    k: int
    stride: int
    dilation: int
    pad: int
    row_in_bytes: int  # one input row: width × channels
    row_out_bytes: int

    def reads(self, first: int, end: int) -> tuple[int, int]:
        """The input rows [lo, hi) that output rows [first, end) read (rows outside the input are padding)."""
        lo = max(0, first * self.stride - self.pad)
        hi = min(self.in_h, (end - 1) * self.stride - self.pad + (self.k - 1) * self.dilation + 1)
        return lo, hi

    def narrowed(self, first: int, end: int) -> tuple[int, int, int]:
        """``in_h``, ``pad_h`` and ``out_h`` of the call computing output rows [first, end) from an input
        pointer at row ``reads(first, end)[0]``: its first window starts ``pad_h`` rows above that row."""
        lo, hi = self.reads(first, end)
        return hi - lo, self.pad + lo - first * self.stride, end - first


def conv_rows(graph: Graph, op: Op) -> Rows | None:
    """CONV_2D's and DEPTHWISE_CONV_2D's ``Rows`` (both kernels take ``dt_conv_params``); None where a
    dilated window has every tap of some output row in the padding (a band of it would read no row)."""
    x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    o = op.options
    pad = padding(graph, op)[0]
    taps = np.arange(out.shape[1])[:, None] * o["strideH"] - pad + np.arange(w.shape[1])[None, :] * o["dilationHFactor"]
    if not ((taps >= 0) & (taps < x.shape[1])).any(axis=1).all():
        return None
    return Rows(x.shape[1], out.shape[1], w.shape[1], o["strideH"], o["dilationHFactor"], pad,
                x.shape[2] * x.shape[3], out.shape[2] * out.shape[3])


def is_pointwise(graph: Graph, op: Op) -> bool:
    """A 1×1 CONV_2D with stride 1 and no padding: the engine's pointwise kernels run it."""
    w = graph.tensors[op.inputs[1]]
    o = op.options
    return op.name == "CONV_2D" and w.shape[1:3] == (1, 1) and (o["strideH"], o["strideW"]) == (1, 1)


def window_overlap(graph: Graph, op: Op, rows: int = 0) -> int:
    """A kernel that writes output elements in raster order, each after reading its whole window: the write
    to ``out + j`` is safe when every input byte a later element reads lies above it. With ``rows``, one that
    reads the windows of ``rows`` output pixels (the last pixels % rows one by one) before it writes any of
    their outputs: each group's writes must stay below every read of the groups after it."""
    first_read = _first_reads(graph, op)  # per output element, in the order the kernel writes them
    if rows:
        out_c = graph.tensors[op.outputs[0]].shape[-1]
        return _grouped_overlap(first_read.reshape(-1, out_c).min(axis=1), rows, out_c)
    later = np.minimum.accumulate(first_read[::-1])[::-1]  # the lowest index read at or after each element
    later = np.append(later[1:], np.iinfo(np.int64).max)  # ... after it
    return int(np.min(later - np.arange(first_read.size))) - 1


def pointwise_overlap(pixels: int, c_in: int, c_out: int) -> int:
    """The dense pointwise kernel's order where the depth is not a multiple of 4: per pixel pair and pair of
    output channels, both input rows are read whole and four outputs written; so a block's writes precede
    reads of the same pair until its last channel block, and of the next pair after it. A last odd pixel goes
    one channel at a time."""
    bounds = []
    pairs = np.arange(0, pixels - 1, 2)
    if pairs.size:
        blocks = np.arange(0, c_out, 2)
        highest = (pairs[:, None] + 1) * c_out + np.minimum(blocks[None, :] + 1, c_out - 1)  # block's top write
        later = np.where(blocks[None, :] + 2 < c_out, pairs[:, None] * c_in, (pairs[:, None] + 2) * c_in)
        if pixels % 2 == 0:  # after the last pair's last block nothing is read
            later[-1, -1] = _UNBOUNDED
        bounds.append(np.min(later - highest))
    if pixels % 2:
        last = pixels - 1
        bounds.append(min((last * c_in - (last * c_out + oc) for oc in range(c_out - 1)), default=_UNBOUNDED))
    return int(min(bounds)) - 1


def widened_pointwise_overlap(pixels: int, c_in: int, c_out: int) -> int:
    """The order of the pointwise kernels that widen their input (sparse, and dense with a depth that is a
    multiple of 4): per group of four pixels (the last ``pixels % 4`` one by one), the group's input rows are
    read whole into its scratch, then all its outputs written. Each group's writes must stay below every read
    of the groups after it."""
    return _grouped_overlap(np.arange(pixels, dtype=np.int64) * c_in, 4, c_out)


def _grouped_overlap(first_read: np.ndarray, rows: int, c_out: int) -> int:
    """The overlap of a kernel that, per group of ``rows`` output pixels (the last pixels % rows one by one),
    reads everything the group reads before it writes any of the group's ``c_out`` outputs a pixel:
    ``first_read`` is each pixel's lowest input index read. Each group's writes must stay below every read of
    the groups after it."""
    pixels = first_read.size
    starts = np.append(np.arange(0, pixels - rows + 1, rows), np.arange(pixels - pixels % rows, pixels))
    ends = np.append(starts[1:], pixels)
    lowest = np.minimum.accumulate(first_read[::-1])[::-1]  # the lowest index read at or after each pixel
    later = np.append(lowest[ends[:-1]], _UNBOUNDED)  # ... by the groups after each group
    return int(np.min(later - ends * c_out))


def _first_reads(graph: Graph, op: Op) -> np.ndarray:
    """The lowest input index each output element of a convolution reads (NHWC, raster order)."""
    x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    o = op.options
    _, in_h, in_w, in_c = x.shape
    _, out_h, out_w, out_c = out.shape
    k_h, k_w = w.shape[1], w.shape[2]
    pad_h, pad_w = padding(graph, op)
    y = _first_inside(np.arange(out_h) * o["strideH"] - pad_h, o["dilationHFactor"], k_h, in_h)
    x_ = _first_inside(np.arange(out_w) * o["strideW"] - pad_w, o["dilationWFactor"], k_w, in_w)
    pixel = (y[:, None] * in_w + x_[None, :]) * in_c  # (out_h, out_w)
    if op.name == "CONV_2D":
        channel = np.zeros(out_c, np.int64)  # every output channel reads input channel 0 first
    else:
        channel = np.arange(out_c, dtype=np.int64) // o.get("depthMultiplier", 1)
    return (pixel[:, :, None] + channel[None, None, :]).ravel().astype(np.int64)


def _first_inside(origin: np.ndarray, dilation: int, taps: int, size: int) -> np.ndarray:
    """The first tap position inside [0, size) for each window origin (windows always have one)."""
    positions = origin[:, None] + dilation * np.arange(taps)[None, :]
    inside = (positions >= 0) & (positions < size)
    return np.take_along_axis(positions, np.argmax(inside, axis=1)[:, None], axis=1)[:, 0]
