"""``device flash``: a complete firmware project for a board (the exported model files, the firmware core,
the TFLM backend or the generated engine, and the board's main), then the board's build and flash commands.

The project kind and the commands are data in the board profile (``configs/boards/<board>.yaml``:
``project``, ``fqbn``, ``platformio_options``, ``build_commands``, ``flash_commands``); this module only
lays out files and runs what the profile says. A tool that is not installed is a one-line error with how
to install it; ``dry_run`` writes the project and returns the commands without running them.
"""
from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
from pathlib import Path

from dslite_tiny.config import BoardConfig
from dslite_tiny.errors import DeviceError, UserError
from dslite_tiny.export.variant import Variant
from firmware_host.build import FIRMWARE_DIR, core_files, engine_model_files, model_files

MODEL_NAME = "model"  # g_model_model_data, model_create_op_resolver: one firmware runs one model
SKETCH = "dslite_tiny"
MAIN_SOURCE = "board_main.cpp"
INSTALL_HINTS = {
    "arduino-cli": "install arduino-cli (https://arduino.github.io/arduino-cli/latest/installation/), then "
                   "`arduino-cli core install arduino:mbed_nano` and `arduino-cli lib install "
                   "\"Chirale_TensorFLowLite@2.0.0\"` (the library the board profile's tflm_library names)",
    "pio": "pip install platformio",
    "esptool.py": "pip install esptool",
    "esptool": "pip install esptool",
    "pyocd": "pip install pyocd",
    "openocd": "apt-get install openocd",
}


@dataclasses.dataclass(frozen=True)
class FlashPlan:
    project: Path
    files: tuple[Path, ...]
    commands: tuple[tuple[str, ...], ...]  # build commands, then the chosen flash command


def write_project(variant: Variant, board: BoardConfig, out_dir: Path) -> list[Path]:
    """The board's project under ``out_dir``: an Arduino sketch folder or a PlatformIO project, running the
    model with TFLite Micro or, for a profile with ``runtime: engine``, the generated engine (no library)."""
    if board.runtime == "engine":
        sources = {**engine_model_files(variant, name=MODEL_NAME, device=board.name), **core_files(engine=True)}
    else:
        sources = {**model_files(variant, name=MODEL_NAME, device=board.name), **core_files(tflm=True)}
    main = (FIRMWARE_DIR / MAIN_SOURCE).read_text(encoding="utf-8")
    if board.tflm_include and board.runtime == "tflm":
        # arduino-cli adds a library only for a header the sketch itself includes
        main = f"#include <{board.tflm_include}>  // the board profile's TFLite Micro library\n{main}"
    if board.project == "arduino":
        files = {f"{SKETCH}/{SKETCH}.ino": main, **{f"{SKETCH}/{n}": t for n, t in sources.items()}}
    elif board.project == "platformio":
        files = {"platformio.ini": _platformio_ini(board), "src/main.cpp": main,
                 **{f"src/{n}": t for n, t in sources.items()}}
    else:
        raise UserError(f"board {board.name!r} has no firmware project (project: none); boards with one: "
                        f"those whose profile sets project: arduino or platformio")
    files["README.md"] = _readme(variant, board)
    written = []
    for relative, text in files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def plan_flash(board: BoardConfig, project: Path, *, port: str | None) -> tuple[tuple[str, ...], ...]:
    """Build commands and the first flash alternative whose tool is installed (the first listed if none is)."""
    fields = {"project": str(_sketch_dir(board, project)), "fqbn": board.fqbn, "env": board.name,
              "build": str(project / ".pio" / "build" / board.name), "port": port or "<PORT>"}
    build = [tuple(shlex.split(c.format(**fields))) for c in board.build_commands]
    alternatives = [tuple(shlex.split(c.format(**fields))) for c in board.flash_commands]
    installed = [c for c in alternatives if shutil.which(c[0])]
    return tuple(build + (installed or alternatives)[:1])


def flash(variant: Variant, board: BoardConfig, *, out_dir: Path, port: str | None = None,
          dry_run: bool = False) -> FlashPlan:
    """Write the project and (unless ``dry_run``) build and flash it."""
    files = write_project(variant, board, out_dir)
    commands = plan_flash(board, out_dir, port=port)
    plan = FlashPlan(out_dir, tuple(files), commands)
    if dry_run:
        return plan
    if any("<PORT>" in part for command in commands for part in command):
        raise UserError(f"flashing {board.name} needs --port (see `dslite-tiny device list`)")
    for command in commands:
        _run(command)
    return plan


def _run(command: tuple[str, ...]) -> None:
    if shutil.which(command[0]) is None:
        hint = INSTALL_HINTS.get(command[0], f"install {command[0]}")
        raise UserError(f"{command[0]} is not installed: {hint}")
    result = subprocess.run(command)
    if result.returncode != 0:
        raise DeviceError(f"`{shlex.join(command)}` failed with exit status {result.returncode}")


def _sketch_dir(board: BoardConfig, project: Path) -> Path:
    return project / SKETCH if board.project == "arduino" else project


def _platformio_ini(board: BoardConfig) -> str:
    lines = ["; Generated by dslite-tiny `device flash`: the board profile's platformio_options.",
             "[platformio]", f"default_envs = {board.name}", "", f"[env:{board.name}]", *board.platformio_options]
    return "\n".join(lines) + "\n"


def _runner_lines(board: BoardConfig) -> list[str]:
    if board.runtime == "engine":
        return ["Inference: the generated int8 engine (`dslite-tiny export --target engine`: model_engine.c and "
                "the kernels dt_*.c), no TFLite Micro library. Bit-exact with the host: yes (the engine "
                "equals the tflite-micro wheel bit for bit, tested on an emulated Cortex-M4)."]
    return [f"TFLite Micro: {board.tflm_library or 'not named by the board profile'}. Bit-exact with the host: "
            f"{board.host_match}."]


def _readme(variant: Variant, board: BoardConfig) -> str:
    commands = plan_flash(board, Path("."), port=None)
    return "\n".join([
        f"# dslite-tiny firmware: {variant.name} on {board.name}", "",
        f"{board.description}. Model SHA-256 `{variant.sha256}`.", "",
        *_runner_lines(board), "",
        "Build and flash (what `dslite-tiny device flash` runs, from this folder):", "",
        *[f"    {shlex.join(c)}" for c in commands], "",
        "Then `dslite-tiny device eval --port <PORT> --model-dir <variant> --data <DATA>`.",
        "The serial protocol is firmware_host/PROTOCOL.md of dslite-tiny.", ""])
