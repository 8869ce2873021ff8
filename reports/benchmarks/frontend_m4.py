"""The C frontend on a Cortex-M4F: instructions per chunk, RAM and flash, and equality with the Python
frontend, measured on QEMU's mps2-an386 (``-icount shift=0``: SysTick counts instructions exactly).

Issue 15's goal: ≤ 5 M instructions per 1 s chunk for the demo frontend, ≥ 99.9 % of int8 elements equal
to Python; the keyword-spotting issue's: ≤ 3 M per second of audio for the 16 kHz log-mel 40×49 and MFCC 10×49
presets. Chunks: real recordings when ``../shared`` is present (Speech Commands clips for the 16 kHz
keyword-spotting presets, FSDD recordings for the others, resampled to each frontend's rate, chunked as the
Python frontend chunks them), else synthetic speech-like audio. The frontend code is
independent of the model behind it; the model only gives the int8 input quantization (the demo's
qat-int8 variant, made with ``dslite-tiny demo`` if ``--model-dir`` does not exist).

    python reports/benchmarks/frontend_m4.py [--model-dir DIR] [--chunks 12]

Needs ``gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm``. Writes ``frontend_m4.json`` and
``frontend_m4.md`` next to this script.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from dslite_tiny.audio.frontend import Frontend  # noqa: E402
from dslite_tiny.audio.io import load_audio  # noqa: E402
from dslite_tiny.config import FrontendConfig, load_config  # noqa: E402
from dslite_tiny.export.variant import load_variant  # noqa: E402
from dslite_tiny.measure.litert import quantize_input  # noqa: E402
from firmware_host.qemu import frontend_on_cortex_m4  # noqa: E402

FSDD = ROOT.parent / "shared" / "datasets" / "fsdd" / "recordings"
SPEECH_COMMANDS = ROOT.parent / "shared" / "datasets" / "speech_commands_v0.02_test"
# the demo's own (mcu-64), the MCU spoken-digit one, 96×96 viridis, and the keyword-spotting inputs
PRESETS = ("model", "fsdd-40x49", "fsdd", "kws-40x49", "kws-40x98", "kws-mfcc-10x49")
KWS_PRESETS = ("kws-40x49", "kws-40x98", "kws-mfcc-10x49")
BEFORE = {"model": 26_753_480, "fsdd-40x49": 15_129_180, "fsdd": 41_145_120}  # dt_frontend.c of 8953a6f, same harness


def demo_variant(model_dir: Path):
    if not model_dir.is_dir():
        out = model_dir.parents[1]
        subprocess.run(["dslite-tiny", "demo", "--out", str(out)], check=True)
    return load_variant(model_dir)


def chunks(frontend: FrontendConfig, count: int, recordings: Path) -> tuple[np.ndarray, str]:
    """(count, chunk) int16 chunks of real speech (one per recording, spread over the folder), else synthetic."""
    files = sorted(recordings.rglob("*.*")) if recordings.is_dir() else []
    files = [f for f in files if f.suffix in (".wav", ".flac")]
    if files:
        files = files[:: max(1, len(files) // count)][:count]
        data = [Frontend(frontend).chunk(load_audio(f, sr=frontend.sr)).data[0] for f in files]
        source = f"{len(files)} {'Speech Commands clips' if recordings == SPEECH_COMMANDS else 'FSDD recordings'}"
    else:
        rng = np.random.default_rng(0)
        t = np.arange(frontend.chunk_length) / frontend.sr
        data = [0.3 * np.sin(2 * np.pi * (150 + 50 * i) * t) * np.hanning(t.size) + 0.01 * rng.standard_normal(t.size)
                for i in range(count)]
        source = f"{count} synthetic tones"
    return np.clip(np.round(np.stack(data) * 32768), -32768, 32767).astype("<i2"), source


def measure(variant, name: str, count: int) -> dict:
    frontend = variant.frontend if name == "model" else load_config(FrontendConfig, name, stage="frontend")
    pcm, source = chunks(frontend, count, SPEECH_COMMANDS if name in KWS_PRESETS else FSDD)
    got, instructions, sizes = frontend_on_cortex_m4(dataclasses.replace(variant, frontend=frontend), pcm,
                                                     cache_dir=Path(tempfile.gettempdir(), "dslite-tiny-qemu"))
    detail = {"dtype": np.int8, "quantization": (variant.description["input"]["scale"],
                                                 variant.description["input"]["zero_point"])}
    expected = np.stack([quantize_input(Frontend(frontend)(c.astype(np.float32) / np.float32(32768)), detail).ravel()
                         for c in pcm])
    difference = np.abs(got.astype(int) - expected.astype(int))
    return {"frontend": name, "source": source, "sr": frontend.sr, "image": list(frontend.image_shape),
            "frames_x_mels": [frontend.n_frames, frontend.n_mels], "n_fft": frontend.n_fft, "n_mfcc": frontend.n_mfcc,
            "chunk_s": frontend.chunk_s, "chunk_hop_s": frontend.chunk_hop_s,
            "instructions_median": int(np.median(instructions)), "instructions_max": int(max(instructions)),
            "instructions_before": BEFORE.get(name), **sizes,
            "equal_share": float(np.mean(difference == 0)), "max_difference": int(difference.max())}


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# The C frontend on a Cortex-M4F (QEMU mps2-an386, instruction counts)", "",
             f"Command: `{command}` (arm-none-eabi-gcc -O2, hard float; `-icount shift=0`).",
             "", "| frontend | rate, frames × mels, FFT | image | instructions per chunk (median / max) | per second "
             "of audio, one chunk per second / per hop | before | RAM | flash tables | int8 elements equal to Python | "
             "max difference | chunks |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        before = f"{r['instructions_before'] / 1e6:.2f} M" if r["instructions_before"] else ""
        features = f" → {r['n_mfcc']} MFCCs" if r.get("n_mfcc") else ""
        per_second = r["instructions_median"] / r["chunk_s"]
        per_hop = r["instructions_median"] / r["chunk_hop_s"]
        lines.append(f"| {r['frontend']} | {r['sr']} Hz, {r['frames_x_mels'][0]} × {r['frames_x_mels'][1]}{features}, "
                     f"{r['n_fft']} | {'×'.join(map(str, r['image']))} | {r['instructions_median'] / 1e6:.2f} M / "
                     f"{r['instructions_max'] / 1e6:.2f} M | {per_second / 1e6:.2f} M / {per_hop / 1e6:.2f} M "
                     f"(hop {r['chunk_hop_s']:g} s) | {before} | {r['ram_bytes'] / 1024:.1f} KB | "
                     f"{r['table_bytes'] / 1024:.1f} KB | {100 * r['equal_share']:.2f} % | {r['max_difference']} | "
                     f"{r['source']} |")
    lines += ["", "One chunk is 1 s of audio. Per second of audio: a device that classifies one chunk per second, and "
              "one that classifies a chunk every hop (the frontend recomputes each chunk whole; overlapping chunks "
              "share frames that a streaming frontend would compute once). RAM: the frontend's static buffers (one "
              "FFT frame, the mel spectrogram, the resize rows), without the int16 chunk. Flash tables: window, "
              "twiddles, sparse mel filterbank, resize taps, DCT and colour map, computed by the exporter. `before`: "
              "the same harness on dt_frontend.c of 8953a6f, which built its tables at start-up and recomputed every "
              "mel weight per frame (issue 15 measured 29.19 M with its own build)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-demo/compressed/qat-int8"))
    parser.add_argument("--chunks", type=int, default=12)
    args = parser.parse_args()
    variant = demo_variant(args.model_dir)
    rows = [measure(variant, name, args.chunks) for name in PRESETS]
    command = "python reports/benchmarks/frontend_m4.py"
    (HERE / "frontend_m4.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    (HERE / "frontend_m4.md").write_text(markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
