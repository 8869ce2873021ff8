"""``<name>_op_resolver.h``: a ``tflite::MicroMutableOpResolver<N>`` registering exactly the model's ops.

The op list comes from the flatbuffer's operator codes, so the resolver links only the kernels this model
uses (``AllOpsResolver`` links all of them). Method names follow TFLite Micro's own generator
(``gen_micro_mutable_op_resolver``): ``CONV_2D`` → ``AddConv2D``, ``FULLY_CONNECTED`` →
``AddFullyConnected``, except for four that TFLite Micro spells its own way; tests/test_export.py checks
the table against a TFLite Micro checkout when one is given (``DSLITE_TINY_TFLM_DIR``). The factory
returns the resolver by value, as that generator's template does.
"""
from __future__ import annotations

from dslite_tiny.errors import UserError
from dslite_tiny.c_source import banner, include_guard
from dslite_tiny.export.variant import Variant

# The builtins MicroMutableOpResolver can register (tflite-micro at 90b983c, 2026-08-20); an op outside this
# set has no TFLite Micro kernel, and a resolver calling a method for it would not compile.
TFLM_BUILTINS = frozenset((
    "ABS", "ADD", "ADD_N", "ARG_MAX", "ARG_MIN", "ASSIGN_VARIABLE", "AVERAGE_POOL_2D", "BATCH_MATMUL",
    "BATCH_TO_SPACE_ND", "BROADCAST_ARGS", "BROADCAST_TO", "CALL_ONCE", "CAST", "CEIL", "CONCATENATION", "CONV_2D",
    "COS", "CUMSUM", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "DYNAMIC_UPDATE_SLICE", "ELU",
    "EMBEDDING_LOOKUP", "EQUAL", "EXP", "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV", "FLOOR_MOD",
    "FULLY_CONNECTED", "GATHER", "GATHER_ND", "GREATER", "GREATER_EQUAL", "HARD_SWISH", "IF", "L2_NORMALIZATION",
    "L2_POOL_2D", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR",
    "LOGISTIC", "LOG_SOFTMAX", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MIRROR_PAD", "MUL", "NEG",
    "NOT_EQUAL", "PACK", "PAD", "PADV2", "PRELU", "QUANTIZE", "READ_VARIABLE", "REDUCE_ALL", "REDUCE_MAX",
    "REDUCE_MIN", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2", "ROUND",
    "RSQRT", "SELECT_V2", "SHAPE", "SIN", "SLICE", "SOFTMAX", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT",
    "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK", "VAR_HANDLE", "WHILE", "ZEROS_LIKE",
))
# Methods whose names do not follow the rule of ``add_method`` (TFLite Micro's own spelling).
IRREGULAR_METHODS = {"BATCH_MATMUL": "AddBatchMatMul", "CUMSUM": "AddCumSum", "PADV2": "AddPadV2",
                     "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM"}


def add_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method registering builtin ``op`` (``DEPTHWISE_CONV_2D`` →
    ``AddDepthwiseConv2D``; parts that start with a digit stay upper case: ``2D``), or TFLite Micro's own
    spelling where it differs (``BATCH_MATMUL`` → ``AddBatchMatMul``)."""
    if op in IRREGULAR_METHODS:
        return IRREGULAR_METHODS[op]
    parts = op.split("_")
    return "Add" + "".join(part[0].upper() + part[1:].lower() if part[0].isalpha() else part.upper()
                           for part in parts if part)


def check_tflm_ops(variant: Variant) -> None:
    """Refuse a model with an operator TFLite Micro has no kernel for, before anything is measured or written."""
    ops = variant.description["ops"]
    custom = [op for op in ops if op.startswith("CUSTOM:")]
    if custom:
        raise UserError(f"custom op {custom[0][7:]} has no TFLite Micro builtin kernel; the model cannot run "
                        f"on a microcontroller as it is", path=variant.path)
    missing = [op for op in ops if op not in TFLM_BUILTINS]
    if missing:
        raise UserError(f"builtin op {', '.join(missing)} has no TFLite Micro kernel; the model cannot run on a "
                        f"microcontroller as it is (the phone target can take it)", path=variant.path)


def op_resolver_file(variant: Variant, *, name: str, provenance: list[str]) -> dict[str, str]:
    check_tflm_ops(variant)
    return {f"{name}_op_resolver.h": op_resolver_text(variant.description["ops"], name=name, provenance=provenance)}


def op_resolver_text(ops: dict[str, int], *, name: str, provenance: list[str]) -> str:
    """The resolver header registering ``ops`` (builtin: number of uses); also how the code-size benchmark
    links TFLite Micro with one kernel at a time."""
    guard = include_guard(f"{name}_op_resolver.h")
    count = f"k{''.join(p.title() for p in name.split('_'))}OpCount"
    calls = "\n".join(f"  resolver.{add_method(op)}();  // {op}, {n} use{'s' if n > 1 else ''}"
                      for op, n in ops.items())
    return f"""{banner(provenance)}
#ifndef {guard}
#define {guard}

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

// The {len(ops)} builtin operators of the model, read from its flatbuffer.
constexpr unsigned int {count} = {len(ops)};

inline tflite::MicroMutableOpResolver<{count}> {name}_create_op_resolver() {{
  tflite::MicroMutableOpResolver<{count}> resolver;
{calls}
  return resolver;
}}

#endif  // {guard}
"""
