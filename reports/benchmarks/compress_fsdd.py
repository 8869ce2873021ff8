"""Every compressed variant of real models, measured the product's own way (``dslite-tiny compress``).

Part ``mcu``: the FSDD models of ``train_fsdd.py`` as of 29065ea (single held-out speaker; the DS-CNN and the
ImageNet MobileNet v1 α = 0.25, kept in ``train_fsdd.json``'s ``runs``),
speaker-independent test split, default compression preset: test UAR, sizes, latency, TFLM arena.

Part ``ptq``: what each post-training repair does, measured on its own. MobileNet v1 α = 0.25
(``mcu-mobilenet``, ImageNet weights) trained with two seeds on the split test theo, devel jackson; each
model's int8 and int16x8 variants built with ``bias_correction`` off and on (same code, same models),
scored per chunk and per file and by agreement with the float model.

Parts ``dscnn`` and ``mobilenet``: the DS-CNN (``mcu-dscnn`` on the ``fsdd`` frontend) or the MobileNet of
part ``ptq``, trained with two seeds on the same split, every default variant: ΔUAR per chunk and per file,
agreement with the float model and gzip size against int8, per seed. A rerun whose compression config
differs keeps the previous run's rows as its "before" (with that config), so the table shows what a
recipe change did on the same models.

Part ``dscnn-40x49``: what compression buys on the Cortex-M4. The DS-CNN (``mcu-dscnn`` on the ``fsdd-40x49``
frontend, spectrogram augmentation as the preset has it) trained with two seeds on the same split; int8,
pruned-int8, pqat-int8 and slim-int8 with their engine figures on QEMU's Cortex-M4 (instructions per inference,
constants, flash) against int8's, beside ΔUAR and agreement.

Part ``dscnn-40x49-audio``: the same models' int8 and slim-int8 with ``slim_transfer_audio`` set to the shared
Speech Commands clips (4890 one-second clips of 239 other speakers, no FSDD speaker; their labels unused): what
slimming keeps when the slimmed model also learns the float model on voices the training split lacks.

Part ``slim-loso``: the same question as ``dscnn-40x49``'s ΔUAR, asked of every speaker. One test speaker
holds 500 files, so one seed's ΔUAR has a standard error of about a point; the six folds of ``dslite-tiny cv
--folds loso`` (the ``mcu-dscnn`` preset on ``fsdd-40x49``, seeds 0 and 1, each fold selecting on the next
speaker) hold all 3000. Each of the twelve models is compressed to int8 and slim-int8 by ``dslite-tiny compress``
(default recipe; no device figures: the architecture, and so the Cortex-M4 figures, are part
``dscnn-40x49``'s), two at a time. Part ``slim-loso-audio``: the same twelve models with ``slim_transfer_audio``
as in part ``dscnn-40x49-audio``, so the option is judged on every speaker, not on theo alone.

Part ``densenet``: DenseNet121 at 224×224×3 with DeepSpectrumLite's head (the paper's model; its float
TFLite is 30.0 MB and runs in 89.7 ms on a 4-thread laptop CPU), every variant of the phone preset. No
ImageNet DenseNet121 weights are available offline, so it is trained from scratch for a few epochs on an
FSDD subset (``DENSENET_*``): its float UAR is low, but it is a trained model, and the variants' agreement
with it and their sizes, arena and latency are real.

    python reports/benchmarks/compress_fsdd.py \\
        --part mcu|ptq|dscnn|mobilenet|dscnn-40x49|dscnn-40x49-audio|slim-loso|slim-loso-audio|densenet \\
        [--out DIR]

Results go to ``compress_fsdd.json`` (per model, written as each model finishes) and ``compress_fsdd.md``;
the compress output folders resume, so a rerun only redoes what is missing.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

from dslite_tiny.config import VARIANTS, CompressConfig, DataConfig, FrontendConfig, TrainConfig, load_config, to_dict
from dslite_tiny.compress.pipeline import run_compress
from dslite_tiny.data.cache import FeatureCache, default_cache_dir
from dslite_tiny.native import import_tensorflow_quietly
from dslite_tiny.train.run import run_training

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd" / "recordings"
MCU_RUNS = ("dscnn-aug", "imagenet-noaug")  # rows of train_fsdd.json
DENSENET_CLIPS = 10  # the first 10 recordings of every digit and speaker: 600 of FSDD's 3000
DENSENET_FRONTEND = {"image_height": 224, "image_width": 224, "normalization": "torch"}
DENSENET_TRAIN = {"weights": "none", "optimizer": "adam", "learning_rate": 0.001, "epochs": 8, "batch_size": 16}
DENSENET_NOTE = (f"Trained from scratch ({DENSENET_TRAIN['epochs']} epochs, Adam {DENSENET_TRAIN['learning_rate']}, "
                 f"batch 16, DSLite's augmentation) on the first {DENSENET_CLIPS} recordings of every digit and "
                 "speaker (test theo, devel jackson: 100 clips each): no ImageNet DenseNet121 weights are available "
                 "offline, so its float UAR is far below the paper's; the compressed variants are measured against "
                 "it like any other model. KB = 1024 bytes.")
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
SPEECH_COMMANDS = ROOT.parent / "shared" / "datasets" / "speech_commands_v0.02_test"  # the "-audio" parts
THEO_SPLIT = {"test_speakers": ["theo"], "devel_speakers": ["jackson"]}  # the split of issue 12's figures
PTQ_SEEDS = (0, 1)
PTQ_REPAIRS = ("bias_correction",)  # each built off and on, the others at their defaults
SEED_PARTS = {"dscnn": "DS-CNN", "mobilenet": "MobileNet v1 α = 0.25"}  # part: backbone title
DEVICE_VARIANTS = ["int8", "pruned-int8", "pqat-int8", "slim-int8"]  # part dscnn-40x49
LOSO_CV = ["--config", "mcu-dscnn", "--set", "frontend=fsdd-40x49", "--folds", "loso", "--seeds", "0,1"]
LOSO_VARIANTS = ("int8", "slim-int8")
LOSO_COMPRESS = ["--only", ",".join(LOSO_VARIANTS), "--set", "cortex_m4=false", "--set", "tflm=false", "--set",
                 "layer_error_chunks=0"]


class LosoPart(NamedTuple):
    """A part compressing the leave-one-speaker-out models: where, how, and its table's title."""

    prefix: str  # of each compress output folder
    options: list[str]  # compress options added to LOSO_COMPRESS
    title: str


