"""TensorFlow Lite Micro semantics on the host: the ``tflite-micro`` wheel's interpreter runs the real TFLM
kernels, so a model it refuses (an op without an int8 kernel, a float op) would be refused by a board too.

The minimum tensor arena is found by bisection over interpreter constructions (construction allocates
every tensor, so success means the arena suffices). TFLM crashes (SIGSEGV) instead of failing cleanly for
some too-small arenas, so every probe runs in a child process; a crashed child counts as "too small" and
the bisection continues in a fresh one. The interpreter prints its allocations to the C-level stderr,
which stays in the child.

    python -m dslite_tiny.measure.tflm run MODEL.tflite INPUT.npy OUTPUT.npy ARENA
    python -m dslite_tiny.measure.tflm bisect MODEL.tflite LOW HIGH
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ALIGNMENT = 16  # TFLM aligns arena allocations to 16 bytes; finer steps cannot change the answer
_RECORDED_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_CHILD_TIMEOUT_S = 600


class TFLMError(Exception):
    """TFLM refused the model; the message is what it printed."""


def check_tflm(model_path: Path, sample: np.ndarray) -> dict:
    """Invoke the model once on ``sample`` (already in the input dtype) and find its minimum arena.

    Returns the output, the arena the recording allocator reports and the bisected minimum."""
    model_path = Path(model_path)
    generous = max(10 * model_path.stat().st_size, 1 << 20)
    with tempfile.TemporaryDirectory() as tmp:
        input_path, output_path = Path(tmp) / "input.npy", Path(tmp) / "output.npy"
        np.save(input_path, sample)
        result = _child("run", model_path, input_path, output_path, generous)
        if result.returncode != 0 or not output_path.is_file():
            raise TFLMError(_failure(result))
        output = np.load(output_path)
    recorded = int(_RECORDED_TOTAL.search(result.stderr).group(1))
    return {"output": output, "recorded_arena_bytes": recorded,
            "arena_bytes": minimum_arena(model_path, upper=_round_up(recorded))}


def reference_outputs(model: bytes, inputs: np.ndarray, *, shape: list[int], arena_bytes: int) -> np.ndarray:
    """The interpreter's raw outputs for each input row (reshaped to ``shape``), in this process: what a
    bit-exact runtime (the engine, a board's TFLM) must reproduce. Only for a model and arena
    ``check_tflm`` has accepted, since TFLM aborts on some it cannot run."""
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
    rows = []
    for row in inputs:
        interpreter.set_input(row.reshape(shape), 0)
        interpreter.invoke()
        rows.append(np.asarray(interpreter.get_output(0)).ravel())
    return np.stack(rows)


def minimum_arena(model_path: Path, *, upper: int) -> int:
    """The smallest arena (a multiple of 16 bytes) the interpreter can be built with."""
    while not _fits(model_path, upper):
        upper *= 2
    low, high = 0, upper  # low: known too small; high: known to fit
    while high - low > ALIGNMENT:
        result = _child("bisect", model_path, low, high)
        for line in result.stdout.splitlines():
            size, verdict = line.split()
            low, high = (low, int(size)) if verdict == "ok" else (int(size), high)
        if result.returncode != 0:  # the child died on the size it was probing: too small
            probing = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("probe ")]
            if probing:
                low = max(low, probing[-1])
    return high


def _fits(model_path: Path, arena: int) -> bool:
    result = _child("bisect", model_path, arena - ALIGNMENT, arena)
    return result.returncode == 0 and f"{arena} ok" in result.stdout


def _child(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dslite_tiny.measure.tflm", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S)


def _failure(result: subprocess.CompletedProcess) -> str:
    """What the child said last, without its traceback's frames and ``^^^^`` markers."""
    lines = [line.strip() for line in result.stderr.splitlines()
             if line.strip() and not line.startswith(("[RecordingMicroAllocator]", "probe ", " ", "Traceback"))
             and set(line.strip()) - set("^~ ")]
    reason = "; ".join(lines[-3:]) if lines else f"exit status {result.returncode}"
    if result.returncode < 0:
        reason = f"the TFLM interpreter crashed (signal {-result.returncode}); {reason}"
    return reason[:400]


def _round_up(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


# --- child process ---------------------------------------------------------------------------------------

def _build(model: bytes, arena: int):
    from tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena)


def _run(model_path: str, input_path: str, output_path: str, arena: str) -> None:
    interpreter = _build(Path(model_path).read_bytes(), int(arena))
    interpreter.set_input(np.load(input_path), 0)
    interpreter.invoke()
    np.save(output_path, interpreter.get_output(0))
    interpreter.print_allocations()


def _bisect(model_path: str, low: str, high: str) -> None:
    """Narrow (low, high] and print each verdict; ``probe N`` goes to stderr first, so a crash is
    attributable to the size that caused it."""
    model = Path(model_path).read_bytes()
    low_i, high_i = int(low), int(high)
    probes = [high_i]  # the upper end is checked first
    while probes:
        size = probes.pop()
        print(f"probe {size}", file=sys.stderr, flush=True)
        try:
            _build(model, size)
            ok = True
        except RuntimeError:
            ok = False
        print(f"{size} {'ok' if ok else 'fail'}", flush=True)
        if size == high_i and not ok:
            return
        low_i, high_i = (low_i, size) if ok else (size, high_i)
        if high_i - low_i > ALIGNMENT:
            probes.append(_round_up((low_i + high_i) // 2))


if __name__ == "__main__":
    {"run": _run, "bisect": _bisect}[sys.argv[1]](*sys.argv[2:])
