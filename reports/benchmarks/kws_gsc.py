"""Speech Commands v0.02 end to end: the field's keyword-spotting task (12 classes: ten words, ``_unknown_``,
``_silence_``; MLPerf Tiny's KWS task) on the shared folder's test files (4890 clips, 239 speakers), measured
the product's own way through its command line.

Parts, each per preset of ``PRESETS`` (a training preset and its frontend):

* ``cv``: ``dslite-tiny cv`` with 5 speaker folds × seeds 0 and 1 (the ``_silence_`` clips, which have no
  speaker, are dealt to the folds file by file: ``configs/data/speech_commands.yaml``): top-1 accuracy and UAR
  per file, mean ± std over folds, and each run's training time;
* ``compress``: ``dslite-tiny compress`` (every default variant) of fold 1's two models, each on its own
  split: ΔUAR against the float model, agreement with it, and the engine's Cortex-M4 figures;
* ``ensemble``: per fold, two pairs of models made one by ``dslite-tiny ensemble`` (seeds 0 + 1, the cv
  part's, and seeds 2 + 3, from a cv of their own run here) and scored by ``dslite-tiny evaluate``; the
  ``compress`` and ``m4`` parts take them as preset ``<preset>-pair`` (its seeds 0 and 1 being the pairs);
* ``recipe``: ``pruned-int8`` and ``slim-int8`` of the same models with the fine-tuning defaults of before
  commit eaa1fa1 (no device figures): the "before" beside the compress part's "after";
* ``m4``: fold 1's seed-0 int8 model on QEMU's Cortex-M4 (mps2-an386, ``-icount shift=0``) with the
  generated engine and with TFLite Micro + CMSIS-NN (the trees of ``tflm_m4.py``, local verification only:
  CI has none), bit-exactness against the tflite-micro wheel, instructions, code and arena.

The C frontends' Cortex-M4 cost per second of audio is ``frontend_m4.py``'s (its rows for the ``kws-``
frontends are repeated here).

Caveat (the dataset's README): these are the test speakers of the full Speech Commands set. A model trained
on them has seen under 5 % of the clips the field's published models trained on, and its accuracy is not a "Speech
Commands test accuracy".

    python reports/benchmarks/kws_gsc.py --part cv --preset mcu-dscnn [--out DIR] [--minutes M] [--ray local]
    python reports/benchmarks/kws_gsc.py --part compress --preset mcu-dscnn [--out DIR]
    python reports/benchmarks/kws_gsc.py --part ensemble --preset mcu-dscnn-wide-10ms [--out DIR] [--ray local]
    python reports/benchmarks/kws_gsc.py --part compress --preset mcu-dscnn-wide-10ms-pair [--out DIR]
    python reports/benchmarks/kws_gsc.py --part recipe --preset mcu-dscnn-wide [--out DIR]
    python reports/benchmarks/kws_gsc.py --part m4 --preset mlperf-dscnn --tflm-checkout DIR --flatbuffers DIR \\
        --gemmlowp DIR --ruy DIR --cmsis-nn DIR [--out DIR]

Results go to ``kws_gsc.json`` (per part and preset, written as each finishes) and ``kws_gsc.md``. The cv,
ensemble and compress output folders resume, so a rerun only redoes what is missing.
"""
from __future__ import annotations

import argparse
import csv
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from compress_fsdd import _shown  # noqa: E402