LOSO_PARTS = {"slim-loso": LosoPart("loso", [], "slim-int8 on every speaker (leave-one-speaker-out, seeds 0 / 1)"),
              "slim-loso-audio": LosoPart("loso-audio", ["--set", f"slim_transfer_audio={SPEECH_COMMANDS}"],
                                          "slim-int8 with Speech Commands audio on every speaker "
                                          "(leave-one-speaker-out, seeds 0 / 1)")}
# int16x8 left out: TFLite's int16 reference kernels on DenseNet121 at 224×224 take too long for this part.
DENSENET_OVERRIDES = {"prune_epochs": 2, "qat_epochs": 1, "representative_chunks": 50, "latency_runs": 50,
                      "layer_error_chunks": 20,
                      "variants": ["float32", "float16", "dynamic", "int8", "pruned-int8", "qat-int8", "pqat-int8"]}


def mcu_models() -> list[tuple[str, Path]]:
    runs = {r["run"]: Path(r["model"]) for r in json.loads((HERE / "train_fsdd.json").read_text())["runs"]}
    models = []
    for name in MCU_RUNS:
        if not runs.get(name, Path("/nonexistent")).is_file():
            sys.exit(f"{name}: no trained model; these single-split runs come from train_fsdd.py as of 29065ea: "
                     f"git show 29065ea:reports/benchmarks/train_fsdd.py > train_fsdd_split.py; "
                     f"python train_fsdd_split.py --runs {name}")
        models.append((name, runs[name]))
    return models


