"""What ADD and MUL share: their operands (an activation and one of its shape, a vector along its last
dimension, or a single value; the last two may be constants, such as a BatchNormalization's scale or the 0.5
of Keras's Average) and their in-place overlap."""
from __future__ import annotations

from dslite_tiny.measure.graph import Graph, Op, Tensor


def operands(writer, op: Op) -> tuple[Tensor, Tensor, Tensor]:
    a, b, out = writer.tensor(op, 0), writer.tensor(op, 1), writer.output(op)
    if a.data is not None and b.data is None:
        a, b = b, a
    same = a.shape == b.shape
    last = a.shape and b.elements == a.shape[-1] and all(d == 1 for d in b.shape[:-1])
    if a.data is not None or not (same or last or b.elements == 1) or a.shape != out.shape:
        raise writer.refuse(op, f"combines {list(a.shape)} and {list(b.shape)}; the engine takes one shape, a "
                                f"vector along the last dimension, or a single value")
    return a, b, out


def call(writer, op: Op, kernel: str, params: str) -> str:
    a, b, _ = operands(writer, op)
    return writer.call(kernel, params, writer.operand(op, a), writer.operand(op, b), writer.where(op.outputs[0]))


def in_place(graph: Graph, op: Op, sparse: bool) -> int:
    return 0  # output element i reads element i of input 0 only
