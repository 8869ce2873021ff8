"""What averaging several models would give on FSDD: the per-file class probabilities of leave-one-speaker-out
models that ``train_fsdd.py`` trained (same folds, each fold's models tested on its own held-out speaker),
averaged per fold, scored as UAR. It measures how much of a recipe's error is the variance of one training
run (an ensemble removes it) and how much is the data (no ensemble removes it), before anyone builds one.

    python reports/benchmarks/ensemble_fsdd.py --ensemble RECIPE:SEED+RECIPE:SEED[+...] [--ensemble ...]
        [--cv-dir $TMPDIR/dslite-tiny-fsdd-cv]

Each ``--ensemble`` becomes a row of ``ensemble_fsdd.md`` (and ``ensemble_fsdd.json``; a row already there is
kept). Member models are read from ``CV_DIR/RECIPE/<fold>-s<SEED>/model.h5``; int8 sizes are the members'
``train_fsdd.json`` figures added up.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from dslite_tiny.cli.options import resolve_data
from dslite_tiny.data.cache import FeatureCache, default_cache_dir
from dslite_tiny.data.layouts import load_dataset
from dslite_tiny.measure.metrics import uar
from dslite_tiny.native import import_tensorflow_quietly

HERE = Path(__file__).resolve().parent
FOLDS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def member_probabilities(model: Path, cache: FeatureCache) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-file probabilities, labels (as class indices) and file names of ``model`` on its own test split."""
    from dslite_tiny.models.trained import load_trained
    from dslite_tiny.train.evaluate import evaluate

    trained = load_trained(model)
    dataset = load_dataset(resolve_data(None, saved=trained.saved_data()), require=("test",))
    report = evaluate(trained, dataset, split="test", cache=cache)
    rows = report["per_file"]
    classes = list(report["classes"])
    return (np.array([r["probabilities"] for r in rows]), np.array([classes.index(r["label"]) for r in rows]),
            [r["file"] for r in rows])


def score_ensemble(members: list[tuple[str, int]], cv_dir: Path, cache: FeatureCache) -> dict:
    """Per fold: every member's per-file UAR and the UAR of their averaged probabilities."""
    per_fold = {}
    for fold in FOLDS:
        outputs = [member_probabilities(cv_dir / recipe / f"{fold}-s{seed}" / "model.h5", cache)
                   for recipe, seed in members]
        labels, files = outputs[0][1], outputs[0][2]
        if any(o[2] != files for o in outputs):
            raise SystemExit(f"fold {fold}: the members were tested on different files")
        classes = outputs[0][0].shape[1]
        per_fold[fold] = {"members": [uar(labels, o[0].argmax(axis=1), classes) for o in outputs],
                          "ensemble": uar(labels, np.mean([o[0] for o in outputs], axis=0).argmax(axis=1), classes)}
        print(f"  {fold}: members {' '.join(f'{u:.3f}' for u in per_fold[fold]['members'])} "
              f"ensemble {per_fold[fold]['ensemble']:.3f}", flush=True)
    ensemble = [v["ensemble"] for v in per_fold.values()]
    members_mean = np.mean([v["members"] for v in per_fold.values()], axis=0)
    return {"members": [f"{r}:{s}" for r, s in members], "per_fold": per_fold,
            "member_means": [float(m) for m in members_mean],
            "ensemble": {"mean": float(np.mean(ensemble)), "std": float(np.std(ensemble))},
            "int8_bytes": int8_bytes(members)}


def int8_bytes(members: list[tuple[str, int]]) -> int | None:
    """The members' int8 model sizes from ``train_fsdd.json``, added up (None if a recipe is not there)."""
    path = HERE / "train_fsdd.json"
    sizes = {r["recipe"]: r["int8"]["model_bytes"] for r in json.loads(path.read_text()).get("recipes", [])} \
        if path.is_file() else {}
    return sum(sizes[r] for r, _ in members) if all(r in sizes for r, _ in members) else None


def markdown(rows: list[dict]) -> str:
    lines = ["# FSDD: what averaging leave-one-speaker-out models gives", "",
             "Command: `python reports/benchmarks/ensemble_fsdd.py --ensemble RECIPE:SEED+RECIPE:SEED[+...]`. Each "
             "member is a model `train_fsdd.py` trained for that fold and seed; the ensemble averages their "
             "per-file class probabilities on the fold's held-out speaker. UAR per file, mean ± std over the "
             "six folds.", "",
             "| members | members' UAR | ensemble UAR | per fold (ensemble) | int8, all members |",
             "|---|---|---|---|---:|"]
    for r in rows:
        folds = " ".join(f"{f[:3]} {v['ensemble']:.2f}" for f, v in r["per_fold"].items())
        size = f"{r['int8_bytes'] / 1024:.0f} KiB" if r["int8_bytes"] else "—"
        lines.append(f"| {' + '.join(r['members'])} | {' / '.join(f'{m:.3f}' for m in r['member_means'])} | "
                     f"**{r['ensemble']['mean']:.3f} ± {r['ensemble']['std']:.3f}** | {folds} | {size} |")
    return "\n".join(lines) + "\n"


def parse_members(spec: str) -> list[tuple[str, int]]:
    members = []
    for member in spec.split("+"):
        recipe, _, seed = member.rpartition(":")
        if not recipe or not seed.isdigit():
            raise SystemExit(f"--ensemble {spec}: each member is RECIPE:SEED, not '{member}'")
        members.append((recipe, int(seed)))
    return members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", action="append", required=True, help="RECIPE:SEED+RECIPE:SEED[+...]")
    parser.add_argument("--cv-dir", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-fsdd-cv"))
    args = parser.parse_args()
    import_tensorflow_quietly()
    path = HERE / "ensemble_fsdd.json"
    rows = json.loads(path.read_text())["ensembles"] if path.is_file() else []
    cache = FeatureCache(default_cache_dir())
    for spec in args.ensemble:
        members = parse_members(spec)
        if any(r["members"] == [f"{m}:{s}" for m, s in members] for r in rows):
            print(f"{spec}: already in {path.name}, skipped")
            continue
        print(spec)
        rows.append(score_ensemble(members, args.cv_dir, cache))
        path.write_text(json.dumps({"ensembles": rows}, indent=2) + "\n")  # incremental
        (HERE / "ensemble_fsdd.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