def theo_models(out: Path, cache: FeatureCache, backbone: str = "mobilenet") -> tuple[list[tuple[str, Path]],
                                                                                      DataConfig]:
    """The MobileNet (ImageNet start) or DS-CNN trained with each seed of PTQ_SEEDS on THEO_SPLIT (trained
    here when missing)."""
    data = load_config(DataConfig, ROOT / "configs" / "data" / "fsdd.yaml", ("theo", THEO_SPLIT), stage="data")
    as_measured = {"time_shift": False, "speed_perturb": 0.0, "pitch_shift": 0.0, "noise_snr_db": [],
                   "frontend_set": {"clip_position": "start"}}  # the presets before spectrogram augmentation
    preset, overrides = {"mobilenet": ("mcu-mobilenet", {"weights": str(WEIGHTS), **as_measured}),
                         "dscnn": ("mcu-dscnn", {"frontend": "fsdd", **as_measured}),
                         "dscnn-40x49": ("mcu-dscnn", {"frontend": "fsdd-40x49"})}[backbone]
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


def densenet_model(out: Path, cache: FeatureCache) -> tuple[str, Path, DataConfig]:
    """DenseNet121 + DSLite head trained from scratch (no ImageNet DenseNet weights offline) on an FSDD
    subset, split as the other parts (test theo, devel jackson); trained here when missing."""
    subset = out / "fsdd-subset"
    if not subset.is_dir():
        subset.mkdir(parents=True)
        for wav in sorted(FSDD.glob("*.wav")):
            if int(wav.stem.split("_")[2]) < DENSENET_CLIPS:
                os.symlink(wav, subset / wav.name)
    data = load_config(DataConfig, ROOT / "configs" / "data" / "fsdd.yaml",
                       ("subset", {"root": str(subset), **THEO_SPLIT}), stage="data")
    path = out / "densenet121" / "model.h5"
    if not path.is_file():
        frontend = load_config(FrontendConfig, "fsdd", ("densenet", DENSENET_FRONTEND), stage="frontend")
        frontend_yaml = out / "densenet-frontend.yaml"
        frontend_yaml.write_text(yaml.safe_dump(to_dict(frontend)))
        config = load_config(TrainConfig, "dslite-densenet121",
                             ("benchmark", {**DENSENET_TRAIN, "frontend": str(frontend_yaml)}), stage="train")
        run_training(data, config, out_dir=path.parent, cache=cache)
    return "densenet121-224", path, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("mcu", "ptq", *SEED_PARTS, *DEVICE_PARTS, *LOSO_PARTS, "densenet"),
                        required=True)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-compress"))
    args = parser.parse_args()
    import_tensorflow_quietly()
    results_path = HERE / "compress_fsdd.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"models": {}}
    if args.part in LOSO_PARTS:
        return run_slim_loso(args.part, args.out, results, results_path)
    cache = FeatureCache(default_cache_dir())
    if args.part == "mcu":
        jobs = [(name, path, None, load_config(CompressConfig, "default", stage="compress")) for name, path in mcu_models()]
    elif args.part == "ptq":
        jobs = ptq_jobs(args.out, cache)
    elif args.part in SEED_PARTS:
        models, data = theo_models(args.out, cache, backbone=args.part)
        config = load_config(CompressConfig, "default", ("seeds", {"variants": list(VARIANTS)}), stage="compress")
        jobs = [(name, path, data, config) for name, path in models]
    elif args.part == "dscnn-40x49":
        models, data = theo_models(args.out, cache, backbone=args.part)
        config = load_config(CompressConfig, "default", ("device", {"variants": DEVICE_VARIANTS}), stage="compress")
        jobs = [(name, path, data, config) for name, path in models]
    elif args.part == "dscnn-40x49-audio":
        models, data = theo_models(args.out, cache, backbone="dscnn-40x49")
        config = load_config(CompressConfig, "default", ("audio", {"variants": ["int8", "slim-int8"],
                                                                   "slim_transfer_audio": str(SPEECH_COMMANDS)}),
                             stage="compress")
        jobs = [(f"{name}-audio", path, data, config) for name, path in models]
    else:
        name, path, data = densenet_model(args.out, cache)
        jobs = [(name, path, data, load_config(CompressConfig, "phone", ("benchmark", DENSENET_OVERRIDES),
                                               stage="compress"))]
    for name, path, data, config in jobs:
        print(f"== {name}: {path}", flush=True)
        result = run_compress(path, config=config, out_dir=args.out / name.replace(" ", "-"), data=data, cache=cache,
                              on_variant=lambda row: print(f"  {row['variant']}: {row['status']} {row['reason']}",
                                                           flush=True))
        floors = gzip_floors(args.out / name) if args.part in SEED_PARTS else {}
        entry = {"part": args.part, "model": _shown(path), "config": _recorded(config), "commit": _commit(),
                 "gzip_floor": floors,
                 "reference": result.reference.float_uar,
                 "reference_files": result.reference.accuracy["files"]["uar"],
                 "rows": result.rows, "command": f"python reports/benchmarks/compress_fsdd.py --part {args.part}",
                 "m4_constants": _m4_constants(args.out / name.replace(" ", "-"))}
        results["models"][name] = {**entry, **_before(results["models"].get(name), entry)}
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        (HERE / "compress_fsdd.md").write_text(markdown(results))
    print(markdown(results))


