"""Speaker-independent spoken-digit recognition on the real FSDD recordings with an MCU-sized model.

MobileNet v1 α = 0.25 on 96×96×3 plots (configs/train/mcu-mobilenet.yaml, frontend preset ``fsdd``),
devel speaker theo, test speaker yweweler (configs/data/fsdd.yaml), in four runs: ImageNet (the shared
no-top weights) vs random initialisation, with vs without SapAugment/CutMix/SpecAugment, plus the small
DS-CNN on the same plots. Target (issue 3):
≥ 90 % test UAR on the held-out speaker.

    python reports/benchmarks/train_fsdd.py [--runs imagenet-aug,random-aug,...] [--out DIR]

Each finished run is appended to ``reports/benchmarks/train_fsdd.json`` at once and skipped when the
script is run again (delete the entry to redo it); ``train_fsdd.md`` is the table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dslite_tiny.config import DataConfig, TrainConfig, load_config
from dslite_tiny.data.cache import FeatureCache, default_cache_dir
from dslite_tiny.data.layouts import load_dataset
from dslite_tiny.models.trained import load_trained
from dslite_tiny.native import import_tensorflow_quietly
from dslite_tiny.train.evaluate import evaluate
from dslite_tiny.train.run import run_training

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
RUNS = {
    "imagenet-aug": {"weights": str(WEIGHTS)},
    "imagenet-noaug": {"weights": str(WEIGHTS), "cutmix": False, "specaugment": False},
    # From scratch there is no head-only phase: every layer trains for the same 40 epochs.
    "random-aug": {"weights": "none", "epochs": 40},
    "random-noaug": {"weights": "none", "epochs": 40, "cutmix": False, "specaugment": False},
    # The ~30 k-parameter DS-CNN (configs/train/mcu-dscnn.yaml) on the same 96×96×3 FSDD plots.
    "dscnn-aug": {"preset": "mcu-dscnn", "frontend": "fsdd", "epochs": 60},
}


def run_one(name: str, out_dir: Path, cache: FeatureCache) -> dict:
    data = load_config(DataConfig, ROOT / "configs" / "data" / "fsdd.yaml", stage="data")
    overrides = dict(RUNS[name])
    config = load_config(TrainConfig, overrides.pop("preset", "mcu-mobilenet"), ("benchmark", overrides), stage="train")
    start = time.perf_counter()
    result = run_training(data, config, out_dir=out_dir / name, cache=cache,
                          on_epoch=lambda r: print(f"  {name} epoch {r['epoch']}: loss {r['loss']:.3f} "
                                                   f"devel UAR {r['devel_uar']:.3f} ({r['seconds']:.1f} s)", flush=True))
    seconds = time.perf_counter() - start
    report = evaluate(load_trained(result.path), load_dataset(data), split="test", cache=cache)
    return {"run": name, "overrides": RUNS[name], "best_epoch": result.best["epoch"],
            "devel_uar": result.best["devel_uar"], "test_uar_chunks": report["chunks"]["uar"],
            "test_uar_files": report["files"]["uar"], "test_accuracy_files": report["files"]["accuracy"],
            "test_recall_files": report["files"]["recall"], "train_seconds": round(seconds, 1),
            "epochs": len(result.history), "model": str(result.path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/dslite-tiny-fsdd"))
    args = parser.parse_args()
    import_tensorflow_quietly()
    results_path = HERE / "train_fsdd.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": []}
    results["command"] = "python reports/benchmarks/train_fsdd.py --runs NAME (one run per row)"
    done = {r["run"] for r in results["runs"]}
    cache = FeatureCache(default_cache_dir())
    for name in args.runs.split(","):
        if name in done:
            print(f"{name}: already in {results_path.name}, skipped")
            continue
        results["runs"].append(run_one(name, args.out, cache))
        results_path.write_text(json.dumps(results, indent=2) + "\n")  # incremental: a crash keeps earlier runs
        (HERE / "train_fsdd.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = ["# FSDD, speaker-independent (test: yweweler, devel: theo), 96×96×3 plots (MobileNet v1 α=0.25 unless the run says dscnn)", "",
             f"Command: `{results['command']}` (2 CPU cores)", "",
             "| run | test UAR (files) | test UAR (chunks) | devel UAR | best epoch / epochs | train time |",
             "|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(_row(r["run"], r))
    if results.get("superseded"):
        lines += ["", "Earlier runs with the frontend's floor at top_db = 80 dB (the preset now uses 50 dB):", "",
                  lines[4], lines[5]] + [_row(r["run"], r) for r in results["superseded"]]
    return "\n".join(lines) + "\n"


def _row(name: str, r: dict) -> str:
    return (f"| {name} | {r['test_uar_files']:.3f} | {r['test_uar_chunks']:.3f} | {r['devel_uar']:.3f} | "
            f"{r['best_epoch']} / {r['epochs']} | {r['train_seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
