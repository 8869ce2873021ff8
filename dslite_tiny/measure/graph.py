"""The one validated reader of a ``.tflite`` for everything that turns a model file into code (``export``,
the generated engine, the device firmware): subgraph 0 as typed tensors and operators, checked before any
of it is used.

Models from elsewhere are untrusted input, and LiteRT's verifier only checks the flatbuffer's own
structure: an index past the tensor list, a NaN scale, a weight buffer shorter than its shape or an output
shape that its op cannot produce all pass it. Here every index is in range, every shape positive and no
larger than a C ``int32_t`` can count, every scale finite and positive, every zero point within its type,
every constant's buffer exactly the bytes its shape needs, every activation written once before it is
read, and for the ops whose shape rule is written out below (the ones our models and the engine use) the
declared output shape must equal the one derived from the inputs and the options, TFLite's semantics. A
model that fails any of it is a one-line ``UserError`` naming the file, the op or tensor, and the problem.

Tensor names are kept for messages only; nothing derived from them may reach generated code.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dslite_tiny.errors import UserError
from dslite_tiny.measure.flatbuffer import enum_names, file_text

INT32_MAX = 2 ** 31 - 1
# Fused activations TFLite's schema defines (ActivationFunctionType): NONE, RELU, RELU_N1_TO_1, RELU6,
# TANH, SIGN_BIT.
ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")
PADDINGS = ("SAME", "VALID")
_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "FLOAT64": 8, "INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2,
             "INT32": 4, "UINT32": 4, "INT64": 8, "UINT64": 8, "BOOL": 1}
_NUMPY = {"FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "INT8": np.int8,
          "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32, "UINT32": np.uint32,
          "INT64": np.int64, "UINT64": np.uint64, "BOOL": np.bool_}
_ZERO_POINT_RANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767), "UINT16": (0, 65535)}


@dataclasses.dataclass(frozen=True)
class Tensor:
    index: int
    name: str  # for messages only (decoded with replacement characters; never written into C)
    shape: tuple[int, ...]
    dtype: str  # "int8", "int32", ...
    scales: np.ndarray  # float32; one (per tensor) or one per channel; empty if not quantized
    zero_points: np.ndarray
    quantized_dimension: int
    data: np.ndarray | None  # constant tensors of a known element type, in ``shape``
    constant: bool = False  # has a buffer (``data`` may still be None for an element type numpy lacks)
    sparse: bool = False  # stored in TFLite's experimental sparse format (its buffer is not dense)
    variable: bool = False  # state a stateful op reads before writing (TFLite's is_variable)

    @property
    def scale(self) -> float:
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0])

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.elements * _ITEMSIZE.get(self.dtype.upper(), 1)

    def describe(self) -> str:
        """How messages name it: index and (shortened) name."""
        return f"tensor {self.index} ({self.name[:60]!r})"


@dataclasses.dataclass(frozen=True)
class Op:
    index: int
    name: str  # the builtin, e.g. "CONV_2D"; "CUSTOM:<code>" for a custom op
    inputs: tuple[int, ...]  # tensor indices; -1 for an absent optional input
    outputs: tuple[int, ...]
    options: dict

    def describe(self) -> str:
        return f"op {self.index} ({self.name})"


@dataclasses.dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: int = 1

    @property
    def activation_bytes(self) -> int:
        """Every non-constant tensor's bytes: the arena of a runtime that reuses nothing (an upper bound)."""
        return sum(t.nbytes for t in self.tensors if not t.constant)

    @property
    def constant_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.constant)