def run_slim_loso(part: str, out: Path, results: dict, results_path: Path) -> None:
    """Parts ``slim-loso`` and ``slim-loso-audio``: the cross-validation (resumed, or trained here), then
    ``compress`` of each of its models as its own process, two at once; each run is recorded as it finishes."""
    cv_dir = out / "cv-dscnn-40x49"
    subprocess.run(["dslite-tiny", "cv", "--data", str(ROOT / "configs" / "data" / "fsdd.yaml"), *LOSO_CV, "--out",
                    str(cv_dir)], check=True)
    models = sorted(cv_dir.glob("*-s*/model.h5"))
    prefix, options, _ = LOSO_PARTS[part]

    def compress(model: Path) -> tuple[Path, Path]:
        folder = out / f"{prefix}-{model.parent.name}"
        with open(out / f"{folder.name}.log", "w") as log:
            subprocess.run(["dslite-tiny", "compress", str(model), *LOSO_COMPRESS, *options, "--out", str(folder)],
                           check=True, stdout=log, stderr=subprocess.STDOUT)
        return model, folder

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for done in concurrent.futures.as_completed([pool.submit(compress, model) for model in models]):
            model, folder = done.result()
            results["models"][folder.name] = _loso_entry(part, model, folder)
            print(f"== {folder.name}: {results['models'][folder.name]['rows']}", flush=True)
            results_path.write_text(json.dumps(results, indent=2) + "\n")
            (HERE / "compress_fsdd.md").write_text(markdown(results))


def _loso_entry(part: str, model: Path, folder: Path) -> dict:
    """One cross-validation run's float UAR and, per variant, ΔUAR, its standard error and agreement."""
    reference = json.loads((folder / "reference.json").read_text())["accuracy"]
    run = json.loads((model.parent / "result.json").read_text())
    rows = {}
    for variant in LOSO_VARIANTS:
        accuracy = json.loads((folder / variant / "metrics.json").read_text())["accuracy"]
        rows[variant] = {"uar": accuracy["chunks"]["uar"], "uar_files": accuracy["files"]["uar"],
                         "agreement": accuracy["agreement"], "delta_uar_se": accuracy.get("delta_uar_se")}
    return {"part": part, "model": _shown(model), "test_speaker": run["test_speakers"][0],
            "devel_speaker": run["devel_speakers"][0], "seed": run["seed"], "commit": _commit(),
            "reference": reference["chunks"]["uar"], "reference_files": reference["files"]["uar"], "rows": rows,
            "command": f"python reports/benchmarks/compress_fsdd.py --part {part}"}


