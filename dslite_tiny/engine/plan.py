"""The engine's static arena: every intermediate activation gets an offset, and two tensors share bytes
only where no later read can see the write. The model's input and output are the caller's buffers.

Greedy by size, as TFLite Micro's GreedyMemoryPlanner: the largest tensor first, each at the lowest
offset that overlaps no placed tensor alive at the same time, with one exception TFLite Micro does not
make: an op's output may overlap the input that dies with it, as far as the kernel's loop order allows.
How far an op's output may overlap its dying input is the op's to say (``engine.ops``: its kernel's loop
order): element-wise ops 0 (fully in place); a 3×3 stride-2 depthwise convolution too; a pointwise
convolution whose kernel reads four pixels into its scratch before writing them lets its output start
almost anywhere below the next four input pixels.

An op may also ask for scratch bytes it uses only while it runs (the pointwise and fully connected kernels
widen their input there): a buffer alive at that op alone, placed like the tensors, so the arena counts it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from dslite_tiny.measure.graph import Graph, Op

ALIGNMENT = 4  # word loads of int8 data on a Cortex-M; a 32-bit word is the widest access a kernel makes


@dataclasses.dataclass(frozen=True)
class Plan:
    offsets: dict[int, int]  # tensor index → byte offset in the arena
    arena_bytes: int
    scratch: dict[int, int] = dataclasses.field(default_factory=dict)  # op index → its scratch's offset


@dataclasses.dataclass(frozen=True)
class _Buffer:
    tensor: int  # a tensor index, or -1 - op index for that op's scratch
    size: int
    first: int  # the op that writes it
    last: int  # the last op that reads it


def plan_arena(graph: Graph, overlap: Callable[[Op], int | None],
               scratch: Callable[[Op], int] = lambda op: 0) -> Plan:
    """The arena of ``graph``; ``overlap(op)`` is the largest ``output − input`` offset the op's kernel
    allows where its input dies with it (None: none), ``scratch(op)`` the bytes it needs while it runs."""
    external = set(graph.inputs) | set(graph.outputs)
    buffers = {b.tensor: b for b in _buffers(graph) if b.tensor not in external}
    for op in graph.ops:
        if size := scratch(op):
            buffers[-1 - op.index] = _Buffer(-1 - op.index, _aligned(size), op.index, op.index)
    overlaps = _overlaps(graph, buffers, overlap)  # (input, output) → the largest output − input offset allowed
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
    return Plan({t: o for t, o in offsets.items() if t >= 0}, arena,
                {-1 - t: o for t, o in offsets.items() if t < 0})


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
    return [_Buffer(t, _aligned(graph.tensors[t].elements), first[t], last[t]) for t in first]


def _aligned(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


def _overlaps(graph: Graph, buffers: dict[int, _Buffer],
              overlap: Callable[[Op], int | None]) -> dict[tuple[int, int], int]:
    """(input, output) of each op whose input dies there → the largest safe ``out − in`` offset."""
    allowed = {}
    for op in graph.ops:
        source, target = op.inputs[0], op.outputs[0]
        if source not in buffers or target not in buffers or buffers[source].last != op.index:
            continue
        delta = overlap(op)
        if delta is not None:
            allowed[source, target] = delta
    return allowed
