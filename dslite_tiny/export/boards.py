"""Board profiles (``configs/boards/*.yaml``) and the flash/RAM fit check of a model on each.

    flash = model bytes + runtime code + frontend tables + the board's system flash
    RAM   = tensor arena + frontend buffers + I/O buffers + the board's system RAM

TFLite Micro's runtime code is measured, not budgeted: ``tflm_code_bytes.json`` (written by
``reports/benchmarks/tflm_m4.py --code-sizes``) holds the Cortex-M4 flash of TFLM's core with the firmware's
backend, of each builtin's kernel (CMSIS-NN where it has one: those kernels carry the reference code too,
so they are the larger) and of the firmware core's protocol and frontend code. A model counts the core
plus its own kernels: an upper bound, as kernels share helpers (the demo DS-CNN's TFLM: 141.6 KB counted,
116.8 KB linked). Other cores differ (an ESP32's Xtensa code is of similar density); the board's system
flash covers its framework. LiteRT's Android arm64 library is about 4 MiB.

Frontend tables are the C frontend's constants in flash (window, twiddles, sparse mel filterbank, resize
taps, colour map), exactly as ``export.settings.frontend_tables`` writes them. Frontend buffers are what
the firmware core holds per chunk: the int16 audio chunk, one float32 FFT frame, the float32 mel
spectrogram and the resize's row buffer. The image is not counted again: the firmware writes each
quantized pixel straight into the model's input tensor, which lives in the arena. A model exported
without its frontend counts neither. KB in verdicts is 1024 bytes.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable
from pathlib import Path

from dslite_tiny.config import BoardConfig, FrontendConfig, list_presets, load_config
from dslite_tiny.audio.frontend import resize_taps
from dslite_tiny.export.settings import frontend_table_bytes

KIB = 1024
LITERT_CODE_BYTES = 4096 * KIB
CODE_TABLE = Path(__file__).with_name("tflm_code_bytes.json")
IO_BYTES = 256  # the 80-character command buffer, a reply line and slack
# The engine's kernels (dslite_tiny/engine/kernels/dt_*.c) are 14.2 KiB of Cortex-M4 code at -O2 (the
# block-sparse and widened pointwise ones included), which a test holds under this; a model links only the
# kernel files it calls. The invoke function takes about 32 bytes per op (448 for the demo's 14 ops).
ENGINE_KERNEL_BYTES = 15 * KIB
ENGINE_CALL_BYTES = 64


def list_boards() -> list[str]:
    return list_presets("boards")


def load_board(spec: str | Path) -> BoardConfig:
    """A board profile by name (``configs/boards/<name>.yaml``) or from a YAML file."""
    return load_config(BoardConfig, spec, stage="boards")


@dataclasses.dataclass(frozen=True)
class Footprint:
    """What a model needs on any board, before the board's own system share."""

    model_bytes: int
    arena_bytes: int
    frontend_bytes: int
    io_bytes: int
    frontend_table_bytes: int = 0
    mcu_code_bytes: int = 0  # TFLite Micro's or the engine's, on a microcontroller; a phone counts LiteRT's


@dataclasses.dataclass(frozen=True)
class Fit:
    board: str
    flash_needed: int
    flash_available: int
    ram_needed: int
    ram_available: int
    arena_in_external_ram: bool
    ram_short: int  # bytes missing (0: fits), including a too-small contiguous region for the arena

    @property
    def flash_short(self) -> int:
        return max(0, self.flash_needed - self.flash_available)

    @property
    def fits(self) -> bool:
        return self.flash_short == 0 and self.ram_short == 0

    @property
    def flash_verdict(self) -> str:
        return _verdict(self.flash_short)

    @property
    def ram_verdict(self) -> str:
        return _verdict(self.ram_short) + (" (arena in external RAM)" if self.arena_in_external_ram else "")

    def describe(self) -> str:
        return (f"{self.board}: flash {format_bytes(self.flash_needed)} of {format_bytes(self.flash_available)}, "
                f"{self.flash_verdict}; RAM {format_bytes(self.ram_needed)} of {format_bytes(self.ram_available)}, "
                f"{self.ram_verdict}")


def footprint(*, model_bytes: int, arena_bytes: int, frontend: FrontendConfig | None,
              ops: dict[str, int] | Iterable[str]) -> Footprint:
    """What a model run by TFLite Micro (or LiteRT, on a phone) needs."""
    return _footprint(model_bytes, arena_bytes, frontend, tflm_code_bytes(ops, with_frontend=frontend is not None))


