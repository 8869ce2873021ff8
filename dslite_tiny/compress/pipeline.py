"""``compress``: every configured variant of a trained model, built, measured and written as it finishes.

Layout of ``OUT``::

    OUT/<variant>/model.tflite   the converted model
    OUT/<variant>/metrics.json   status, reason, sizes, accuracy, sparsity, latency, TFLM verdict,
                                 per-layer error (integer variants), provenance
    OUT/summary.csv              one row per variant (columns: records.SUMMARY_COLUMNS)
    OUT/reference.json           the float Keras model on the same test chunks; the labels and frontend
    OUT/compress.log             the library log of every run
    OUT/stages/                  fine-tuned intermediate models shared by variants (pruned model)

A variant whose ``metrics.json`` says ``ok`` with the same key (a hash of the source model, the data, the
frontend and the config) is not rebuilt; ``force`` rebuilds. A failing variant is recorded with its reason
and the others go on. Every file is written atomically and ``OUT`` is locked for the run
(``dslite_tiny.artifacts``): a second run into it stops with a one-line error.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dslite_tiny.artifacts import folder_lock, write_json
from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.compress.recipes import RECIPES, VariantContext, integer_dtype, unread_fields
from dslite_tiny.config import VARIANTS, CompressConfig, DataConfig, FrontendConfig, to_dict, unknown_variant
from dslite_tiny.data.cache import FeatureCache, file_digest
from dslite_tiny.data.features import FeatureSet, audio_chunks, compute_features
from dslite_tiny.data.layouts import load_dataset
from dslite_tiny.errors import ConfigError, DataError, UserError
from dslite_tiny.flows.runner import InProcess, Runner, Unit, cache_for_workers, for_workers
from dslite_tiny.measure.cortex_m4 import cortex_m4_figures
from dslite_tiny.measure.layer_error import layer_errors
from dslite_tiny.measure.litert import quantize_input
from dslite_tiny.measure.tflite_model import EvalSet, MeasureSettings, accuracy, measure_model
from dslite_tiny.models.arelu import fold_arelu
from dslite_tiny.models.trained import TrainedModel, load_trained, versions
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.records import (Reference, VariantMetrics, read_metrics, summary_row, write_metrics, write_reference,
                                 write_summary_csv)

log = logging.getLogger(__name__)
VariantCallback = Callable[[dict], None]  # a summary row plus "skipped" (unchanged since the last run)


@dataclasses.dataclass
class CompressResult:
    out_dir: Path
    rows: list[dict]
    reference: Reference


def run_compress(model_path: str | Path, *, config: CompressConfig, out_dir: str | Path,
                 data: DataConfig | None = None, only: Sequence[str] | None = None, force: bool = False,
                 cache: FeatureCache | None = None, runner: Runner | None = None, progress: Progress = no_progress,
                 on_variant: VariantCallback | None = None) -> CompressResult:
    """Build and measure each variant of ``model_path``; results are written as each variant ends. With a
    Ray ``runner`` the variants build at once, each group of variants that share a stage a unit."""
    out_dir = Path(out_dir)
    names = _variant_names(config, only)
    trained = load_trained(model_path)
    data = data or trained.saved_data()
    with folder_lock(out_dir):
        handler, level = _log_to(out_dir / "compress.log")
        try:
            prepared = _prepare(out_dir, trained, data, config, cache, progress, names)
            write_reference(out_dir / "reference.json", prepared.reference)
            if runner is None or isinstance(runner, InProcess):
                rows = _compress_here(prepared, names, force, on_variant)
            else:
                rows = _compress_on(runner, prepared, trained.path, data, names, force, cache, on_variant)
        finally:
            _stop_logging(handler, level)
    return CompressResult(out_dir, rows, prepared.reference)


@dataclasses.dataclass
class _Prepared:
    """What every variant of one run is built and measured with."""

    out_dir: Path
    context: VariantContext
    eval_set: EvalSet
    settings: MeasureSettings
    source: dict
    reference: Reference


def _prepare(out_dir: Path, trained: TrainedModel, data: DataConfig, config: CompressConfig,
             cache: FeatureCache | None, progress: Progress, names: Sequence[str]) -> _Prepared:
    """What every variant in ``names`` is built and measured with."""
    features, frontend = _features(trained, data, cache, progress)
    source = {"model": str(trained.path), "sha256": file_digest(trained.path)}
    fingerprint = _fingerprint(source["sha256"], trained, features)
    folded = fold_arelu(trained.model)
    eval_set, scores = _eval_set(trained, folded, features["test"], frontend)
    reference = _reference(source, eval_set, scores, features["test"], trained.frontend_config)
    context = VariantContext(folded, fingerprint, features["train"], features["devel"], frontend,
                             _representative(features["train"], frontend, config), config, out_dir / "stages",
                             progress, _training_augmenter(trained, features["train"], frontend),
                             _transfer_chunks(config, frontend, cache, progress) if "slim-int8" in names else None)
    settings = MeasureSettings(config.latency_runs, config.latency_warmup, config.tflm)
    return _Prepared(out_dir, context, eval_set, settings, source, reference)


def _compress_here(prepared: _Prepared, names: list[str], force: bool,
                   on_variant: VariantCallback | None) -> list[dict]:
    rows: list[dict] = []
    for name in names:
        row = _variant(prepared, name, force)
        rows = write_summary(prepared.out_dir)  # after every variant: an interrupted run keeps a current table
        if on_variant:
            on_variant(row)
    return rows


def _variant(prepared: _Prepared, name: str, force: bool) -> dict:
    """One variant reused (unchanged since the last run) or built and measured; its summary row."""
    return _row(prepared, name, _reusable(prepared, name, force))


def _reusable(prepared: _Prepared, name: str, force: bool) -> VariantMetrics | None:
    """The variant's metrics if an earlier run built it from the same inputs and config (never with force)."""
    if force:
        return None
    return _previous(prepared.out_dir / name, name, prepared.context.fingerprint, prepared.context.config)


