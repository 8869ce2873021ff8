"""``<name>_engine.c/.h``: one int8 model as plain C99 calls into the engine's kernels, with no
interpreter and no flatbuffer: weights and biases as ``const`` arrays, every requantization multiplier and
shift precomputed (``engine.quant``), activations in one static arena laid out by ``engine.plan``, and one
function ``<name>_invoke(const int8_t *input, int8_t *output)``. Each op's constants and call come from its
module in ``engine.ops``; the files are rendered from the Jinja templates in ``templates/``, the kernels'
header ``dt_engine.h`` from the op table, and only the kernel files the model calls are included.

Nothing from the model file is printed as text: comments name ops and tensors by index (the file's tensor
names are untrusted), numbers are written by Python as integers, and the banner's provenance comes escaped.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jinja2
import numpy as np

from dslite_tiny.c_source import banner
from dslite_tiny.engine import quant
from dslite_tiny.engine.bands import STEP_FIELDS, Band, column
from dslite_tiny.engine.graph import read_graph
from dslite_tiny.engine.ops import OPS, Work, structs
from dslite_tiny.engine.plan import plan_arena, plan_smallest
from dslite_tiny.engine.sparse import BlockSparse
from dslite_tiny.engine.writer import Writer
from dslite_tiny.errors import UserError
from dslite_tiny.measure.cortex_m4 import work_instructions
from dslite_tiny.measure.graph import check_limits

KERNEL_DIR = Path(__file__).parent / "kernels"
HEADER = "dt_engine.h"  # rendered from the op table
SHARED_HEADERS = ("dt_arith.h", "dt_dot.h")  # the arithmetic and dot products every kernel file may include
KERNEL_FILES = (HEADER, *SHARED_HEADERS, *sorted(p.name for p in KERNEL_DIR.glob("dt_*.c")))
# How much slower than its dense form a smaller sparse op may be, as a share of the model's instructions. A
# fully connected layer pays per row for its mask walk: the demo's 64×64 head at 50 % kept blocks is 44 %
# smaller (1.8 KB, 5 % of the model's flash) and ~700 instructions slower (0.01 % of the model's).
SPARSE_SLOWER_BUDGET = 0.001


@dataclasses.dataclass(frozen=True)
class Engine:
    files: dict[str, str]  # file name → text: the generated model, the kernels' header and the kernels it calls
    arena_bytes: int  # the static arena (intermediate activations)
    constant_bytes: int  # weights, biases, multipliers, shifts and parameter blocks: flash
    input_bytes: int
    output_bytes: int
    ops: int
    sparse_ops: tuple[int, ...] = ()  # ops whose weights are stored block-sparse (engine.sparse)
    work: tuple[Work, ...] = ()  # per op: its kernel path, multiply-accumulates and outputs
    bands: tuple[Band, ...] = ()  # chains run band by band (engine.bands): the profile counts each at its first op
    memory: tuple[str, ...] = ()  # per op, the planner's choice for its output (engine.plan: Plan.choices)

    @property
    def kernel_sources(self) -> list[str]:
        return kernel_sources(self.files)


def kernel_sources(names) -> list[str]:
    """The kernels' C files among ``names`` (an engine's files, a folder's), each compiled on its own beside
    ``<name>_engine.c``."""
    present = set(names)
    return [n for n in KERNEL_FILES if n.endswith(".c") and n in present]


def generate(data: bytes, path: str | Path, *, name: str, provenance: list[str],
             sparse_where: str = "faster", bands: bool = True) -> Engine:
    """The model at ``path`` (flatbuffer ``data``) as ``<name>_engine.h/.c`` plus the kernels. Weights go
    block-sparse where that is smaller and (``sparse_where`` "faster") the calibrated Cortex-M4 model
    finds the sparse kernel faster, or slower by at most ``SPARSE_SLOWER_BUDGET`` of the model; or
    ("smaller") wherever smaller: how the calibration measures the sparse kernels at every kept share.
    ``bands`` False runs no chain in bands, so that every op's instructions stay its own in a profile (the
    instruction model's calibration)."""
    graph = read_graph(data, path)
    check_limits(graph, path)  # before planning: the planner's work grows with the activations
    budget = SPARSE_SLOWER_BUDGET * _dense_instructions(graph)
    sparse = {op.index: s for op in graph.ops if (s := OPS[op.name].sparse(graph, op)) is not None
              and (sparse_where == "smaller" or _sparse_pays(graph, op, s, budget))}
    plan = (plan_smallest if bands else plan_arena)(
        graph, lambda op: OPS[op.name].overlap(graph, op, op.index in sparse),
        lambda op: OPS[op.name].scratch(graph, op, sparse.get(op.index)))
    writer = Writer(graph, plan, path, sparse)
    calls = _grouped({op.index: _call(writer, op) for op in graph.ops}, writer, plan.bands)
    x, y = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    model_banner = banner(["An int8 model as C99 calls into the engine's kernels (dt_*.c).", *provenance])
    values = {"banner": model_banner, "name": name, "prefix": name.upper(), "input": x, "output": y,
              "arena_bytes": plan.arena_bytes, "constants": writer.constants, "calls": calls,
              "bands": plan.bands}
    files = {f"{name}_engine.h": _render("model_engine.h.j2", values),
             f"{name}_engine.c": _render("model_engine.c.j2", values), HEADER: engine_header(),
             **{n: (KERNEL_DIR / n).read_text(encoding="utf-8") for n in (*SHARED_HEADERS, *writer.sources)}}
    work = tuple(OPS[op.name].work(graph, op, sparse.get(op.index)) for op in graph.ops)
    return Engine(files, plan.arena_bytes, writer.constant_bytes, x.elements, y.elements, len(graph.ops),
                  tuple(sorted(sparse)), work, plan.bands, plan.choices(graph))