def engine_need(*, constant_bytes: int, ram_bytes: int, op_calls: int, frontend: FrontendConfig | None) -> Footprint:
    """What a model run by the generated engine needs: its constants in flash, its arena with the input and
    output buffers in RAM, its kernels and ``op_calls`` calls."""
    return _footprint(constant_bytes, ram_bytes, frontend,
                      engine_code_bytes(op_calls, with_frontend=frontend is not None))


def _footprint(model_bytes: int, arena_bytes: int, frontend: FrontendConfig | None, code: int) -> Footprint:
    tables = frontend_table_bytes(frontend) if frontend is not None else 0
    return Footprint(model_bytes, arena_bytes, frontend_buffer_bytes(frontend), IO_BYTES, tables, code)


def engine_code_bytes(op_calls: int, *, with_frontend: bool) -> int:
    """Flash of the firmware running a generated engine: its kernels, one call per op, the protocol core
    and, for on-device features, the frontend's code (the last two measured as for TFLite Micro)."""
    table = code_table()
    return (engine_kernel_code_bytes(op_calls) + table["protocol_bytes"]
            + (table["frontend_code_bytes"] if with_frontend else 0))


def engine_kernel_code_bytes(op_calls: int) -> int:
    """The engine's own code budget: its kernels and one call per op."""
    return ENGINE_KERNEL_BYTES + ENGINE_CALL_BYTES * op_calls


@functools.cache
def code_table() -> dict:
    return json.loads(CODE_TABLE.read_text(encoding="utf-8"))


def tflm_code_bytes(ops: Iterable[str], *, with_frontend: bool) -> int:
    """Flash of the firmware running a model of builtin ``ops`` with TFLite Micro, as measured on a
    Cortex-M4: TFLM's core and backend, each op's kernel once (an op without a figure counts as the
    largest kernel), the protocol core and, for on-device features, the frontend's code."""
    table = code_table()
    kernels = table["kernel_bytes"]
    largest = max(kernels.values())
    return (table["core_bytes"] + table["protocol_bytes"] + (table["frontend_code_bytes"] if with_frontend else 0)
            + sum(kernels.get(op, largest) for op in set(ops)))


def arena_estimate(arena_bytes: int | None, activation_bytes: int) -> int:
    """The measured TFLM arena, else every activation tensor's bytes (no reuse: an upper bound). Only a
    LiteRT target goes without a TFLM measurement (a float16 model, say, has no TFLM kernels)."""
    return arena_bytes if arena_bytes is not None else activation_bytes


def frontend_buffer_bytes(frontend: FrontendConfig | None) -> int:
    """Static RAM of the firmware core's frontend (``dt_frontend.c``) and its int16 chunk buffer: tests hold
    this equal to what the compiled C reports."""
    if frontend is None:
        return 0
    f = frontend
    mel_taps = resize_taps(f.feature_bins, f.image_height, method=f.resize, antialias=f.antialias)[0].shape[1]
    rows = mel_taps * f.image_width  # time-resized mel rows of one image row
    return 2 * f.chunk_length + 4 * (f.n_fft + f.n_frames * f.n_mels + rows)


def check_fit(need: Footprint, board: BoardConfig) -> Fit:
    """Flash and RAM needed vs available. The arena goes to external RAM only when on-chip RAM is short."""
    code = need.mcu_code_bytes if board.microcontroller else LITERT_CODE_BYTES
    flash_needed = need.model_bytes + code + need.frontend_table_bytes + board.system_flash_kib * KIB
    internal = need.frontend_bytes + need.io_bytes + board.system_ram_kib * KIB
    ram = board.ram_kib * KIB
    region = (board.arena_max_kib or board.ram_kib) * KIB
    external = board.external_ram_kib * KIB
    on_chip_short = max(0, internal + need.arena_bytes - ram, need.arena_bytes - region)
    use_external = on_chip_short > 0 and external > 0
    if use_external:
        short = max(0, internal - ram) + max(0, need.arena_bytes - external)
    else:
        short = on_chip_short
    return Fit(board.name, flash_needed, board.flash_kib * KIB, internal + need.arena_bytes,
               ram + (external if use_external else 0), use_external, short)


def format_bytes(size: int) -> str:
    """``50.0 KB``, ``6.67 MB`` (1 KB = 1024 bytes)."""
    if size >= KIB * KIB:
        return f"{size / KIB / KIB:.2f} MB"
    return f"{size / KIB:.1f} KB"


def _verdict(short: int) -> str:
    return "fits" if short == 0 else f"short by {format_bytes(short)}"


def known_usb_ids() -> dict[str, str]:
    """``{"vid:pid": board}`` over every profile: how device discovery names a serial port's board."""
    return {usb_id.lower(): name for name in list_boards() for usb_id in load_board(name).usb_ids}