def _row(prepared: _Prepared, name: str, previous: VariantMetrics | None) -> dict:
    out_dir, config = prepared.out_dir, prepared.context.config
    if previous is not None:
        log.info("%s: unchanged since %s, skipped (--force rebuilds)", name, previous.finished)
        metrics = _with_cortex_m4(previous, out_dir, prepared.eval_set, config)
    else:
        key = _variant_key(prepared.context.fingerprint, to_dict(config), name)
        metrics = _build_and_measure(name, key, prepared.context, prepared.eval_set, prepared.settings, out_dir,
                                     prepared.source)
    return {**summary_row(metrics), "skipped": previous is not None}


# Variants built from one stage go to one unit: run apart, each would fine-tune that stage again.
SHARED_STAGE_GROUPS = (("pruned-int8", "pqat-int8"),)


def _compress_on(runner: Runner, prepared: _Prepared, model_path: Path, data: DataConfig, names: list[str],
                 force: bool, cache: FeatureCache | None, on_variant: VariantCallback | None) -> list[dict]:
    """Variants that are up to date are reported here; the others are units of ``runner``."""
    todo = []
    for name in names:
        previous = _reusable(prepared, name, force)
        if previous is None:
            todo.append(name)
            continue
        row = _row(prepared, name, previous)  # a reused int8 variant may still gain its Cortex-M4 figures
        if on_variant:
            on_variant(row)
    units = [Unit("+".join(group), build_variants, {
        "model_path": for_workers(model_path), "data": data, "config": prepared.context.config, "names": group,
        "out_dir": for_workers(prepared.out_dir), "force": force, "cache": cache_for_workers(cache)})
        for group in _unit_groups(todo)]
    rows = write_summary(prepared.out_dir)
    for _unit, result in runner.run(units):
        rows = write_summary(prepared.out_dir)
        for row in result["rows"]:
            if on_variant:
                on_variant(row)
    return rows


def _unit_groups(names: list[str]) -> list[list[str]]:
    """``names`` as units: the variants of one shared stage together, every other variant alone."""
    groups = [[n for n in group if n in names] for group in SHARED_STAGE_GROUPS]
    grouped = {n for group in groups for n in group}
    return [g for g in groups if g] + [[n] for n in names if n not in grouped]


