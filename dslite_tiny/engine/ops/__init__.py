"""The engine's ops, one module each: what TFLite builtin it runs, its kernel's C (a file of ``kernels/``), its
named parameter struct, how its kernel reads and writes the arena (for the planner) and the constants and
call it writes for one op of a model. ``OPS`` is the one table the graph check, the planner, the kernels'
header (``dt_engine.h``, rendered from it) and the writer read: adding an op is a module here and a kernel
file there.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable

from dslite_tiny.engine.sparse import BlockSparse
from dslite_tiny.measure.graph import Graph, Op


@dataclasses.dataclass(frozen=True)
class Struct:
    """A kernel's parameter block: ``int32_t`` fields in this order (the C typedef is rendered from it, and
    every instance is written with designated initializers, so the two cannot drift apart)."""

    name: str
    fields: tuple[str, ...]
    doc: str


def _no_overlap(graph: Graph, op: Op, sparse: bool) -> int | None:
    return None


def _no_sparse(graph: Graph, op: Op) -> BlockSparse | None:
    return None


def _no_scratch(graph: Graph, op: Op, sparse: BlockSparse | None) -> int:
    return 0


def _no_rows(graph: Graph, op: Op) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Work:
    """What an op's kernel does, for the Cortex-M4 instruction model (``measure.cortex_m4``): its ``kind``
    (a kernel path), multiply-accumulates (kept ones, on a sparse path) and output elements."""

    kind: str
    macs: int
    outputs: int


def _outputs_only(graph: Graph, op: Op, sparse: BlockSparse | None) -> Work:
    return Work(op.name.lower(), 0, graph.tensors[op.outputs[0]].elements)


@dataclasses.dataclass(frozen=True)
class OpKernel:
    """One builtin op the engine runs.

    ``emit(writer, op)`` adds the op's constants to the writer and returns its kernel call; ``overlap(graph, op,
    sparse)`` is the largest ``output − input`` arena offset at which the kernel never overwrites an input byte
    it still reads (None: no overlap; 0: in place); ``sparse(graph, op)`` the op's weights in block-sparse form
    where that is smaller (the generator runs the sparse kernel where it is faster too). ``declarations`` are
    the C prototypes (with their comments) of the kernel file's functions; ``work(graph, op, sparse)`` what the
    kernel does (``Work``); ``scratch(graph, op, sparse)`` the arena bytes the kernel uses while it runs
    (``Writer.scratch``); ``rows(graph, op)`` how the kernel runs a band of output rows (``engine.bands``), or
    None where it cannot."""

    name: str
    emit: Callable
    declarations: str
    struct: Struct | None = None
    weights_axis: int | None = None  # the output-channel axis of its weights (input 1), if it has weights
    parameter_inputs: tuple[int, ...] = ()  # inputs that are int32 parameters, not int8 operands
    overlap: Callable[[Graph, Op, bool], int | None] = _no_overlap
    sparse: Callable[[Graph, Op], BlockSparse | None] = _no_sparse
    work: Callable[[Graph, Op, BlockSparse | None], Work] = _outputs_only
    scratch: Callable[[Graph, Op, BlockSparse | None], int] = _no_scratch
    rows: Callable[[Graph, Op], object] = _no_rows


OPS: dict[str, OpKernel] = {}


def register(kernel: OpKernel) -> OpKernel:
    if kernel.name in OPS:
        raise ValueError(f"{kernel.name} is registered twice")
    OPS[kernel.name] = kernel
    return kernel


def structs() -> list[Struct]:
    """Every parameter struct once, in the order the ops were registered."""
    seen: dict[str, Struct] = {}
    for kernel in OPS.values():
        if kernel.struct is not None:
            seen.setdefault(kernel.struct.name, kernel.struct)
    return list(seen.values())


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
