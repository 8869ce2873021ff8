"""``<name>_engine.c/.h``: one int8 model as plain C99 calls into the engine's kernels, with no
interpreter and no flatbuffer: weights and biases as ``const`` arrays, every requantization multiplier and
shift precomputed (``engine.quant``), activations in one static arena laid out by ``engine.plan``, and one
function ``<name>_invoke(const int8_t *input, int8_t *output)``.

Nothing from the model file is printed as text: comments name ops and tensors by index (the file's tensor
names are untrusted), numbers are written by Python as integers, and the banner's provenance comes escaped.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dslite_tiny.engine import quant
from dslite_tiny.engine.graph import Graph, Op, Tensor, read_graph
from dslite_tiny.engine.plan import Plan, is_pointwise, plan_arena
from dslite_tiny.engine.sparse import BlockSparse, choose_sparse
from dslite_tiny.errors import UserError
from dslite_tiny.c_source import banner
from dslite_tiny.measure.graph import check_limits

KERNEL_DIR = Path(__file__).parent / "kernels"
KERNEL_FILES = tuple(sorted(p.name for p in KERNEL_DIR.glob("dt_*.[ch]")))  # headers, then one C file per op
_PADDING_SAME = 0


@dataclasses.dataclass(frozen=True)
class Engine:
    files: dict[str, str]  # file name → text: the generated model and the kernels it calls
    arena_bytes: int  # the static arena (intermediate activations)
    constant_bytes: int  # weights, biases, multipliers, shifts and parameter blocks: flash
    input_bytes: int
    output_bytes: int
    ops: int
    sparse_ops: tuple[int, ...] = ()  # ops whose weights are stored block-sparse (engine.sparse)

    @property
    def kernel_sources(self) -> list[str]:
        """The kernels' C files among ``files``, each compiled on its own beside ``<name>_engine.c``."""
        return [n for n in KERNEL_FILES if n.endswith(".c") and n in self.files]


def generate(data: bytes, path: str | Path, *, name: str, provenance: list[str]) -> Engine:
    """The model at ``path`` (flatbuffer ``data``) as ``<name>_engine.h/.c`` plus the kernels."""
    graph = read_graph(data, path)
    check_limits(graph, path)  # before planning: the planner's work grows with the activations
    sparse = choose_sparse(graph)
    plan = plan_arena(graph, sparse_ops=frozenset(sparse))
    writer = _Writer(graph, plan, name, path, sparse)
    body = [writer.call(op) for op in graph.ops]
    source = "\n".join([_banner(provenance), f'#include "{name}_engine.h"', "", "#include <stddef.h>", "",
                        '#include "dt_engine.h"', "",
                        f"static int32_t g_arena[({name.upper()}_ARENA_BYTES + 3) / 4 + 1];", "",
                        *writer.constants, "",
                        f"void {name}_invoke(const int8_t *input, int8_t *output) {{",
                        "  int8_t *arena = (int8_t *)g_arena;", "  (void)arena;", *body, "}", ""])
    kernels = {n: (KERNEL_DIR / n).read_text(encoding="utf-8") for n in KERNEL_FILES}
    files = {f"{name}_engine.h": _header(graph, plan, name, provenance), f"{name}_engine.c": source, **kernels}
    x, y = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    return Engine(files, plan.arena_bytes, writer.constant_bytes, x.elements, y.elements, len(graph.ops),
                  tuple(sorted(sparse)))


