"""Speaker-independent spoken-digit recognition on the real FSDD recordings: leave-one-speaker-out
cross-validation of training recipes (MCU presets and variations of them), with the int8 footprint.

Each recipe is a training preset plus overrides, run through ``dslite_tiny.flows.cv.cross_validate`` (the
library behind ``dslite-tiny cv``): six folds, each testing one speaker and selecting on the next, per
seed. Beside the UAR (mean ± std over folds, per file and per chunk) the first fold's model is converted
to full int8 (``dslite-tiny compress --only int8``) for its size, TFLite Micro arena, LiteRT latency and
whether ``dslite-tiny export --board nano33ble`` accepts it without ``--force``.

    python reports/benchmarks/train_fsdd.py [--recipes a,b] [--seeds 0,1] [--out DIR]

A distillation recipe (``-kd4``) is taught by the fold models that ``dscnn-40x49-aug`` and
``dscnn-40x49-aug-wide`` (seeds 0 and 1) left in the default ``--out`` folder: run those first.

Each CV run resumes where it stopped; a finished recipe is kept in ``train_fsdd.json`` (delete its entry
to redo it) and ``train_fsdd.md`` is the table. Issue 13's target: LOSO mean per-file UAR ≥ 0.92 for the
best MCU preset and ≥ 0.90 for mcu-mobilenet.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from dslite_tiny.config import CompressConfig, DataConfig, TrainConfig, load_config
from dslite_tiny.data.cache import FeatureCache, default_cache_dir
from dslite_tiny.native import import_tensorflow_quietly
from dslite_tiny.flows.cv import cross_validate

HERE = Path(__file__).resolve().parent
CV_DIR = Path(tempfile.gettempdir(), "dslite-tiny-fsdd-cv")  # --out's default, where the distillation recipes find their teachers
ROOT = HERE.parents[1]
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
AUGMENT = {"time_shift": True, "speed_perturb": 0.1, "pitch_shift": 1.5, "noise_snr_db": [10, 40]}
NO_AUGMENT = {"time_shift": False, "speed_perturb": 0.0, "pitch_shift": 0.0, "noise_snr_db": []}
# Distillation: each fold's student learns from the four models two recipes trained for that fold (seeds 0, 1).
TEACHERS = [str(CV_DIR / recipe / f"{{fold}}-s{seed}" / "model.h5")
            for recipe in ("dscnn-40x49-aug", "dscnn-40x49-aug-wide") for seed in (0, 1)]
RECIPES = {  # name: (preset, overrides); every recipe spells out its augmentation, whatever the preset's
    "dscnn-96": ("mcu-dscnn", {"frontend": "fsdd", **NO_AUGMENT}),
    "dscnn-40x49": ("mcu-dscnn", {"frontend": "fsdd-40x49", **NO_AUGMENT}),
    "dscnn-40x49-aug": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT}),
    "dscnn-40x49-aug2": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT, "speed_perturb": 0.2, "pitch_shift": 3.0}),
    "dscnn-40x49-aug-nocutmix": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT, "cutmix": False}),
    "dscnn-40x49-aug-wide": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT, "alpha": 2.0}),
    "dscnn-40x49-aug-long": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT, "epochs": 60}),
    "dscnn-40x49-aug-wide-long": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT, "alpha": 2.0, "epochs": 60}),
    "dscnn-40x49-aug-top30": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT, "frontend_set": {"top_db": 30.0}}),
    "dscnn-40x97-aug": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT,
                                      "frontend_set": {"hop_s": 0.01, "image_width": 97}}),
    "dscnn-96-aug": ("mcu-dscnn", {"frontend": "fsdd", "frontend_set": {"clip_position": "center"}, **AUGMENT}),
    "dscnn-64x64-aug": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT,
                                      "frontend_set": {"n_mels": 64, "image_height": 64, "image_width": 64}}),
    "dscnn-40x49-aug-kd4": ("mcu-dscnn", {"frontend": "fsdd-40x49", **AUGMENT, "teacher": TEACHERS}),
    "mobilenet": ("mcu-mobilenet", {"weights": str(WEIGHTS), "frontend_set": {"clip_position": "start"},
                                    **NO_AUGMENT}),
    "mobilenet-aug": ("mcu-mobilenet", {"weights": str(WEIGHTS), "frontend_set": {"clip_position": "center"},
                                        **AUGMENT}),
    "mobilenet-40x49-scratch": ("mcu-mobilenet", {"weights": "none", "frontend": "fsdd-40x49", "epochs": 30,
                                                  **AUGMENT}),
    "mobilenet-40x49-aug": ("mcu-mobilenet", {"weights": str(WEIGHTS), "frontend": "fsdd-40x49",
                                              "frontend_set": {"channels": 3}, **AUGMENT}),
}


def run_recipe(name: str, seeds: list[int], out_dir: Path, cache: FeatureCache) -> dict:
    data = load_config(DataConfig, ROOT / "configs" / "data" / "fsdd.yaml", stage="data")
    preset, overrides = RECIPES[name]
    config = load_config(TrainConfig, preset, ("benchmark", overrides), stage="train")
    start = time.perf_counter()
    summary = cross_validate(data, config, out_dir=out_dir / name, seeds=seeds, cache=cache,
                             on_run=lambda r: print(f"  {name} {r['fold']} s{r['seed']}: {r['file_uar']:.3f} per file",
                                                    flush=True))
    row = {"recipe": name, "preset": preset, "overrides": overrides, "seeds": seeds,
           "minutes": round((time.perf_counter() - start) / 60, 1), "mean": summary["mean"],
           "per_fold": summary["per_fold"], "per_seed": summary["per_seed"], "frontend": config.frontend}
    first = out_dir / name / f"{summary['folds'][0]['name']}-s{seeds[0]}"
    row["int8"] = int8_footprint(first, cache)
    return row


def int8_footprint(run_dir: Path, cache: FeatureCache) -> dict:
    """Full int8 of one fold's model: size, arena, latency and the nano33ble export check."""
    from dslite_tiny.compress.pipeline import run_compress
    from dslite_tiny.errors import UserError
    from dslite_tiny.export.targets import export_model

    config = load_config(CompressConfig, "default", stage="compress")
    result = run_compress(run_dir / "model.h5", config=config, out_dir=run_dir / "compressed", only=["int8"],
                          cache=cache)
    row = next(r for r in result.rows if r["variant"] == "int8")
    try:
        export_model(run_dir / "compressed" / "int8", target="c", out_dir=run_dir / "export", board="nano33ble")
        fits = "yes"
    except UserError as exc:
        fits = f"no: {exc}"
    return {"model_bytes": int(row["tflite_bytes"]), "arena_bytes": int(row["arena_bytes"]),
            "latency_ms": float(row["latency_ms"]), "uar_files": float(row["uar_files"]),
            "agreement": float(row["agreement"]), "nano33ble": fits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=CV_DIR)
    args = parser.parse_args()
    import_tensorflow_quietly()
    results_path = HERE / "train_fsdd.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    # Other keys (the single-split runs of 29065ea that compress_fsdd.py compresses) are kept as they are.
    results = {**results, "command": "python reports/benchmarks/train_fsdd.py --recipes NAME --seeds S[,S]",
               "recipes": results.get("recipes", [])}
    seeds = [int(s) for s in args.seeds.split(",")]
    cache = FeatureCache(default_cache_dir())
    for name in args.recipes.split(","):
        if any(r["recipe"] == name and r["seeds"] == seeds for r in results["recipes"]):
            print(f"{name} (seeds {args.seeds}): already in {results_path.name}, skipped")
            continue
        row = run_recipe(name, seeds, args.out, cache)
        if results_path.is_file():  # another recipe may have finished meanwhile (runs in parallel)
            results["recipes"] = json.loads(results_path.read_text()).get("recipes", [])
        results["recipes"] = [r for r in results["recipes"] if (r["recipe"], r["seeds"]) != (name, seeds)] + [row]
        results_path.write_text(json.dumps(results, indent=2) + "\n")  # incremental: a crash keeps earlier recipes
        (HERE / "train_fsdd.md").write_text(markdown(results))
    print(markdown(results))