def read_graph(data: bytes, path: str | Path) -> Graph:
    """Subgraph 0 of the TFLite flatbuffer ``data`` (read from ``path``), validated as the module says."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # noqa: BLE001 — the generated unpacker raises whatever a bad offset causes
        raise UserError(f"cannot be read as a TensorFlow Lite flatbuffer ({type(exc).__name__})", path=path) from None
    if not model.subgraphs:
        raise UserError("the model has no subgraph", path=path)
    sub = model.subgraphs[0]
    reader = _Reader(model, schema, path)
    tensors = tuple(reader.tensor(i, t) for i, t in enumerate(sub.tensors or []))
    ops = tuple(reader.op(i, op, len(tensors)) for i, op in enumerate(sub.operators or []))
    graph = Graph(tensors, ops, reader.indices("the graph's inputs", sub.inputs, len(tensors)),
                  reader.indices("the graph's outputs", sub.outputs, len(tensors)), len(model.subgraphs))
    _check_dataflow(graph, path)
    for op in graph.ops:
        _check_op_shapes(graph, op, path)
    return graph


class _Reader:
    """Turns the schema's objects into ``Tensor`` and ``Op``, checking each field as it goes."""

    def __init__(self, model, schema, path: str | Path) -> None:
        self.model, self.path = model, path
        self.type_names = enum_names(schema.TensorType)
        self.op_names = enum_names(schema.BuiltinOperator)
        self.custom = schema.BuiltinOperator.CUSTOM
        self.buffers = model.buffers or []

    def fail(self, message: str) -> UserError:
        return UserError(message, path=self.path)

    def tensor(self, index: int, t) -> Tensor:
        name = file_text(t.name or b"")
        label = f"tensor {index} ({name[:60]!r})"
        dtype = self.type_names.get(t.type)
        if dtype is None:
            raise self.fail(f"{label} has unknown element type {t.type}")
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else ()))
        if any(d < 1 for d in shape):
            raise self.fail(f"{label} has shape {list(shape)}; every dimension must be positive")
        if math.prod(shape) > INT32_MAX:
            raise self.fail(f"{label} has {math.prod(shape)} elements, more than a C int32_t counts")
        scales, zero_points, axis = self._quantization(label, t, dtype, shape)
        raw = self._buffer(label, t)
        sparse = t.sparsity is not None
        data = None
        if raw is not None and not sparse:
            itemsize = _ITEMSIZE.get(dtype)
            if itemsize is not None and len(raw) != math.prod(shape) * itemsize:
                raise self.fail(f"{label} holds {len(raw)} bytes but its {dtype.lower()} shape {list(shape)} "
                                f"needs {math.prod(shape) * itemsize}")
            if dtype in _NUMPY:
                data = np.frombuffer(bytes(raw), _NUMPY[dtype]).reshape(shape)
        return Tensor(index, name, shape, dtype.lower(), scales, zero_points, axis, data, raw is not None, sparse,
                      bool(t.isVariable))

    def _buffer(self, label: str, t) -> np.ndarray | None:
        if t.buffer is None or not 0 <= t.buffer < max(len(self.buffers), 1):
            raise self.fail(f"{label} names buffer {t.buffer} of {len(self.buffers)}")
        if not self.buffers:
            return None
        buffer = self.buffers[t.buffer]
        if (buffer.offset or 0) > 1:
            raise self.fail(f"{label} keeps its data outside the flatbuffer (offset {buffer.offset}); export "
                            f"reads models whose weights are inside the file")
        data = buffer.data
        return None if data is None or len(data) == 0 else np.asarray(data, np.uint8)

    def _quantization(self, label: str, t, dtype: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int]:
        q = t.quantization
        scales = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float64)
        zero_points = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        axis = int(q.quantizedDimension) if q is not None else 0
        if not scales.size:
            return scales.astype(np.float32), zero_points, axis
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0) or np.any(scales > 3.4e38):
            bad = scales[~(np.isfinite(scales) & (scales > 0))]
            raise self.fail(f"{label} has scale {bad[0] if bad.size else scales.max()}; a scale must be finite "
                            f"and positive")
        if zero_points.size != scales.size:
            raise self.fail(f"{label} has {scales.size} scales but {zero_points.size} zero points")
        low, high = _ZERO_POINT_RANGE.get(dtype, (-2 ** 63, 2 ** 63 - 1))
        if zero_points.min() < low or zero_points.max() > high:
            raise self.fail(f"{label} has zero point {int(zero_points.min() if zero_points.min() < low else zero_points.max())} "
                            f"outside {dtype.lower()}'s [{low}, {high}]")
        if scales.size > 1 and not (0 <= axis < len(shape) and shape[axis] == scales.size):
            raise self.fail(f"{label} has {scales.size} per-channel scales along dimension {axis} of shape "
                            f"{list(shape)}")
        return scales.astype(np.float32), zero_points, axis

    def op(self, index: int, op, tensor_count: int) -> Op:
        codes = self.model.operatorCodes or []
        if op.opcodeIndex is None or not 0 <= op.opcodeIndex < len(codes):
            raise self.fail(f"op {index} names operator code {op.opcodeIndex} of {len(codes)}")
        code = codes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == self.custom:
            name = f"CUSTOM:{file_text(code.customCode)[:40]}"
        elif builtin in self.op_names:
            name = self.op_names[builtin]
        else:
            raise self.fail(f"op {index} has unknown builtin operator code {builtin}")
        label = f"op {index} ({name})"
        inputs = self.indices(f"{label}'s inputs", op.inputs, tensor_count, optional=True)
        outputs = self.indices(f"{label}'s outputs", op.outputs, tensor_count)
        options = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
        activation = options.get("fusedActivationFunction", 0)
        if not 0 <= activation < len(ACTIVATIONS):
            raise self.fail(f"{label} has unknown fused activation {activation}")
        return Op(index, name, inputs, outputs, options)

    def indices(self, what: str, values, tensor_count: int, *, optional: bool = False) -> tuple[int, ...]:
        found = tuple(int(i) for i in (values if values is not None else ()))
        low = -1 if optional else 0
        bad = [i for i in found if not low <= i < tensor_count]
        if bad:
            raise self.fail(f"{what} name tensor {bad[0]}, outside the {tensor_count} tensors")
        return found