DATA = ROOT / "configs" / "data" / "speech_commands.yaml"
FOLDS, SEEDS = 5, (0, 1)
PAIRS = ((0, 1), (2, 3))  # the ensemble part's pairs of seeds, its "seeds" 0 and 1
# preset name in this benchmark → (training preset, --set overrides)
PRESETS = {
    "mcu-dscnn": ("mcu-dscnn", ["frontend=kws-40x49"]),
    "mcu-dscnn-wide": ("mcu-dscnn-wide", ["frontend=kws-40x49"]),
    # the same with the learning rate decayed (cosine to 1 % after a one-epoch warm-up) instead of constant
    "mcu-dscnn-wide-cosine": ("mcu-dscnn-wide", ["frontend=kws-40x49", "lr_schedule=cosine", "warmup_epochs=1"]),
    # three times mcu-dscnn's filters instead of two (192 per layer): is width what the wide preset lacks?
    "mcu-dscnn-xwide": ("mcu-dscnn-wide", ["frontend=kws-40x49", "alpha=3.0"]),
    # the same on frames every 10 ms instead of 20: frontend preset kws-40x98 (the same config, tested; named
    # after these runs, whose records keep the overrides they were trained with)
    "mcu-dscnn-wide-10ms": ("mcu-dscnn-wide", ["frontend=kws-40x49", "frontend.hop_s=0.01",
                                               "frontend.image_width=98"]),
    "mlperf-dscnn": ("mlperf-dscnn", []),
    # the ImageNet MobileNet v1 α = 0.25 on its 96×96×3 colour plots of 64 mel bands, at 16 kHz up to 8 kHz
    "mcu-mobilenet": ("mcu-mobilenet", ["frontend.sr=16000", "frontend.fmax=8000"]),
}
KB = 1024
# the compress settings a compress entry records; entries without them predate commit eaa1fa1, whose defaults
# differed in these (pruning 8 epochs without augmentation, slimming 12 ranked by BatchNorm scale, no weight
# average); entries without slim_criterion predate its Taylor default and ranked by BatchNorm scale
RECIPE_FIELDS = ("prune_epochs", "prune_augment", "slim_epochs", "slim_criterion", "average_decay")
OLD_RECIPE = {"prune_epochs": 8, "prune_augment": False, "slim_epochs": 12, "slim_criterion": "batchnorm",
              "average_decay": 0.0}


def run_cv(preset: str, out: Path, minutes: float | None = None, ray: str | None = None, *,
           seeds: tuple[int, ...] = SEEDS, folder: str | None = None) -> dict:
    """``dslite-tiny cv`` for ``preset`` and ``seeds`` into ``OUT/<folder>`` (``cv-<preset>``; resuming what
    is done; on Ray with ``ray``) and its summary; with ``minutes``, stopped after that long with the runs
    finished so far (``cv.json`` is rewritten after each run; a rerun resumes)."""
    config, sets = PRESETS[preset]
    folder = folder or f"cv-{preset}"
    command = ["dslite-tiny", "cv", "--data", str(DATA), "--config", config,
               *[arg for value in sets for arg in ("--set", value)], "--folds", str(FOLDS),
               "--seeds", ",".join(map(str, seeds)), "--out", str(out / folder),
               *(["--ray", ray] if ray else [])]
    record = out / folder / "cv.json"
    runs_before = json.loads(record.read_text())["runs_done"] if record.is_file() else 0
    started = time.monotonic()
    _run_for(command, minutes)
    summary = json.loads(record.read_text())
    return {"command": " ".join(_shown_args(command)), "complete": summary["complete"],
            "runs_done": summary["runs_done"], "mean": summary["mean"], "per_seed": summary["per_seed"],
            "per_fold": summary["per_fold"], "run_seconds": summary.get("run_seconds"),
            "invocation_seconds": round(time.monotonic() - started, 1),
            "invocation_runs": summary["runs_done"] - runs_before, "backbone": summary["train"]["backbone"],
            "frontend": _frontend_name(summary["train"])}


def _invocation_runs(entry: dict) -> str:
    """Which runs the recorded wall time covers: a resumed cv's last invocation ran only those still missing."""
    runs = entry["invocation_runs"]
    return f"the {runs} runs" if runs == entry["runs_done"] else f"the last {runs} runs (the others ran before)"