def build_variants(*, model_path: Path, data: DataConfig, config: CompressConfig, names: list[str], out_dir: Path,
                   force: bool, cache: FeatureCache | None) -> dict:
    """Variants of one model built in a worker (a unit of ``dslite_tiny.flows``): the same features, float
    reference and context as the driver's, then each variant as in one process."""
    handler, level = _log_to(out_dir / "compress.log")
    try:
        prepared = _prepare(out_dir, load_trained(model_path), data, config, cache, no_progress, names)
        return {"rows": [_variant(prepared, name, force) for name in names]}
    finally:
        _stop_logging(handler, level)


def write_summary(out_dir: Path) -> list[dict]:
    """``summary.csv`` from every ``OUT/<variant>/metrics.json``, in the canonical variant order (a file
    that does not read back is left out with a warning: its variant is rebuilt by the next run)."""
    rows: list[dict] = []
    for name in VARIANTS:
        path = out_dir / name / "metrics.json"
        if not path.is_file():
            continue
        try:
            rows.append(summary_row(read_metrics(path)))
        except UserError as exc:
            log.warning("%s: left out of summary.csv: %s", name, exc)
    write_summary_csv(out_dir / "summary.csv", rows)
    return rows


# --- steps -----------------------------------------------------------------------------------------------

def _variant_names(config: CompressConfig, only: Sequence[str] | None) -> list[str]:
    if not only:
        return list(config.variants)
    if problem := unknown_variant(only):
        raise ConfigError(f"--only: {problem}")
    return list(only)


def _features(trained: TrainedModel, data: DataConfig, cache: FeatureCache | None,
              progress: Progress) -> tuple[dict[str, FeatureSet], Frontend]:
    dataset = load_dataset(data, require=("train", "devel", "test"))
    trained.check_labels(dataset)
    if overlap := trained.split_overlap(dataset, "test"):
        raise DataError(f"{overlap}: its scores would flatter every variant (leave out --data to use the "
                        f"model's own split)", path=dataset.source)
    if tuple(dataset.classes) != trained.classes:
        missing = sorted(set(trained.classes) - set(dataset.classes))
        raise DataError(f"the data lacks the model's classes {', '.join(missing)}: compressing needs every class "
                        f"in the train split", path=dataset.source)
    frontend = Frontend(trained.frontend_config)
    features = {split: compute_features(dataset, frontend, splits=[split], cache=cache, strict=data.strict,
                                        progress=progress) for split in ("train", "devel", "test")}
    for split, table in features.items():
        if len(table) == 0:
            raise DataError(f"the {split} split yields no chunks ({table.report.describe()})", path=dataset.source)
    return features, frontend


def _fingerprint(model_sha256: str, trained: TrainedModel, features: dict[str, FeatureSet]) -> str:
    digest = hashlib.sha256(model_sha256.encode())
    digest.update(json.dumps(to_dict(trained.frontend_config), sort_keys=True).encode())
    for split in ("train", "devel", "test"):
        table = features[split]
        digest.update(split.encode())
        digest.update(np.ascontiguousarray(table.labels).tobytes())
        digest.update(hashlib.sha256(np.ascontiguousarray(table.mel_db).tobytes()).digest())
    return digest.hexdigest()


def _eval_set(trained: TrainedModel, folded, test: FeatureSet, frontend: Frontend) -> tuple[EvalSet, np.ndarray]:
    """The test images and the float Keras model's scores on them (the reference for agreement)."""
    images = np.concatenate([frontend.model_input(test.mel_db[i:i + 256]) for i in range(0, len(test), 256)])
    scores = np.concatenate([folded(images[i:i + 64], training=False).numpy() for i in range(0, len(images), 64)])
    return EvalSet(images.astype(np.float32), trained.labels_of(test), test.clip_index, trained.classes,
                   scores.argmax(axis=1)), scores


def _reference(source: dict, eval_set: EvalSet, scores: np.ndarray, test: FeatureSet,
               frontend: FrontendConfig) -> Reference:
    """The float model's scores, and the labels and frontend that export and report need (so they never
    have to reopen the source model)."""
    return Reference(source["model"], source["sha256"], "test", tuple(eval_set.classes), frontend,
                     test.report.describe(), accuracy(scores, eval_set))


