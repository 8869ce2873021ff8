"""The firmware core on an emulated Cortex-M4F: QEMU's ``mps2-an386`` board, built with Debian's
``gcc-arm-none-eabi`` + newlib and run with ``qemu-system-arm``.

``-icount shift=0`` makes QEMU execute one instruction per nanosecond of virtual time, so the SysTick
counts the board reads (``firmware/mps2_an386``) are instruction counts that do not depend on the host:
the Cortex-M4 cost of the frontend is measured, not estimated. Output comes through semihosting.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

from dslite_tiny.errors import UserError
from dslite_tiny.export.variant import Variant
from firmware_host.build import CORE_HEADERS, FIRMWARE_DIR, compile_c, model_files

BOARD_DIR = FIRMWARE_DIR / "mps2_an386"
BOARD_FILES = ("mps2_an386.c", "mps2_an386.h", "mps2_an386.ld")
CORTEX_M4F = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
ELF_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *CORTEX_M4F, "-ffunction-sections",
             "-fdata-sections", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
             "-Wl,--gc-sections", f"-T{BOARD_DIR / 'mps2_an386.ld'}")
QEMU_TIMEOUT_S = 600  # an emulated second of Cortex-M4 work takes well under one host second


def tools_missing() -> str | None:
    """Why the emulated board cannot run here (None: it can)."""
    missing = [tool for tool in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (apt-get install gcc-arm-none-eabi "
                f"libnewlib-arm-none-eabi qemu-system-arm)")
    return None


def build_elf(files: dict[str, str], sources: list[str], *, cache_dir: Path) -> Path:
    """Compile ``files`` (name: text) with the board's start-up code into an ELF; reused while unchanged."""
    problem = tools_missing()
    if problem:
        raise UserError(f"cannot build for the emulated Cortex-M4: {problem}")
    files = {**files, **{n: (BOARD_DIR / n).read_text(encoding="utf-8") for n in BOARD_FILES}}
    key = hashlib.sha256("".join(f"{k}\0{files[k]}\0" for k in sorted(files)).encode()).hexdigest()[:16]
    elf = Path(cache_dir) / key / "firmware.elf"
    if not elf.is_file():
        elf.parent.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (elf.parent / name).write_text(text, encoding="utf-8")
        compile_c([elf.parent / s for s in (*sources, "mps2_an386.c")], elf, include=elf.parent, flags=ELF_FLAGS,
                  compiler="arm-none-eabi-gcc")
    return elf


def run_elf(elf: Path) -> str:
    """Run ``elf`` to its exit on the emulated board; its semihosting output, which QEMU writes to stderr
    (an exit code ≠ 0 is an error)."""
    command = ["qemu-system-arm", "-M", "mps2-an386", "-nodefaults", "-display", "none", "-icount", "shift=0",
               "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=QEMU_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"{elf} exited with {result.returncode} on {' '.join(command)}:\n"
                           f"{result.stderr[-2000:]}")
    return "\n".join(line for line in result.stderr.splitlines() if not line.startswith("qemu-system-arm: "))


def frontend_on_cortex_m4(variant: Variant, pcm: np.ndarray, *, cache_dir: Path) -> tuple[np.ndarray, list[int], dict]:
    """The C frontend of ``variant`` run on chunks ``pcm`` ((n, chunk) int16) on the emulated Cortex-M4:
    the int8 model inputs (n, elements), the instructions per chunk and its static RAM / table bytes."""
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    data = ", ".join(str(b) for b in pcm.tobytes())
    bench_input = (f"#define DT_BENCH_CHUNKS {pcm.shape[0]}\n"
                   f"static const uint8_t g_bench_pcm[] = {{{data}}};\n")
    files = {**{n: (FIRMWARE_DIR / n).read_text(encoding="utf-8") for n in (*CORE_HEADERS, "dt_frontend.c")},
             **model_files(variant, name="model", device="mps2-an386"), "bench_input.h": bench_input,
             "bench_frontend.c": (BOARD_DIR / "bench_frontend.c").read_text(encoding="utf-8")}
    out = run_elf(build_elf(files, ["bench_frontend.c", "dt_frontend.c"], cache_dir=cache_dir))
    counts, rows, chunks, sizes = [], [], [], {}
    for line in out.splitlines():
        if line.startswith("instructions "):
            if rows:
                chunks.append(rows)
            counts.append(int(line.split()[1]))
            rows = []
        elif line.startswith("ram "):
            words = line.split()
            sizes = {"ram_bytes": int(words[1]), "table_bytes": int(words[3])}
        elif line:
            rows.append(bytes.fromhex(line))
    chunks.append(rows)
    inputs = np.stack([np.frombuffer(b"".join(rows), np.int8) for rows in chunks])
    return inputs, counts, sizes