def _run_for(command: list[str], minutes: float | None) -> None:
    """``command`` to its end, or interrupted (as Ctrl-C would, so a Ray cluster shuts down) after
    ``minutes``. A shell starts a background job with SIGINT ignored, and a child inherits that: this
    process handles SIGINT first, so the child starts with the default and the interrupt reaches it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with subprocess.Popen(command) as process:
        try:
            code = process.wait(timeout=None if minutes is None else minutes * 60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            process.wait()
            print(f"stopped after {minutes:g} min; the runs finished so far are recorded", flush=True)
            return
    if code:
        sys.exit(f"{' '.join(command[:3])} failed (exit {code})")


def _frontend_name(train: dict) -> str:
    """The training config's frontend preset, with the keys it overrides (``frontend_set``)."""
    overrides = ", ".join(f"{key} {value}" for key, value in sorted(train.get("frontend_set", {}).items()))
    return Path(str(train["frontend"])).stem + (f" ({overrides})" if overrides else "")


def run_compress(preset: str, out: Path) -> dict:
    """``dslite-tiny compress`` of fold 1's models (both seeds) and their summary rows."""
    return {"command": f"dslite-tiny compress {_shown(out)}/cv-{preset}/fold1-s<seed>/model.h5 --out ...",
            "recipe": _recipe(), "seeds": _compress_fold1(preset, out, "compress", [])}


def run_ensemble(preset: str, out: Path, minutes: float | None = None, ray: str | None = None) -> dict:
    """``preset``'s models averaged in pairs by ``dslite-tiny ensemble``, per fold seeds 0 + 1 (the cv part's
    runs) and seeds 2 + 3 (a cv of their own, run here and resumed), each pair scored by ``dslite-tiny
    evaluate`` on the fold's test speakers. The pairs land where the compress and m4 parts look for a
    preset's models: ``OUT/cv-<preset>-pair/<fold>-s<k>``, pair k made of seeds ``PAIRS[k]``."""
    from dslite_tiny.train.cv import _mean_std

    more = run_cv(preset, out, minutes, ray, seeds=PAIRS[1], folder=_cv_folder(preset, PAIRS[1][0]))
    if not more["complete"]:
        sys.exit(f"the cv of seeds {PAIRS[1]} stopped before its end; run this part again to resume it")
    per_fold = {}
    for fold in (f"fold{k}" for k in range(1, FOLDS + 1)):
        pairs = [_pair(out, preset, fold, k) for k in range(len(PAIRS))]
        per_fold[fold] = {"pairs": pairs, **{key: float(np.mean([pair[key] for pair in pairs]))
                                             for key in ("accuracy", "uar")},
                          "members": float(np.mean([m for pair in pairs for m in pair["members"]]))}
        print(f"{fold}: pairs {[round(pair['accuracy'], 4) for pair in pairs]}", flush=True)
    # mean ± sample std over folds (each fold the mean of its two pairs), as the cv summary computes its rows
    return {"commands": [f"dslite-tiny ensemble {_shown(out)}/cv-{preset}[-seeds23]/<fold>-s<a>/model.h5 "
                         f"...<fold>-s<b>/model.h5 --out {_shown(out)}/cv-{preset}-pair/<fold>-s<k>",
                         f"dslite-tiny evaluate {_shown(out)}/cv-{preset}-pair/<fold>-s<k>/model.h5"],
            "pairs": [list(seeds) for seeds in PAIRS], "cv_seeds23": more, "per_fold": per_fold,
            **{key: _mean_std([v[key] for v in per_fold.values()]) for key in ("accuracy", "uar", "members")},
            "per_pair": {str(k): float(np.mean([v["pairs"][k]["accuracy"] for v in per_fold.values()]))
                         for k in range(len(PAIRS))}}


def _cv_folder(preset: str, seed: int) -> str:
    """Where ``seed``'s cv runs are: the cv part's folder for ``SEEDS``, the ensemble part's for the others."""
    return f"cv-{preset}" if seed in SEEDS else f"cv-{preset}-seeds{''.join(map(str, PAIRS[1]))}"


