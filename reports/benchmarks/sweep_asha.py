"""A sweep with ASHA early stopping against the same trials run to their end: FSDD (train on four speakers,
devel theo; the test speaker is never looked at), `mcu-dscnn` on the 40×49 log-mel frontend, the shipped
space `configs/sweep/mcu-dscnn.yaml` (8 seeded random trials over width, learning rate, dropout and label
smoothing), through the real command line, in one process, the feature cache warmed first.

    python reports/benchmarks/sweep_asha.py [--out DIR] [--repeat]

The second run is the same space with ``scheduler: none`` (written next to the outputs). Both draw the same
8 trials (same seed), so every trial ASHA kept to its end has the same curve in both runs. Writes
``sweep_asha.json`` after each run (a rerun skips runs it holds) and ``sweep_asha.md``. Issue 31's target:
ASHA's best devel UAR within 1 point of the full trials' best in ≤ 0.5× their wall.

Async ASHA's outcome depends on the order trials arrive in (the first trial at a rung always goes on), so
one run says little about a setting. The full run records every trial's devel UAR and seconds per epoch,
and training is deterministic, so ASHA's rule (``train.sweep.Asha``) replays exactly on those curves for
any grace, reduction and trial order: the replay table gives, per setting, the cost (share of the full
trials' training seconds) in the plan's order and over 2000 random orders, and how often the best found is
within 1 point of the full best. The shipped default (grace 2, reduction 4) is the setting it found
cheapest among those within 1 point in every order; it is then measured for real by the ``asha`` run.
A wall ratio near the target moves with the machine's noise (the same trial's epochs vary by a few per
cent between runs): ``--repeat`` measures both runs again and adds them to the record.
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

import numpy as np
import yaml

from cv_ray import warm_cache  # this folder is on sys.path when the script runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "configs" / "data" / "fsdd.yaml"
SPACE = ROOT / "configs" / "sweep" / "mcu-dscnn.yaml"
RUNS = ("none", "asha")  # the full run first: the replay reads its curves
REPLAY_ORDERS = 2000
REPLAY_SETTINGS = [(grace, reduction) for grace in (1, 2, 3, 4) for reduction in (2, 3, 4)]


def run_sweep(scheduler: str, out: Path, cache: Path) -> dict:
    space = yaml.safe_load(SPACE.read_text())
    space["search"]["scheduler"] = scheduler
    space_path = out / f"space-{scheduler}.yaml"
    space_path.parent.mkdir(parents=True, exist_ok=True)
    space_path.write_text(yaml.safe_dump(space, sort_keys=False))
    folder = out / scheduler
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "dslite_tiny", "sweep", "--data", str(DATA), "--config", "mcu-dscnn",
               "--set", "frontend=fsdd-40x49", "--space", str(space_path), "--out", str(folder),
               "--cache-dir", str(cache)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{scheduler} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((folder / "sweep.json").read_text())
    best = next(t for t in summary["trials"] if t["trial"] == summary["best"])
    curves = {t["trial"]: trial_curve(folder / "trials" / t["trial"]) for t in summary["trials"]}
    return {"wall_s": round(wall, 1), "epochs_trained": summary["epochs_trained"],
            "epochs_planned": summary["epochs_planned"], "best": best["trial"], "best_devel_uar": best["devel_uar"],
            "best_values": best["values"], "grace_epochs": space["search"]["grace_epochs"],
            "reduction": space["search"]["reduction"],
            "trials": {t["trial"]: {"devel_uar": t["devel_uar"], "epochs": t["epochs"], "stopped_at": t["stopped_at"],
                                    "values": t["values"], **curves[t["trial"]]} for t in summary["trials"]},
            "command": " ".join(["dslite-tiny", *command[3:]]).replace(str(out), "OUT").replace(str(ROOT) + "/", "")}


def trial_curve(folder: Path) -> dict:
    """A trial's devel UAR and training seconds per epoch, and its seconds outside the epochs (the replay's
    input)."""
    result = json.loads((folder / "result.json").read_text())
    history = json.loads((folder / "model.json").read_text())["history"]
    seconds = [h["seconds"] for h in history]
    return {"devel_uar_per_epoch": result["devel_uar_per_epoch"], "epoch_seconds": seconds,
            "other_seconds": round(result["seconds"] - sum(seconds), 2)}


def replay(trials: dict, asha, order: list[str]) -> tuple[float, float]:
    """``asha``'s rule (a ``train.sweep.Asha``) on the full run's curves with trials arriving in ``order``:
    (training seconds, best devel UAR found)."""
    recorded: dict[int, list[float]] = {rung: [] for rung in asha.rungs}
    seconds, best = 0.0, 0.0
    for name in order:
        uar, trial = np.array(trials[name]["devel_uar_per_epoch"]), trials[name]
        stop = len(uar)
        for rung in asha.rungs:
            value = float(uar[:rung].max())
            recorded[rung].append(value)
            if not asha.keeps(value, recorded[rung]):
                stop = rung
                break
        seconds += sum(trial["epoch_seconds"][:stop]) + trial["other_seconds"]
        best = max(best, float(uar[:stop].max()))
    return seconds, best


def replay_table(full: dict) -> list[dict]:
    """Every setting of ``REPLAY_SETTINGS`` replayed in the plan's order and in ``REPLAY_ORDERS`` random ones."""
    from dslite_tiny.train.sweep import Asha

    trials = full["trials"]
    epochs = len(next(iter(trials.values()))["devel_uar_per_epoch"])
    names = list(trials)
    total = sum(sum(t["epoch_seconds"]) + t["other_seconds"] for t in trials.values())
    best = max(max(t["devel_uar_per_epoch"]) for t in trials.values())
    rng = np.random.default_rng(0)
    orders = [list(rng.permutation(names)) for _ in range(REPLAY_ORDERS)]
    rows = []
    for grace, reduction in REPLAY_SETTINGS:
        asha = Asha(grace, reduction, epochs)
        plan_seconds, _ = replay(trials, asha, names)
        runs = [replay(trials, asha, order) for order in orders]
        cost = np.array([seconds for seconds, _ in runs]) / total
        rows.append({"grace": grace, "reduction": reduction, "plan_order": round(plan_seconds / total, 3),
                     "mean": round(float(cost.mean()), 3), "p90": round(float(np.percentile(cost, 90)), 3),
                     "within_1_point": round(float(np.mean([found >= best - 0.01 for _, found in runs])), 3)})
    return rows


