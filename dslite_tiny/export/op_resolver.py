"""``<name>_op_resolver.h``: a ``tflite::MicroMutableOpResolver<N>`` registering exactly the model's ops.

The op list comes from the flatbuffer's operator codes, so the resolver links only the kernels this model
uses (``AllOpsResolver`` links all of them). Method names follow TFLite Micro's own generator
(``gen_micro_mutable_op_resolver``): ``CONV_2D`` → ``AddConv2D``, ``FULLY_CONNECTED`` →
``AddFullyConnected``. The factory returns the resolver by value, as that generator's template does.
"""
from __future__ import annotations

from dslite_tiny.errors import UserError
from dslite_tiny.export.c_source import banner, include_guard
from dslite_tiny.export.variant import Variant


def add_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method registering builtin ``op`` (``DEPTHWISE_CONV_2D`` →
    ``AddDepthwiseConv2D``; parts that start with a digit stay upper case: ``2D``)."""
    parts = op.split("_")
    return "Add" + "".join(part[0].upper() + part[1:].lower() if part[0].isalpha() else part.upper()
                           for part in parts if part)


def op_resolver_file(variant: Variant, *, name: str, provenance: list[str]) -> dict[str, str]:
    ops = variant.description["ops"]
    custom = [op for op in ops if op.startswith("CUSTOM:")]
    if custom:
        raise UserError(f"custom op {custom[0][7:]} has no TFLite Micro builtin kernel; the model cannot run "
                        f"on a microcontroller as it is", path=variant.path)
    file_name = f"{name}_op_resolver.h"
    guard = include_guard(file_name)
    count = f"k{''.join(p.title() for p in name.split('_'))}OpCount"
    calls = "\n".join(f"  resolver.{add_method(op)}();  // {op}, {n} use{'s' if n > 1 else ''}"
                      for op, n in ops.items())
    text = f"""{banner(provenance)}
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
    return {file_name: text}
