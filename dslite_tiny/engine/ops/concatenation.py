"""CONCATENATION of tensors sharing the output's quantization (dt_concat.c): DenseNet's blocks."""
from __future__ import annotations

import numpy as np

from dslite_tiny.engine.ops import OpKernel, register
from dslite_tiny.measure.graph import Op

DECLARATIONS = """\
/* CONCATENATION of ``count`` tensors sharing the output's quantization: ``outer`` blocks, each the
 * concatenation of sizes[k] bytes of each in[k]. */
void dt_concat_s8(int32_t outer, int32_t count, const int8_t *const *in, const int32_t *sizes, int8_t *out);"""


def emit(writer, op: Op) -> str:
    out = writer.output(op)
    inputs = [writer.graph.tensors[i] for i in op.inputs]
    if any((t.scale, t.zero_point) != (out.scale, out.zero_point) for t in inputs):
        raise writer.refuse(op, "requantizes an input; TFLite Micro's int8 concatenation needs one quantization")
    axis = op.options["axis"] % len(out.shape)
    outer = int(np.prod(out.shape[:axis]))
    sizes = [t.elements // outer for t in inputs]
    pointers = ", ".join(writer.operand(op, t) for t in inputs)
    writer.constants.append(f"/* op {op.index}: CONCATENATION -> tensor {out.index} {list(out.shape)} */")
    writer.need("dt_concat.c")
    return writer.call("dt_concat_s8", str(outer), str(len(inputs)), f"(const int8_t *const[]){{{pointers}}}",
                       f"(const int32_t[]){{{', '.join(map(str, sizes))}}}", writer.where(op.outputs[0]))


register(OpKernel("CONCATENATION", emit, DECLARATIONS))
