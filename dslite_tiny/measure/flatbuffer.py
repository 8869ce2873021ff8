"""What a ``.tflite`` file holds, read from the flatbuffer itself: sizes, operators, I/O quantization,
weight sparsity and MACs.

Sparsity is counted in the stored weight tensors (int8 weights have zero-point 0, so a pruned weight is
a stored 0), not in the Keras model: that is what a microcontroller's flash actually holds. gzip size is
reported because pruning never shrinks a raw ``.tflite`` (TFLite Micro has no sparse format), only a
compressed one. Uses LiteRT's bundled schema, so no TensorFlow import.
"""
from __future__ import annotations

import gzip
import re
from collections import Counter

import numpy as np

# Operators with a weight tensor at input 1, and how many multiply-accumulates one output element costs
# given that weight's shape (TFLite layouts: conv [out, h, w, in], depthwise [1, h, w, out], FC [out, in]).
_MACS_PER_OUTPUT = {
    "CONV_2D": lambda shape: int(np.prod(shape[1:])),
    "DEPTHWISE_CONV_2D": lambda shape: int(shape[1] * shape[2]),
    "FULLY_CONNECTED": lambda shape: int(shape[-1]),
}
TFLITE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer
WRAPPER_PREFIX = "quant_"  # TFMOT's QuantizeWrapper; pruning and clustering wrappers are stripped first
_DTYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8,
           "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}


def check_tflite(data: bytes, path) -> None:
    """A one-line ``UserError`` naming ``path`` unless ``data`` is a TFLite flatbuffer that LiteRT's
    verifier accepts: a truncated or corrupted file made the readers below fail with tracebacks."""
    from dslite_tiny.errors import UserError

    if data[4:8] != TFLITE_IDENTIFIER:
        raise UserError("not a TensorFlow Lite model (no TFL3 identifier)", path=path)
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_content=data)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"a corrupt or truncated TensorFlow Lite model ({str(exc).splitlines()[0]})",
                        path=path) from None


def describe_tflite(data: bytes) -> dict:
    """Sizes, operators, I/O tensors, weight sparsity and MACs of a TFLite model (subgraph 0)."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    op_names = [_op_name(model.operatorCodes[op.opcodeIndex], schema) for op in graph.operators]
    constants = {i for i, t in enumerate(graph.tensors) if _buffer(model, t) is not None}
    weights = _weight_tensors(model, graph, op_names)
    layers = [_tensor_sparsity(model, graph, i) for i in weights]
    total = sum(layer["elements"] for layer in layers)
    zeros = sum(layer["zeros"] for layer in layers)
    return {
        "tflite_bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "weight_bytes": sum(len(_buffer(model, graph.tensors[i])) for i in constants),
        "params": sum(int(np.prod(graph.tensors[i].shape)) for i in constants if graph.tensors[i].shape is not None),
        "macs": _macs(graph, op_names),
        "activation_bytes": _activation_bytes(graph, constants),
        "ops": dict(sorted(Counter(op_names).items())),
        "float_ops": sorted({name for op, name in zip(graph.operators, op_names)
                             if _has_float_activation(graph, op, constants, schema)}),
        "input": _io_details(graph, graph.inputs[0], schema),
        "output": _io_details(graph, graph.outputs[0], schema),
        "sparsity": {"weights": round(zeros / total, 6) if total else 0.0, "layers": layers},
    }


def graph_contents(data: bytes) -> tuple[list[tuple], list[tuple]]:
    """Subgraph 0 as comparable values: every tensor (name, shape, type, quantization scales and zero
    points, constant bytes) and operator (builtin code, inputs, outputs); not the file's metadata, which
    names the converter's entry point. Two conversions of one model are the same model if these are equal."""
    model = _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]

    def tensor(t) -> tuple:
        q, constant = t.quantization, _buffer(model, t)
        return (t.name, list(t.shape), t.type, None if q is None or q.scale is None else (list(q.scale),
                list(q.zeroPoint)), None if constant is None else constant.tobytes())

    return ([tensor(t) for t in graph.tensors],
            [(model.operatorCodes[op.opcodeIndex].builtinCode, list(op.inputs), list(op.outputs))
             for op in graph.operators])


def pruned_sparsity(layers: list[dict], layer_names: list[str]) -> float | None:
    """Sparsity over the weight tensors of the given (pruned) Keras layers, matched by name."""
    chosen = [t for t in layers if any(_names_layer(t["name"], name) for name in layer_names)]
    total = sum(t["elements"] for t in chosen)
    return round(sum(t["zeros"] for t in chosen) / total, 6) if total else None


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _op_name(code, schema) -> str:
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{file_text(code.customCode)}"
    return enum_names(schema.BuiltinOperator)[builtin]


