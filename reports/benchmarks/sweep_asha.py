"""A sweep with ASHA early stopping against the same trials run to their end: FSDD (train on four speakers,
devel theo; the test speaker is never looked at), `mcu-dscnn` on the 40×49 log-mel frontend, the shipped
space `configs/sweep/mcu-dscnn.yaml` (8 seeded random trials over width, learning rate, dropout and label
smoothing), through the real command line, in one process, the feature cache warmed first.

    python reports/benchmarks/sweep_asha.py [--out DIR]

The second run is the same space with ``scheduler: none`` (written next to the outputs). Both draw the same
8 trials (same seed), so every trial ASHA kept to its end has the same curve in both runs. Writes
``sweep_asha.json`` after each run (a rerun skips runs it holds) and ``sweep_asha.md``. Issue 31's target:
ASHA's best devel UAR within 1 point of the full trials' best in ≤ 0.5× their wall.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from cv_ray import warm_cache  # this folder is on sys.path when the script runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "configs" / "data" / "fsdd.yaml"
SPACE = ROOT / "configs" / "sweep" / "mcu-dscnn.yaml"
RUNS = ("asha", "none")


def run_sweep(scheduler: str, out: Path) -> dict:
    space = yaml.safe_load(SPACE.read_text())
    space["search"]["scheduler"] = scheduler
    space_path = out / f"space-{scheduler}.yaml"
    space_path.parent.mkdir(parents=True, exist_ok=True)
    space_path.write_text(yaml.safe_dump(space, sort_keys=False))
    folder = out / scheduler
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "dslite_tiny", "sweep", "--data", str(DATA), "--config", "mcu-dscnn",
               "--set", "frontend=fsdd-40x49", "--space", str(space_path), "--out", str(folder),
               "--cache-dir", str(out / "cache")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{scheduler} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((folder / "sweep.json").read_text())
    best = next(t for t in summary["trials"] if t["trial"] == summary["best"])
    return {"wall_s": round(wall, 1), "epochs_trained": summary["epochs_trained"],
            "epochs_planned": summary["epochs_planned"], "best": best["trial"], "best_devel_uar": best["devel_uar"],
            "best_values": best["values"], "grace_epochs": space["search"]["grace_epochs"],
            "reduction": space["search"]["reduction"],
            "trials": {t["trial"]: {"devel_uar": t["devel_uar"], "epochs": t["epochs"], "stopped_at": t["stopped_at"],
                                    "values": t["values"]} for t in summary["trials"]},
            "command": " ".join(["dslite-tiny", *command[3:]]).replace(str(out), "OUT").replace(str(ROOT) + "/", "")}


def markdown(results: dict) -> str:
    from dslite_tiny.train.sweep import Asha

    runs = results["runs"]
    first = next(iter(runs.values()))
    trials = len(first["trials"])
    epochs = first["epochs_planned"] // trials
    asha = runs.get("asha", {"grace_epochs": 4, "reduction": 4})
    grace, reduction = asha["grace_epochs"], asha["reduction"]
    rungs = " and ".join(map(str, Asha(grace, reduction, epochs).rungs))
    lines = ["# Sweep: ASHA against every trial run to its end (FSDD, devel theo)", "",
             f"`{results['command']}` on {results['machine']}, in one process. `mcu-dscnn` with "
             f"`frontend=fsdd-40x49` ({epochs} epochs), {trials} random trials of `configs/sweep/mcu-dscnn.yaml` (seed "
             f"0); ASHA with grace {grace} epochs and reduction {reduction}: rungs at epochs {rungs}. Wall: the whole "
             "command, the feature cache warm. A rerun skips the runs sweep_asha.json holds; the full run does not "
             "depend on ASHA's settings.", "",
             "| scheduler | wall | × full | epochs trained | best trial | best devel UAR |", "|---|---:|---:|---:|---|---:|"]
    full = runs.get("none")
    for name, run in runs.items():
        ratio = f"{run['wall_s'] / full['wall_s']:.2f}×" if full else "-"
        values = ", ".join(f"{k}={v}" for k, v in run["best_values"].items())
        lines.append(f"| {name} | {run['wall_s'] / 60:.1f} min | {ratio} | {run['epochs_trained']} of "
                     f"{run['epochs_planned']} | {run['best']} ({values}) | {run['best_devel_uar']:.3f} |")
    if len(runs) == 2:
        asha, none = runs["asha"], runs["none"]
        lines += ["", f"ASHA trained {asha['epochs_trained'] / none['epochs_trained']:.0%} of the epochs in "
                      f"{asha['wall_s'] / none['wall_s']:.0%} of the wall; its best devel UAR is "
                      f"{100 * (asha['best_devel_uar'] - none['best_devel_uar']):+.1f} points from the full trials' best."]
        lines += ["", "| trial | values | full: best devel UAR | ASHA: best devel UAR | ASHA: epochs |",
                  "|---|---|---:|---:|---:|"]
        for trial, row in runs["none"]["trials"].items():
            asha = runs["asha"]["trials"].get(trial, {})
            values = ", ".join(f"{k}={v}" for k, v in row["values"].items())
            stopped = f" (stopped at {asha['stopped_at']})" if asha.get("stopped_at") else ""
            lines.append(f"| {trial} | {values} | {row['devel_uar']:.3f} | {asha.get('devel_uar', float('nan')):.3f} | "
                         f"{asha.get('epochs', '-')}{stopped} |")
    lines += ["", "Commands (OUT is the --out folder; space-*.yaml is the shipped space with its scheduler set):", ""]
    lines += [f"- {name}: `{run['command']}`" for name, run in runs.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-sweep-asha"))
    args = parser.parse_args()
    path = HERE / "sweep_asha.json"
    command = "python reports/benchmarks/sweep_asha.py"
    results = json.loads(path.read_text()) if path.is_file() else {"command": command, "runs": {}}
    results["machine"] = f"{os.cpu_count()} cores, {platform.machine()}"
    warm_cache(args.out / "cache")  # neither run pays for decoding the recordings
    for name in RUNS:
        if name in results["runs"]:
            print(f"{name}: in {path.name}, skipped")
            continue
        results["runs"][name] = run_sweep(name, args.out)
        print(f"{name}: {results['runs'][name]['wall_s'] / 60:.1f} min", flush=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        (HERE / "sweep_asha.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