def _pair(out: Path, preset: str, fold: str, k: int) -> dict:
    """Pair ``k`` of ``fold``: built by ``dslite-tiny ensemble`` and scored by ``dslite-tiny evaluate``
    unless already done; its top-1 and UAR per file and its members' top-1 per file."""
    members = [out / _cv_folder(preset, seed) / f"{fold}-s{seed}" for seed in PAIRS[k]]
    if missing := [m for m in members if not (m / "result.json").is_file()]:
        sys.exit(f"{missing[0]}: missing; run --part cv --preset {preset} first")
    target = out / f"cv-{preset}-pair" / f"{fold}-s{k}"
    if not (target / "model.h5").is_file():
        subprocess.run(["dslite-tiny", "ensemble", *[str(m / "model.h5") for m in members], "--out", str(target)],
                       check=True)
    report = target / "evaluation_test.json"
    if not report.is_file():
        subprocess.run(["dslite-tiny", "evaluate", str(target / "model.h5"), "--out", str(report)], check=True,
                       stdout=subprocess.DEVNULL)
    files = json.loads(report.read_text())["files"]
    return {"seeds": list(PAIRS[k]), "accuracy": files["accuracy"], "uar": files["uar"],
            "members": [json.loads((m / "result.json").read_text())["file_accuracy"] for m in members]}


def run_recipe(preset: str, out: Path) -> dict:
    """pruned-int8 and slim-int8 of fold 1's models (both seeds) with the fine-tuning defaults before commit
    eaa1fa1 (``OLD_RECIPE``), without device measurements: the before of the compress part's after."""
    sets = [f"{key}={str(value).lower()}" for key, value in OLD_RECIPE.items()]
    sets += ["cortex_m4=false", "tflm=false", "layer_error_chunks=0", "latency_runs=1"]
    options = ["--only", "pruned-int8,slim-int8", *[arg for value in sets for arg in ("--set", value)]]
    return {"recipe": OLD_RECIPE, "sets": sets, "seeds": _compress_fold1(preset, out, "recipe", options)}