def enum_names(enum) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


def _buffer(model, tensor) -> np.ndarray | None:
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    return None if data is None or len(data) == 0 else np.asarray(data, np.uint8)


def _weight_tensors(model, graph, op_names: list[str]) -> list[int]:
    """The weight tensor of every conv/FC op: the constant at input 1, or the constant a DEQUANTIZE
    (float16 weights) turns into it."""
    producers = {out: i for i, op in enumerate(graph.operators) for out in op.outputs}
    found = []
    for op, name in zip(graph.operators, op_names):
        if name not in _MACS_PER_OUTPUT or len(op.inputs) < 2:
            continue
        index = op.inputs[1]
        if _buffer(model, graph.tensors[index]) is None and index in producers:
            producer = graph.operators[producers[index]]
            if op_names[producers[index]] == "DEQUANTIZE":
                index = producer.inputs[0]
        if _buffer(model, graph.tensors[index]) is not None and index not in found:
            found.append(index)
    return found


def _tensor_sparsity(model, graph, index: int) -> dict:
    tensor = graph.tensors[index]
    dtype = enum_names(_schema().TensorType)[tensor.type]
    values = _buffer(model, tensor).view(_DTYPES[dtype])
    zeros = int(np.count_nonzero(values == 0))
    shape = [int(s) for s in tensor.shape]
    return {"name": file_text(tensor.name), "dtype": dtype.lower(), "shape": shape, "elements": int(values.size),
            "zeros": zeros, "sparsity": round(zeros / max(values.size, 1), 6),
            "sparse_2_4": _is_2_of_4(values.reshape(shape))}


def _is_2_of_4(weights: np.ndarray) -> bool:
    """Structured 2:4 sparsity as hardware wants it: at least two zeros in every four consecutive weights
    along the input channels (the last axis in TFLite's conv and FC layouts)."""
    if weights.ndim < 2 or weights.shape[-1] % 4:
        return False
    groups = weights.reshape(-1, 4)
    return bool(np.all(np.count_nonzero(groups == 0, axis=1) >= 2))


def _macs(graph, op_names: list[str]) -> int:
    total = 0
    for op, name in zip(graph.operators, op_names):
        if name in _MACS_PER_OUTPUT and len(op.inputs) >= 2:
            weight_shape = [int(s) for s in graph.tensors[op.inputs[1]].shape]
            outputs = int(np.prod(graph.tensors[op.outputs[0]].shape))
            total += outputs * _MACS_PER_OUTPUT[name](weight_shape)
    return total


def _activation_bytes(graph, constants: set[int]) -> int:
    """Bytes of every non-constant tensor: the activation memory of a runtime that reuses none (an upper
    bound where no TFLM arena was measured)."""
    sizes = {name: np.dtype(dtype).itemsize for name, dtype in _DTYPES.items()}
    names = enum_names(_schema().TensorType)
    return sum(int(np.prod(t.shape)) * sizes.get(names[t.type], 4)
               for i, t in enumerate(graph.tensors) if i not in constants and t.shape is not None)


def _has_float_activation(graph, op, constants: set[int], schema) -> bool:
    """True if the op reads or writes a float32 tensor that is not a constant: a float op in the graph."""
    float32 = schema.TensorType.FLOAT32
    tensors = [i for i in (*op.inputs, *op.outputs) if i >= 0 and i not in constants]
    return any(graph.tensors[i].type == float32 for i in tensors)


def _io_details(graph, index: int, schema) -> dict:
    tensor = graph.tensors[index]
    q = tensor.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
    zero_point = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else None
    return {"name": file_text(tensor.name), "shape": [int(s) for s in tensor.shape],
            "dtype": enum_names(schema.TensorType)[tensor.type].lower(), "scale": scale, "zero_point": zero_point}


def _names_layer(tensor_name: str, layer_name: str) -> bool:
    """TFLite names weight tensors after the Keras layer path, e.g. 'model/dscnn_pw1/Conv2D' or, from a
    QAT model, 'model/quant_dscnn_pw1/Conv2D;...'."""
    parts = re.split(r"[/;]", tensor_name)
    return any(part.removeprefix(WRAPPER_PREFIX) == layer_name for part in parts)


def file_text(value) -> str:
    """A name from the file: any bytes (they are not ours), invalid UTF-8 replaced."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
