"""The engine's static arena: every intermediate activation gets an offset, and two tensors share bytes
only where no later read can see the write. The model's input and output are the caller's buffers.

Greedy by size, as TFLite Micro's GreedyMemoryPlanner: the largest tensor first, each at the lowest
offset that overlaps no placed tensor alive at the same time, with one exception TFLite Micro does not
make: an op's output may overlap the input that dies with it, as far as the kernel's loop order allows.
The kernels write output element j after reading everything element j needs, in raster order, so a
write to byte ``out + j`` is safe when every input byte a later element reads lies above it:
``out − in ≤ min_j (first input index read by elements after j − j) − 1``. Elementwise ops get 0 (fully in
place); a 3×3 stride-2 depthwise convolution too; a pointwise convolution, whose kernel works on pixel
pairs, needs its output two pixels below its input.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dslite_tiny.engine import quant
from dslite_tiny.engine.graph import Graph, Op

_UNBOUNDED = 1 << 62  # no read follows: any offset is safe
ALIGNMENT = 4  # word loads of int8 data on a Cortex-M; a 32-bit word is the widest access a kernel makes
_ELEMENTWISE = frozenset({"ADD", "LEAKY_RELU", "MUL"})  # output element i reads element i of input 0 only


@dataclasses.dataclass(frozen=True)
class Plan:
    offsets: dict[int, int]  # tensor index → byte offset in the arena
    arena_bytes: int


@dataclasses.dataclass(frozen=True)
class _Buffer:
    tensor: int
    size: int
    first: int  # the op that writes it
    last: int  # the last op that reads it


def plan_arena(graph: Graph, *, sparse_ops: frozenset[int] = frozenset()) -> Plan:
    """The arena of ``graph``, whose ``sparse_ops`` run on the block-sparse kernels (their order differs)."""
    external = set(graph.inputs) | set(graph.outputs)
    buffers = {b.tensor: b for b in _buffers(graph) if b.tensor not in external}
    overlaps = _overlaps(graph, buffers, sparse_ops)  # (input, output) → the largest output − input offset allowed
    offsets: dict[int, int] = {}
    for buffer in sorted(buffers.values(), key=lambda b: (-b.size, b.first)):
        live = [buffers[t] for t in offsets if buffers[t].first <= buffer.last and buffer.first <= buffers[t].last]
        candidates = {0, *(offsets[b.tensor] + b.size for b in live)}
        for other in live:  # the lowest offset an allowed overlap permits
            if (buffer.tensor, other.tensor) in overlaps:
                candidates.add(offsets[other.tensor] - overlaps[buffer.tensor, other.tensor])
        offsets[buffer.tensor] = min(o for o in candidates if o >= 0 and o % ALIGNMENT == 0 and all(
            _compatible(buffer, o, b, offsets[b.tensor], overlaps) for b in live))
    arena = max((offsets[t] + buffers[t].size for t in offsets), default=0)
    return Plan(offsets, arena)


def _compatible(a: _Buffer, a_offset: int, b: _Buffer, b_offset: int, overlaps: dict) -> bool:
    if a_offset + a.size <= b_offset or b_offset + b.size <= a_offset:
        return True
    if (b.tensor, a.tensor) in overlaps:  # a is b's output
        return a_offset - b_offset <= overlaps[b.tensor, a.tensor]
    if (a.tensor, b.tensor) in overlaps:  # b is a's output
        return b_offset - a_offset <= overlaps[a.tensor, b.tensor]
    return False


def _buffers(graph: Graph) -> list[_Buffer]:
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for op in graph.ops:
        for t in (*op.inputs, *op.outputs):
            if t >= 0 and graph.tensors[t].data is None:
                first.setdefault(t, op.index)
                last[t] = op.index
    return [_Buffer(t, -(-graph.tensors[t].elements // ALIGNMENT) * ALIGNMENT, first[t], last[t]) for t in first]


def _overlaps(graph: Graph, buffers: dict[int, _Buffer], sparse_ops: frozenset[int]) -> dict[tuple[int, int], int]:
    """(input, output) of each op whose input dies there → the largest safe ``out − in`` offset."""
    allowed = {}
    for op in graph.ops:
        source, target = op.inputs[0], op.outputs[0]
        if source not in buffers or target not in buffers or buffers[source].last != op.index:
            continue
        delta = _largest_delta(graph, op, sparse=op.index in sparse_ops)
        if delta is not None:
            allowed[source, target] = delta
    return allowed


def is_pointwise(graph: Graph, op: Op) -> bool:
    """A 1×1 CONV_2D with stride 1 and no padding: the engine's pointwise kernel runs it, two pixels at a time."""
    w = graph.tensors[op.inputs[1]]
    o = op.options
    return op.name == "CONV_2D" and w.shape[1:3] == (1, 1) and (o["strideH"], o["strideW"]) == (1, 1)


def _largest_delta(graph: Graph, op: Op, *, sparse: bool = False) -> int | None:
    if op.name in _ELEMENTWISE:
        return 0
    if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return None
    if is_pointwise(graph, op):
        _, h, w, c_in = graph.tensors[op.inputs[0]].shape
        c_out = graph.tensors[op.outputs[0]].shape[-1]
        return _sparse_pointwise_delta(h * w, c_in, c_out) if sparse else _pointwise_delta(h * w, c_in, c_out)
    first_read = _first_reads(graph, op)  # per output element, in the order the kernel writes them
    later = np.minimum.accumulate(first_read[::-1])[::-1]  # the lowest index read at or after each element
    later = np.append(later[1:], np.iinfo(np.int64).max)  # ... after it
    return int(np.min(later - np.arange(first_read.size))) - 1


def _pointwise_delta(pixels: int, c_in: int, c_out: int) -> int:
    """The pointwise kernel's order: per pixel pair and pair of output channels, both input rows are read
    whole and four outputs written; so a block's writes precede reads of the same pair until its last
    channel block, and of the next pair after it. A last odd pixel goes one channel at a time."""
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


def _sparse_pointwise_delta(pixels: int, c_in: int, c_out: int) -> int:
    """The sparse pointwise kernel's order: per group of four pixels and output channel, the four input rows
    are read (at most whole) and four outputs written; the last ``pixels % 4`` go one at a time, channel by
    channel. Each step's writes must stay below every read of the steps after it."""
    groups = np.arange(0, pixels - 3, 4)
    tail = np.arange(groups.size * 4, pixels)
    channels = np.arange(c_out)
    reads = np.concatenate([np.repeat(groups * c_in, c_out), np.repeat(tail * c_in, c_out)])
    writes = np.concatenate([((groups[:, None] + 3) * c_out + channels).ravel(),
                             (tail[:, None] * c_out + channels).ravel()])
    later = np.append(np.minimum.accumulate(reads[::-1])[::-1][1:], _UNBOUNDED)  # the lowest read after each step
    return int(np.min(later - writes)) - 1


def _first_reads(graph: Graph, op: Op) -> np.ndarray:
    """The lowest input index each output element of a convolution reads (NHWC, raster order)."""
    x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    o = op.options
    _, in_h, in_w, in_c = x.shape
    _, out_h, out_w, out_c = out.shape
    k_h, k_w = w.shape[1], w.shape[2]
    same = o["padding"] == 0
    pad_h = quant.same_padding(o["strideH"], o["dilationHFactor"], in_h, k_h, out_h) if same else 0
    pad_w = quant.same_padding(o["strideW"], o["dilationWFactor"], in_w, k_w, out_w) if same else 0
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
