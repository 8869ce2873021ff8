"""A sweep as a flow: every trial of a space a unit, run where the runner says, stopped early by ASHA,
summarised after every trial; the best config written as a preset that ``train --config`` reads.

``OUT/trials/<trial>/`` holds each trial's model, ``result.json`` and ``rungs.json``; ``OUT/sweep.json`` the
summary, ``sweep.md`` / ``sweep.png`` the report and ``best.yaml`` the best config so far. A rerun reuses
finished trials (same data, base config, space and values) and trains the others.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dslite_tiny.artifacts import folder_lock, write_atomic, write_json
from dslite_tiny.config import DataConfig, TrainConfig, load_config, to_dict
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.data.layouts import load_dataset
from dslite_tiny.flows.cv import warm_feature_cache
from dslite_tiny.flows.runner import InProcess, Runner, Unit, cache_for_workers, for_workers
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.train.cv import finished_run
from dslite_tiny.train.fit import plan_phases
from dslite_tiny.train.sweep import (Asha, Space, Trial, plan_trials, sweep_fingerprint, train_trial, trial_key,
                                     trial_layer)

log = logging.getLogger(__name__)
TrialCallback = Callable[[dict], None]


def sweep(data: DataConfig, preset: str, overrides: dict[str, Any], space: Space, *, out_dir: str | Path,
          cache: FeatureCache | None = None, runner: Runner | None = None, progress: Progress = no_progress,
          on_trial: TrialCallback | None = None, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train every trial of ``space`` on top of ``preset`` + ``overrides`` under ``out_dir``; returns the
    summary written to ``sweep.json``. Every trial's config is checked before the first one trains."""
    from dslite_tiny.report.sweep import write_sweep_report

    out_dir, runner = Path(out_dir), runner or InProcess()
    base = load_config(TrainConfig, preset, ("--set", overrides), stage="train")
    trials = plan_trials(space)
    configs = {t.name: load_config(TrainConfig, preset, (f"{space.source} ({t.name}: {t.values})",
                                                         trial_layer(overrides, t.values)), stage="train")
               for t in trials}
    dataset = load_dataset(data, require=("train", "devel"))
    key = sweep_fingerprint(data, base, space)
    local = isinstance(runner, InProcess)
    if not local:
        out_dir, cache = for_workers(out_dir), cache_for_workers(cache)
    with folder_lock(out_dir):
        done: dict[str, dict] = {}
        units = []
        for trial in trials:
            result = finished_run(out_dir / "trials" / trial.name, trial_key(key, trial))
            if result is not None:
                done[trial.name] = result
                continue
            units.append(Unit(trial.name, train_trial, {
                "data": data, "config": configs[trial.name], "trial": trial, "out_dir": out_dir, "sweep_key": key,
                "asha": _scheduler(space, configs[trial.name]), "cache": cache,
                "progress": progress if local else no_progress, "on_epoch": on_epoch if local else None}))
        if units and not local:
            warm_feature_cache(dataset, base, data, cache, progress)
        log.info("sweep: %d trials to train (%s), %d reused", len(units), runner.description, len(done))
        summary: dict = {}

        def record(result: dict) -> None:
            nonlocal summary
            done[result["trial"]] = result
            summary = summarize_sweep([done[t.name] for t in trials if t.name in done], trials=trials, space=space,
                                      configs=configs, preset=preset, overrides=overrides, data=data)
            write_json(out_dir / "sweep.json", summary)
            write_sweep_report(summary, out_dir)
            write_best_config(summary, out_dir / "best.yaml")
            if on_trial:
                on_trial(result)

        for result in [done[t.name] for t in trials if t.name in done]:
            record(result)
        for _unit, result in runner.run(units):
            record(result)
    return summary


def _scheduler(space: Space, config: TrainConfig) -> Asha | None:
    if space.search.scheduler != "asha":
        return None
    return Asha(space.search.grace_epochs, space.search.reduction, planned_epochs(config))


def planned_epochs(config: TrainConfig) -> int:
    return sum(phase.epochs for phase in plan_phases(config))


def summarize_sweep(results: list[dict], *, trials: list[Trial], space: Space, configs: dict[str, TrainConfig],
                    preset: str, overrides: dict[str, Any], data: DataConfig) -> dict:
    """The trials done so far in plan order, the best by devel UAR (the first of equals), and the cost: epochs
    trained against the epochs every trial would have run to its end."""
    best = max(results, key=lambda r: r["devel_uar"]) if results else None
    return {
        "complete": len(results) == len(trials), "trials_done": len(results), "trials_planned": len(trials),
        "space": space.keys, "search": dataclasses.asdict(space.search), "source": space.source,
        "base": {"preset": _preset_reference(preset), "set": overrides}, "data": to_dict(data),
        "trials": results, "best": best["trial"] if best else None,
        "epochs_trained": sum(r["epochs"] for r in results),
        "epochs_planned": sum(planned_epochs(configs[t.name]) for t in trials),
        "run_seconds": float(sum(r["seconds"] for r in results)),
    }


def _preset_reference(preset: str) -> str:
    """A preset name as it is; a YAML path made absolute (best.yaml lives elsewhere)."""
    path = Path(preset)
    return str(path.resolve()) if path.suffix in (".yaml", ".yml") else preset


def write_best_config(summary: dict, path: Path) -> None:
    """The best trial's config as a preset on top of the sweep's base (``train --config best.yaml``)."""
    best = next((r for r in summary["trials"] if r["trial"] == summary["best"]), None)
    if best is None:
        return
    layer = trial_layer(summary["base"]["set"], best["values"])
    header = (f"# The best of {summary['trials_done']} trials so far ({best['trial']}, devel UAR "
              f"{best['devel_uar']:.3f}) of the sweep in this folder; train it: dslite-tiny train --config "
              f"{path.name} ...\n")
    write_atomic(path, header + yaml.safe_dump({"preset": summary["base"]["preset"], **layer}, sort_keys=False))
