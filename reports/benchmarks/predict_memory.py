"""Peak memory of ``predict`` and ``evaluate`` on long recordings (target: ≤ 1 GB for a 2-hour file).

A synthetic recording (tones and noise, 16-bit PCM at the model's rate, written block by block) of each
length is given to ``dslite-tiny predict`` and, as the only file of a one-file test split, to
``dslite-tiny evaluate --no-cache``, each a child process of this script; its peak resident set size
comes from the kernel (``wait4``). The model is the demo's (``--demo``, made when missing) unless
``--model`` names another ``.h5``.

    python reports/benchmarks/predict_memory.py [--demo $TMPDIR/dslite-tiny-demo] [--model M.h5] [--minutes 20 120]

Results: ``predict_memory.json`` and ``predict_memory.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent


def write_recording(path: Path, minutes: float, sr: int) -> None:
    """Tones of changing pitch over noise, one minute at a time (the writer never holds the whole file)."""
    rng = np.random.default_rng(0)
    t = np.arange(60 * sr) / sr
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as out:
        for minute in range(int(np.ceil(minutes))):
            seconds = min(60.0, minutes * 60 - minute * 60)
            tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * (minute % 20)) * t)
            out.write((tone + 0.05 * rng.standard_normal(t.size))[: int(seconds * sr)].astype(np.float32))


def peak_rss(command: list[str]) -> tuple[float, float, int]:
    """(peak MB, seconds, exit code) of ``command`` as a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        sys.stderr.write(process.stderr.read().decode())
    return round(usage.ru_maxrss / 1024, 1), round(time.perf_counter() - start, 1), process.returncode


def measure(model: Path, label: str, sr: int, minutes: float, tmp: Path) -> dict:
    root = tmp / f"data-{minutes:g}"
    (root / label).mkdir(parents=True)
    recording = root / label / "long.wav"
    write_recording(recording, minutes, sr)
    (root / "splits.csv").write_text(f"filename,split\n{label}/long.wav,test\n")
    cli = [sys.executable, "-m", "dslite_tiny"]
    predict_mb, predict_s, predict_rc = peak_rss([*cli, "predict", str(model), str(recording), "--format", "csv"])
    evaluate_mb, evaluate_s, evaluate_rc = peak_rss([*cli, "evaluate", str(model), "--data", str(root), "--split",
                                                     "test", "--no-cache", "--out", str(tmp / "evaluation.json")])
    recording.unlink()
    return {"minutes": minutes, "file_mb": round(minutes * 60 * sr * 2 / 2**20, 1),
            "predict": {"peak_mb": predict_mb, "seconds": predict_s, "exit": predict_rc},
            "evaluate": {"peak_mb": evaluate_mb, "seconds": evaluate_s, "exit": evaluate_rc}}


def markdown(result: dict) -> str:
    lines = ["# Peak memory of predict and evaluate on long recordings", "", f"`{result['command']}` (2 cores).", "",
             f"Model: {result['model']} (input {result['input']}, {result['chunk_s']} s chunks every "
             f"{result['hop_s']} s, {result['sr']} Hz). Peak resident set size of the command's process.", "",
             "| recording | file MB | predict peak MB | predict s | evaluate peak MB | evaluate s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| {r['minutes']:g} min | {r['file_mb']} | {r['predict']['peak_mb']} | {r['predict']['seconds']} | "
                     f"{r['evaluate']['peak_mb']} | {r['evaluate']['seconds']} |")
    return "\n".join(lines + ["", "Target: ≤ 1024 MB for a 2-hour file.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-demo"))
    parser.add_argument("--model", type=Path)
    parser.add_argument("--minutes", type=float, nargs="+", default=[20, 120])
    args = parser.parse_args()
    model = args.model or args.demo / "model" / "model.h5"
    if not model.is_file():
        subprocess.run([sys.executable, "-m", "dslite_tiny", "demo", "--out", str(args.demo)], check=True)
    sidecar = json.loads(model.with_suffix(".json").read_text())
    frontend = sidecar["frontend"]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(model, sidecar["classes"][0], frontend["sr"], m, Path(tmp)) for m in args.minutes]
    result = {"command": "python reports/benchmarks/predict_memory.py " + " ".join(sys.argv[1:]),
              "model": str(model), "sr": frontend["sr"], "chunk_s": frontend["chunk_s"],
              "hop_s": frontend["chunk_hop_s"], "input": sidecar["input"]["shape"], "runs": runs}
    print(json.dumps(runs))
    (HERE / "predict_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "predict_memory.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