def loso_markdown(part: str, entries: dict, baseline: dict | None = None) -> list[str]:
    """Per test speaker, both seeds' float UAR and each variant's ΔUAR (± its standard error) and agreement;
    then the mean over the folds with the standard error of that mean, and where ``baseline`` (another part's
    entries on the same models) is given, slim-int8's change against it, paired per model."""
    if not entries:
        return []
    variants = list(next(iter(entries.values()))["rows"])
    by_fold: dict[str, dict[int, dict]] = {}
    for entry in entries.values():
        by_fold.setdefault(entry["test_speaker"], {})[entry["seed"]] = entry
    options = " ".join(LOSO_COMPRESS + LOSO_PARTS[part].options).replace(str(SPEECH_COMMANDS), _shown(SPEECH_COMMANDS))
    lines = [f"## {LOSO_PARTS[part].title}", "",
             f"Command: `{next(iter(entries.values()))['command']}` (`dslite-tiny cv --data configs/data/fsdd.yaml "
             f"{' '.join(LOSO_CV)}`, then `dslite-tiny compress MODEL {options}`). ΔUAR per chunk in "
             "points against each run's float model (± its standard error, a paired bootstrap over the test "
             "files); agreement: the share of chunks predicted as the float model predicts them.", "",
             "| test speaker (devel) | float UAR | " + " | ".join(f"{v} ΔUAR | {v} agreement" for v in variants) + " |",
             "|---|---|" + "---|---|" * len(variants)]
    for speaker, seeds in sorted(by_fold.items()):
        runs = [seeds[s] for s in sorted(seeds)]
        cells = [" / ".join(f"{r['reference']:.3f}" for r in runs)]
        for variant in variants:
            cells.append(" / ".join(_delta_text(r["rows"][variant], r["reference"]) for r in runs))
            cells.append(" / ".join(f"{r['rows'][variant]['agreement'] * 100:.1f} %" for r in runs))
        lines.append(f"| {speaker} ({runs[0]['devel_speaker']}) | " + " | ".join(cells) + " |")
    lines += ["", *[_loso_mean(variant, by_fold) for variant in variants]]
    if baseline:
        lines.append(_loso_change("slim-int8", by_fold, baseline))
    return lines + [""]


def _loso_mean(variant: str, by_fold: dict[str, dict[int, dict]]) -> str:
    """The mean ΔUAR and agreement over folds (each fold the mean of its seeds) ± the standard error of the
    mean over folds, and each seed's mean."""
    def delta(entry: dict) -> float:
        return 100 * (entry["rows"][variant]["uar"] - entry["reference"])

    folds = [np.mean([delta(e) for e in seeds.values()]) for seeds in by_fold.values()]
    agreement = [np.mean([100 * e["rows"][variant]["agreement"] for e in seeds.values()]) for seeds in by_fold.values()]
    error = np.std(folds, ddof=1) / np.sqrt(len(folds)) if len(folds) > 1 else float("nan")
    seeds = sorted({seed for runs in by_fold.values() for seed in runs})
    per_seed = " / ".join(f"{np.mean([delta(runs[s]) for runs in by_fold.values() if s in runs]):+.1f}" for s in seeds)
    return (f"{variant}: mean ΔUAR over {len(folds)} folds {np.mean(folds):+.2f} ± {error:.2f} points (standard "
            f"error over folds; seeds {per_seed}), agreement {np.mean(agreement):.1f} %.")


