"""A search over a training preset's keys: the space file, the trials it plans, one trial's training, and ASHA.

A space file (``configs/sweep/*.yaml`` or any path) has two blocks::

    search: {searcher: random, trials: 8, seed: 0, scheduler: asha, grace_epochs: 2, reduction: 4}
    space:                                   # keys of the training config (frontend.KEY for its frontend)
      learning_rate: {loguniform: [3.0e-4, 1.0e-2]}
      alpha: [1.0, 1.5, 2.0]                 # a list: choices
      dropout: {uniform: [0.0, 0.5]}         # also {int: [low, high]}

``grid`` runs every combination of the lists; ``random`` draws ``trials`` points (seeded). ASHA (asynchronous
successive halving, Li et al. 2020, as Ray Tune's ASHAScheduler): at rung epochs ``grace_epochs``,
``grace_epochs × reduction``, … below the trial's epochs, a trial whose best devel UAR so far is below the
(1 − 1/reduction) quantile of what the trials that reached that rung recorded there stops; it never waits
for the others. Each trial records its rungs in ``OUT/trials/<trial>/rungs.json`` as it reaches them, so
trials running at once on a cluster see each other's (the output folder is shared), and trials run one after
another in one process decide exactly as on a rerun.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dslite_tiny.artifacts import write_json
from dslite_tiny.config import DataConfig, TrainConfig, resolve_preset, to_dict
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.errors import ConfigError
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.train.cv import settings_digest, worker_name

log = logging.getLogger(__name__)
SEARCH_DEFAULTS = {"searcher": "random", "trials": 8, "seed": 0, "scheduler": "asha", "grace_epochs": 2,
                   "reduction": 4}  # Ray Tune ASHAScheduler's reduction_factor
RANGES = ("uniform", "loguniform", "int")


@dataclasses.dataclass(frozen=True)
class Search:
    searcher: str
    trials: int
    seed: int
    scheduler: str
    grace_epochs: int
    reduction: int


@dataclasses.dataclass(frozen=True)
class Space:
    """The keys searched (a list of choices or a range each) and how; ``source`` is the file."""

    keys: dict[str, Any]
    search: Search
    source: str


@dataclasses.dataclass(frozen=True)
class Trial:
    name: str
    values: dict[str, Any]


def load_space(spec: str | Path) -> Space:
    """A space file by path, or by name under ``configs/sweep/``; every problem names the file and key."""
    path = resolve_preset(spec, "sweep")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the space file ({' '.join(str(exc).split())[:200]})", path=path) from None
    if not isinstance(data, dict) or set(data) - {"search", "space"} or not isinstance(data.get("space"), dict):
        raise ConfigError("a space file holds a 'space' mapping of training keys and an optional 'search' mapping",
                          path=path)
    search = _search(data.get("search") or {}, path)
    keys = {key: _dimension(key, value, search.searcher, path) for key, value in data["space"].items()}
    if not keys:
        raise ConfigError("the space names no training key", path=path)
    return Space(keys, search, str(path))


def _search(values: Any, path: Path) -> Search:
    if not isinstance(values, dict) or set(values) - set(SEARCH_DEFAULTS):
        raise ConfigError(f"search: keys are {', '.join(SEARCH_DEFAULTS)}", path=path)
    merged = {**SEARCH_DEFAULTS, **values}
    checks = {"searcher": merged["searcher"] in ("random", "grid"), "scheduler": merged["scheduler"] in ("asha", "none"),
              "trials": _whole(merged["trials"], 1), "seed": _whole(merged["seed"], 0),
              "grace_epochs": _whole(merged["grace_epochs"], 1), "reduction": _whole(merged["reduction"], 2)}
    allowed = {"searcher": "random or grid", "scheduler": "asha or none", "trials": "a whole number ≥ 1",
               "seed": "a whole number ≥ 0", "grace_epochs": "a whole number ≥ 1", "reduction": "a whole number ≥ 2"}
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"search.{key}: {merged[key]!r} is not {allowed[key]}", path=path)
    return Search(**merged)


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _dimension(key: str, value: Any, searcher: str, path: Path) -> Any:
    """A list of choices, or ``{uniform|loguniform|int: [low, high]}`` (random search only)."""
    field, _, sub = key.partition(".")
    if field not in {f.name for f in dataclasses.fields(TrainConfig)} or (sub and field != "frontend"):
        raise ConfigError(f"space: '{key}' is not a training key (nor frontend.KEY)", path=path)
    if isinstance(value, list) and value:
        return value
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in RANGES:
        kind, bounds = next(iter(value.items()))
        if searcher == "grid":
            raise ConfigError(f"space: {key}: a grid needs a list of values, not a {kind} range", path=path)
        if (not isinstance(bounds, list) or len(bounds) != 2 or not all(isinstance(b, (int, float)) for b in bounds)
                or bounds[0] >= bounds[1] or (kind == "loguniform" and bounds[0] <= 0)):
            raise ConfigError(f"space: {key}: {kind} needs [low, high] with low < high"
                              f"{' and low > 0' if kind == 'loguniform' else ''}", path=path)
        return {kind: bounds}
    raise ConfigError(f"space: {key}: {value!r} is neither a list of values nor one of "
                      f"{', '.join('{' + r + ': [low, high]}' for r in RANGES)}", path=path)


def plan_trials(space: Space) -> list[Trial]:
    """Grid: every combination, in the file's key order; random: ``trials`` seeded draws."""
    keys = list(space.keys)
    if space.search.searcher == "grid":
        points = [dict(zip(keys, combo)) for combo in itertools.product(*space.keys.values())]
    else:
        rng = np.random.default_rng(space.search.seed)
        points = [{key: _draw(space.keys[key], rng) for key in keys} for _ in range(space.search.trials)]
    width = len(str(len(points)))
    return [Trial(f"trial{i + 1:0{width}d}", point) for i, point in enumerate(points)]


