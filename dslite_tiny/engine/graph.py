"""The int8 graph of a TFLite flatbuffer as the engine generator sees it: ``measure.graph``'s validated
graph (indices, shapes, quantization, buffers, dataflow), plus what the engine's kernels need on top of
TFLite's semantics. Anything the engine cannot run is refused here, with the op and the reason, before any
code is written; the values the kernels index with (channel counts of multipliers and biases, the int8
quantization of every activation) are checked here so that no generated loop can leave its arrays.
"""
from __future__ import annotations

from pathlib import Path

from dslite_tiny.engine.ops import OPS
from dslite_tiny.errors import UserError
from dslite_tiny.measure.graph import ACTIVATIONS, Graph, Op, Tensor
from dslite_tiny.measure.graph import read_graph as read_validated_graph

FUSED_ACTIVATIONS = ACTIVATIONS[:4]  # NONE, RELU, RELU_N1_TO_1, RELU6: the int8 kernels' clamps
# The most one product adds to an int32 accumulator: an int8 value with its offset (|x + offset| ≤ 255) times
# an int8 weight (|w| ≤ 128); where the offset is folded into the bias, the folded bias and the raw products
# (|x · w| ≤ 128 · 128) each stay within depth · 128 · 128, so no partial sum exceeds |bias| + depth · this.
# C's signed overflow is undefined, so a layer that could overflow is refused.
_MAX_PRODUCT = 256 * 128


def read_graph(data: bytes, path: str | Path) -> Graph:
    """Subgraph 0 of the flatbuffer ``data`` (from ``path``), validated and checked for what the engine runs."""
    graph = read_validated_graph(data, path)
    _check(graph, path)
    return graph


def _check(graph: Graph, path: str | Path) -> None:
    if graph.subgraphs != 1 or len(graph.inputs) != 1 or len(graph.outputs) != 1 or not graph.ops:
        raise UserError(f"the engine runs one subgraph of at least one op with one input and one output; this "
                        f"model has {graph.subgraphs} subgraphs, {len(graph.ops)} ops, {len(graph.inputs)} inputs "
                        f"and {len(graph.outputs)} outputs", path=path)
    if graph.inputs == graph.outputs:
        raise UserError("the model's output is its input", path=path)
    for op in graph.ops:
        if op.name not in OPS:
            raise UserError(f"{op.describe()} has no kernel in the engine; it runs {', '.join(sorted(OPS))} "
                            f"(export --target c for TFLite Micro)", path=path)
        activation = op.options.get("fusedActivationFunction", 0)
        if activation >= len(FUSED_ACTIVATIONS):
            raise UserError(f"{op.describe()} fuses {ACTIVATIONS[activation]}; the engine's int8 kernels fuse "
                            f"{', '.join(FUSED_ACTIVATIONS)}", path=path)
        for i in (*op.inputs, *op.outputs):
            if i >= 0:
                _check_tensor(graph.tensors[i], op, path)
        if OPS[op.name].weights_axis is not None:
            _check_weights(graph, op, path)
        else:
            _check_constant_operands(graph, op, path)


def _check_tensor(tensor: Tensor, op: Op, path: str | Path) -> None:
    if tensor.sparse:
        raise UserError(f"{op.describe()} reads {tensor.describe()} in TFLite's sparse format; the engine takes "
                        f"dense weights", path=path)
    if tensor.constant:
        if tensor.data is None:
            raise UserError(f"{op.describe()} reads {tensor.describe()}, a {tensor.dtype} constant the engine "
                            f"cannot read", path=path)
        return
    if tensor.dtype != "int8":
        raise UserError(f"{op.describe()} has {tensor.dtype} activations; the engine runs full-integer int8 "
                        f"models", path=path)
    if tensor.shape and tensor.shape[0] != 1:
        raise UserError(f"{op.describe()} has batch {tensor.shape[0]}; the engine runs batch 1", path=path)
    if tensor.scales.size != 1:
        raise UserError(f"{op.describe()}: {tensor.describe()} has {tensor.scales.size} scales; an int8 "
                        f"activation has one", path=path)


def _check_constant_operands(graph: Graph, op: Op, path: str | Path) -> None:
    """A constant operand (a BatchNormalization's scale for MUL, say) is written out as int8 values with one
    quantization, as the kernels read it."""
    for position, i in enumerate(op.inputs):
        t = graph.tensors[i] if i >= 0 else None
        if t is not None and t.constant and position not in OPS[op.name].parameter_inputs \
                and (t.dtype != "int8" or t.scales.size != 1):
            raise UserError(f"{op.describe()} reads {t.describe()}, a constant that is not int8 with one scale",
                            path=path)


def _check_weights(graph: Graph, op: Op, path: str | Path) -> None:
    """int8 constant weights with zero point 0 and one scale or one per output channel (along the axis the
    kernels index their multipliers by); an int32 bias; sums that stay inside int32."""
    w = graph.tensors[op.inputs[1]]
    axis = OPS[op.name].weights_axis
    channels = w.shape[axis]
    if not w.constant or w.dtype != "int8" or w.scales.size not in (1, channels) or w.zero_points.any():
        raise UserError(f"{op.describe()} needs constant int8 weights with zero point 0 and one scale or one "
                        f"per output channel; {w.describe()} is not", path=path)
    if w.scales.size > 1 and w.quantized_dimension != axis:
        raise UserError(f"{op.describe()}: {w.describe()} is quantized along dimension {w.quantized_dimension}, "
                        f"not its output channels ({axis})", path=path)
    bias = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if bias is not None and (bias.data is None or bias.dtype != "int32"):
        raise UserError(f"{op.describe()} has a {bias.dtype} bias; the engine takes a constant int32 one", path=path)
    depth = w.elements // channels
    largest_bias = int(abs(bias.data.astype("int64")).max()) if bias is not None else 0
    if depth * _MAX_PRODUCT + largest_bias > 2 ** 31 - 1:
        raise UserError(f"{op.describe()} sums {depth} products per output, which can overflow its int32 "
                        f"accumulator", path=path)