def _loso_change(variant: str, by_fold: dict[str, dict[int, dict]], baseline: dict) -> str:
    """``variant``'s UAR and agreement minus the baseline part's on the same model (fold and seed), averaged
    like ``_loso_mean``: a paired comparison, so the folds' and seeds' own spread cancels."""
    before = {(e["test_speaker"], e["seed"]): e["rows"][variant] for e in baseline.values()}
    pairs = [[(e["rows"][variant], before[(speaker, seed)]) for seed, e in seeds.items() if (speaker, seed) in before]
             for speaker, seeds in by_fold.items()]
    pairs = [fold for fold in pairs if fold]
    uar = [np.mean([100 * (now["uar"] - was["uar"]) for now, was in fold]) for fold in pairs]
    agreement = [np.mean([100 * (now["agreement"] - was["agreement"]) for now, was in fold]) for fold in pairs]
    error = np.std(uar, ddof=1) / np.sqrt(len(uar)) if len(uar) > 1 else float("nan")
    runs = [now["uar"] - was["uar"] for fold in pairs for now, was in fold]
    return (f"{variant} against part slim-loso on the same models: UAR {np.mean(uar):+.2f} ± {error:.2f} points "
            f"(higher on {sum(r > 0 for r in runs)} of {len(runs)} runs, lower on {sum(r < 0 for r in runs)}), "
            f"agreement {np.mean(agreement):+.2f} points.")


def _shown(path: Path) -> str:
    """``path`` as the record shows it, no machine path: under the temporary folder as ``$TMPDIR/...``, the
    shared folder beside the repository as ``../shared/...``."""
    temporary = Path(tempfile.gettempdir())
    if path.is_relative_to(temporary):
        return f"$TMPDIR/{path.relative_to(temporary)}"
    return f"../{path.relative_to(ROOT.parent)}" if path.is_relative_to(ROOT.parent / "shared") else str(path)


def _recorded(config: CompressConfig) -> dict:
    """``config`` as the record shows it (its unlabelled-audio folder through ``_shown``)."""
    recorded = to_dict(config)
    if recorded.get("slim_transfer_audio"):
        recorded["slim_transfer_audio"] = _shown(Path(recorded["slim_transfer_audio"]))
    return recorded


def _m4_constants(out: Path) -> dict[str, int]:
    """Per int8 variant with Cortex-M4 figures: the engine's constant bytes (weights, biases, multipliers)."""
    found = {}
    for metrics in sorted(out.glob("*/metrics.json")):
        m4 = json.loads(metrics.read_text()).get("cortex_m4") or {}
        if m4.get("ok"):
            found[metrics.parent.name] = m4["constant_bytes"]
    return found


DEVICE_PARTS = {"dscnn-40x49": "the Cortex-M4",
                "dscnn-40x49-audio": "slim-int8 also learning the float model on Speech Commands audio"}


def device_markdown(part: str, entries: dict) -> list[str]:
    """Per variant and seed: ΔUAR, agreement, and the engine's Cortex-M4 instructions and constants as a
    multiple of int8's."""
    if not entries:
        return []
    names = list(entries)
    lines = [f"## DS-CNN on the 40×49 frontend, two seeds (test theo, devel jackson): {DEVICE_PARTS[part]}", "",
             f"Command: `python reports/benchmarks/compress_fsdd.py --part {part}`. Float Keras UAR per chunk / "
             "per file: " + "; ".join(f"{n} {e['reference']:.3f} / {e['reference_files']:.3f}" for n, e in entries.items())
             + ". ΔUAR in points against each seed's own float model (± its standard error: a paired bootstrap "
             "over the test files); agreement with it per chunk; instructions per "
             "inference (QEMU mps2-an386, `-icount shift=0`) and engine constants, each ÷ int8's (three decimals: "
             "the issue's targets are two-decimal bounds).", "",
             "| variant | " + " | ".join(f"{n} ΔUAR | {n} agree | {n} M4 instr. | {n} constants" for n in names) + " |",
             "|---|" + "---|---|---|---|" * len(names)]
    for variant in [r["variant"] for r in entries[names[0]]["rows"]]:
        cells = []
        for entry in entries.values():
            rows = {r["variant"]: r for r in entry["rows"]}
            row, int8 = rows.get(variant), rows.get("int8")
            if row is None or row["status"] != "ok" or row.get("m4_instructions") in (None, ""):
                cells += ["–"] * 4
                continue
            constants = entry.get("m4_constants", {})
            ratio = (f"{constants[variant] / 1024:.1f} KB ({constants[variant] / constants['int8']:.3f}×)"
                     if variant in constants and "int8" in constants else "–")
            cells += [_delta_text(row, entry['reference']), f"{row['agreement'] * 100:.1f} %",
                      f"{row['m4_instructions'] / 1e6:.2f} M ({row['m4_instructions'] / int8['m4_instructions']:.3f}×)",
                      ratio]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _delta_text(row: dict, reference: float) -> str:
    """ΔUAR in points, ± its paired-bootstrap standard error where the row has one (runs since 2026-12-05)."""
    error = row.get("delta_uar_se")
    return f"{(row['uar'] - reference) * 100:+.1f}" + (f" ± {error * 100:.1f}" if error not in (None, "") else "")


