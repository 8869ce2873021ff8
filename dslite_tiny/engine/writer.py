"""What every op module writes with: constant arrays, parameter blocks, the kernel files a model needs, and
where each tensor lives (the caller's input and output, or an arena offset).

Nothing from the model file is printed as text: comments name ops and tensors by index (the file's tensor
names are untrusted) and numbers are written by Python as integers.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from dslite_tiny.engine import quant
from dslite_tiny.engine.bands import Band, column
from dslite_tiny.engine.plan import Plan
from dslite_tiny.engine.sparse import BlockSparse
from dslite_tiny.errors import UserError
from dslite_tiny.measure.graph import Graph, Op, Tensor

_CTYPE_BYTES = {"int8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4}


class Writer:
    """Collects one model's constants (C definitions, in op order), their bytes, and the kernel files its
    calls need."""

    def __init__(self, graph: Graph, plan: Plan, path: str | Path, sparse: dict[int, BlockSparse]):
        self.graph, self.plan, self.path = graph, plan, path
        self.sparse = sparse  # op index → its weights' block-sparse form, for the ops that run sparse
        self.constants: list[str] = []
        self.constant_bytes = 0
        self.sources: list[str] = []  # kernel C files, in the order first needed
        self.bands: dict[int, Band] = {i: band for band in plan.bands for i in band.ops}  # op → its band

    def need(self, source: str) -> None:
        if source not in self.sources:
            self.sources.append(source)

    def tensor(self, op: Op, position: int) -> Tensor:
        return self.graph.tensors[op.inputs[position]]

    def output(self, op: Op) -> Tensor:
        return self.graph.tensors[op.outputs[0]]

    def where(self, tensor: int) -> str:
        if tensor in self.graph.inputs:
            return "input"
        if tensor in self.graph.outputs:
            return "output"
        return f"arena + {self.plan.offsets[tensor]}"

    def input_at(self, op: Op) -> str:
        """Where the op reads its first input: in a band, that band's rows (``codegen``'s loop: table row s)."""
        return self._at(op, op.inputs[0], "in_at")

    def output_at(self, op: Op) -> str:
        return self._at(op, op.outputs[0], "out_at")

    def _at(self, op: Op, tensor: int, field: str) -> str:
        band = self.bands.get(op.index)
        if band is None:
            return self.where(tensor)
        return f"{self.where(tensor)} + s[{column(band.position(op.index), field)}]"

    def scratch(self, op: Op, ctype: str = "int16_t") -> str:
        """The op's scratch (``plan.scratch``, word-aligned) as its kernel takes it: int16 unless ``ctype``."""
        return f"({ctype} *)(void *)(arena + {self.plan.scratch[op.index]})"

    def refuse(self, op: Op, problem: str) -> UserError:
        return UserError(f"op {op.index} ({op.name}) {problem}", path=self.path)

    def params(self, struct, op: Op, values: dict[str, int]) -> str:
        """The op's parameter block ``p<index>``: every field of ``struct`` by name. Returns what its call
        takes: the block, or in a band the narrowed copy ``q`` (``codegen``'s loop)."""
        if tuple(values) != struct.fields:
            raise AssertionError(f"{struct.name}: fields {tuple(values)} are not {struct.fields}")
        out = self.output(op)
        fields = textwrap.wrap(", ".join(f".{k} = {int(v)}" for k, v in values.items()), 110)
        self.constants.append(f"/* op {op.index}: {op.name} -> tensor {out.index} {list(out.shape)} */")
        self.constants.append(f"static const {struct.name} p{op.index} = {{\n  " + "\n  ".join(fields) + "};")
        self.constant_bytes += 4 * len(values)
        return "&q" if op.index in self.bands else f"&p{op.index}"

    def array(self, ctype: str, symbol: str, values: np.ndarray, comment: str) -> str:
        """A constant array; returns its symbol."""
        suffix = "u" if ctype == "uint32_t" else ""  # a mask above INT32_MAX stays an unsigned int constant
        flat = [str(int(v)) + suffix if v != -2 ** 31 else "(-2147483647 - 1)" for v in np.ravel(values)]
        self.constant_bytes += len(flat) * _CTYPE_BYTES[ctype]
        rows = [", ".join(flat[i:i + 24]) for i in range(0, len(flat), 24)]
        self.constants.append(f"/* {comment} */")
        self.constants.append(f"static const {ctype} {symbol}[{len(flat)}] = {{\n  " + ",\n  ".join(rows) + "};")
        return symbol

    def operand(self, op: Op, tensor: Tensor) -> str:
        """Where an input is: a constant becomes an array of its own."""
        if tensor.data is None:
            return self.where(tensor.index)
        return self.array("int8_t", f"k{op.index}_{tensor.index}", tensor.data, f"tensor {tensor.index}")

    def bias(self, op: Op) -> np.ndarray | None:
        """The op's int32 bias, or None."""
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return None
        bias = self.graph.tensors[op.inputs[2]]
        if bias.dtype != "int32" or bias.data is None:
            raise self.refuse(op, f"has a {bias.dtype} bias; the engine takes a constant int32 one")
        return bias.data

    def folded_bias(self, op: Op, weight_sums: np.ndarray, input_offset: int) -> np.ndarray:
        """bias + input offset · Σ weights, per output channel: what the kernels add before the raw products."""
        bias = self.bias(op)
        folded = (np.zeros(len(weight_sums), np.int64) if bias is None else bias.astype(np.int64)) \
            + input_offset * weight_sums.astype(np.int64)
        if folded.min(initial=0) < -2 ** 31 or folded.max(initial=0) >= 2 ** 31:  # INT32_MIN is a valid bias
            raise self.refuse(op, "the bias with the input offset folded in overflows int32")
        return folded

    def weights(self, op: Op, *, bias: np.ndarray | None, multipliers: list[int], shifts: list[int],
                values: np.ndarray | None = None) -> list[str]:
        """The arrays a weighted kernel takes after its input, in its order: the weights (``values``: the
        kernel's own layout of them; the block-sparse masks and kept values where the op runs sparse), the
        bias (``bias`` replaces the model's: a folded one), and the requantization of each output channel as
        ``requantize_values`` (dt_arith.h) takes it."""
        n = op.index
        w = self.tensor(op, 1)
        sparse = self.sparse.get(n)
        arrays = []
        if sparse is not None:
            arrays.append(self.array("uint16_t", f"q{n}", sparse.masks, f"kept blocks of tensor {w.index}, "
                                                                         f"masks per row"))
            arrays.append(self.array("int8_t", f"w{n}", sparse.values, f"weights of the kept blocks, tensor {w.index}"))
        else:
            arrays.append(self.array("int8_t", f"w{n}", w.data if values is None else values,
                                     f"weights, tensor {w.index}"))
        if bias is not None:
            arrays.append(self.array("int32_t", f"b{n}", bias, "bias with the input offset folded in"))
        else:
            model_bias = self.bias(op)
            arrays.append("NULL" if model_bias is None else
                          self.array("int32_t", f"b{n}", model_bias, f"bias, tensor {op.inputs[2]}"))
        out = self.output(op)
        full = quant.activation_range(op.options["fusedActivationFunction"], out.scale, out.zero_point) \
            == (quant.INT8_MIN, quant.INT8_MAX)
        values, codes = quant.channel_requantization(multipliers, shifts, out.zero_point, full_range=full)
        arrays.append(self.array("int32_t", f"m{n}", values, "requantization: 2 out_offset + 1, multipliers"))
        arrays.append(self.array("int8_t", f"s{n}", codes, "requantization codes (e - 2, or shift - 31)"))
        return arrays

    def call(self, kernel: str, *arguments: str) -> str:
        return f"  {kernel}({', '.join(arguments)});"