def _draw(dimension: Any, rng: np.random.Generator) -> Any:
    if isinstance(dimension, list):
        return dimension[int(rng.integers(len(dimension)))]
    (kind, (low, high)), = dimension.items()
    if kind == "int":
        return int(rng.integers(int(low), int(high) + 1))
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if kind == "loguniform" else rng.uniform(low, high)
    return float(f"{value:.4g}")  # a value a person can read and type again


def trial_layer(overrides: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The ``--set`` overrides and a trial's values as one config layer (``frontend.KEY`` into frontend_set)."""
    layer = {key: value for key, value in overrides.items()}
    for key, value in values.items():
        field, _, sub = key.partition(".")
        if sub:
            layer["frontend_set"] = {**layer.get("frontend_set", {}), sub: value}
        else:
            layer[field] = value
    return layer


@dataclasses.dataclass(frozen=True)
class Asha:
    """Asynchronous successive halving: rung epochs and the stop rule (see the module docstring)."""

    grace_epochs: int
    reduction: int
    max_epochs: int

    @property
    def rungs(self) -> list[int]:
        rungs, epoch = [], self.grace_epochs
        while epoch < self.max_epochs:
            rungs.append(epoch)
            epoch *= self.reduction
        return rungs

    def keeps(self, value: float, recorded: list[float]) -> bool:
        """Whether a trial at ``value`` goes on, given every value recorded at this rung (its own included)."""
        cutoff = float(np.percentile(recorded, 100 * (1 - 1 / self.reduction)))
        return value >= cutoff


def train_trial(*, data: DataConfig, config: TrainConfig, trial: Trial, out_dir: Path, sweep_key: str,
                asha: Asha | None, cache: FeatureCache | None = None, progress: Progress = no_progress,
                on_epoch: Callable[[dict], None] | None = None) -> dict:
    """One trial (a unit of ``dslite_tiny.flows``): trains ``config`` under ``OUT/trials/<trial>/``, stopped
    early by ``asha`` (its rungs shared by the trials of ``sweep_key``); writes ``result.json`` there and
    returns it."""
    from dslite_tiny.train.run import run_training

    trial_dir = out_dir / "trials" / trial.name
    rungs: dict[str, float] = {}
    _write_rungs(trial_dir, sweep_key, rungs)  # a restarted trial forgets what an earlier attempt recorded
    best, stopped = -1.0, None
    started = time.monotonic()

    def epoch(record: dict) -> bool:
        nonlocal best, stopped
        best = max(best, record["devel_uar"])
        if on_epoch:
            on_epoch({**record, "trial": trial.name})
        if asha is None or record["epoch"] not in asha.rungs:
            return False
        rungs[str(record["epoch"])] = best
        _write_rungs(trial_dir, sweep_key, rungs)
        recorded = recorded_at(out_dir, record["epoch"], sweep_key)
        if asha.keeps(best, recorded):
            return False
        stopped = record["epoch"]
        log.info("%s: stopped at epoch %d (best devel UAR %.3f; %d trials reached it)", trial.name, stopped, best,
                 len(recorded))
        return True

    trained = run_training(data, config, out_dir=trial_dir, cache=cache, progress=progress, on_epoch=epoch)
    result = {"trial": trial.name, "values": trial.values, "devel_uar": trained.best["devel_uar"],
              "best_epoch": trained.best["epoch"], "epochs": len(trained.history), "stopped_at": stopped,
              "devel_uar_per_epoch": [r["devel_uar"] for r in trained.history],
              "fingerprint": trial_key(sweep_key, trial),
              "seconds": round(time.monotonic() - started, 1), "worker": worker_name()}
    write_json(trial_dir / "result.json", result)
    return result


def _write_rungs(trial_dir: Path, sweep_key: str, rungs: dict[str, float]) -> None:
    write_json(trial_dir / "rungs.json", {"sweep": sweep_key, "rungs": rungs})


def recorded_at(out_dir: Path, epoch: int, sweep_key: str) -> list[float]:
    """Every trial's best devel UAR at rung ``epoch``, read from their rungs.json files (this sweep's only)."""
    values = []
    for path in sorted((out_dir / "trials").glob("*/rungs.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being replaced right now by its own trial: it records again
        if record.get("sweep") == sweep_key and str(epoch) in record.get("rungs", {}):
            values.append(float(record["rungs"][str(epoch)]))
    return values


def sweep_fingerprint(data: DataConfig, base: TrainConfig, space: Space) -> str:
    """What the trials of one sweep share: the data, the base config and the space (keys and search)."""
    settings = {"data": to_dict(data), "train": to_dict(base), "space": space.keys,
                "search": dataclasses.asdict(space.search)}
    return settings_digest(settings)


def trial_key(sweep_key: str, trial: Trial) -> str:
    """What a finished trial must have been trained with to be reused."""
    return settings_digest({"sweep": sweep_key, "trial": trial.name, "values": trial.values})
