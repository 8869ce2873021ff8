"""Board profiles (``configs/boards/*.yaml``) and the flash/RAM fit check of a model on each.

    flash = model bytes + runtime code (RUNTIME_CODE_BYTES) + frontend tables + the board's system flash
    RAM   = tensor arena + frontend buffers + I/O buffers + the board's system RAM

The runtime code constants are flat budgets, checked against one real build: TFLite Micro 90b983c with
CMSIS-NN and the demo DS-CNN's six kernels, with the firmware's TFLM backend, took 116.8 KB of Cortex-M4
code (reports/benchmarks/tflm_m4.md; 74.5 KB with reference kernels), and the firmware core's protocol
and frontend code (without its tables) 5.4 KB and 1.1 KB more: 123.3 KB of the 128 KiB budget. A model
with more kinds of ops needs more (each int8 kernel is 3–15 KB). LiteRT's Android arm64 library is about 4 MiB.

Frontend tables are the C frontend's constants in flash (window, twiddles, sparse mel filterbank, resize
taps, colour map), exactly as ``export.settings.frontend_tables`` writes them. Frontend buffers are what
the firmware core holds per chunk: the int16 audio chunk, one float32 FFT frame, the float32 mel
spectrogram and the resize's row buffer. The image is not counted again: the firmware writes each
quantized pixel straight into the model's input tensor, which lives in the arena. A model exported
without its frontend counts neither. KB in verdicts is 1024 bytes.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from dslite_tiny.config import BoardConfig, FrontendConfig, list_presets, load_config
from dslite_tiny.audio.frontend import resize_taps
from dslite_tiny.export.settings import frontend_table_bytes

KIB = 1024
RUNTIME_CODE_BYTES = {"tflm": 128 * KIB, "litert": 4096 * KIB}
IO_BYTES = 256  # the 80-character command buffer, a reply line and slack


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


def footprint(*, model_bytes: int, arena_bytes: int, frontend: FrontendConfig | None) -> Footprint:
    tables = frontend_table_bytes(frontend) if frontend is not None else 0
    return Footprint(model_bytes, arena_bytes, frontend_buffer_bytes(frontend), IO_BYTES, tables)


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
    mel_taps = resize_taps(f.n_mels, f.image_height, method=f.resize, antialias=f.antialias)[0].shape[1]
    rows = mel_taps * f.image_width  # time-resized mel rows of one image row
    return 2 * f.chunk_length + 4 * (f.n_fft + f.n_frames * f.n_mels + rows)


def check_fit(need: Footprint, board: BoardConfig) -> Fit:
    """Flash and RAM needed vs available. The arena goes to external RAM only when on-chip RAM is short."""
    flash_needed = (need.model_bytes + RUNTIME_CODE_BYTES[board.runtime] + need.frontend_table_bytes
                    + board.system_flash_kib * KIB)
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
