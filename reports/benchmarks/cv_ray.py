"""Cross-validation in one process against the same folds on a local Ray cluster: FSDD leave-one-speaker-out
(6 folds, one seed), `mcu-dscnn` on the 40×49 log-mel frontend, through the real command line.

Three runs of ``dslite-tiny cv``, each into a fresh folder, the feature cache warmed first (so no run pays
for decoding the recordings):

1. in-process, TensorFlow's default threads (all cores: what a user gets without --ray);
2. in-process with one TensorFlow thread, as each Ray worker has (results depend on the thread count, so
   this is the run whose figures Ray's must equal bit for bit);
3. ``--ray local``: a cluster on this machine's cores, one fold per core at a time.

    python reports/benchmarks/cv_ray.py [--out DIR] [--epochs N]

Writes ``cv_ray.json`` after every run (a rerun skips runs it holds; delete an entry to redo it) and
``cv_ray.md``. Issue 31's target: the Ray wall ≤ 0.75× the in-process wall on 2 cores, same figures.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "configs" / "data" / "fsdd.yaml"
FIGURES = ("chunk_uar", "file_uar", "chunk_accuracy", "file_accuracy", "devel_uar", "best_epoch")
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
RUNS = {"in-process": ([], {}), "in-process, 1 thread": ([], ONE_THREAD), "ray local": (["--ray", "local"], {})}


def warm_cache(cache_dir: Path) -> None:
    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.config import DataConfig, FrontendConfig, load_config
    from dslite_tiny.data.cache import FeatureCache
    from dslite_tiny.data.features import compute_features
    from dslite_tiny.data.layouts import load_dataset

    data = load_config(DataConfig, DATA, stage="data")
    compute_features(load_dataset(data), Frontend(load_config(FrontendConfig, "fsdd-40x49", stage="frontend")),
                     cache=FeatureCache(cache_dir))


def run_cv(name: str, out: Path, cache_dir: Path, epochs: int | None) -> dict:
    flags, env = RUNS[name]
    folder = out / name.replace(", ", "-").replace(" ", "-")
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "dslite_tiny", "cv", "--data", str(DATA), "--config", "mcu-dscnn",
               "--set", "frontend=fsdd-40x49", "--seeds", "0", "--out", str(folder), "--cache-dir", str(cache_dir),
               *(["--set", f"epochs={epochs}"] if epochs else []), *flags]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((folder / "cv.json").read_text())
    return {"wall_s": round(wall, 1), "run_seconds": summary["run_seconds"]["total"],
            "mean_file_uar": summary["mean"]["file_uar"],
            "runs": {r["fold"]: {key: r[key] for key in FIGURES} for r in summary["runs"]},
            "command": " ".join(["dslite-tiny", *command[3:]]).replace(str(out), "OUT").replace(str(ROOT) + "/", "")}


def markdown(results: dict) -> str:
    runs = results["runs"]
    lines = ["# Cross-validation in one process and on Ray (FSDD LOSO, 6 folds, seed 0)", "",
             f"`{results['command']}` on {results['machine']}. `mcu-dscnn` with `frontend=fsdd-40x49`; the feature "
             "cache was warm for every run. Wall: the whole command, TensorFlow's import and Ray's start "
             "included; run time: the sum of the runs' own training and evaluation.", "",
             "| run | wall | × in-process | sum of run times | mean UAR per file | same figures as 1 thread |",
             "|---|---:|---:|---:|---:|---|"]
    base = runs.get("in-process", {}).get("wall_s")
    reference = runs.get("in-process, 1 thread", {}).get("runs")
    for name, run in runs.items():
        ratio = f"{run['wall_s'] / base:.2f}×" if base else "-"
        same = "-" if reference is None else ("yes, every fold" if run["runs"] == reference else
                                              f"no: UAR per file up to {max_difference(run['runs'], reference):.3f} apart")
        lines.append(f"| {name} | {run['wall_s'] / 60:.1f} min | {ratio} | {run['run_seconds'] / 60:.1f} min | "
                     f"{run['mean_file_uar']['mean']:.3f} ± {run['mean_file_uar']['std']:.3f} | {same} |")
    lines += ["", "The one-thread run is there for its figures: its wall overlapped other work on the machine (a test "
              "run), the other two ran alone. TensorFlow's default threads and one thread train differently "
              "(sums split across threads), hence the default run's other figures; Ray's workers have one thread "
              "each and equal the one-thread run bit for bit.", "",
              "Commands (OUT is the --out folder):", ""]
    lines += [f"- {name}: `{env}{run['command']}`" for name, run in runs.items()
              for env in [" ".join(f"{k}={v}" for k, v in RUNS[name][1].items()) + (" " if RUNS[name][1] else "")]]
    return "\n".join(lines) + "\n"


def max_difference(runs: dict, reference: dict) -> float:
    return max(abs(runs[f]["file_uar"] - reference[f]["file_uar"]) for f in reference if f in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-cv-ray"))
    parser.add_argument("--epochs", type=int, help="Override the preset's epochs (a quicker check).")
    args = parser.parse_args()
    cache_dir = args.out / "cache"
    warm_cache(cache_dir)
    path = HERE / "cv_ray.json"
    command = "python reports/benchmarks/cv_ray.py" + (f" --epochs {args.epochs}" if args.epochs else "")
    results = json.loads(path.read_text()) if path.is_file() else {}
    if results.get("command") != command:
        results = {"command": command, "runs": {}}
    results["machine"] = f"{os.cpu_count()} cores, {platform.machine()}"
    for name in RUNS:
        if name in results["runs"]:
            print(f"{name}: in {path.name}, skipped")
            continue
        results["runs"][name] = run_cv(name, args.out, cache_dir, args.epochs)
        print(f"{name}: {results['runs'][name]['wall_s'] / 60:.1f} min", flush=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        (HERE / "cv_ray.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