def markdown(results: dict) -> str:
    from dslite_tiny.train.sweep import Asha

    runs = results["runs"]
    first = next(iter(runs.values()))
    trials = len(first["trials"])
    epochs = first["epochs_planned"] // trials
    asha = runs.get("asha", {"grace_epochs": 2, "reduction": 4})
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
    repeats = results.get("repeats", [])
    if repeats and full and "asha" in runs:
        walls = [(full["wall_s"], runs["asha"]["wall_s"])]
        walls += [(r["none"]["wall_s"], r["asha"]["wall_s"]) for r in repeats]
        each = ", ".join(f"{a / 60:.1f} against {n / 60:.1f} min ({a / n:.3f}×)" for n, a in walls)
        same = all(r["asha"]["best"] == runs["asha"]["best"] and r["none"]["best"] == full["best"] for r in repeats)
        lines += ["", f"Measured {len(walls)} times (`--repeat`), ASHA against the full run: {each}; in all, "
                      f"{sum(a for _, a in walls) / sum(n for n, _ in walls):.3f}× the full runs' wall"
                      + (", the same best trials every time." if same else "; the best trials differed.")]
    if results.get("replay"):
        lines += ["", f"ASHA replayed on the full run's curves (training seconds as a share of the full trials'; "
                      f"{REPLAY_ORDERS} random trial orders; see the script's docstring):", "",
                  "| grace | reduction | plan's order | mean over orders | 90th percentile | orders within 1 point |",
                  "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['grace']} | {r['reduction']} | {r['plan_order']:.2f}× | {r['mean']:.2f}× | "
                  f"{r['p90']:.2f}× | {r['within_1_point']:.0%} |" for r in results["replay"]]
    lines += ["", "Commands (OUT is the --out folder; space-*.yaml is the shipped space with its scheduler set):", ""]
    lines += [f"- {name}: `{run['command']}`" for name, run in runs.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-sweep-asha"))
    parser.add_argument("--repeat", action="store_true", help="measure both runs again and add them to the record")
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
        results["runs"][name] = run_sweep(name, args.out, args.out / "cache")
        print(f"{name}: {results['runs'][name]['wall_s'] / 60:.1f} min", flush=True)
        if name == "none":
            results["replay"] = replay_table(results["runs"]["none"])
    if args.repeat:
        repeat = {name: run_sweep(name, args.out / "repeat", args.out / "cache") for name in RUNS}
        results.setdefault("repeats", []).append({name: {k: run[k] for k in ("wall_s", "best", "best_devel_uar",
                                                                             "epochs_trained")}
                                                  for name, run in repeat.items()})
        path.write_text(json.dumps(results, indent=2) + "\n")
        (HERE / "sweep_asha.md").write_text(markdown(results))
        path.write_text(json.dumps(results, indent=2) + "\n")
        (HERE / "sweep_asha.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