def teachers(paths: list[str]) -> str:
    """``[.../RECIPE/{fold}-sSEED/model.h5, ...]`` → ``RECIPE s0,s1 + ...``: which fold models teach."""
    seeds: dict[str, list[str]] = {}
    for path in paths:
        run = Path(path).parent
        seeds.setdefault(run.parent.name, []).append(run.name.rsplit("-", 1)[1])
    return " + ".join(f"{recipe} {','.join(s)}" for recipe, s in seeds.items())


def markdown(results: dict) -> str:
    lines = ["# FSDD, leave-one-speaker-out cross-validation of the MCU training recipes", "",
             f"Command: `{results['command']}` (2 CPU cores, no GPU). Each fold tests one of the six speakers "
             "and selects its epoch on the next (george→jackson→lucas→nicolas→theo→yweweler→george); UAR is "
             "mean ± std over the six folds (of the seeds' mean per fold). int8: the first fold's model (test "
             "george) as full int8; nano33ble: `dslite-tiny export --board nano33ble` without `--force`.", "",
             "| recipe | preset + overrides | seeds | UAR per file | UAR per chunk | per fold (file UAR) | int8 size | "
             "TFLM arena | LiteRT latency | int8 agreement | nano33ble | time |",
             "|---|---|---|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in results["recipes"]:
        over = ", ".join(f"{k}={teachers(v) if k == 'teacher' else v}" for k, v in r["overrides"].items()
                         if k != "weights") or "as shipped"
        folds = " ".join(f"{f[:3]} {v['file_uar']:.2f}" for f, v in r["per_fold"].items())
        m, q = r["mean"], r["int8"]
        lines.append(f"| {r['recipe']} | `{r['preset']}` {over} | {','.join(map(str, r['seeds']))} | "
                     f"**{m['file_uar']['mean']:.3f} ± {m['file_uar']['std']:.3f}** | "
                     f"{m['chunk_uar']['mean']:.3f} ± {m['chunk_uar']['std']:.3f} | {folds} | "
                     f"{q['model_bytes'] / 1024:.1f} KiB | {q['arena_bytes'] / 1024:.1f} KiB | {q['latency_ms']:.2f} ms | "
                     f"{100 * q['agreement']:.1f} % | {q['nano33ble'].split(':')[0]} | {r['minutes']:.0f} min |")
    if results.get("runs"):
        lines += ["", "Earlier, one held-out speaker (test yweweler, devel theo; `train_fsdd.py` as of 29065ea; these "
                  "models are the ones `compress_fsdd.py --part mcu` compresses):", "",
                  "| run | test UAR (files) | devel UAR | best epoch / epochs |", "|---|---|---|---|"]
        lines += [f"| {r['run']} | {r['test_uar_files']:.3f} | {r['devel_uar']:.3f} | {r['best_epoch']} / {r['epochs']} |"
                  for r in results["runs"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
