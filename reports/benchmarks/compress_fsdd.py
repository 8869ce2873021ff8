"""Every compressed variant of real models, measured the product's own way (``dslite-tiny compress``).

Part ``mcu``: the FSDD models of ``train_fsdd.py`` (the DS-CNN and the ImageNet MobileNet v1 α = 0.25),
speaker-independent test split, default compression preset: test UAR, sizes, latency, TFLM arena.

Part ``ptq``: what each post-training repair does, measured on its own. MobileNet v1 α = 0.25
(``mcu-mobilenet``, ImageNet weights) trained with two seeds on the split test theo, devel jackson; each
model's int8 and int16x8 variants built with ``bias_correction`` off and on (same code, same models),
scored per chunk and per file and by agreement with the float model.

Part ``dscnn``: the DS-CNN (``mcu-dscnn`` on the ``fsdd`` frontend) trained with two seeds on the same
split, every default variant: ΔUAR per chunk and per file and agreement with the float model, per seed.

Part ``densenet``: DenseNet121 at 224×224×3 with DeepSpectrumLite's head (the paper's model; its float
TFLite is 30.0 MB and runs in 89.7 ms on a 4-thread laptop CPU): sizes of every variant and host latency
float32 vs int8 in the same run. No ImageNet DenseNet121 weights are available offline, so the model is
randomly initialised and its fine-tuning steps run on a 2-clips-per-speaker-and-digit FSDD subset: its
accuracy figures mean nothing; its sizes, op lists, arena and latency are what this part measures.

    python reports/benchmarks/compress_fsdd.py --part mcu|ptq|dscnn|densenet [--out DIR]

Results go to ``compress_fsdd.json`` (per model, written as each model finishes) and ``compress_fsdd.md``;
the compress output folders resume, so a rerun only redoes what is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dslite_tiny.config import CompressConfig, DataConfig, FrontendConfig, TrainConfig, load_config, to_dict
from dslite_tiny.compress.pipeline import run_compress
from dslite_tiny.data.cache import FeatureCache, default_cache_dir
from dslite_tiny.native import import_tensorflow_quietly
from dslite_tiny.train.run import run_training

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd" / "recordings"
MCU_RUNS = ("dscnn-aug", "imagenet-noaug")  # rows of train_fsdd.json
DENSENET_NOTE = ("Random initialisation and a 2-clips-per-digit-and-speaker FSDD subset: UAR and agreement mean "
                 "nothing here (chance is 0.100); sizes, arena and latency are the figures. KB = 1024 bytes.")
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
THEO_SPLIT = {"test_speakers": ["theo"], "devel_speakers": ["jackson"]}  # the split of issue 12's figures
PTQ_SEEDS = (0, 1)
PTQ_REPAIRS = ("bias_correction",)  # each built off and on, the others at their defaults
DENSENET_OVERRIDES = {"prune_epochs": 2, "qat_epochs": 1, "representative_chunks": 50, "latency_runs": 50}


def mcu_models() -> list[tuple[str, Path]]:
    runs = {r["run"]: Path(r["model"]) for r in json.loads((HERE / "train_fsdd.json").read_text())["runs"]}
    models = []
    for name in MCU_RUNS:
        if not runs.get(name, Path("/nonexistent")).is_file():
            sys.exit(f"{name}: no trained model; run: python reports/benchmarks/train_fsdd.py --runs {name}")
        models.append((name, runs[name]))
    return models


def theo_models(out: Path, cache: FeatureCache, backbone: str = "mobilenet") -> tuple[list[tuple[str, Path]],
                                                                                      DataConfig]:
    """The MobileNet (ImageNet start) or DS-CNN trained with each seed of PTQ_SEEDS on THEO_SPLIT (trained
    here when missing)."""
    data = load_config(DataConfig, ROOT / "configs" / "data" / "fsdd.yaml", ("theo", THEO_SPLIT), stage="data")
    preset, overrides = {"mobilenet": ("mcu-mobilenet", {"weights": str(WEIGHTS)}),
                         "dscnn": ("mcu-dscnn", {"frontend": "fsdd"})}[backbone]
    models = []
    for seed in PTQ_SEEDS:
        path = out / f"{backbone}-theo-s{seed}" / "model.h5"
        if not path.is_file():
            config = load_config(TrainConfig, preset, ("benchmark", {"seed": seed, **overrides}), stage="train")
            run_training(data, config, out_dir=path.parent, cache=cache)
        models.append((f"{backbone}-theo-s{seed}", path))
    return models, data


def ptq_jobs(out: Path, cache: FeatureCache) -> list[tuple[str, Path, DataConfig, CompressConfig]]:
    models, data = theo_models(out, cache)
    return [(f"{name} {repair}={on}", path, data,
             load_config(CompressConfig, "default", ("ptq", {"variants": ["int8", "int16x8"], repair: on}),
                         stage="compress"))
            for name, path in models for repair in PTQ_REPAIRS for on in (False, True)]


def densenet_model(out: Path) -> tuple[str, Path, DataConfig]:
    """A random-init DenseNet121 + DSLite head saved as a dslite-tiny model, and the FSDD subset it uses."""
    from dslite_tiny.models.registry import create_model
    from dslite_tiny.models.trained import save_trained

    subset = out / "fsdd-subset"
    if not subset.is_dir():
        subset.mkdir(parents=True)
        for wav in sorted(FSDD.glob("*.wav")):
            if int(wav.stem.split("_")[2]) < 2:  # takes 0 and 1 of every digit and speaker
                os.symlink(wav, subset / wav.name)
    data = load_config(DataConfig, ROOT / "configs" / "data" / "fsdd.yaml", ("subset", {"root": str(subset)}),
                       stage="data")
    path = out / "densenet121" / "model.h5"
    if not path.is_file():
        frontend = load_config(FrontendConfig, "fsdd", ("densenet", {"image_height": 224, "image_width": 224,
                                                                     "normalization": "torch"}), stage="frontend")
        model = create_model("densenet121", input_shape=frontend.image_shape, num_classes=10, units=512, dropout=0.25)
        save_trained(model, path, {"classes": [str(d) for d in range(10)], "frontend": to_dict(frontend),
                                   "backbone": "densenet121", "normalization": "torch",
                                   "data": {"config": to_dict(data)}, "note": "random initialisation (benchmark)"})
    return "densenet121-224", path, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("mcu", "ptq", "dscnn", "densenet"), required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/dslite-tiny-compress"))
    args = parser.parse_args()
    import_tensorflow_quietly()
    results_path = HERE / "compress_fsdd.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"models": {}}
    cache = FeatureCache(default_cache_dir())
    if args.part == "mcu":
        jobs = [(name, path, None, load_config(CompressConfig, "default", stage="compress")) for name, path in mcu_models()]
    elif args.part == "ptq":
        jobs = ptq_jobs(args.out, cache)
    elif args.part == "dscnn":
        models, data = theo_models(args.out, cache, backbone="dscnn")
        jobs = [(name, path, data, load_config(CompressConfig, "default", stage="compress")) for name, path in models]
    else:
        name, path, data = densenet_model(args.out)
        jobs = [(name, path, data, load_config(CompressConfig, "phone", ("benchmark", DENSENET_OVERRIDES),
                                               stage="compress"))]
    for name, path, data, config in jobs:
        print(f"== {name}: {path}", flush=True)
        result = run_compress(path, config=config, out_dir=args.out / name.replace(" ", "-"), data=data, cache=cache,
                              on_variant=lambda row: print(f"  {row['variant']}: {row['status']} {row['reason']}",
                                                           flush=True))
        results["models"][name] = {"part": args.part, "model": str(path), "config": to_dict(config),
                                   "reference": result.reference.float_uar,
                                   "reference_files": result.reference.accuracy["files"]["uar"],
                                   "rows": result.rows, "command": f"python reports/benchmarks/compress_fsdd.py --part {args.part}"}
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        (HERE / "compress_fsdd.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = ["# Compressed variants, measured by `dslite-tiny compress` (2 CPU cores, LiteRT, TFLite Micro)", ""]
    lines += ptq_markdown({name: e for name, e in results["models"].items() if e["part"] == "ptq"})
    lines += seeds_markdown({name: e for name, e in results["models"].items() if e["part"] == "dscnn"})
    for name, entry in results["models"].items():
        if entry["part"] in ("ptq", "dscnn"):
            continue
        lines += [f"## {name}", "", f"Command: `{entry['command']}`; model `{entry['model']}`; "
                  f"float Keras test UAR {entry['reference']:.3f} (chunks), {entry['reference_files']:.3f} (files).", "",
                  *([DENSENET_NOTE, ""] if entry["part"] == "densenet" else []),
                  "| variant | status | UAR | ΔUAR (pt) | agree | .tflite KB | gzip KB | weights KB | sparsity (pruned layers) "
                  "| ms (1 thr) | ms (all) | arena KB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in entry["rows"]:
            if r["status"] != "ok":
                lines.append(f"| {r['variant']} | failed: {r['reason']} |||||||||||")
                continue
            pruned = f" ({r['pruned_sparsity'] * 100:.1f} %)" if r["pruned_sparsity"] != "" else ""
            arena = f"{r['arena_bytes'] / 1024:.1f}" if r["arena_bytes"] != "" else "–"
            lines.append(
                f"| {r['variant']} | ok | {r['uar']:.3f} | {(r['uar'] - entry['reference']) * 100:+.1f} | "
                f"{r['agreement'] * 100:.1f} % | {r['tflite_bytes'] / 1024:.1f} | {r['gzip_bytes'] / 1024:.1f} | "
                f"{r['weight_bytes'] / 1024:.1f} | {r['sparsity'] * 100:.1f} %{pruned} | {r['latency_ms']:.3f} | "
                f"{r['latency_ms_all_threads']:.3f} | {arena} |")
        lines.append("")
    return "\n".join(lines)


def ptq_markdown(entries: dict) -> list[str]:
    """One row per model and repair setting: ΔUAR (chunks, files) and agreement of int8 and int16x8."""
    if not entries:
        return []
    lines = ["## Post-training repairs, each on its own (MobileNet v1 α = 0.25, test theo, devel jackson)", "",
             "Command: `python reports/benchmarks/compress_fsdd.py --part ptq`. ΔUAR in points against the float "
             "Keras model (per chunk / per file); agreement: share of chunks predicted as the float model does.", "",
             "| model | setting | float UAR | int8 ΔUAR | int8 agree | int16x8 ΔUAR | int16x8 agree |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in entries.items():
        model, setting = name.split(" ", 1)
        rows = {r["variant"]: r for r in entry["rows"] if r["status"] == "ok"}
        cells = []
        for variant in ("int8", "int16x8"):
            r = rows.get(variant)
            if r is None:
                cells += ["failed", "–"]
                continue
            chunks, files = r["uar"] - entry["reference"], r["uar_files"] - entry["reference_files"]
            cells += [f"{chunks * 100:+.1f} / {files * 100:+.1f}", f"{r['agreement'] * 100:.1f} %"]
        lines.append(f"| {model} | {setting} | {entry['reference']:.3f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def seeds_markdown(entries: dict) -> list[str]:
    """One row per variant, one column group per seed: ΔUAR (chunks / files) and agreement."""
    if not entries:
        return []
    names = list(entries)
    lines = ["## DS-CNN, two seeds (test theo, devel jackson), default preset", "",
             "Command: `python reports/benchmarks/compress_fsdd.py --part dscnn`. Float Keras UAR per chunk / per "
             "file: " + "; ".join(f"{n} {e['reference']:.3f} / {e['reference_files']:.3f}" for n, e in entries.items())
             + ". ΔUAR in points against each seed's own float model; agreement: share of chunks predicted as it "
             "predicts them.", "",
             "| variant | " + " | ".join(f"{n} ΔUAR | {n} agree" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    variants = [r["variant"] for r in entries[names[0]]["rows"]]
    for variant in variants:
        cells = []
        for name in names:
            r = next((row for row in entries[name]["rows"] if row["variant"] == variant), None)
            if r is None or r["status"] != "ok":
                cells += ["failed", "–"]
                continue
            chunks, files = r["uar"] - entries[name]["reference"], r["uar_files"] - entries[name]["reference_files"]
            cells += [f"{chunks * 100:+.1f} / {files * 100:+.1f}", f"{r['agreement'] * 100:.1f} %"]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
