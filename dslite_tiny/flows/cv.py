"""Speaker cross-validation as a flow: every fold × seed a unit, run where the runner says, summarised and
reported after every run.

Each run is written as soon as it finishes (``OUT/<fold>-s<seed>/result.json``) and the summary
(``OUT/cv.json``, drawn in ``cv.md`` / ``cv.png``) is rewritten after every run, in plan order whatever the
order the runs end in, so an interrupted cross-validation resumes where it stopped: runs whose result was
written by the same data and training config are not trained again, wherever they ran.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from dslite_tiny.artifacts import folder_lock, write_json
from dslite_tiny.config import DataConfig, TrainConfig
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.data.layouts import Dataset, load_dataset
from dslite_tiny.flows.runner import InProcess, Runner, Unit, cache_for_workers, for_workers
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.train.cv import (EpochCallback, config_fingerprint, dataset_speakers, epoch_records, finished_run,
                                  run_name, speaker_folds, summarize, train_fold)

log = logging.getLogger(__name__)
RunCallback = Callable[[dict], None]


def cross_validate(data: DataConfig, config: TrainConfig, *, out_dir: str | Path, folds: int | None = None,
                   seeds: Sequence[int] = (0,), cache: FeatureCache | None = None, runner: Runner | None = None,
                   progress: Progress = no_progress, on_run: RunCallback | None = None,
                   on_epoch: EpochCallback | None = None) -> dict:
    """Train and test every fold × seed under ``out_dir`` (in this process unless ``runner`` says otherwise);
    returns the summary written to ``cv.json``. ``on_run`` sees every run, reused ones included; ``on_epoch``
    every epoch (of runs elsewhere as their ``epochs.jsonl`` grows); ``progress`` only runs in this process."""
    from dslite_tiny.report.cv import write_cv_report

    out_dir, runner = Path(out_dir), runner or InProcess()
    if data.test_speakers or data.devel_speakers:
        log.info("cross-validation chooses each fold's test and devel speakers; the data config's are unused")
    data = dataclasses.replace(data, test_speakers=[], devel_speakers=[])
    dataset = load_dataset(data)
    plan = speaker_folds(dataset_speakers(dataset), folds=folds)
    fingerprint = config_fingerprint(data, config)
    order = [(fold.name, seed) for fold in plan for seed in seeds]
    local = isinstance(runner, InProcess)
    if not local:
        out_dir, cache = for_workers(out_dir), cache_for_workers(cache)
    train_kwargs = {"data": data, "config": config, "out_dir": out_dir, "fingerprint": fingerprint, "cache": cache,
                    "progress": progress if local else no_progress, "on_epoch": on_epoch if local else None}
    with folder_lock(out_dir):
        done: dict[tuple[str, int], dict] = {}
        units = []
        for fold in plan:
            for seed in seeds:
                result = finished_run(out_dir / run_name(fold, seed), fingerprint)
                if result is not None:
                    done[fold.name, seed] = result
                else:
                    units.append(Unit(run_name(fold, seed), train_fold, {**train_kwargs, "fold": fold, "seed": seed}))
        if units and not local:
            warm_feature_cache(dataset, config, data, cache, progress)
        log.info("cross-validation: %d runs to train (%s), %d reused", len(units), runner.description, len(done))
        summary = summarize([], data=data, config=config, folds=plan, seeds=seeds)

        def record(result: dict) -> None:
            nonlocal summary
            done[result["fold"], result["seed"]] = result
            runs = [done[key] for key in order if key in done]
            summary = summarize(runs, data=data, config=config, folds=plan, seeds=seeds)
            write_json(out_dir / "cv.json", summary)
            write_cv_report(summary, out_dir)
            if on_run:
                on_run(result)

        for result in [done[key] for key in order if key in done]:
            record(result)
        follow = None if local or on_epoch is None else _EpochFollower(out_dir, [u.name for u in units], on_epoch)
        for _unit, result in runner.run(units, on_wait=follow):
            if follow:
                follow()  # the run's last epochs before its result
            record(result)
    return summary


class _EpochFollower:
    """Passes on the epoch records that runs on other processes append to their ``epochs.jsonl``."""

    def __init__(self, out_dir: Path, runs: list[str], on_epoch: EpochCallback) -> None:
        self.out_dir, self.on_epoch = out_dir, on_epoch
        self.seen = dict.fromkeys(runs, 0)

    def __call__(self) -> None:
        for run, seen in self.seen.items():
            records = epoch_records(self.out_dir / run)
            if len(records) < seen:  # a retried run has started its log again
                seen = 0
            self.seen[run] = len(records)
            for record in records[seen:]:
                self.on_epoch(record)


def warm_feature_cache(dataset: Dataset, config: TrainConfig, data: DataConfig, cache: FeatureCache | None,
                       progress: Progress) -> None:
    """Every clip's spectrograms computed once here, before the units start: runs then only read them
    from the shared cache instead of each worker decoding the same files."""
    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.data.features import compute_features
    from dslite_tiny.train.run import resolve_frontend_for

    if cache is None or cache.root is None:
        return
    compute_features(dataset, Frontend(resolve_frontend_for(config)), cache=cache, strict=data.strict,
                     progress=progress)

