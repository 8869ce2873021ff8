"""What an int8 model costs on a Cortex-M4 when the generated engine runs it: flash (the kernels' code, the
model's code and its constants, compiled for the M4F), RAM (the engine's planned arena with the input and
output buffers) and instructions per inference, counted by QEMU's ``mps2-an386`` under ``-icount shift=0``.

These are the figures a microcontroller sees; a ``.tflite``'s size and the host's latency are not.
Without ``qemu-system-arm`` and ``arm-none-eabi-gcc`` (method ``estimate``) the flash is the generator's
constant bytes plus the kernels' budget of ``export.boards``, and the instructions come from a model
calibrated on QEMU (``cortex_m4_costs.json``, written by ``reports/benchmarks/engine_costs.py``: per kernel
path, a · multiply-accumulates + b · outputs + c); the report marks them as estimates.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import numpy as np

from dslite_tiny.errors import UserError
from dslite_tiny.records import M4_METHODS

log = logging.getLogger(__name__)
# QEMU's instruction count with flash from objects compiled for the M4F; without the Cortex-M4 tools, flash
# from the generator's constants and the kernels' code budget.
METHOD_QEMU, METHOD_ESTIMATE = M4_METHODS
COSTS_PATH = Path(__file__).with_name("cortex_m4_costs.json")


def cortex_m4_figures(data: bytes, path: Path, inputs: np.ndarray, *, cache_dir: Path) -> dict:
    """The engine's figures for the model ``data`` (from ``path``) on int8 ``inputs`` ((n, elements)):
    ``{"ok": False, "reason": ...}`` where the engine does not run the model or the build fails."""
    from dslite_tiny.engine.codegen import generate

    try:
        engine = generate(data, path, name="model", provenance=["compress: Cortex-M4 figures"])
    except UserError as exc:
        return {"ok": False, "reason": exc.message}
    figures = {"ok": True, "arena_bytes": engine.arena_bytes, "io_bytes": engine.input_bytes + engine.output_bytes,
               "ram_bytes": engine.arena_bytes + engine.input_bytes + engine.output_bytes, "ops": engine.ops,
               "block_sparse_ops": list(engine.sparse_ops)}
    from firmware_host import qemu

    problem = qemu.tools_missing()
    if problem:
        return {**figures, **_estimated_flash(engine), "method": METHOD_ESTIMATE,
                "instructions": estimate_instructions(engine), "reason": problem}
    try:
        flash = qemu.engine_flash(engine, "model", cache_dir=cache_dir)
        _, counts, _ = qemu.engine_on_cortex_m4(engine, "model", inputs, cache_dir=cache_dir)
    except (RuntimeError, OSError, UserError) as exc:  # a failed build or run is recorded, not fatal
        log.warning("%s: no Cortex-M4 figures: %s", path, exc)
        return {"ok": False, "reason": f"the Cortex-M4 build or run failed: {str(exc).splitlines()[0][:200]}"}
    return {**figures, **flash, "flash_bytes": sum(flash.values()), "method": METHOD_QEMU,
            "instructions": int(np.median(counts)), "instruction_inputs": len(counts)}


def estimate_instructions(engine) -> int | None:
    """The engine's Cortex-M4 instructions per inference by the calibrated model; None where one of its
    kernel paths has no calibration."""
    modelled = modelled_instructions(engine.work, calibrated_costs())
    return None if modelled is None else int(round(modelled))


def work_instructions(work) -> float | None:
    """One op's (``engine.ops.Work``) Cortex-M4 instructions by the calibrated model; None if uncalibrated."""
    return modelled_instructions([work], calibrated_costs())


@functools.cache
def calibrated_costs() -> dict:
    """Per kernel path, the calibrated ``per_mac``, ``per_output`` and ``per_op`` instructions."""
    return json.loads(COSTS_PATH.read_text(encoding="utf-8"))["costs"]


def modelled_instructions(work, costs: dict) -> float | None:
    """Σ per op (``engine.ops.Work``) of a · MACs + b · outputs + c of its kernel path in ``costs``; None
    where a path has no coefficients."""
    if any(w.kind not in costs for w in work):
        return None
    return sum(costs[w.kind]["per_mac"] * w.macs + costs[w.kind]["per_output"] * w.outputs + costs[w.kind]["per_op"]
               for w in work)


def _estimated_flash(engine) -> dict:
    from dslite_tiny.export.boards import engine_kernel_code_bytes

    code = engine_kernel_code_bytes(engine.ops)
    return {"constant_bytes": engine.constant_bytes, "code_bytes": code, "flash_bytes": engine.constant_bytes + code}
