"""Link recovery under injected faults: the demo's int8 variant on the virtual device (its own process, as a
user starts it) with ``--fault-rate`` (one byte dropped or replaced per transfer with that probability, both
directions) and ``--reset-after`` (a reboot every N commands), 10 seeds per row. A run passes when it
completes and every chunk's scores equal those of a clean run. Also: how long a silent port takes to give up.

    python reports/benchmarks/link_faults.py [--demo $TMPDIR/dslite-tiny-demo] [--seeds 10]

``--demo`` is a ``dslite-tiny demo --out`` folder (made when missing). Results: ``link_faults.json`` and
``link_faults.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dslite_tiny.config import DataConfig, load_config
from dslite_tiny.errors import DeviceError
from dslite_tiny.export.variant import load_variant
from firmware_host.dut import connect
from firmware_host.harness import EvalChunks, EvalSettings, evaluate, prepare_chunks

HERE = Path(__file__).resolve().parent
ROWS = (  # mode, binary, fault rate, reset after
    ("tensor", False, 0.01, None),
    ("audio", True, 0.05, None),
    ("audio", True, 0.01, 25),  # a chunk is 10 commands (open, 8 bulk blocks, classify)
)


def run(variant_dir: Path, chunks: EvalChunks, settings: EvalSettings, options: list[str], name: str) -> dict:
    """One evaluation against a fresh virtual device started with ``options``."""
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "port"
        device = subprocess.Popen([sys.executable, "-m", "dslite_tiny", "device", "virtual", "--model-dir",
                                   str(variant_dir), "--port-link", str(link), *options],
                                  stdout=subprocess.PIPE, text=True)
        device.stdout.readline()
        start = time.perf_counter()
        try:
            with connect(str(link), timeout_s=2.0) as dut:
                summary = evaluate(dut, load_variant(variant_dir), chunks, settings, results_dir=Path(tmp),
                                   device_name=name)
            records = [json.loads(line) for line in (Path(tmp) / f"device-{name}.jsonl").read_text().splitlines()[1:]]
            return {"completed": True, "seconds": round(time.perf_counter() - start, 1),
                    "scores": {r["index"]: r["scores"] for r in records},
                    "recoveries": summary["link"]["recoveries"], "retried_chunks": summary["link"]["retried_chunks"]}
        except DeviceError as exc:
            return {"completed": False, "seconds": round(time.perf_counter() - start, 1), "error": str(exc)[:200]}
        finally:
            device.terminate()
            device.wait()


def silent_port_seconds() -> float:
    """A pseudo-terminal nobody answers on: how long until ``connect`` gives up."""
    master, slave = os.openpty()
    start = time.perf_counter()
    try:
        connect(os.ttyname(slave)).transport.close()
    except DeviceError:
        pass
    finally:
        os.close(master)
        os.close(slave)
    return round(time.perf_counter() - start, 1)


def row(variant_dir: Path, chunks: EvalChunks, reference: dict, spec: tuple, seeds: int) -> dict:
    mode, binary, rate, reset_after = spec
    settings = EvalSettings(mode=mode, binary=binary)
    options = ["--fault-rate", str(rate)] + (["--reset-after", str(reset_after)] if reset_after else [])
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda seed: run(variant_dir, chunks, settings, options + ["--seed", str(seed)],
                                              f"seed{seed}"), range(seeds)))
    for r in runs:
        r["identical"] = r["completed"] and r.pop("scores") == reference
    return {"mode": mode, "transfer": "binary" if binary else "hex", "fault_rate": rate, "reset_after": reset_after,
            "seeds": seeds, "completed": sum(r["completed"] for r in runs),
            "identical": sum(r["identical"] for r in runs),
            "median_seconds": statistics.median(r["seconds"] for r in runs),
            "median_recoveries": statistics.median(r.get("recoveries", 0) for r in runs),
            "errors": sorted({r["error"] for r in runs if "error" in r})}


def markdown(result: dict) -> str:
    lines = ["# Link recovery under injected faults", "", f"`{result['command']}` (2 cores, no GPU).", "",
             f"The demo's int8 variant on the virtual device, {result['chunks']} test chunks per run, "
             f"{result['clean_seconds']} s for a clean audio/binary run. Faults: each transfer loses or changes "
             "one byte with the given probability, in both directions; a reset reboots the device (0.2 s, "
             "input lost) after every N commands. Identical: every chunk's scores equal the clean run's.", "",
             "| mode | transfer | fault rate | reset after | completed | identical | median s | "
             "median steps redone |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['transfer']} | {r['fault_rate']} | {r['reset_after'] or '—'} | "
                     f"{r['completed']}/{r['seeds']} | {r['identical']}/{r['seeds']} | {r['median_seconds']} | "
                     f"{r['median_recoveries']} |")
        lines += [f"|   error: {e} |||||||" for e in r["errors"]]
    lines += ["", f"A silent port (a pseudo-terminal nobody answers on) gives up after {result['silent_port_s']} s "
              "(target ≤ 15 s).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-demo"))
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    if not (args.demo / "compressed" / "int8" / "model.tflite").is_file():
        subprocess.run([sys.executable, "-m", "dslite_tiny", "demo", "--out", str(args.demo)], check=True)
    variant_dir = args.demo / "compressed" / "int8"
    data = load_config(DataConfig, args.demo / "data" / "dataset.yaml", stage="data")
    chunks = prepare_chunks(load_variant(variant_dir), data)
    clean = run(variant_dir, chunks, EvalSettings(), [], "clean")
    rows = []
    for spec in ROWS:
        rows.append(row(variant_dir, chunks, clean["scores"], spec, args.seeds))
        print(json.dumps(rows[-1]))
    result = {"command": "python reports/benchmarks/link_faults.py", "chunks": len(chunks.labels),
              "clean_seconds": clean["seconds"], "rows": rows, "silent_port_s": silent_port_seconds()}
    (HERE / "link_faults.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "link_faults.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