def _training_augmenter(trained: TrainedModel, train: FeatureSet, frontend: Frontend):
    """The spectrogram augmentation the model was trained with (its sidecar's train config), or None: an
    imported model, no augmentation, or a config this version cannot read."""
    from dslite_tiny.config import TrainConfig, load_config
    from dslite_tiny.train.augment import MelAugmenter, MelAugmentSettings

    saved = trained.sidecar.details.get("train")
    if not isinstance(saved, dict):
        return None
    try:
        settings = MelAugmentSettings.from_config(load_config(TrainConfig, ("sidecar", saved), stage="train"))
    except ConfigError as exc:
        log.warning("no training augmentation for the fine-tunes: %s", exc)
        return None
    if not settings.enabled:
        return None
    return MelAugmenter(settings, frontend.config, train.mel_db, rng=np.random.default_rng(0))


def _transfer_chunks(config: CompressConfig, frontend: Frontend, cache: FeatureCache | None,
                     progress: Progress) -> np.ndarray | None:
    """``slim_transfer_audio`` through the model's own frontend (cached like any clip), or None when unset."""
    if config.slim_transfer_audio is None:
        return None
    try:
        return audio_chunks(Path(config.slim_transfer_audio), frontend, cache=cache, progress=progress)
    except DataError as exc:  # the message names the setting the folder came from
        raise ConfigError(f"slim_transfer_audio: {exc.message}", path=exc.path) from None


def _representative(train: FeatureSet, frontend: Frontend, config: CompressConfig) -> np.ndarray:
    """Up to ``representative_chunks`` train chunks, the same share of every class (seeded)."""
    rng = np.random.default_rng(config.seed)
    classes = np.unique(train.labels)
    per_class = max(1, config.representative_chunks // len(classes))
    chosen = np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[:per_class] for c in classes])
    return frontend.model_input(train.mel_db[np.sort(chosen)]).astype(np.float32)


# Keys added after runs were recorded: at the value those runs had they stay out of a variant's key, so the
# runs are reused rather than rebuilt (slim_fade's default is true: such a run is rebuilt).
_LATER_KEYS = {"cortex_m4": True, "slim_macs": 0.5, "slim_criterion": "batchnorm", "slim_epochs": 12,
               "slim_learning_rate": 1e-3, "slim_fade": False}


