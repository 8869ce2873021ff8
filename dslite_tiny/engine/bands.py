"""Running a chain of convolutions a band of output rows at a time, so that the tensors inside the chain never
exist whole: MCUNetV2's patch-based inference, by rows. A DS-CNN's first convolution writes the largest tensor
of the model (the demo's: 32×32×64, 64 KB) only for the depthwise convolution after it to shrink it; run the two
band by band and that tensor lives in a buffer of three rows.

Why full-width rows with the overlap kept, where MCUNetV2 computes square patches and recomputes their
overlap: the engine's tensors are NHWC, so a band of rows is one contiguous slice every kernel already takes (the
same call with ``in_h``, ``pad_h`` and ``out_h`` narrowed: ``ops.convolution.Rows``); and the rows one band
shares with the next are moved to the front of the buffer instead of computed again, so banding adds a copy
and the calls, never a multiply-accumulate.

A chain is consecutive ops whose kernels can run a band (``OpKernel.rows``), each reading only the previous
one's output, which nothing else reads. The planner (``engine.plan``) chooses chains and band heights.
"""
from __future__ import annotations

import dataclasses

from dslite_tiny.engine.ops import OPS
from dslite_tiny.engine.ops.convolution import Rows
from dslite_tiny.measure.graph import Graph

# One band of one op of the chain, as the generated loop reads it from its table (engine.codegen): the bytes
# of the op's output buffer to keep (from where, how many; inner tensors only), the narrowed ``dt_conv_params``
# fields, and the byte offsets of the call's input and output in their buffers. ``out_h`` 0: no new rows.
STEP_FIELDS = ("keep_from", "keep_bytes", "in_h", "pad_h", "out_h", "in_at", "out_at")
LONGEST_CHAIN = 8  # ops; MobileNet v1's first four blocks, where its peak memory is


def column(position: int, field: str) -> int:
    """Where ``field`` of the chain's op at ``position`` is in a band's row of the table."""
    return position * len(STEP_FIELDS) + STEP_FIELDS.index(field)


@dataclasses.dataclass(frozen=True)
class Band:
    ops: tuple[int, ...]  # consecutive op indices, each reading the previous one's output
    rows: int  # output rows of the last op per band
    buffers: tuple[tuple[int, int], ...]  # (inner tensor, bytes of its band buffer), in chain order
    steps: tuple[tuple[int, ...], ...]  # per band: STEP_FIELDS per op, op after op

    @property
    def copy_bytes(self) -> int:
        """Bytes moved per inference to keep rows for the next band: banding's only extra work."""
        return sum(step[column(j, "keep_bytes")] for step in self.steps for j in range(len(self.ops)))

    def position(self, op: int) -> int:
        return self.ops.index(op)

    def describe(self) -> str:
        inner = ", ".join(f"tensor {t} in {size} bytes" for t, size in self.buffers)
        return (f"ops {self.ops[0]}-{self.ops[-1]} in {len(self.steps)} bands of {self.rows} output row(s): "
                f"{inner}; {self.copy_bytes} bytes copied per inference")


def chains(graph: Graph) -> list[tuple[int, ...]]:
    """Every chain of 2 to LONGEST_CHAIN ops that can run in bands."""
    readers: dict[int, list[int]] = {}
    for op in graph.ops:
        for t in op.inputs:
            readers.setdefault(t, []).append(op.index)
    found = []
    for start in graph.ops:
        chain = [start.index]
        while _bandable(graph, chain[-1]) and len(chain) < LONGEST_CHAIN and _feeds_next(graph, readers, chain[-1]):
            chain.append(chain[-1] + 1)
            found.append(tuple(chain))
    return found


def _feeds_next(graph: Graph, readers: dict[int, list[int]], index: int) -> bool:
    """The op's one output is the next op's first input, read by nothing else, and that op can run bands."""
    op, nxt = graph.ops[index], index + 1
    return len(op.outputs) == 1 and nxt < len(graph.ops) and _bandable(graph, nxt) \
        and graph.ops[nxt].inputs[0] == op.outputs[0] and readers.get(op.outputs[0]) == [nxt] \
        and op.outputs[0] not in graph.outputs


def schedules(graph: Graph, chain: tuple[int, ...]) -> list[Band]:
    """The chain in bands of 1, 2, 4, ... output rows of its last op (at least two bands)."""
    out_h = _rows(graph, chain[-1]).out_h
    heights = [1 << i for i in range(out_h.bit_length()) if (1 << i) < out_h]
    return [schedule(graph, chain, rows) for rows in heights]


def schedule(graph: Graph, chain: tuple[int, ...], rows: int) -> Band:
    """The chain in bands of ``rows`` output rows of its last op."""
    geometry = [_rows(graph, i) for i in chain]
    steps, capacity = band_steps(geometry, rows)
    inner = tuple((graph.ops[i].outputs[0], c * g.row_out_bytes) for i, c, g in zip(chain, capacity, geometry))
    return Band(tuple(chain), rows, inner, steps)


def band_steps(geometry: list[Rows], rows: int) -> tuple[tuple[tuple[int, ...], ...], list[int]]:
    """The table (per band, STEP_FIELDS per op) and each inner buffer's capacity in rows. Each band computes
    the last op's next ``rows`` output rows; going backwards, each op's output rows that band reads; going
    forwards, each inner buffer keeps the rows it holds that are still read, and its op computes only the
    new ones after them."""
    held = [(0, 0)] * (len(geometry) - 1)  # rows of each inner tensor in its buffer, from its start
    capacity = [0] * (len(geometry) - 1)
    steps = []
    for first in range(0, geometry[-1].out_h, rows):
        needed = [(first, min(first + rows, geometry[-1].out_h))]
        for g in reversed(geometry[1:]):
            needed.insert(0, g.reads(*needed[0]))
        step: list[int] = []
        for j, (g, (n0, n1)) in enumerate(zip(geometry, needed)):
            keep, start, out_at = (0, 0), n0, n0 * g.row_out_bytes
            if j < len(held):
                h0, h1 = held[j]
                if n0 < h0 or n1 < h1:
                    raise AssertionError(f"band rows of op {j} of the chain go backwards: {needed[j]} after {held[j]}")
                kept = max(0, h1 - n0)
                keep = ((n0 - h0) * g.row_out_bytes if kept else 0, kept * g.row_out_bytes)
                start = n0 + kept
                out_at = kept * g.row_out_bytes
                held[j] = (n0, n1)
                capacity[j] = max(capacity[j], n1 - n0)
            if start == n1:
                step += [*keep, 0, 0, 0, 0, 0]
                continue
            lo = g.reads(start, n1)[0]
            in_at = (lo - (held[j - 1][0] if j else 0)) * g.row_in_bytes
            step += [*keep, *g.narrowed(start, n1), in_at, out_at]
        steps.append(tuple(step))
    return tuple(steps), capacity


def _bandable(graph: Graph, index: int) -> bool:
    return _rows(graph, index) is not None


def _rows(graph: Graph, index: int) -> Rows | None:
    op = graph.ops[index]
    return OPS[op.name].rows(graph, op)