class _Writer:
    """Emits each op's constants and its kernel call."""

    def __init__(self, graph: Graph, plan: Plan, name: str, path: str | Path, sparse: dict[int, BlockSparse]):
        self.graph, self.plan, self.name, self.path = graph, plan, name, path
        self.sparse = sparse  # op index → its weights' block-sparse form, for the ops that run sparse
        self.constants: list[str] = []
        self.constant_bytes = 0

    def call(self, op: Op) -> str:
        try:
            return getattr(self, f"_{op.name.lower()}")(op)
        except quant.QuantRangeError as exc:
            raise UserError(f"{op.describe()}: {exc}, which the int8 kernels cannot apply", path=self.path) from None

    def _conv_2d(self, op: Op) -> str:
        return self._convolution(op, "dt_conv_s8", depthwise=False)

    def _depthwise_conv_2d(self, op: Op) -> str:
        return self._convolution(op, "dt_depthwise_conv_s8", depthwise=True)

    def _convolution(self, op: Op, kernel: str, *, depthwise: bool) -> str:
        x, w, out = self._tensor(op, 0), self._tensor(op, 1), self.graph.tensors[op.outputs[0]]
        o = op.options
        _, in_h, in_w, in_c = x.shape
        _, out_h, out_w, out_c = out.shape
        k_h, k_w = w.shape[1], w.shape[2]
        if not depthwise and w.shape[3] != in_c:
            raise UserError(f"op {op.index} (CONV_2D) is a grouped convolution; the engine runs ungrouped ones",
                            path=self.path)
        pad_h = pad_w = 0
        if o["padding"] == _PADDING_SAME:
            pad_h = quant.same_padding(o["strideH"], o["dilationHFactor"], in_h, k_h, out_h)
            pad_w = quant.same_padding(o["strideW"], o["dilationWFactor"], in_w, k_w, out_w)
        act_min, act_max = quant.activation_range(o["fusedActivationFunction"], out.scale, out.zero_point)
        fields = [in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, o["strideH"], o["strideW"],
                  o["dilationHFactor"], o["dilationWFactor"], pad_h, pad_w,
                  o.get("depthMultiplier", 1) if depthwise else 1, -x.zero_point, out.zero_point, act_min, act_max]
        multipliers, shifts = quant.conv_multipliers(x.scale, w.scales, out.scale)
        multipliers, shifts = multipliers * (out_c // len(multipliers)), shifts * (out_c // len(shifts))  # per tensor
        if depthwise:  # the interior's bias: the input offset times each channel's weight sum folded in
            folded = self._folded_bias(op, w.data.reshape(-1, out_c).sum(axis=0), -x.zero_point)
            self._array("int32_t", f"f{op.index}", folded, "bias with the input offset folded in")
            return self._weighted_call(op, kernel, "dt_conv_params", fields, multipliers, shifts, extra=f"f{op.index}")
        if is_pointwise(self.graph, op):
            folded = self._folded_bias(op, w.data.reshape(out_c, -1).sum(axis=1), -x.zero_point)
            sparse = self.sparse.get(op.index)
            return self._weighted_call(op, "dt_pointwise_conv_sparse_s8" if sparse else "dt_pointwise_conv_s8",
                                       "dt_conv_params", fields, multipliers, shifts, bias=folded, sparse=sparse)
        return self._weighted_call(op, kernel, "dt_conv_params", fields, multipliers, shifts)

    def _fully_connected(self, op: Op) -> str:
        x, w, out = self._tensor(op, 0), self._tensor(op, 1), self.graph.tensors[op.outputs[0]]
        o = op.options
        if o.get("keepNumDims") or len(out.shape) != 2 or x.elements != w.shape[1] or w.dtype != "int8":
            raise UserError(f"op {op.index} (FULLY_CONNECTED) is not a [1, depth] × [units, depth]^T int8 product",
                            path=self.path)
        if np.any(w.zero_points):
            raise UserError(f"op {op.index} (FULLY_CONNECTED) has asymmetric int8 weights; TFLite's are symmetric",
                            path=self.path)
        act_min, act_max = quant.activation_range(o["fusedActivationFunction"], out.scale, out.zero_point)
        multipliers, shifts = quant.conv_multipliers(x.scale, w.scales, out.scale)
        fields = [w.shape[1], w.shape[0], int(len(w.scales) > 1), out.zero_point, act_min, act_max]
        folded = self._folded_bias(op, w.data.sum(axis=1), -x.zero_point)
        sparse = self.sparse.get(op.index)
        return self._weighted_call(op, "dt_fully_connected_sparse_s8" if sparse else "dt_fully_connected_s8",
                                   "dt_fc_params", fields, multipliers, shifts, bias=folded, sparse=sparse)

    def _mean(self, op: Op) -> str:
        x, axis, out = self._tensor(op, 0), self._tensor(op, 1), self.graph.tensors[op.outputs[0]]
        axes = sorted(int(a) % len(x.shape) for a in np.ravel(axis.data)) if axis.data is not None else []
        if len(x.shape) != 4 or axes != [1, 2]:
            raise UserError(f"op {op.index} (MEAN) reduces axes {axes}; the engine reduces height and width of "
                            f"an NHWC tensor", path=self.path)
        _, h, w, c = x.shape
        multiplier, shift = quant.mean_multiplier(x.scale, out.scale, h * w)
        fields = [h, w, c, x.zero_point, out.zero_point, multiplier, shift]
        return self._simple_call(op, "dt_mean_hw_s8", "dt_mean_params", fields)

    def _softmax(self, op: Op) -> str:
        x, out = self._tensor(op, 0), self.graph.tensors[op.outputs[0]]
        if out.zero_point != -128 or out.scale != 1 / 256:
            raise UserError(f"op {op.index} (SOFTMAX) has output scale {out.scale} and zero point "
                            f"{out.zero_point}; int8 softmax needs 1/256 and -128", path=self.path)
        multiplier, shift, diff_min = quant.softmax_parameters(op.options["beta"], x.scale)
        depth = x.shape[-1]
        fields = [x.elements // depth, depth, multiplier, shift, diff_min]
        return self._simple_call(op, "dt_softmax_s8", "dt_softmax_params", fields)

    def _leaky_relu(self, op: Op) -> str:
        x, out = self._tensor(op, 0), self.graph.tensors[op.outputs[0]]
        alpha_m, alpha_s, identity_m, identity_s = quant.leaky_relu_multipliers(x.scale, op.options["alpha"],
                                                                                out.scale)
        fields = [x.elements, x.zero_point, out.zero_point, alpha_m, alpha_s, identity_m, identity_s]
        return self._simple_call(op, "dt_leaky_relu_s8", "dt_leaky_relu_params", fields)

    def _add(self, op: Op) -> str:
        a, b, out = self._binary(op)
        act_min, act_max = quant.activation_range(op.options["fusedActivationFunction"], out.scale, out.zero_point)
        m1, s1, m2, s2, mo, so = quant.add_multipliers(a.scale, b.scale, out.scale)
        fields = [out.elements, b.elements, -a.zero_point, -b.zero_point, out.zero_point, quant.ADD_LEFT_SHIFT, m1, s1,
                  m2, s2, mo, so, act_min, act_max]
        return self._binary_call(op, "dt_add_s8", "dt_add_params", fields)

    def _mul(self, op: Op) -> str:
        a, b, out = self._binary(op)
        act_min, act_max = quant.activation_range(op.options["fusedActivationFunction"], out.scale, out.zero_point)
        multiplier, shift = quant.quantize_multiplier(float(a.scale) * float(b.scale) / float(out.scale))
        fields = [out.elements, b.elements, -a.zero_point, -b.zero_point, out.zero_point, multiplier, shift,
                  act_min, act_max]
        return self._binary_call(op, "dt_mul_s8", "dt_mul_params", fields)

    def _binary(self, op: Op) -> tuple[Tensor, Tensor, Tensor]:
        """The operands of ADD or MUL: an activation tensor and one of its shape, or a vector along its last
        dimension (a constant, as BatchNormalization's scale, or not)."""
        a, b, out = self._tensor(op, 0), self._tensor(op, 1), self.graph.tensors[op.outputs[0]]
        if a.data is not None and b.data is None:
            a, b = b, a
        same = a.shape == b.shape
        last = a.shape and b.elements == a.shape[-1] and all(d == 1 for d in b.shape[:-1])
        if a.data is not None or not (same or last) or a.shape != out.shape:
            raise UserError(f"op {op.index} ({op.name}) combines {list(a.shape)} and {list(b.shape)}; the engine "
                            f"takes one shape, or a vector along the last dimension", path=self.path)
        return a, b, out

    def _binary_call(self, op: Op, kernel: str, struct: str, fields: list[int]) -> str:
        a, b, _ = self._binary(op)
        self._params(struct, op.index, fields, op)
        return (f"  {kernel}(&p{op.index}, {self._operand(op, a)}, {self._operand(op, b)}, "
                f"{self._where(op.outputs[0])});")

    def _operand(self, op: Op, tensor: Tensor) -> str:
        """Where an input is: a constant becomes an array of its own."""
        if tensor.data is None:
            return self._where(tensor.index)
        symbol = f"k{op.index}_{tensor.index}"
        self._array("int8_t", symbol, tensor.data, f"tensor {tensor.index}")
        return symbol

    def _pad(self, op: Op) -> str:
        x, out = self._tensor(op, 0), self.graph.tensors[op.outputs[0]]
        pads = self._tensor(op, 1).data
        if len(x.shape) != 4 or pads is None or np.any(pads[[0, 3]]) or (len(op.inputs) > 2 and op.inputs[2] >= 0):
            raise UserError(f"op {op.index} ({op.name}) pads other than height and width of an NHWC tensor with "
                            f"its zero point", path=self.path)
        _, in_h, in_w, c = x.shape
        fields = [in_h, in_w, c, out.shape[1], out.shape[2], int(pads[1][0]), int(pads[2][0]), out.zero_point]
        return self._simple_call(op, "dt_pad_s8", "dt_pad_params", fields)

    def _max_pool_2d(self, op: Op) -> str:
        return self._pool(op, "dt_max_pool_s8")

    def _average_pool_2d(self, op: Op) -> str:
        return self._pool(op, "dt_average_pool_s8")

    def _pool(self, op: Op, kernel: str) -> str:
        x, out, o = self._tensor(op, 0), self.graph.tensors[op.outputs[0]], op.options
        if (x.scale, x.zero_point) != (out.scale, out.zero_point):
            raise UserError(f"op {op.index} ({op.name}) requantizes; int8 pooling keeps its input's quantization",
                            path=self.path)
        _, in_h, in_w, c = x.shape
        _, out_h, out_w, _ = out.shape
        k_h, k_w, s_h, s_w = o["filterHeight"], o["filterWidth"], o["strideH"], o["strideW"]
        same = o["padding"] == _PADDING_SAME
        pad_h = quant.same_padding(s_h, 1, in_h, k_h, out_h) if same else 0
        pad_w = quant.same_padding(s_w, 1, in_w, k_w, out_w) if same else 0
        act_min, act_max = quant.activation_range(o["fusedActivationFunction"], out.scale, out.zero_point)
        fields = [in_h, in_w, c, out_h, out_w, k_h, k_w, s_h, s_w, pad_h, pad_w, act_min, act_max]
        return self._simple_call(op, kernel, "dt_pool_params", fields)

    def _concatenation(self, op: Op) -> str:
        out = self.graph.tensors[op.outputs[0]]
        inputs = [self.graph.tensors[i] for i in op.inputs]
        if any((t.scale, t.zero_point) != (out.scale, out.zero_point) for t in inputs):
            raise UserError(f"op {op.index} (CONCATENATION) requantizes an input; TFLite Micro's int8 "
                            f"concatenation needs one quantization", path=self.path)
        axis = op.options["axis"] % len(out.shape)
        outer = int(np.prod(out.shape[:axis]))
        sizes = [t.elements // outer for t in inputs]
        pointers = ", ".join(self._operand(op, t) for t in inputs)
        self.constants.append(f"/* op {op.index}: CONCATENATION -> tensor {out.index} {list(out.shape)} */")
        return (f"  dt_concat_s8({outer}, {len(inputs)}, (const int8_t *const[]){{{pointers}}}, "
                f"(const int32_t[]){{{', '.join(map(str, sizes))}}}, {self._where(op.outputs[0])});")

    def _weighted_call(self, op: Op, kernel: str, struct: str, fields: list[int], multipliers: list[int],
                       shifts: list[int], *, bias: np.ndarray | None = None, extra: str | None = None,
                       sparse: BlockSparse | None = None) -> str:
        """The call of a kernel with weights; ``bias`` replaces the model's (a folded one), ``extra`` is an
        array passed after the bias; ``sparse`` weights are passed as their masks and kept values."""
        n = op.index
        w = self._tensor(op, 1)
        if sparse is not None:
            self._array("uint32_t", f"q{n}", sparse.masks, f"kept blocks of tensor {w.index}, masks per row")
            self._array("int8_t", f"w{n}", sparse.values, f"weights of the kept blocks, tensor {w.index}")
        else:
            self._array("int8_t", f"w{n}", w.data, f"weights, tensor {w.index}")
        if bias is not None:
            self._array("int32_t", f"b{n}", bias, "bias with the input offset folded in")
        else:
            bias = self._bias(op)
            if bias is not None:
                self._array("int32_t", f"b{n}", bias, f"bias, tensor {op.inputs[2]}")
        has_bias = bias is not None
        self._array("int32_t", f"m{n}", np.asarray(multipliers), "requantization multipliers")
        self._array("int32_t", f"s{n}", np.asarray(shifts), "requantization shifts")
        self._params(struct, n, fields, op)
        arrays = [*([f"q{n}"] if sparse is not None else []), f"w{n}", f"b{n}" if has_bias else "NULL",
                  *([extra] if extra else []), f"m{n}", f"s{n}"]
        return f"  {kernel}(&p{n}, {self._where(op.inputs[0])}, {', '.join(arrays)}, {self._where(op.outputs[0])});"

    def _bias(self, op: Op) -> np.ndarray | None:
        """The op's int32 bias, or None."""
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return None
        bias = self.graph.tensors[op.inputs[2]]
        if bias.dtype != "int32" or bias.data is None:
            raise UserError(f"op {op.index} ({op.name}) has a {bias.dtype} bias; the engine takes a constant int32 one",
                            path=self.path)
        return bias.data

    def _folded_bias(self, op: Op, weight_sums: np.ndarray, input_offset: int) -> np.ndarray:
        """bias + input offset · Σ weights, per output channel: what the kernels add before the raw products."""
        bias = self._bias(op)
        folded = (np.zeros(len(weight_sums), np.int64) if bias is None else bias.astype(np.int64)) \
            + input_offset * weight_sums.astype(np.int64)
        if folded.min(initial=0) < -2 ** 31 or folded.max(initial=0) >= 2 ** 31:  # INT32_MIN is a valid bias
            raise UserError(f"op {op.index} ({op.name}): the bias with the input offset folded in overflows int32",
                            path=self.path)
        return folded

    def _simple_call(self, op: Op, kernel: str, struct: str, fields: list[int]) -> str:
        self._params(struct, op.index, fields, op)
        return f"  {kernel}(&p{op.index}, {self._where(op.inputs[0])}, {self._where(op.outputs[0])});"

    def _params(self, struct: str, n: int, fields: list[int], op: Op) -> None:
        out = self.graph.tensors[op.outputs[0]]
        self.constants.append(f"/* op {n}: {op.name} -> tensor {out.index} {list(out.shape)} */")
        self.constants.append(f"static const {struct} p{n} = {{{', '.join(str(int(f)) for f in fields)}}};")
        self.constant_bytes += 4 * len(fields)

    def _array(self, ctype: str, symbol: str, values: np.ndarray, comment: str) -> None:
        suffix = "u" if ctype == "uint32_t" else ""  # a mask above INT32_MAX stays an unsigned int constant
        flat = [str(int(v)) + suffix if v != -2 ** 31 else "(-2147483647 - 1)" for v in np.ravel(values)]
        self.constant_bytes += len(flat) * (1 if ctype == "int8_t" else 4)
        rows = [", ".join(flat[i:i + 24]) for i in range(0, len(flat), 24)]
        self.constants.append(f"/* {comment} */")
        self.constants.append(f"static const {ctype} {symbol}[{len(flat)}] = {{\n  " + ",\n  ".join(rows) + "};")

    def _tensor(self, op: Op, position: int) -> Tensor:
        return self.graph.tensors[op.inputs[position]]

    def _where(self, tensor: int) -> str:
        if tensor in self.graph.inputs:
            return "input"
        if tensor in self.graph.outputs:
            return "output"
        return f"arena + {self.plan.offsets[tensor]}"


def _header(graph: Graph, plan: Plan, name: str, provenance: list[str]) -> str:
    x, y = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    guard = f"{name.upper()}_ENGINE_H_"
    p = name.upper()
    return "\n".join([
        _banner(provenance), f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
        f"#define {p}_INPUT_ELEMENTS {x.elements}  /* int8, shape {list(x.shape)} */",
        f"#define {p}_OUTPUT_ELEMENTS {y.elements}  /* int8, shape {list(y.shape)} */",
        f"#define {p}_ARENA_BYTES {plan.arena_bytes}  /* static activations, besides input and output */", "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        f"/* Runs the model: input and output are the caller's int8 tensors (not arena bytes). */",
        f"void {name}_invoke(const int8_t *input, int8_t *output);", "",
        "#ifdef __cplusplus", "}", "#endif", "", f"#endif  /* {guard} */", ""])


def _banner(provenance: list[str]) -> str:
    return banner(["An int8 model as C99 calls into the engine's kernels (dt_*.c).", *provenance])
