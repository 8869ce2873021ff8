"""The FSDD MCU model's best int8 variant (``compress_fsdd.py`` output, DS-CNN) on the virtual device: the
whole speaker-independent test split streamed over a real pseudo-terminal, in audio mode (PCM, the C
frontend on the device) and tensor mode (the host's int8 input, binary and hex transfer).

Per run: agreement with host LiteRT (reference kernels, and the optimised kernels compress scored),
on-device UAR next to the host's, on-device frontend and inference µs, bytes sent per chunk, and the
harness overhead per chunk beyond transfer and device compute (target < 5 ms). The virtual device runs in
its own process, as a user starts it.

    python reports/benchmarks/device_fsdd.py [--compressed $TMPDIR/dslite-tiny-compress] [--model dscnn-aug]

Results: ``device_fsdd.json`` and ``device_fsdd.md``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dslite_tiny.config import DataConfig, load_config
from dslite_tiny.report.build import best_int8
from dslite_tiny.report.results import load_results
from firmware_host.harness import EvalSettings, evaluate_on_device

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNS = (("audio", True), ("tensor", True), ("tensor", False))


def run(port: str, variant_dir: Path, data: DataConfig, mode: str, binary: bool) -> dict:
    name = f"bench-{mode}-{'binary' if binary else 'hex'}"
    start = time.perf_counter()
    summary, _ = evaluate_on_device(port, variant_dir, data, EvalSettings(mode=mode, binary=binary), device_name=name)
    latency, accuracy = summary["latency"], summary["accuracy"]
    return {"mode": mode, "transfer": summary["transfer"], "chunks": summary["chunks"],
            "seconds": round(time.perf_counter() - start, 1),
            "agreement": accuracy["agreement"], "agreement_optimized_kernels": accuracy["agreement_optimized_kernels"],
            "device_uar": accuracy["chunks"]["uar"], "host_uar": accuracy["host_uar"],
            "frontend_us": None if "frontend" not in latency else round(latency["frontend"]["median_ms"] * 1e3, 1),
            "inference_us": round(latency["inference"]["median_ms"] * 1e3, 1),
            "transfer_ms": latency["transfer"]["median_ms"],
            "overhead_ms": latency["harness_overhead"]["median_ms"],
            "overhead_p90_ms": latency["harness_overhead"]["p90_ms"],
            "bytes_per_chunk": summary["link"]["bytes_per_chunk"], "retried_chunks": summary["link"]["retried_chunks"]}


def markdown(result: dict) -> str:
    lines = ["# FSDD on the virtual device", "", f"`{result['command']}` (2 cores, no GPU).", "",
             f"Model: {result['model']} / {result['variant']} (SHA-256 {result['sha256'][:12]}…), "
             f"{result['runs'][0]['chunks']} test chunks (speaker yweweler).", "",
             "| mode | transfer | agreement (ref. kernels) | agreement (optimised) | device UAR | host UAR | "
             "frontend µs | inference µs | bytes/chunk | transfer ms | overhead ms (median, p90) | wall s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| {r['mode']} | {r['transfer']} | {r['agreement']:.2%} | {r['agreement_optimized_kernels']:.2%} | "
                     f"{r['device_uar']:.3f} | {r['host_uar']:.3f} | {r['frontend_us'] or '—'} | {r['inference_us']} | "
                     f"{r['bytes_per_chunk']:.0f} | {r['transfer_ms']:.3f} | {r['overhead_ms']:.3f}, "
                     f"{r['overhead_p90_ms']:.3f} | {r['seconds']} |")
    lines += ["", "Agreement is with host LiteRT on the same int8 input: its reference kernels share TFLite Micro's "
              "arithmetic; its default (optimised) kernels round differently. Device timings are measured inside "
              "the virtual device's C core (host CPU, TFLM reference kernels through ctypes), not a board's.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compressed", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-compress"))
    parser.add_argument("--model", default="dscnn-aug")
    args = parser.parse_args()
    compressed = args.compressed / args.model
    if not (compressed / "summary.csv").is_file():
        sys.exit(f"{compressed}: no compress output; run: python reports/benchmarks/compress_fsdd.py --part mcu")
    best = best_int8(load_results(compressed))
    variant_dir = compressed / best.name
    data = load_config(DataConfig, ROOT / "configs" / "data" / "fsdd.yaml", stage="data")
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "port"
        device = subprocess.Popen([sys.executable, "-m", "dslite_tiny", "device", "virtual", "--model-dir",
                                   str(variant_dir), "--port-link", str(link)], stdout=subprocess.PIPE, text=True)
        try:
            print(device.stdout.readline().strip())
            runs = []
            for mode, binary in RUNS:
                runs.append(run(str(link), variant_dir, data, mode, binary))
                print(json.dumps(runs[-1]))
        finally:
            device.terminate()
            device.wait()
    command = "python reports/benchmarks/device_fsdd.py"
    result = {"command": command, "model": args.model, "variant": best.name,
              "sha256": hashlib.sha256((variant_dir / "model.tflite").read_bytes()).hexdigest(), "runs": runs}
    (HERE / "device_fsdd.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "device_fsdd.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
