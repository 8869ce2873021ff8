"""MAX_POOL_2D and AVERAGE_POOL_2D (dt_pool.c: one window clipping for both); int8 pooling keeps its input's
quantization."""
from __future__ import annotations

from dslite_tiny.engine import quant
from dslite_tiny.engine.ops import OpKernel, Struct, Work, register
from dslite_tiny.measure.graph import Graph, Op

POOL_PARAMS = Struct("dt_pool_params", ("in_h", "in_w", "c", "out_h", "out_w", "k_h", "k_w", "stride_h", "stride_w",
                                        "pad_h", "pad_w", "act_min", "act_max"),
                     "MAX_POOL_2D and AVERAGE_POOL_2D (input and output share their quantization).")
_PADDING_SAME = 0


def _emit(kernel: str):
    def emit(writer, op: Op) -> str:
        x, out, o = writer.tensor(op, 0), writer.output(op), op.options
        if (x.scale, x.zero_point) != (out.scale, out.zero_point):
            raise writer.refuse(op, "requantizes; int8 pooling keeps its input's quantization")
        _, in_h, in_w, c = x.shape
        _, out_h, out_w, _ = out.shape
        k_h, k_w, s_h, s_w = o["filterHeight"], o["filterWidth"], o["strideH"], o["strideW"]
        same = o["padding"] == _PADDING_SAME
        act_min, act_max = quant.activation_range(o["fusedActivationFunction"], out.scale, out.zero_point)
        params = writer.params(POOL_PARAMS, op, {
            "in_h": in_h, "in_w": in_w, "c": c, "out_h": out_h, "out_w": out_w, "k_h": k_h, "k_w": k_w,
            "stride_h": s_h, "stride_w": s_w, "pad_h": quant.same_padding(s_h, 1, in_h, k_h, out_h) if same else 0,
            "pad_w": quant.same_padding(s_w, 1, in_w, k_w, out_w) if same else 0, "act_min": act_min,
            "act_max": act_max})
        writer.need("dt_pool.c")
        return writer.call(kernel, params, writer.where(op.inputs[0]), writer.where(op.outputs[0]))
    return emit


def work(graph: Graph, op: Op, sparse) -> Work:
    out = graph.tensors[op.outputs[0]]
    return Work(op.name.lower(), out.elements * op.options["filterHeight"] * op.options["filterWidth"], out.elements)


register(OpKernel("MAX_POOL_2D", _emit("dt_max_pool_s8"),
                  "void dt_max_pool_s8(const dt_pool_params *p, const int8_t *in, int8_t *out);", POOL_PARAMS,
                  work=work))
register(OpKernel("AVERAGE_POOL_2D", _emit("dt_average_pool_s8"),
                  "void dt_average_pool_s8(const dt_pool_params *p, const int8_t *in, int8_t *out);", POOL_PARAMS,
                  work=work))