def _compress_fold1(preset: str, out: Path, part: str, options: list[str]) -> dict:
    """``dslite-tiny compress`` of fold 1's model of each seed into ``OUT/<part>-<preset>-s<seed>`` (which
    resumes), and per seed the float model's UAR and accuracy and the summary rows."""
    per_seed = {}
    for seed in SEEDS:
        model = out / f"cv-{preset}" / f"fold1-s{seed}" / "model.h5"
        if not model.is_file():
            sys.exit(f"{model}: missing; run --part cv --preset {preset} first")
        target = out / f"{part}-{preset}-s{seed}"
        subprocess.run(["dslite-tiny", "compress", str(model), "--out", str(target), *options], check=True)
        with open(target / "summary.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        reference = json.loads((target / "reference.json").read_text())["accuracy"]["chunks"]
        per_seed[str(seed)] = {"float_uar": reference["uar"], "float_accuracy": reference["accuracy"], "rows": rows}
    return per_seed


def _recipe() -> dict:
    """The default config's fine-tuning settings, which changed between runs of this part."""
    from dslite_tiny.config import CompressConfig, load_config, to_dict

    config = to_dict(load_config(CompressConfig, "default", stage="compress"))
    return {key: config[key] for key in RECIPE_FIELDS}


def run_m4(preset: str, out: Path, args) -> dict:
    """Fold 1's seed-0 int8 model: the engine and TFLite Micro + CMSIS-NN on the Cortex-M4, both against
    the tflite-micro wheel."""
    from dslite_tiny.engine.codegen import generate
    from dslite_tiny.export.variant import load_variant, with_tflm_check
    from firmware_host.qemu import engine_flash, engine_on_cortex_m4
    from tflm_m4 import assemble_tree, measure, wheel_outputs

    variant = with_tflm_check(load_variant(out / f"compress-{preset}-s0" / "int8"))
    inputs = np.random.default_rng(0).integers(-128, 128, (args.inputs, int(np.prod(
        variant.description["input"]["shape"])))).astype(np.int8)
    expected = wheel_outputs(variant, inputs)
    engine = generate(variant.data, variant.path, name="model", provenance=["kws_gsc benchmark"])
    cache = Path(tempfile.gettempdir(), "dslite-tiny-qemu")
    got, instructions, _ = engine_on_cortex_m4(engine, "model", inputs, cache_dir=cache)
    flash = engine_flash(engine, "model", cache_dir=cache)
    tree = assemble_tree(args.work / "tflm-cmsis", checkout=args.tflm_checkout, flatbuffers=args.flatbuffers,
                         gemmlowp=args.gemmlowp, ruy=args.ruy, cmsis_nn=args.cmsis_nn)
    tflm = measure("tflm + CMSIS-NN", tree, variant, inputs, expected)
    return {"model": f"{_shown(out)}/compress-{preset}-s0/int8", "inputs": int(len(inputs)),
            "engine": {"bit_exact": bool((got == expected).all()), "instructions_median": int(np.median(instructions)),
                       "flash_bytes": int(sum(flash.values())), **{k: int(v) for k, v in flash.items()},
                       "arena_bytes": engine.arena_bytes, "io_bytes": engine.input_bytes + engine.output_bytes},
            "tflm_cmsis": tflm}


def _shown_args(command: list[str]) -> list[str]:
    return [_shown(Path(a)) if a.startswith(tempfile.gettempdir()) else
            str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a for a in command]


def markdown(results: dict) -> str:
    lines = ["# Speech Commands v0.02 (test files): keyword spotting end to end", "",
             "Command: see the docstring of `reports/benchmarks/kws_gsc.py`. 12 classes, 4890 one-second clips, 239 "
             "speakers (the 408 `_silence_` clips have none and are dealt to folds file by file). **Caveat:** these "
             "are the test speakers of the full dataset; a model trained here saw under 5 % of the clips the "
             "field's published models trained on, and its accuracy is not a \"Speech Commands test accuracy\".", ""]
    lines += _cv_lines(results.get("cv", {})) + _compress_lines(results.get("compress", {}))
    lines += _recipe_lines(results.get("recipe", {}), results.get("compress", {}))
    lines += _ensemble_lines(results.get("ensemble", {}), results.get("m4", {}))
    lines += _m4_lines(results.get("m4", {})) + _frontend_lines()
    return "\n".join(lines) + "\n"


def _ensemble_lines(entries: dict, m4: dict) -> list[str]:
    if not entries:
        return []
    pairs = " and ".join(" + ".join(map(str, seeds)) for seeds in PAIRS)
    lines = [f"## Two models as one (`dslite-tiny ensemble`; each fold's seeds {pairs})", "",
             "Each pair is one flat model whose output is the mean of its two members' class probabilities "
             "(`OUT/cv-<preset>-pair/<fold>-s<k>`), scored by `dslite-tiny evaluate` on the fold's test speakers; "
             "mean ± sample std over the five folds (each fold the mean of its two pairs). The compress and m4 "
             "parts take it as preset `<preset>-pair`, its seeds 0 and 1 being these pairs.", "",
             "| preset | one model, top-1 (four seeds) | the pairs, top-1 | the pairs, UAR | pair 0 / pair 1, top-1 | "
             "per fold (mean of the pairs) | M4 instructions, the pair on the engine |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name, e in entries.items():
        folds = " ".join(f"{v['accuracy']:.3f}" for v in e["per_fold"].values())
        by_pair = " / ".join(f"{value:.3f}" for value in e["per_pair"].values())
        engine = m4.get(f"{name}-pair", {}).get("engine")
        cost = f"{engine['instructions_median'] / 1e6:.2f} M" if engine else "–"
        lines.append(f"| {name} | {_spread(e['members'])} | **{_spread(e['accuracy'])}** | {_spread(e['uar'])} | "
                     f"{by_pair} | {folds} | {cost} |")
    return lines + [""]


def _cv_lines(entries: dict) -> list[str]:
    if not entries:
        return []
    lines = ["## Speaker cross-validation (5 folds × seeds 0, 1)", "",
             "Per file (each clip is one 1 s chunk, so per chunk is the same); mean ± sample std over the five "
             "folds (each fold's value the mean of its two seeds), then the mean over folds of each seed.", "",
             "| preset | frontend | runs | top-1 per file | UAR per file | top-1, seed 0 / seed 1 | training time |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, e in entries.items():
        accuracy, uar = e["mean"]["file_accuracy"], e["mean"]["file_uar"]
        seeds = " / ".join(f"{e['per_seed'][str(s)]['file_accuracy']:.3f}" for s in SEEDS if str(s) in e["per_seed"])
        timed = e.get("run_seconds") or {}
        cost = f"{timed['total'] / 60:.0f} min ({timed['runs']} runs)" if timed.get("runs") else "not recorded"
        if "--ray" in e["command"]:  # runs side by side: the wall is what the user waits for
            cost += f"; {e['invocation_seconds'] / 60:.0f} min wall on Ray for {_invocation_runs(e)}, a run per core"
        lines.append(f"| {name} | {e['frontend']} | {e['runs_done']} of {FOLDS * len(SEEDS)} | "
                     f"{_spread(accuracy)} | {_spread(uar)} | {seeds} | {cost} |")
    lines += ["", "Training time: each run's training and evaluation on this machine (2 cores, no GPU), summed; runs "
              "of a cv older than that record show none."]
    if any(not e["complete"] for e in entries.values()):
        lines += ["A row with fewer runs is a cross-validation stopped early (`--minutes`): its figures cover the "
                  "runs done, and a seed's mean the folds it finished."]
        lines += [_same_folds(name, e, entries) for name, e in entries.items() if not e["complete"]]
    return lines + [""]


def _spread(metric: dict) -> str:
    """Mean ± std over folds; a single fold has no spread to show."""
    return f"{metric['mean']:.3f} ± {metric['std']:.3f}" if metric["n"] > 1 else f"{metric['mean']:.3f} (one fold)"


def _same_folds(name: str, entry: dict, entries: dict) -> str:
    """An incomplete row beside the best complete preset on the folds it finished (folds differ by up to
    three points, so its mean is comparable only there)."""
    folds = sorted(entry["per_fold"])
    complete = {n: e for n, e in entries.items() if e["complete"]}
    if not complete:
        return ""
    best = max(complete, key=lambda n: complete[n]["mean"]["file_accuracy"]["mean"])

    def on_folds(e: dict) -> float:
        return float(np.mean([e["per_fold"][fold]["file_accuracy"] for fold in folds]))
    shown = " and ".join([", ".join(folds[:-1]), folds[-1]] if len(folds) > 1 else folds)
    return (f"On {shown}, {name}'s top-1 per file is {on_folds(entry):.3f}; {best}'s is "
            f"{on_folds(complete[best]):.3f}.")


def _compress_lines(entries: dict) -> list[str]:
    if not entries:
        return []
    lines = ["## Compression of fold 1's models (every default variant, each seed on its own split)", "",
             "ΔUAR: the variant's UAR minus the float Keras model's, on the fold's test speakers (± its standard "
             "error where the run recorded one); agreement: the "
             "share of clips where the variant predicts what the float model predicts. Cortex-M4: the generated "
             "engine on QEMU (instructions per inference, flash in all). Recipe: the default compress config's "
             "fine-tuning when the preset's rows were measured: "
             + "; ".join(f"{name}: {_recipe_text(e.get('recipe', OLD_RECIPE))}" for name, e in entries.items())
             + ".", "",
             "| preset | variant | ΔUAR, seed 0 / 1 (points) | agreement, seed 0 / 1 | M4 instructions | M4 flash |",
             "|---|---|---:|---:|---:|---:|"]
    for name, e in entries.items():
        seeds = [e["seeds"][str(s)] for s in SEEDS if str(s) in e["seeds"]]
        by_seed = [{r["variant"]: r for r in seed["rows"] if r["status"] == "ok"} for seed in seeds]
        for variant in by_seed[0]:
            if not all(variant in rows for rows in by_seed):
                continue
            rows = [rows[variant] for rows in by_seed]
            delta = " / ".join(f"{100 * (float(r['uar']) - seed['float_uar']):+.1f}"
                               + (f" ± {100 * float(r['delta_uar_se']):.1f}" if r.get("delta_uar_se") else "")
                               for r, seed in zip(rows, seeds))
            agree = " / ".join(f"{100 * float(r['agreement']):.1f} %" for r in rows)
            m4, flash = rows[0]["m4_instructions"], rows[0]["m4_flash_bytes"]
            instructions = f"{float(m4) / 1e6:.2f} M" if m4 else "–"
            lines.append(f"| {name} | {variant} | {delta} | {agree} | {instructions} | "
                         f"{f'{float(flash) / KB:.1f} KB' if flash else '–'} |")
    return lines + [""]


def _recipe_lines(entries: dict, compressed: dict) -> list[str]:
    """pruned-int8 and slim-int8 before (the recipe part) and after (the compress part) the recipe change."""
    if not entries:
        return []
    lines = ["## The fine-tuning recipe: before and after (fold 1, seeds 0 / 1)", "",
             "Before: `--part recipe`, the same models compressed with the fine-tuning defaults of before commit "
             "eaa1fa1 (" + _recipe_text(OLD_RECIPE) + "); after: the compress part's rows.", "",
             "| preset | variant | recipe | UAR, seed 0 / 1 | ΔUAR (points) | agreement, seed 0 / 1 |",
             "|---|---|---|---:|---:|---:|"]
    for name, e in entries.items():
        for variant in ("pruned-int8", "slim-int8"):
            for label, entry in (("before", e), ("after", compressed.get(name))):
                if not entry or "recipe" not in entry:
                    continue
                seeds = [entry["seeds"][str(s)] for s in SEEDS]
                rows = [next(r for r in seed["rows"] if r["variant"] == variant) for seed in seeds]
                lines.append(f"| {name} | {variant} | {label}: {_recipe_text(entry['recipe'])} | "
                             + " / ".join(f"{float(r['uar']):.3f}" for r in rows) + " | "
                             + " / ".join(f"{100 * (float(r['uar']) - seed['float_uar']):+.1f}"
                                          for r, seed in zip(rows, seeds)) + " | "
                             + " / ".join(f"{100 * float(r['agreement']):.1f} %" for r in rows) + " |")
    return lines + [""]


def _recipe_text(recipe: dict) -> str:
    augmented = " on the training augmentation" if recipe["prune_augment"] else ""
    average = f"weight average {recipe['average_decay']}" if recipe["average_decay"] else "no weight average"
    criterion = recipe.get("slim_criterion", "batchnorm")
    ranking = {"batchnorm": "BatchNorm scale", "taylor": "Taylor estimate", "l2": "L2 norm"}[criterion]
    return (f"pruning {recipe['prune_epochs']} epochs{augmented}, slimming {recipe['slim_epochs']} "
            f"(ranked by {ranking}), {average}")


def _m4_lines(entries: dict) -> list[str]:
    if not entries:
        return []
    lines = ["## The int8 model on the Cortex-M4: the generated engine against TFLite Micro + CMSIS-NN", "",
             "QEMU mps2-an386, `-icount shift=0`; outputs compared with the tflite-micro wheel's on random int8 "
             "inputs. TFLite Micro: tflite-micro 90b983c with CMSIS-NN 4ab83cc (the trees of `tflm_m4.py`).", "",
             "| preset | runtime | bit-exact | instructions per inference | code / flash | RAM |",
             "|---|---|---:|---:|---:|---:|"]
    for name, e in entries.items():
        engine, tflm = e["engine"], e["tflm_cmsis"]
        ratio = engine["instructions_median"] / tflm["instructions_median"]
        lines.append(f"| {name} | engine | {'yes' if engine['bit_exact'] else 'no'} ({e['inputs']} inputs) | "
                     f"{engine['instructions_median'] / 1e6:.2f} M ({ratio:.2f}×) | "
                     f"{engine['flash_bytes'] / KB:.1f} KB in all | "
                     f"{(engine['arena_bytes'] + engine['io_bytes']) / KB:.1f} KB (arena + I/O) |")
        lines.append(f"| {name} | TFLM + CMSIS-NN | {'yes' if tflm['bit_exact'] else 'no'} ({tflm['inputs']} inputs) | "
                     f"{tflm['instructions_median'] / 1e6:.2f} M | {tflm['code_bytes'] / KB:.1f} KB code + the "
                     f"flatbuffer | {tflm['minimum_arena_bytes'] / KB:.1f} KB (smallest arena) |")
    return lines + [""]


def _frontend_lines() -> list[str]:
    path = HERE / "frontend_m4.json"
    rows = [r for r in json.loads(path.read_text())["rows"] if r["frontend"].startswith("kws-")] \
        if path.is_file() else []
    if not rows:
        return []
    lines = ["## The C frontends on the Cortex-M4 (from `frontend_m4.md`)", "",
             "| frontend | instructions per 1 s chunk | per second at one chunk per second / per 0.5 s hop | "
             "int8 equal to Python |", "|---|---:|---:|---:|"]
    for r in rows:
        per_hop = r["instructions_median"] / r["chunk_hop_s"]
        lines.append(f"| {r['frontend']} | {r['instructions_median'] / 1e6:.2f} M | "
                     f"{r['instructions_median'] / r['chunk_s'] / 1e6:.2f} M / {per_hop / 1e6:.2f} M | "
                     f"{100 * r['equal_share']:.2f} % (max difference {r['max_difference']}) |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("cv", "compress", "ensemble", "recipe", "m4"), required=True)
    parser.add_argument("--preset", choices=(*PRESETS, *(f"{name}-pair" for name in PRESETS)), required=True,
                        help="a PRESETS name; NAME-pair: the ensemble part's pairs of NAME (compress and m4)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-kws"))
    for option in ("--tflm-checkout", "--flatbuffers", "--gemmlowp", "--ruy", "--cmsis-nn"):
        parser.add_argument(option, type=Path)
    parser.add_argument("--minutes", type=float, help="cv: stop after this long, keeping the finished runs")
    parser.add_argument("--ray", help="cv: train the runs on Ray (local, auto or an address), one per core")
    parser.add_argument("--inputs", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-tflm-trees"))
    args = parser.parse_args()
    if args.part == "m4" and None in (args.tflm_checkout, args.flatbuffers, args.gemmlowp, args.ruy, args.cmsis_nn):
        parser.error("--part m4 needs the TFLite Micro trees: --tflm-checkout, --flatbuffers, --gemmlowp, --ruy, "
                     "--cmsis-nn (see tflm_m4.py)")
    if args.preset.endswith("-pair") and args.part not in ("compress", "m4"):
        parser.error(f"{args.preset} is made by --part ensemble --preset {args.preset[:-len('-pair')]}; "
                     f"--part {args.part} takes the trained preset")
    if args.part == "cv":
        entry = run_cv(args.preset, args.out, args.minutes, args.ray)
    elif args.part == "compress":
        entry = run_compress(args.preset, args.out)
    elif args.part == "ensemble":
        entry = run_ensemble(args.preset, args.out, args.minutes, args.ray)
    elif args.part == "recipe":
        entry = run_recipe(args.preset, args.out)
    else:
        entry = run_m4(args.preset, args.out, args)
    results_path = HERE / "kws_gsc.json"  # read after the run: another part may have finished meanwhile
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.setdefault(args.part, {})[args.preset] = entry
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "kws_gsc.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
