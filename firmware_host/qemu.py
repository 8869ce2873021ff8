"""The firmware core on an emulated Cortex-M4F: QEMU's ``mps2-an386`` board, built with Debian's
``gcc-arm-none-eabi`` + newlib and run with ``qemu-system-arm``.

``-icount shift=0`` makes QEMU execute one instruction per nanosecond of virtual time, so the SysTick
counts the board reads (``firmware/mps2_an386``) are instruction counts that do not depend on the host:
the Cortex-M4 cost of the frontend is measured, not estimated. Output comes through semihosting.

``tflm_on_cortex_m4`` also runs the firmware's TFLM backend there, built with a TFLite Micro source tree
(a board library's, or one from a tflite-micro checkout): for local verification of which source gives the
host's scores bit for bit (``reports/benchmarks/tflm_m4.py``); CI has no TFLM source.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dslite_tiny.artifacts import atomic_path
from dslite_tiny.data.cache import default_cache_dir
from dslite_tiny.engine.codegen import Engine, kernel_sources
from dslite_tiny.errors import UserError
from dslite_tiny.export.op_resolver import op_resolver_text
from dslite_tiny.export.variant import Variant, load_variant
from firmware_host.build import (CORE_HEADERS, FIRMWARE_DIR, compile_c, core_files, engine_model_files, model_files,
                                  staged_build)

BOARD_DIR = FIRMWARE_DIR / "mps2_an386"
BOARD_FILES = ("mps2_an386.c", "mps2_an386.h", "mps2_an386.ld")
CORTEX_M4F = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
C_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *CORTEX_M4F, "-ffunction-sections", "-fdata-sections")
LINK_FLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
              f"-T{BOARD_DIR / 'mps2_an386.ld'}")
CXX_FLAGS = ("-std=c++17", "-O2", *CORTEX_M4F, "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics",
             "-ffunction-sections", "-fdata-sections", "-DTF_LITE_STATIC_MEMORY")
TREE_C_FLAGS = ("-O2", *CORTEX_M4F, "-ffunction-sections", "-fdata-sections")  # a tree's C (CMSIS-NN), as it is
QEMU_TIMEOUT_S = 600  # an emulated second of Cortex-M4 work takes well under one host second
QEMU_START_S = 10.0
BENCH_INPUT_BYTES = 4 * 1024 * 1024  # benchmark inputs per firmware image, in the 16 MB PSRAM beside the weights
DEVICE_NAME = "mps2-an386"
DEVICE_SOURCES = ("device_main.c", "dt_protocol.c", "dt_frontend.c", "dt_engine_backend.c", "model_engine.c")


@dataclasses.dataclass(frozen=True)
class TflmTree:
    """A TFLite Micro source tree as a board library ships it (or TFLM's create_tflm_tree.py writes it):
    ``root`` holds tensorflow/ and third_party/; ``includes`` are folders under it for -I; ``skip`` are
    files under it left out (the tree's own target glue, such as an Arduino DebugLog); ``defines`` are
    what the board build defines."""

    root: Path
    includes: tuple[str, ...] = (".",)
    skip: tuple[str, ...] = ()
    defines: tuple[str, ...] = ()

    def sources(self) -> list[Path]:
        found = [p for ext in ("*.c", "*.cc", "*.cpp") for p in self.root.rglob(ext)]
        return sorted(p for p in found if str(p.relative_to(self.root)) not in self.skip
                      and not any(part.endswith("_test") or part == "examples" for part in p.parts))

    def flags(self) -> list[str]:
        return [*(f"-I{self.root / i}" for i in self.includes), *(f"-D{d}" for d in self.defines)]


def tools_missing() -> str | None:
    """Why the emulated board cannot run here (None: it can)."""
    missing = [tool for tool in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (apt-get install gcc-arm-none-eabi "
                f"libnewlib-arm-none-eabi qemu-system-arm)")
    return None


def build_elf(files: dict[str, str], sources: list[str], *, cache_dir: Path, defines: tuple[str, ...] = ()) -> Path:
    """Compile ``files`` (name: text) with the board's start-up code into an ELF, with the preprocessor
    ``defines``; reused while unchanged."""
    problem = tools_missing()
    if problem:
        raise UserError(f"cannot build for the emulated Cortex-M4: {problem}")
    files = {**files, **{n: (BOARD_DIR / n).read_text(encoding="utf-8") for n in BOARD_FILES}}
    elf = staged_build(files, cache_dir, "firmware.elf", salt=" ".join(defines))
    if not elf.is_file():
        compile_c([elf.parent / s for s in (*sources, "mps2_an386.c")], elf, include=elf.parent,
                  flags=(*C_FLAGS, *(f"-D{d}" for d in defines), *LINK_FLAGS), compiler="arm-none-eabi-gcc")
    return elf


def run_elf(elf: Path) -> str:
    """Run ``elf`` to its exit on the emulated board; its semihosting output, which QEMU writes to stderr
    (an exit code ≠ 0 is an error)."""
    result = _qemu(elf)
    if result.returncode != 0:
        raise RuntimeError(f"{elf} exited with {result.returncode} on {' '.join(result.args)}:\n"
                           f"{result.stderr[-2000:]}")
    return "\n".join(line for line in result.stderr.splitlines() if not line.startswith("qemu-system-arm: "))


def _qemu(elf: Path) -> subprocess.CompletedProcess:
    command = ["qemu-system-arm", "-M", "mps2-an386", "-nodefaults", "-display", "none", "-icount", "shift=0",
               "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    return subprocess.run(command, capture_output=True, text=True, timeout=QEMU_TIMEOUT_S)


def frontend_on_cortex_m4(variant: Variant, pcm: np.ndarray, *, cache_dir: Path) -> tuple[np.ndarray, list[int], dict]:
    """The C frontend of ``variant`` run on chunks ``pcm`` ((n, chunk) int16) on the emulated Cortex-M4:
    the int8 model inputs (n, elements), the instructions per chunk and its static RAM / table bytes."""
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    data = ", ".join(str(b) for b in pcm.tobytes())
    bench_input = (f"#define DT_BENCH_CHUNKS {pcm.shape[0]}\n"
                   f"static const uint8_t g_bench_pcm[] = {{{data}}};\n")
    files = {**{n: (FIRMWARE_DIR / n).read_text(encoding="utf-8") for n in (*CORE_HEADERS, "dt_frontend.c")},
             **model_files(variant, name="model", device=DEVICE_NAME), "bench_input.h": bench_input,
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


def engine_op_instructions(engine: Engine, name: str, inputs: np.ndarray, *, cache_dir: Path) -> np.ndarray:
    """Each op's instructions ((n, ops)) when ``engine`` runs ``inputs`` on the emulated Cortex-M4 (the
    generated model marks each op's end for the bench built with DT_PROFILE; a mark costs ~20)."""
    _, _, _, per_op = _engine_image(engine, name, np.ascontiguousarray(inputs, np.int8), cache_dir=cache_dir,
                                    profile=True)
    return np.array(per_op, np.int64)


def engine_on_cortex_m4(engine: Engine, name: str, inputs: np.ndarray, *,
                        cache_dir: Path) -> tuple[np.ndarray, list[int], dict[str, int]]:
    """The generated ``engine`` (C symbols ``name``) run on int8 ``inputs`` ((n, elements)) on the emulated
    Cortex-M4: its outputs (n, classes), the instructions per invoke and the (first) ELF's section sizes.
    The inputs sit in flash beside the model, at most BENCH_INPUT_BYTES of them per firmware image."""
    if name == "bench":
        raise ValueError("the engine's name 'bench' would collide with the runner's bench_engine.c")
    inputs = np.ascontiguousarray(inputs, np.int8)
    per_image = max(1, BENCH_INPUT_BYTES // max(1, inputs[0].nbytes))
    outputs, counts, sections = [], [], {}
    for start in range(0, len(inputs), per_image):
        batch_outputs, batch_counts, batch_sections, _ = _engine_image(engine, name, inputs[start:start + per_image],
                                                                       cache_dir=cache_dir)
        outputs.append(batch_outputs)
        counts += batch_counts
        sections = sections or batch_sections
    return np.concatenate(outputs), counts, sections


def engine_flash(engine: Engine, name: str, *, cache_dir: Path) -> dict[str, int]:
    """The engine's flash, compiled for the Cortex-M4F as a board build compiles it: the kernels' code (with
    their own tables), the generated model's code, and its constants (weights, biases, requantization
    tables, parameter blocks). Objects are cached by the sources' hash."""
    problem = tools_missing()
    if problem:
        raise UserError(f"cannot build for the emulated Cortex-M4: {problem}")
    folder = staged_build(engine.files, cache_dir, "objects").parent
    sizes = {}
    for source in (*engine.kernel_sources, f"{name}_engine.c"):
        obj = folder / f"{source}.o"
        if not obj.is_file():
            with atomic_path(obj) as partial:
                subprocess.run(["arm-none-eabi-gcc", *C_FLAGS, f"-I{folder}", "-c", str(folder / source), "-o",
                                str(partial)], check=True)
        sections = elf_sections(obj)
        sizes[source] = (sum(v for k, v in sections.items() if k.startswith(".text")),
                         sum(v for k, v in sections.items() if k.startswith((".rodata", ".data"))))
    return {"kernel_code_bytes": sum(sum(sizes[s]) for s in engine.kernel_sources),
            "model_code_bytes": sizes[f"{name}_engine.c"][0],
            "constant_bytes": sizes[f"{name}_engine.c"][1]}


def _engine_image(engine: Engine, name: str, inputs: np.ndarray, *, cache_dir: Path,
                  profile: bool = False) -> tuple[np.ndarray, list[int], dict[str, int], list[list[int]]]:
    bench_input = (f'#include "{name}_engine.h"\n#define DT_BENCH_INPUTS {inputs.shape[0]}\n'
                   f"#define DT_BENCH_IN {name.upper()}_INPUT_ELEMENTS\n#define DT_BENCH_OUT {name.upper()}_OUTPUT_ELEMENTS\n"
                   f"#define DT_BENCH_OPS {engine.ops}\n#define DT_BENCH_INVOKE {name}_invoke\n{_bench_inputs(inputs)}")
    files = {**engine.files, "bench_input.h": bench_input,
             "bench_engine.c": (BOARD_DIR / "bench_engine.c").read_text(encoding="utf-8")}
    elf = build_elf(files, ["bench_engine.c", f"{name}_engine.c", *engine.kernel_sources], cache_dir=cache_dir,
                    defines=("DT_PROFILE",) if profile else ())
    counts, rows, per_op = [], [], []
    for line in run_elf(elf).splitlines():
        if line.startswith("instructions "):
            counts.append(int(line.split()[1]))
            rows.append(b"")
            per_op.append([])
        elif line.startswith("op "):
            per_op[-1].append(int(line.split()[2]))
        elif line:
            rows[-1] += bytes.fromhex(line)
    return np.stack([np.frombuffer(r, np.int8) for r in rows]), counts, elf_sections(elf), per_op


class QemuDevice:
    """The QEMU device: the firmware core and the model's generated engine on the emulated Cortex-M4F,
    serving the protocol on UART0, which QEMU connects to a TCP port of this machine. ``device eval`` and
    ``bench`` drive it over ``socket://127.0.0.1:PORT`` as they drive a board. Its clock is QEMU's virtual
    time (``-icount shift=0``: 1 instruction per ns), so the µs it reports are instructions / 1000."""

    def __init__(self, model_dir: str | Path, *, cache_dir: Path | None = None) -> None:
        problem = tools_missing()
        if problem:
            raise UserError(f"cannot run the QEMU device: {problem}")
        self.variant = load_variant(model_dir)
        self.elf = device_elf(self.variant, cache_dir=cache_dir or default_cache_dir() / "qemu")
        self._process: subprocess.Popen | None = None

    def start(self, port: int = 0) -> str:
        """Boots the firmware with UART0 on ``port`` (0: a free one); returns the port's URL."""
        if port and not _bindable(port):
            raise UserError(f"cannot run the QEMU device on port {port}: another process listens there; give "
                            f"another --port, or 0 for a free one")
        port = port or _free_port()
        command = ["qemu-system-arm", "-M", DEVICE_NAME, "-nodefaults", "-display", "none", "-icount", "shift=0",
                   "-semihosting-config", "enable=on,target=native", "-chardev",
                   f"socket,id=uart0,host=127.0.0.1,port={port},server=on,wait=off", "-serial", "chardev:uart0",
                   "-kernel", str(self.elf)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + QEMU_START_S
        while not _listening(port) or self._process.poll() is not None:  # someone else's listener is not ours
            if self._process.poll() is not None or time.monotonic() > deadline:
                error = self._process.stderr.read() if self._process.poll() is not None else "no listening port"
                self.close()
                raise UserError(f"QEMU did not start the device on port {port}: {error.strip()[-300:]}")
            time.sleep(0.05)
        return f"socket://127.0.0.1:{port}"

    def wait(self) -> int:
        """Until QEMU ends (the firmware never exits on its own); its exit status."""
        return self._process.wait() if self._process else 0

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def device_elf(variant: Variant, *, cache_dir: Path) -> Path:
    """The QEMU device's firmware for ``variant`` (int8, ops the engine runs), built once and cached."""
    files = {**core_files(engine=True), **engine_model_files(variant, name="model", device=DEVICE_NAME),
             "device_main.c": (BOARD_DIR / "device_main.c").read_text(encoding="utf-8")}
    return build_elf(files, [*DEVICE_SOURCES, *kernel_sources(files)], cache_dir=cache_dir)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bindable(port: int) -> bool:
    """True if nothing holds ``port`` on the loopback address (QEMU would fail to bind it otherwise)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as QEMU sets it: TIME_WAIT is no obstacle
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening(port: int) -> bool:
    """True once something accepts on ``port``; QEMU's server takes the next client after this one leaves."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def tflm_library(tree: TflmTree, *, cache_dir: Path) -> Path:
    """The tree compiled for the Cortex-M4F into a static library (cached; sources compiled in parallel)."""
    sources = tree.sources()
    key = hashlib.sha256("\0".join([*CXX_FLAGS, *TREE_C_FLAGS, *tree.flags(), *map(str, sources)]).encode())
    key = key.hexdigest()[:16]
    library = Path(cache_dir) / f"tflm-{key}" / "libtflm.a"
    if library.is_file():
        return library
    objects = library.parent / "objects"
    objects.mkdir(parents=True, exist_ok=True)

    def compile_one(index_source: tuple[int, Path]) -> Path:
        index, source = index_source
        out = objects / f"{index}-{source.stem}.o"
        compiler, flags = (("arm-none-eabi-gcc", TREE_C_FLAGS) if source.suffix == ".c"
                           else ("arm-none-eabi-g++", CXX_FLAGS))
        result = subprocess.run([compiler, *flags, *tree.flags(), "-c", str(source), "-o", str(out)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {source} failed:\n{result.stderr[-3000:]}")
        return out

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        built = list(pool.map(compile_one, enumerate(sources)))
    partial = library.with_suffix(".tmp")
    subprocess.run(["arm-none-eabi-ar", "rcs", str(partial), *map(str, built)], check=True)
    partial.replace(library)
    return library


def tflm_on_cortex_m4(variant: Variant, inputs: np.ndarray, tree: TflmTree, *,
                      cache_dir: Path) -> tuple[np.ndarray, list[int], dict]:
    """``variant`` run by the firmware's TFLM backend (dt_tflm.cc) on ``tree`` for each int8 input
    ((n, elements)) on the emulated Cortex-M4: the int8 outputs (n, classes), the instructions per Invoke
    and the ELF's section sizes."""
    outputs, counts, sections, _ = _tflm_run(variant, inputs, tree, cache_dir=cache_dir)
    return outputs, counts, sections


def tflm_op_instructions(variant: Variant, inputs: np.ndarray, tree: TflmTree, *, cache_dir: Path) -> np.ndarray:
    """Each op's instructions ((n, ops), the model's operator order) when the firmware's TFLM backend runs
    ``inputs`` on the emulated Cortex-M4: a profiler TFLM calls around each op's Invoke (bench built with
    DT_PROFILE)."""
    return np.array(_tflm_run(variant, inputs, tree, cache_dir=cache_dir, profile=True)[3], np.int64)


def _tflm_run(variant: Variant, inputs: np.ndarray, tree: TflmTree, *, cache_dir: Path,
              profile: bool = False) -> tuple[np.ndarray, list[int], dict, list[list[int]]]:
    problem = tools_missing()
    if problem:
        raise UserError(f"cannot build for the emulated Cortex-M4: {problem}")
    elf = _tflm_elf(variant, np.ascontiguousarray(inputs, np.int8), tree, cache_dir=cache_dir,
                    defines=("DT_PROFILE",) if profile else ())
    counts, outputs, per_op = [], [], []
    for line in run_elf(elf).splitlines():
        if line.startswith("setup "):
            raise RuntimeError(f"TFLM setup failed on the emulated board: {line[6:]}")
        if line.startswith("instructions "):
            words = line.split()
            if words[3] != "0":
                raise RuntimeError(f"Invoke failed on the emulated board (status {words[3]})")
            counts.append(int(words[1]))
            per_op.append([])
        elif line.startswith("op "):
            per_op[-1].append(int(line.split()[2]))
        elif counts and len(outputs) < len(counts) and line:
            outputs.append(np.frombuffer(bytes.fromhex(line), np.int8))
    return np.stack(outputs), counts, elf_sections(elf), per_op


def linked_code_bytes(variant: Variant, tree: TflmTree, ops: dict[str, int], *, cache_dir: Path) -> int:
    """Flash bytes of the firmware's TFLM backend linked (not run) with ``tree`` and a resolver registering
    only ``ops``: the ELF's code and constants without the model array and the one benchmark input. With
    no ops, TFLM's core; the growth with one op, that op's kernel."""
    problem = tools_missing()
    if problem:
        raise UserError(f"cannot build for the emulated Cortex-M4: {problem}")
    inputs = np.zeros((1, int(np.prod(variant.description["input"]["shape"]))), np.int8)
    elf = _tflm_elf(variant, inputs, tree, cache_dir=cache_dir, ops=ops)
    sections = elf_sections(elf)
    return sections[".text"] + sections.get(".rodata", 0) - len(variant.data) - inputs.size


def tflm_minimum_arena(variant: Variant, tree: TflmTree, *, low: int, high: int, cache_dir: Path) -> int:
    """The smallest arena (a multiple of 16 bytes in (low, high]) with which the firmware's TFLM backend
    sets ``variant`` up and invokes it on the emulated Cortex-M4: ``high`` must be enough."""
    inputs = np.zeros((1, int(np.prod(variant.description["input"]["shape"]))), np.int8)

    def runs(arena: int) -> bool:
        result = _qemu(_tflm_elf(variant, inputs, tree, cache_dir=cache_dir, arena_bytes=arena))
        return result.returncode == 0 and " status 0" in result.stderr

    if not runs(high):
        raise RuntimeError(f"an arena of {high} bytes is too small for {variant.name} on the emulated board")
    while high - low > 16:
        middle = (low + high) // 32 * 16
        low, high = (low, middle) if runs(middle) else (middle, high)
    return high


def elf_sections(elf: Path) -> dict[str, int]:
    """Section name → size in bytes (``arm-none-eabi-size -A``)."""
    sizes = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    return {w[0]: int(w[1]) for w in (row.split() for row in sizes.splitlines()) if len(w) >= 2 and w[1].isdigit()}


def _tflm_elf(variant: Variant, inputs: np.ndarray, tree: TflmTree, *, cache_dir: Path,
              ops: dict[str, int] | None = None, arena_bytes: int | None = None,
              defines: tuple[str, ...] = ()) -> Path:
    """bench_tflm.cc + the TFLM backend + the model, linked with the tree's library (cached); ``ops``
    replaces the model's own op resolver, ``arena_bytes`` its recommended arena; ``defines`` are -D flags
    of the bench and the backend."""
    library = tflm_library(tree, cache_dir=cache_dir)
    bench_input = f"#define DT_BENCH_INPUTS {inputs.shape[0]}\n{_bench_inputs(inputs)}"
    files = {**core_files(tflm=True), **model_files(variant, name="model", device=DEVICE_NAME),
             "bench_input.h": bench_input,
             **{n: (BOARD_DIR / n).read_text(encoding="utf-8") for n in (*BOARD_FILES, "bench_tflm.cc")}}
    if ops is not None:
        files["model_op_resolver.h"] = op_resolver_text(ops, name="model", provenance=["code-size probe"])
    if arena_bytes is not None:
        files["model_model_settings.h"] = re.sub(r"(#define MODEL_TENSOR_ARENA_SIZE )\d+", rf"\g<1>{arena_bytes}",
                                                 files["model_model_settings.h"])
    elf = staged_build(files, cache_dir, "firmware.elf", salt=" ".join([str(library), *defines]))
    if elf.is_file():
        return elf
    objects = []
    for source in ("dt_tflm.cc", "bench_tflm.cc", "model_model_data.cc", "mps2_an386.c"):
        out = elf.parent / f"{source}.o"
        compiler, flags = ("arm-none-eabi-gcc", C_FLAGS) if source.endswith(".c") else ("arm-none-eabi-g++", CXX_FLAGS)
        subprocess.run([compiler, *flags, *tree.flags(), *(f"-D{d}" for d in defines), f"-I{elf.parent}", "-c",
                        str(elf.parent / source), "-o", str(out)], check=True)
        objects.append(str(out))
    subprocess.run(["arm-none-eabi-g++", *CORTEX_M4F, *LINK_FLAGS, *objects, str(library), "-lm", "-o", str(elf)],
                   check=True)
    return elf


def _bench_inputs(inputs: np.ndarray) -> str:
    """The int8 inputs of a benchmark run on the board, one after another, as a C array."""
    return f"static const int8_t g_bench_input[] = {{{', '.join(map(str, inputs.ravel()))}}};\n"
