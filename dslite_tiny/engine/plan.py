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

Where the peak is a tensor inside a chain of convolutions, ``plan_smallest`` runs the chain in bands of rows
(``engine.bands``): the inner tensors shrink to their band buffers, alive for the whole chain like its input
and output, and none of the chain's ops overlaps its output with its input.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from dslite_tiny.engine.bands import Band, chains, schedules
from dslite_tiny.measure.graph import Graph, Op

ALIGNMENT = 4  # word loads of int8 data on a Cortex-M; a 32-bit word is the widest access a kernel makes


@dataclasses.dataclass(frozen=True)
class Plan:
    offsets: dict[int, int]  # tensor index → byte offset in the arena
    arena_bytes: int
    scratch: dict[int, int] = dataclasses.field(default_factory=dict)  # op index → its scratch's offset
    bands: tuple[Band, ...] = ()  # chains run band by band; their inner tensors' offsets are their buffers'

    def choices(self, graph: Graph) -> tuple[str, ...]:
        """Per op, where the planner put its output: what the engine reports per layer."""
        return tuple(self._choice(graph, op) for op in graph.ops)

    def _choice(self, graph: Graph, op: Op) -> str:
        band = next((b for b in self.bands if op.index in b.ops), None)
        if band is not None:
            inner = dict(band.buffers).get(op.outputs[0])
            return (f"ops {band.ops[0]}-{band.ops[-1]} in {len(band.steps)} bands of {band.rows} row(s)"
                    + (f"; output in a {inner} B band buffer" if inner else ""))
        target = op.outputs[0]
        if target not in self.offsets:
            return "writes the caller's output"
        start, size = self.offsets[target], _aligned(graph.tensors[target].elements)
        for source in (t for t in op.inputs if t in self.offsets):
            shared = min(start + size, self.offsets[source] + _aligned(graph.tensors[source].elements)) \
                - max(start, self.offsets[source])
            if shared > 0:
                return "in place" if start == self.offsets[source] else f"over {shared} B of its dying input"
        return "its own bytes"


@dataclasses.dataclass(frozen=True)
class _Buffer:
    tensor: int  # a tensor index, or -1 - op index for that op's scratch
    size: int
    first: int  # the op that writes it
    last: int  # the last op that reads it


def plan_smallest(graph: Graph, overlap: Callable[[Op], int | None],
                  scratch: Callable[[Op], int] = lambda op: 0) -> Plan:
    """``plan_arena``, then the neighbouring plan with the smallest arena (ties: the fewest kernel calls, then the
    fewest bytes copied) while one is smaller: one more chain run in bands, or one banded chain cut in two
    (MobileNet v1's first eight ops are best as two chains, but neither half alone beats all eight)."""
    best = plan_arena(graph, overlap, scratch)
    while True:
        better = min(_neighbours(graph, best, overlap, scratch), key=_cost, default=None)
        if better is None or better.arena_bytes >= best.arena_bytes:
            return best
        best = better


def _neighbours(graph: Graph, plan: Plan, overlap: Callable, scratch: Callable) -> Iterator[Plan]:
    taken = {i for band in plan.bands for i in band.ops}
    for chain in chains(graph):
        if not taken.intersection(chain):
            for band in schedules(graph, chain):
                yield plan_arena(graph, overlap, scratch, (*plan.bands, band))
    for k, band in enumerate(plan.bands):
        rest = plan.bands[:k] + plan.bands[k + 1:]
        for cut in range(2, len(band.ops) - 1):
            for head in schedules(graph, band.ops[:cut]):
                for tail in schedules(graph, band.ops[cut:]):
                    yield plan_arena(graph, overlap, scratch, (*rest, head, tail))


def _cost(plan: Plan) -> tuple[int, int, int]:
    return (plan.arena_bytes, sum(len(b.steps) * len(b.ops) for b in plan.bands),
            sum(b.copy_bytes for b in plan.bands))


def plan_arena(graph: Graph, overlap: Callable[[Op], int | None],
               scratch: Callable[[Op], int] = lambda op: 0, bands: tuple[Band, ...] = ()) -> Plan:
    """The arena of ``graph``; ``overlap(op)`` is the largest ``output − input`` offset the op's kernel
    allows where its input dies with it (None: none), ``scratch(op)`` the bytes it needs while it runs;
    ``bands`` the chains that run band by band."""
    external = set(graph.inputs) | set(graph.outputs)
    buffers = {b.tensor: b for b in _buffers(graph) if b.tensor not in external}
    for band in bands:
        _band_lifetimes(graph, buffers, band)
    for op in graph.ops:
        if size := scratch(op):
            buffers[-1 - op.index] = _Buffer(-1 - op.index, _aligned(size), op.index, op.index)
    banded = {i for band in bands for i in band.ops}
    overlaps = _overlaps(graph, buffers, lambda op: None if op.index in banded else overlap(op))
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
                {-1 - t: o for t, o in offsets.items() if t < 0}, bands)


def _band_lifetimes(graph: Graph, buffers: dict[int, _Buffer], band: Band) -> None:
    """Every band reads the chain's input and writes its output: both live from the chain's first op to its
    last; an inner tensor is its band buffer, for as long."""
    first, last = band.ops[0], band.ops[-1]
    for tensor, size in band.buffers:
        buffers[tensor] = _Buffer(tensor, _aligned(size), first, last)
    source, target = graph.ops[first].inputs[0], graph.ops[last].outputs[0]
    if source in buffers:
        buffers[source] = dataclasses.replace(buffers[source], last=max(buffers[source].last, last))
    if target in buffers:
        buffers[target] = dataclasses.replace(buffers[target], first=first)


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