@dataclasses.dataclass(frozen=True)
class Limits:
    """The most a model may ask of generated C. Far above any microcontroller (a board's fit check is the
    tight one), low enough that a crafted shape cannot make export plan, measure or print gigabytes."""

    activation_bytes: int = 256 * 2 ** 20  # every activation, none reused: bounds any runtime's arena
    constant_bytes: int = 64 * 2 ** 20  # weights and other constants, as a C array or the engine's tables


DEFAULT_LIMITS = Limits()


def check_limits(graph: Graph, path: str | Path, limits: Limits = DEFAULT_LIMITS) -> None:
    """A one-line ``UserError`` when the model's activations or constants exceed ``limits``."""
    for what, found, limit in (("activations", graph.activation_bytes, limits.activation_bytes),
                               ("constants", graph.constant_bytes, limits.constant_bytes)):
        if found > limit:
            raise UserError(f"the model's {what} take {found} bytes, more than the {limit} bytes export writes "
                            f"C for", path=path)


def _check_dataflow(graph: Graph, path: str | Path) -> None:
    """Every activation an op reads is a graph input or written by an earlier op; nothing is written twice,
    and nothing constant or fed from outside is written at all."""
    if not graph.inputs or not graph.outputs:
        raise UserError("the graph names no input or no output tensor", path=path)
    written = set(graph.inputs) | {t.index for t in graph.tensors if t.variable}
    for op in graph.ops:
        for i in op.inputs:
            t = graph.tensors[i] if i >= 0 else None
            if t is not None and not t.constant and i not in written:
                raise UserError(f"{op.describe()} reads {t.describe()} before any op writes it", path=path)
        for i in op.outputs:
            t = graph.tensors[i]
            if t.constant or i in written:
                kind = "a constant" if t.constant else "a tensor written before"
                raise UserError(f"{op.describe()} writes {t.describe()}, {kind}", path=path)
            written.add(i)
    missing = [i for i in graph.outputs if i not in written]
    if missing:
        raise UserError(f"the graph's output {graph.tensors[missing[0]].describe()} is never written", path=path)


# --- output shapes, per op, as TFLite defines them ----------------------------------------------------------

class _ShapeError(Exception):
    """An op whose inputs or options cannot give any output (the message says why)."""


def _check_op_shapes(graph: Graph, op: Op, path: str | Path) -> None:
    rule = _SHAPE_RULES.get(op.name)
    if rule is None:
        return  # no rule written out here: TFLite Micro's check (every C export runs it) judges the op
    arity, options, derive = rule
    present = [i for i in op.inputs if i >= 0]
    if len(present) < arity or not op.outputs:
        raise UserError(f"{op.describe()} has {len(present)} inputs and {len(op.outputs)} outputs; it takes at "
                        f"least {arity} inputs and one output", path=path)
    missing = [key for key in options if key not in op.options]
    if missing:
        raise UserError(f"{op.describe()} lacks its options ({', '.join(missing)})", path=path)
    out = graph.tensors[op.outputs[0]]
    try:
        expected = tuple(derive(graph, op))
    except _ShapeError as exc:
        raise UserError(f"{op.describe()}: {exc}", path=path) from None
    if expected != out.shape:
        raise UserError(f"{op.describe()} declares output {out.describe()} of shape {list(out.shape)}, but its "
                        f"inputs and options give {list(expected)}", path=path)