def gzip_floors(out: Path) -> dict[str, float]:
    """Per sparse variant: the smallest gzip size ÷ int8's gzip size any byte coder could give its file,
    i.e. its gzip size with the large int8 weight tensors' deflate bytes replaced by their entropy
    (order 0, over all those weights). Shows how far pruning at this sparsity can shrink the download."""
    import gzip
    import zlib

    from ai_edge_litert.interpreter import Interpreter

    def sizes(path: Path) -> tuple[int, int, float]:
        interpreter = Interpreter(model_path=str(path))
        weights = []
        for detail in interpreter.get_tensor_details():
            try:
                value = interpreter.get_tensor(detail["index"])
            except ValueError:  # activations hold no data before invoke
                continue
            if value.dtype == np.int8 and value.size >= 1024:
                weights.append(value.ravel())
        values = np.concatenate(weights)
        p = np.unique(values, return_counts=True)[1] / values.size
        return (len(gzip.compress(path.read_bytes(), 9)), len(zlib.compress(values.tobytes(), 9)),
                float(-(p * np.log2(p)).sum() * values.size / 8))

    int8 = sizes(out / "int8" / "model.tflite")[0]
    floors = {}
    for variant in ("pruned-int8", "pqat-int8", "clustered-int8"):
        path = out / variant / "model.tflite"
        if path.is_file():
            total, deflated, entropy = sizes(path)
            floors[variant] = round((total - deflated + entropy) / int8, 3)
    return floors


def _before(previous: dict | None, entry: dict) -> dict:
    """``{"before": ...}``: the baseline a recipe change is measured against. The first run whose code
    (commit) or compression config differs from the previous run of this model keeps that run's rows as
    the baseline; later runs keep the baseline they found, so "before" stays the recipe before the work."""
    if previous is None:
        return {}
    if "before" in previous:
        return {"before": previous["before"]}
    if previous["config"] != entry["config"] or previous.get("commit") != entry["commit"]:
        return {"before": {"config": previous["config"], "commit": previous.get("commit"), "rows": previous["rows"]}}
    return {}


def _commit() -> str | None:
    """The commit of the code that ran (None outside a git checkout)."""
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return found.stdout.strip() or None if found.returncode == 0 else None


def markdown(results: dict) -> str:
    lines = ["# Compressed variants, measured by `dslite-tiny compress` (2 CPU cores, LiteRT, TFLite Micro)", ""]
    lines += ptq_markdown({name: e for name, e in results["models"].items() if e["part"] == "ptq"})
    for part, title in SEED_PARTS.items():
        lines += seeds_markdown(part, title, {name: e for name, e in results["models"].items() if e["part"] == part})
    for part in DEVICE_PARTS:
        lines += device_markdown(part, {name: e for name, e in results["models"].items() if e["part"] == part})
    loso = {part: {name: e for name, e in results["models"].items() if e["part"] == part} for part in LOSO_PARTS}
    lines += loso_markdown("slim-loso", loso["slim-loso"])
    lines += loso_markdown("slim-loso-audio", loso["slim-loso-audio"], baseline=loso["slim-loso"])
    for name, entry in results["models"].items():
        if entry["part"] in ("ptq", *DEVICE_PARTS, *LOSO_PARTS, *SEED_PARTS):
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