def _grouped(calls: dict[int, str], writer: Writer, bands: tuple[Band, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """(C, the ops it runs) in op order: one call per op, and one loop per banded chain."""
    loops = {band.ops[0]: band for band in bands}
    grouped = []
    for index, call in calls.items():
        if index in loops:
            grouped.append((_band_loop(writer, loops[index], calls), loops[index].ops))
        elif index not in writer.bands:
            grouped.append((call, (index,)))
    return grouped


def _band_loop(writer: Writer, band: Band, calls: dict[int, str]) -> str:
    """The chain's calls band by band, each op's ``dt_conv_params`` narrowed to the band's rows (the table:
    ``bands.STEP_FIELDS`` per op), after its buffer keeps the rows the next band reads again."""
    steps = np.array(band.steps)
    ctype = "int16_t" if np.abs(steps).max() < 2 ** 15 else "int32_t"  # half the flash where offsets allow
    table = writer.array(ctype, f"t{band.ops[0]}", steps,
                         f"ops {band.ops[0]}-{band.ops[-1]} per band: {', '.join(STEP_FIELDS)} per op")
    lines = [f"  {{ /* {band.describe()} */", "    dt_conv_params q;", "    int32_t b;",
             f"    for (b = 0; b < {len(band.steps)}; ++b) {{",
             f"      const {ctype} *s = &{table}[b * {len(band.steps[0])}];"]
    for j, index in enumerate(band.ops):
        if j < len(band.buffers):
            buffer = writer.where(band.buffers[j][0])
            lines.append(f"      memmove({buffer}, {buffer} + s[{column(j, 'keep_from')}], "
                         f"(size_t)s[{column(j, 'keep_bytes')}]);")
        rows = column(j, "out_h")
        lines += [f"      if (s[{rows}] > 0) {{",
                  f"        q = p{index};",
                  f"        q.in_h = s[{column(j, 'in_h')}];",
                  f"        q.pad_h = s[{column(j, 'pad_h')}];",
                  f"        q.out_h = s[{rows}];",
                  f"      {calls[index]}", "      }"]
    return "\n".join([*lines, "    }", "  }"])


def _sparse_pays(graph, op, sparse: BlockSparse, budget: float) -> bool:
    """Whether the calibrated Cortex-M4 model finds the sparse op faster, or slower by at most ``budget``
    instructions; not where a kernel path has no calibration."""
    kernel = OPS[op.name]
    dense_cost, sparse_cost = (work_instructions(kernel.work(graph, op, s)) for s in (None, sparse))
    return dense_cost is not None and sparse_cost is not None and sparse_cost - dense_cost <= budget


def _dense_instructions(graph) -> float:
    """The model's Cortex-M4 instructions by the calibrated model, every op dense (uncalibrated ops count 0)."""
    return sum(work_instructions(OPS[op.name].work(graph, op, None)) or 0.0 for op in graph.ops)


@functools.cache
def engine_header() -> str:
    """``dt_engine.h``: every op's parameter struct and kernel declarations, from the op table."""
    return _render("dt_engine.h.j2", {"banner": banner(["The engine's kernels: parameter structs and functions."]),
                                      "structs": structs(), "kernels": list(OPS.values())})


def _call(writer: Writer, op) -> str:
    try:
        return OPS[op.name].emit(writer, op)
    except quant.QuantRangeError as exc:
        raise UserError(f"{op.describe()}: {exc}, which the int8 kernels cannot apply", path=writer.path) from None


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def _render(template: str, values: dict) -> str:
    return _environment().get_template(template).render(**values)
