"""The int8 graph of a TFLite flatbuffer as the engine generator sees it: tensors with shapes, types,
quantization and constant data; operators with their options. Anything the engine cannot run is refused
here, with the op and the reason, before any code is written.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dslite_tiny.errors import UserError

# The builtins the engine has kernels for; every other op is refused with its name.
SUPPORTED_OPS = ("ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                 "LEAKY_RELU", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "SOFTMAX")
_DTYPES = {"INT8": np.int8, "INT32": np.int32, "INT64": np.int64, "FLOAT32": np.float32, "INT16": np.int16,
           "UINT8": np.uint8, "FLOAT16": np.float16, "BOOL": np.bool_}


@dataclasses.dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8", "int32", ...
    scales: np.ndarray  # float32; one (per tensor) or one per channel; empty if not quantized
    zero_points: np.ndarray
    quantized_dimension: int
    data: np.ndarray | None  # constant tensors only

    @property
    def scale(self) -> float:
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0])

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclasses.dataclass(frozen=True)
class Op:
    index: int
    name: str  # the builtin, e.g. "CONV_2D"
    inputs: tuple[int, ...]  # tensor indices; -1 for an absent optional input
    outputs: tuple[int, ...]
    options: dict


@dataclasses.dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def read_graph(data: bytes, path: str | Path) -> Graph:
    """Subgraph 0 of the flatbuffer ``data`` (from ``path``), checked for what the engine supports."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if len(model.subgraphs) != 1:
        raise UserError(f"the engine runs one subgraph; this model has {len(model.subgraphs)}", path=path)
    graph = model.subgraphs[0]
    op_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    tensors = tuple(_tensor(i, t, model, type_names) for i, t in enumerate(graph.tensors))
    ops = []
    for index, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        options = {k: v for k, v in vars(op.builtinOptions).items()} if op.builtinOptions is not None else {}
        ops.append(Op(index, name, tuple(int(i) for i in op.inputs), tuple(int(i) for i in op.outputs), options))
    result = Graph(tensors, tuple(ops), tuple(int(i) for i in graph.inputs), tuple(int(i) for i in graph.outputs))
    _check(result, path)
    return result


def _tensor(index: int, t, model, type_names: dict[int, str]) -> Tensor:
    dtype = type_names[t.type].lower()
    raw = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
    shape = tuple(int(s) for s in t.shape) if t.shape is not None else ()
    data = None
    if raw is not None and len(raw):
        data = np.frombuffer(bytes(np.asarray(raw, np.uint8)), _DTYPES[type_names[t.type]]).reshape(shape)
    q = t.quantization
    scales = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
    zero_points = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
    name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
    return Tensor(index, name, shape, dtype, scales, zero_points, int(q.quantizedDimension) if q else 0, data)


def _check(graph: Graph, path: str | Path) -> None:
    for op in graph.ops:
        if op.name not in SUPPORTED_OPS:
            raise UserError(f"op {op.index} ({op.name}) has no kernel in the engine; it runs "
                            f"{', '.join(SUPPORTED_OPS)} (export --target c for TFLite Micro)", path=path)
        for i in (*op.inputs, *op.outputs):
            tensor = graph.tensors[i] if i >= 0 else None
            if tensor is not None and tensor.data is None and tensor.dtype != "int8":
                raise UserError(f"op {op.index} ({op.name}) has {tensor.dtype} activations; the engine runs "
                                f"full-integer int8 models", path=path)
            if tensor is not None and tensor.data is None and tensor.shape and tensor.shape[0] != 1:
                raise UserError(f"op {op.index} ({op.name}) has batch {tensor.shape[0]}; the engine runs "
                                f"batch 1", path=path)


def _names(enum) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}