def seeds_markdown(part: str, title: str, entries: dict) -> list[str]:
    """One row per variant, one column group per seed: ΔUAR (chunks / files), agreement and gzip ÷ int8
    gzip, each as "before → after" where the model has a run of an earlier recipe."""
    if not entries:
        return []
    names = list(entries)
    lines = [f"## {title}, two seeds (test theo, devel jackson), default preset plus clustered-int8", "",
             f"Command: `python reports/benchmarks/compress_fsdd.py --part {part}`. Float Keras UAR per chunk / per "
             "file: " + "; ".join(f"{n} {e['reference']:.3f} / {e['reference_files']:.3f}" for n, e in entries.items())
             + ". ΔUAR in points against each seed's own float model; agreement: share of chunks predicted as it "
             "predicts them; gzip: the variant's gzip size ÷ int8's.", ""]
    first = next((e for e in entries.values() if "before" in e), None)
    if first is not None:
        changed = sorted(k for k, v in first["config"].items()
                         if k != "variants" and first["before"]["config"].get(k) != v)
        code = (f"code {first['before'].get('commit') or '(commit not recorded)'} → {first.get('commit')}"
                + ("; config: " + ", ".join(f"{k} {first['before']['config'].get(k)} → {first['config'][k]}"
                                            for k in changed) if changed else ""))
        lines += [f"\"before → after\": the same models compressed by the earlier recipe ({code}).", ""]
    floors = [f"{variant} {' / '.join(str(e['gzip_floor'][variant]) for e in entries.values())}"
              for variant in entries[names[0]].get("gzip_floor", {}) if all(variant in e.get("gzip_floor", {})
                                                                            for e in entries.values())]
    if floors:
        lines += ["Gzip floor (gzip ÷ int8 gzip if the large int8 weight tensors were entropy-coded, the best any "
                  "byte coder can do on them; the rest of the flatbuffer — scales, biases, names, graph — as gzip "
                  "compresses it), per seed: " + "; ".join(floors) + ".", ""]
    lines += ["| variant | " + " | ".join(f"{n} ΔUAR | {n} agree | {n} gzip" for n in names) + " |",
              "|---|" + "---|---|---|" * len(names)]
    for variant in [r["variant"] for r in entries[names[0]]["rows"]]:
        cells = []
        for name in names:
            entry = entries[name]
            after = _seed_cells(entry["rows"], variant, entry)
            earlier = {r["variant"] for r in entry["before"]["rows"]} if "before" in entry else set()
            before = _seed_cells(entry["before"]["rows"], variant, entry) if variant in earlier else None
            cells += [a if before is None or b == a else f"{b} → {a}" for a, b in zip(after, before or after)]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _seed_cells(rows: list[dict], variant: str, entry: dict) -> list[str]:
    """ΔUAR (chunks / files), agreement and gzip ÷ int8 of one variant in one run's rows."""
    by_name = {r["variant"]: r for r in rows if r["status"] == "ok"}
    r = by_name.get(variant)
    if r is None:
        return ["failed", "–", "–"]
    chunks, files = r["uar"] - entry["reference"], r["uar_files"] - entry["reference_files"]
    gzip = f"{r['gzip_bytes'] / by_name['int8']['gzip_bytes']:.2f}" if "int8" in by_name else "–"
    return [f"{chunks * 100:+.1f} / {files * 100:+.1f}", f"{r['agreement'] * 100:.1f} %", gzip]


if __name__ == "__main__":
    main()