def _shape(graph: Graph, op: Op, position: int, rank: int | None = None) -> tuple[int, ...]:
    index = op.inputs[position]
    if index < 0:
        raise _ShapeError(f"input {position} is missing")
    shape = graph.tensors[index].shape
    if rank is not None and len(shape) != rank:
        raise _ShapeError(f"input {position} has shape {list(shape)}, not rank {rank}")
    return shape


def _window(size: int, kernel: int, stride: int, dilation: int, padding: int) -> int:
    """ComputeOutSize: the output length of a sliding window."""
    if kernel < 1 or stride < 1 or dilation < 1:
        raise _ShapeError(f"window {kernel}, stride {stride}, dilation {dilation}; each must be at least 1")
    if not 0 <= padding < len(PADDINGS):
        raise _ShapeError(f"unknown padding {padding}")
    effective = (kernel - 1) * dilation + 1
    if PADDINGS[padding] == "SAME":
        return (size + stride - 1) // stride
    if effective > size:
        raise _ShapeError(f"a window of {effective} does not fit an input of {size} (VALID padding)")
    return (size - effective + stride) // stride


def _conv_2d(graph: Graph, op: Op) -> tuple[int, ...]:
    x, w = _shape(graph, op, 0, 4), _shape(graph, op, 1, 4)
    o = op.options
    if x[3] % w[3] or w[0] % (x[3] // w[3]):
        raise _ShapeError(f"filter {list(w)} does not divide input channels {x[3]} into groups")
    _bias(graph, op, w[0])
    return (x[0], _window(x[1], w[1], o["strideH"], o["dilationHFactor"], o["padding"]),
            _window(x[2], w[2], o["strideW"], o["dilationWFactor"], o["padding"]), w[0])


def _depthwise_conv_2d(graph: Graph, op: Op) -> tuple[int, ...]:
    x, w = _shape(graph, op, 0, 4), _shape(graph, op, 1, 4)
    o = op.options
    if w[0] != 1 or o["depthMultiplier"] < 1 or w[3] != x[3] * o["depthMultiplier"]:
        raise _ShapeError(f"filter {list(w)} is not [1, h, w, {x[3]} × depth multiplier {o['depthMultiplier']}]")
    _bias(graph, op, w[3])
    return (x[0], _window(x[1], w[1], o["strideH"], o["dilationHFactor"], o["padding"]),
            _window(x[2], w[2], o["strideW"], o["dilationWFactor"], o["padding"]), w[3])


def _fully_connected(graph: Graph, op: Op) -> tuple[int, ...]:
    x, w = _shape(graph, op, 0), _shape(graph, op, 1, 2)
    units, depth = w
    if math.prod(x) % depth:
        raise _ShapeError(f"input {list(x)} is not a whole number of rows of depth {depth}")
    _bias(graph, op, units)
    if op.options["keepNumDims"]:
        if not x or x[-1] != depth:
            raise _ShapeError(f"input {list(x)} does not end in depth {depth}")
        return (*x[:-1], units)
    return math.prod(x) // depth, units


def _bias(graph: Graph, op: Op, channels: int) -> None:
    if len(op.inputs) > 2 and op.inputs[2] >= 0 and graph.tensors[op.inputs[2]].elements != channels:
        raise _ShapeError(f"bias of {graph.tensors[op.inputs[2]].elements} values for {channels} output channels")


def _reduce(graph: Graph, op: Op) -> tuple[int, ...]:
    x = _shape(graph, op, 0)
    axis = graph.tensors[op.inputs[1]]
    if axis.data is None or axis.dtype not in ("int32", "int64"):
        raise _ShapeError("its axes are not a constant int32 tensor")
    axes = {int(a) for a in np.ravel(axis.data)}
    if any(not -len(x) <= a < len(x) for a in axes):
        raise _ShapeError(f"axes {sorted(axes)} outside rank {len(x)}")
    axes = {a % len(x) for a in axes}
    if op.options["keepDims"]:
        return tuple(1 if d in axes else s for d, s in enumerate(x))
    return tuple(s for d, s in enumerate(x) if d not in axes)


def _same_shape(graph: Graph, op: Op) -> tuple[int, ...]:
    return _shape(graph, op, 0)


def _broadcast(graph: Graph, op: Op) -> tuple[int, ...]:
    a, b = _shape(graph, op, 0), _shape(graph, op, 1)
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise _ShapeError(f"inputs {list(a)} and {list(b)} do not broadcast") from None


def _pad(graph: Graph, op: Op) -> tuple[int, ...]:
    x = _shape(graph, op, 0)
    pads = graph.tensors[op.inputs[1]]
    if pads.data is None or pads.shape != (len(x), 2) or pads.dtype not in ("int32", "int64"):
        raise _ShapeError(f"its paddings are not a constant [{len(x)}, 2] integer tensor")
    if np.any(pads.data < 0) or np.any(pads.data > INT32_MAX):
        raise _ShapeError("a padding is negative or too large")
    return tuple(int(s + before + after) for s, (before, after) in zip(x, pads.data.tolist()))


def _pool_2d(graph: Graph, op: Op) -> tuple[int, ...]:
    x = _shape(graph, op, 0, 4)
    o = op.options
    return (x[0], _window(x[1], o["filterHeight"], o["strideH"], 1, o["padding"]),
            _window(x[2], o["filterWidth"], o["strideW"], 1, o["padding"]), x[3])


def _concatenation(graph: Graph, op: Op) -> tuple[int, ...]:
    shapes = [graph.tensors[i].shape for i in op.inputs if i >= 0]
    rank = len(shapes[0])
    axis = op.options["axis"]
    if not -rank <= axis < rank or any(len(s) != rank for s in shapes):
        raise _ShapeError(f"axis {axis} of inputs with ranks {sorted({len(s) for s in shapes})}")
    axis %= rank
    if any(s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise _ShapeError(f"inputs {[list(s) for s in shapes]} differ outside axis {axis}")
    return (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1:])


def _reshape(graph: Graph, op: Op) -> tuple[int, ...]:
    out = graph.tensors[op.outputs[0]].shape
    if math.prod(out) != graph.tensors[op.inputs[0]].elements:
        raise _ShapeError(f"{graph.tensors[op.inputs[0]].elements} elements cannot take shape {list(out)}")
    return out


_CONV = ("padding", "strideH", "strideW", "dilationHFactor", "dilationWFactor", "fusedActivationFunction")
_POOL = ("padding", "strideH", "strideW", "filterHeight", "filterWidth", "fusedActivationFunction")
_ACT = ("fusedActivationFunction",)
# op → (inputs it needs at least, options it needs, its output shape from its inputs and options)
_SHAPE_RULES: dict[str, tuple[int, tuple[str, ...], Callable[[Graph, Op], tuple[int, ...]]]] = {
    "CONV_2D": (2, _CONV, _conv_2d),
    "DEPTHWISE_CONV_2D": (2, (*_CONV, "depthMultiplier"), _depthwise_conv_2d),
    "FULLY_CONNECTED": (2, ("keepNumDims", *_ACT), _fully_connected),
    "MEAN": (2, ("keepDims",), _reduce), "SUM": (2, ("keepDims",), _reduce),
    "SOFTMAX": (1, ("beta",), _same_shape), "LEAKY_RELU": (1, ("alpha",), _same_shape),
    "LOGISTIC": (1, (), _same_shape), "RELU": (1, (), _same_shape), "RELU6": (1, (), _same_shape),
    "TANH": (1, (), _same_shape), "HARD_SWISH": (1, (), _same_shape),
    "QUANTIZE": (1, (), _same_shape), "DEQUANTIZE": (1, (), _same_shape),
    "ADD": (2, _ACT, _broadcast), "MUL": (2, _ACT, _broadcast), "SUB": (2, _ACT, _broadcast),
    "PAD": (2, (), _pad),
    "MAX_POOL_2D": (1, _POOL, _pool_2d), "AVERAGE_POOL_2D": (1, _POOL, _pool_2d),
    "CONCATENATION": (1, ("axis", *_ACT), _concatenation),
    "RESHAPE": (1, (), _reshape),
}