def _variant_key(fingerprint: str, config: dict, name: str) -> str:
    """The key a variant's metrics record: its inputs and the whole config it was built with."""
    settings = {k: v for k, v in config.items() if k != "variants" and not (k in _LATER_KEYS and v == _LATER_KEYS[k])}
    text = json.dumps({"inputs": fingerprint, "variant": name, "config": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _previous(variant_dir: Path, name: str, fingerprint: str, config: CompressConfig) -> VariantMetrics | None:
    """The variant's metrics if it was built ok from the same inputs (its key, recomputed from the config it
    recorded, proves them) and a config that agrees with this one on every field the variant reads; else it is
    rebuilt, and a warning says why (a run with another preset would otherwise silently redo minutes of
    work)."""
    path = variant_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = read_metrics(path)
    except UserError as exc:
        log.warning("rebuilding: %s", exc)
        return None
    if not metrics.ok:
        return None
    earlier = json.loads(path.read_text(encoding="utf-8")).get("config")
    if not isinstance(earlier, dict):
        log.warning("%s: rebuilding: the earlier result recorded no config", name)
        return None
    if metrics.key != _variant_key(fingerprint, earlier, name):
        log.warning("%s: rebuilding: the earlier result came from another source model or dataset", name)
        return None
    changed = _read_changes(earlier, to_dict(config), name)
    if not changed:
        return metrics
    log.warning("%s: rebuilding: the earlier result came from another config: %s; pass the same --config to "
                "reuse it", name, ", ".join(changed[:6]) + (" …" if len(changed) > 6 else ""))
    return None


def _read_changes(earlier: dict, now: dict, name: str) -> list[str]:
    """The fields ``name`` reads that differ between an earlier run's config and this one (a field the earlier
    run predates counts at the value it had then)."""
    unread = unread_fields(name)
    return [f"{k} {earlier.get(k, _LATER_KEYS.get(k))!r} (now {now[k]!r})" for k in now
            if k != "variants" and k not in unread and earlier.get(k, _LATER_KEYS.get(k)) != now[k]]


def _build_and_measure(name: str, key: str, context: VariantContext, eval_set: EvalSet,
                       settings: MeasureSettings, out_dir: Path, source: dict) -> VariantMetrics:
    variant_dir = out_dir / name
    variant_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"variant": name, "key": key, "source": source,
               "config": to_dict(context.config), "versions": versions()}
    start = time.perf_counter()
    log.info("%s: building", name)
    try:
        built = RECIPES[name](context)
        metrics["build_seconds"] = round(time.perf_counter() - start, 2)
        metrics["details"] = built.details
        model_path = variant_dir / "model.tflite"
        model_path.write_bytes(built.tflite)
        metrics.update(measure_model(model_path, eval_set, settings, pruned_layers=built.pruned_layers,
                                     progress=context.progress, desc=f"{name} on test (LiteRT)"))
        if integer_dtype(name) == "int8" and context.config.cortex_m4:
            metrics["cortex_m4"] = _cortex_m4(model_path, metrics["input"], eval_set, out_dir / "stages" / "qemu")
        if integer_dtype(name) and context.config.layer_error_chunks:
            chunks = np.linspace(0, len(eval_set.images) - 1, context.config.layer_error_chunks).astype(int)
            metrics["layer_error"] = layer_errors(built.tflite, context.model, eval_set.images[np.unique(chunks)])
        metrics["status"], metrics["reason"] = _verdict(name, metrics)
    except Exception as exc:  # a failing variant is recorded; the others go on
        log.error("%s failed:\n%s", name, traceback.format_exc())
        metrics.update(status="failed", reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:400],
                       build_seconds=round(time.perf_counter() - start, 2))
    metrics["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    path = write_metrics(variant_dir / "metrics.json", metrics)
    log.info("%s: %s %s", name, metrics["status"], metrics.get("reason", ""))
    return read_metrics(path)


def _with_cortex_m4(metrics: VariantMetrics, out_dir: Path, eval_set: EvalSet,
                    config: CompressConfig) -> VariantMetrics:
    """A reused int8 variant recorded before the engine's Cortex-M4 figures were: measured now and added to
    its metrics.json (the build is unchanged, so its key stays)."""
    if metrics.cortex_m4 is not None or not config.cortex_m4 or integer_dtype(metrics.variant) != "int8":
        return metrics
    path = out_dir / metrics.variant / "metrics.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["cortex_m4"] = _cortex_m4(path.with_name("model.tflite"), data["input"], eval_set, out_dir / "stages" / "qemu")
    return read_metrics(write_json(path, data))


M4_INPUTS = 3  # test chunks timed on the Cortex-M4 (the engine's count varies by a few hundred in 13 M)


def _cortex_m4(model_path: Path, io: dict, eval_set: EvalSet, cache_dir: Path) -> dict:
    """The generated engine's flash, RAM and instructions on test chunks spread over the split."""
    picked = np.unique(np.linspace(0, len(eval_set.images) - 1, M4_INPUTS).astype(int))
    detail = {"dtype": np.int8, "quantization": (io["scale"], io["zero_point"])}
    inputs = quantize_input(eval_set.images[picked], detail).reshape(len(picked), -1)
    return cortex_m4_figures(model_path.read_bytes(), model_path, inputs, cache_dir=cache_dir)


def _verdict(name: str, metrics: dict) -> tuple[str, str]:
    """A full-integer variant must be integer end to end and run in TFLM; anything else is a failure, said
    plainly."""
    dtype = integer_dtype(name)
    if dtype is None:
        return "ok", ""
    if metrics["input"]["dtype"] != dtype or metrics["output"]["dtype"] != dtype:
        return "failed", f"input/output are {metrics['input']['dtype']}/{metrics['output']['dtype']}, not {dtype}"
    if metrics["float_ops"]:
        return "failed", f"float ops remain: {', '.join(metrics['float_ops'])}"
    tflm = metrics.get("tflm")
    if tflm is not None and not tflm["ok"]:
        return "failed", f"TFLite Micro refuses the model: {tflm['reason']}"
    return "ok", ""


def _stop_logging(handler: logging.Handler, level: int) -> None:
    logger = logging.getLogger("dslite_tiny")
    logger.removeHandler(handler)
    logger.setLevel(level)
    handler.close()


def _log_to(path: Path) -> tuple[logging.Handler, int]:
    """Append the package's INFO log to ``path``; returns the handler and the logger's previous level."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("dslite_tiny")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler, level
