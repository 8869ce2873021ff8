"""Speaker cross-validation: one model per fold and seed, each tested on speakers it never heard.

How paralinguistic results are reported: a single held-out speaker says more about that speaker than about
the recipe (on FSDD one split gave 0.73, another 0.83 for the same preset). Leave-one-speaker-out (LOSO)
tests every speaker once; k-fold by speaker groups them. In fold i the test speakers are group i and the
devel speakers (model selection, early stopping) group i + 1, so no fold selects on its own test speakers
and every speaker is devel once; the rest train.

This module owns the folds, one run (``train_fold``: it writes ``OUT/<fold>-s<seed>/result.json`` as it
ends), whether a written run can be reused, and the summary; ``dslite_tiny.flows.cv`` runs the folds, in
this process or on Ray, and writes ``OUT/cv.json`` and the report after every run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dslite_tiny.artifacts import write_json
from dslite_tiny.config import DataConfig, TrainConfig, to_dict
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.data.layouts import Dataset, load_dataset
from dslite_tiny.errors import DataError
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.train.distill import for_fold

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict], None]  # a training epoch's record, with the run's "fold" and "seed"


@dataclasses.dataclass(frozen=True)
class Fold:
    name: str
    test: tuple[str, ...]
    devel: tuple[str, ...]
    train: tuple[str, ...]


def speaker_folds(speakers: Sequence[str], *, folds: int | None = None) -> list[Fold]:
    """LOSO (``folds`` None or the number of speakers), else ``folds`` groups of speakers dealt in sorted
    order; fold i tests group i and selects on group i + 1 (cyclically). Folds are named after their test
    speaker when every fold has one, else ``fold1`` … ``foldK`` (never a mix of both styles)."""
    speakers = sorted(set(speakers))
    count = len(speakers) if folds is None else folds
    if count < 3 or count > len(speakers):
        raise DataError(f"speaker cross-validation needs 3 to {len(speakers)} folds (test, devel and train "
                        f"speakers in each) from {len(speakers)} speaker(s); asked for {count}")
    groups = [tuple(speakers[i::count]) for i in range(count)]
    by_speaker = all(len(group) == 1 for group in groups)
    out = []
    for i, group in enumerate(groups):
        devel = groups[(i + 1) % count]
        train = tuple(s for s in speakers if s not in group and s not in devel)
        out.append(Fold(group[0] if by_speaker else f"fold{i + 1}", group, devel, train))
    return out


def train_fold(*, data: DataConfig, config: TrainConfig, fold: Fold, seed: int, out_dir: Path, fingerprint: str,
               cache: FeatureCache | None = None, progress: Progress = no_progress,
               on_epoch: EpochCallback | None = None) -> dict:
    """One run of a cross-validation (a unit of ``dslite_tiny.flows``): train on the fold's train speakers,
    select on its devel speakers, test on its test speakers; writes ``out_dir/<fold>-s<seed>/`` (model,
    ``epochs.jsonl`` as each epoch ends, so a driver can show a worker's progress, and ``result.json``) and
    returns the result."""
    from dslite_tiny.models.trained import load_trained
    from dslite_tiny.train.evaluate import evaluate
    from dslite_tiny.train.run import run_training

    run_dir = out_dir / run_name(fold, seed)
    fold_data = dataclasses.replace(data, test_speakers=list(fold.test), devel_speakers=list(fold.devel))
    log.info("fold %s seed %d: test %s, devel %s", fold.name, seed, fold.test, fold.devel)
    started = time.monotonic()
    fold_config = dataclasses.replace(config, seed=seed, teacher=for_fold(config.teacher, fold.name))
    tagged = _tagged(on_epoch, fold.name, seed)
    epochs = run_dir / EPOCHS_FILE
    epochs.unlink(missing_ok=True)  # a retried run starts its log again

    def record(epoch: dict) -> None:
        epochs.parent.mkdir(parents=True, exist_ok=True)
        with epochs.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({**epoch, "fold": fold.name, "seed": seed}) + "\n")
        if tagged:
            tagged(epoch)

    trained = run_training(fold_data, fold_config, out_dir=run_dir, cache=cache, progress=progress, on_epoch=record)
    report = evaluate(load_trained(trained.path), load_dataset(fold_data), cache=cache, strict=data.strict)
    result = {**_run_result(fold, seed, trained.best, report, fingerprint),
              "seconds": round(time.monotonic() - started, 1), "worker": worker_name()}
    write_json(run_dir / "result.json", result)
    return result


EPOCHS_FILE = "epochs.jsonl"


def epoch_records(run_dir: Path) -> list[dict]:
    """The epoch records a run has written so far (a line being written is left for later)."""
    try:
        lines = (run_dir / EPOCHS_FILE).read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.endswith("\n")]


def run_name(fold: Fold, seed: int) -> str:
    return f"{fold.name}-s{seed}"


def dataset_speakers(dataset: Dataset) -> list[str]:
    """The speakers to fold; a dataset split another way (no speakers, splits.csv, DSLite prefixes) cannot be."""
    if not dataset.split_method.startswith("speaker"):
        raise DataError(f"speaker cross-validation needs splits by speaker (--speaker-regex, without splits.csv); "
                        f"this dataset is split by {dataset.split_method}", path=dataset.source)
    return sorted({clip.speaker for clip in dataset.clips if clip.speaker})


# Training and data keys added after cv was released join the fingerprint only away from their default, so
# that runs finished by an earlier version are still reused (as the frontend's cache key does with its later keys).
_LATER_TRAIN_KEYS = ("teacher", "teacher_weight", "teacher_temperature")
_LATER_DATA_KEYS = ("speakerless",)
METRICS = ("chunk_uar", "file_uar", "chunk_accuracy", "file_accuracy")  # per run, summarised per fold and seed


def config_fingerprint(data: DataConfig, config: TrainConfig) -> str:
    """What a finished run must have been trained with to be reused (the seed is the run's own)."""
    train = _without_later_defaults(to_dict(config), to_dict(TrainConfig()), _LATER_TRAIN_KEYS)
    settings = {"data": _without_later_defaults(to_dict(data), to_dict(DataConfig()), _LATER_DATA_KEYS),
                "train": {**train, "seed": None}}
    return settings_digest(settings)


def settings_digest(settings: dict) -> str:
    """A short, stable name for the settings a run was made with (what reuse compares)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def worker_name() -> str:
    """Where a run trained (host:pid): on a cluster, which node's log to read."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _without_later_defaults(values: dict, defaults: dict, later: tuple[str, ...]) -> dict:
    return {key: value for key, value in values.items() if not (key in later and value == defaults[key])}


def summarize(runs: list[dict], *, data: DataConfig, config: TrainConfig, folds: Sequence[Fold],
              seeds: Sequence[int]) -> dict:
    """Per fold the mean over seeds; over folds the mean ± sample std (how much the result depends on the
    speaker); per seed the mean over folds (how much it depends on the seed)."""
    by_fold = {}
    for fold in folds:
        mine = [r for r in runs if r["fold"] == fold.name]
        if mine:
            by_fold[fold.name] = {key: float(np.mean([r[key] for r in mine])) for key in METRICS}
    complete = len(runs) == len(folds) * len(seeds)
    return {
        "complete": complete, "runs_done": len(runs), "runs_planned": len(folds) * len(seeds),
        "folds": [dataclasses.asdict(f) for f in folds], "seeds": list(seeds),
        "per_fold": by_fold,
        "mean": {key: _mean_std([f[key] for f in by_fold.values()]) for key in METRICS},
        "per_seed": {str(seed): {key: float(np.mean([r[key] for r in runs if r["seed"] == seed]))
                                 for key in METRICS}
                     for seed in seeds if any(r["seed"] == seed for r in runs)},
        "runs": runs, "data": to_dict(data), "train": to_dict(config),
        # training and evaluation time of the runs that recorded it (runs of earlier versions did not)
        "run_seconds": {"total": float(sum(r.get("seconds", 0.0) for r in runs)),
                        "runs": sum("seconds" in r for r in runs)},
    }


def _mean_std(values: list[float]) -> dict:
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)) if values else 0.0, "std": std, "n": len(values)}


def _tagged(on_epoch: EpochCallback | None, fold: str, seed: int) -> EpochCallback | None:
    """``on_epoch`` with the run's fold and seed added to each record."""
    if on_epoch is None:
        return None
    return lambda record: on_epoch({**record, "fold": fold, "seed": seed})


def _run_result(fold: Fold, seed: int, best: dict, report: dict, fingerprint: str) -> dict:
    return {"fold": fold.name, "seed": seed, "test_speakers": list(fold.test), "devel_speakers": list(fold.devel),
            "chunk_uar": report["chunks"]["uar"], "file_uar": report["files"]["uar"],
            "chunk_accuracy": report["chunks"]["accuracy"], "file_accuracy": report["files"]["accuracy"],
            "best_epoch": best["epoch"], "devel_uar": best["devel_uar"], "fingerprint": fingerprint}


def finished_run(run_dir: Path, fingerprint: str) -> dict | None:
    """The run's result if it was written by the same configs; a different or damaged one is redone."""
    path = run_dir / "result.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("%s: unreadable; training this run again", path)
        return None
    if not isinstance(result, dict) or result.get("fingerprint") != fingerprint:
        log.warning("%s: written by another data or training config; training this run again", path)
        return None
    return result
