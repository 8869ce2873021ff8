"""The compressed variants: one recipe per name, each turning the float model into a ``.tflite``.

Recipes share work through ``VariantContext``: the pruned model is fine-tuned once per run (and kept under
``OUT/stages/`` so a resumed run need not prune again) for ``pruned-int8``, ``pqat-int8`` and
``clustered-int8``. Every recipe starts from the AReLU-folded float model and never trains it in place;
every fine-tune learns from it as the teacher (``finetune``), and every QAT model starts from calibrated
ranges (``calibrate_ranges``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.artifacts import atomic_path, write_json
from dslite_tiny.compress.channels import ChannelFade, choose_channels, slim_model
from dslite_tiny.compress.convert import convert_model
from dslite_tiny.compress.finetune import FinetuneSettings, finetune, steps_per_epoch
from dslite_tiny.compress.prune import (PruningSchedule, cluster_model, fresh_copy, kernel_sparsity,
                                        layer_sparsities, prune_model, strip_clustering, strip_pruning,
                                        weight_layer_names)
from dslite_tiny.compress.ptq import correct_bias, correct_depthwise_bias
from dslite_tiny.compress.quantize import calibrate_ranges, quantize_model
from dslite_tiny.config import VARIANTS, CompressConfig, to_dict
from dslite_tiny.data.features import FeatureSet
from dslite_tiny.models.trained import load_keras_model
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.train.epoch import one_hot

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Built:
    """A recipe's result: the flatbuffer and what the recipe knows about it (fine-tuning history, targets)."""

    tflite: bytes
    details: dict = dataclasses.field(default_factory=dict)
    pruned_layers: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class VariantContext:
    model: object  # the AReLU-folded float tf_keras model
    fingerprint: str  # of the source model, the data and the frontend: what every stage depends on
    train: FeatureSet
    devel: FeatureSet
    frontend: Frontend
    representative: np.ndarray
    config: CompressConfig
    stages_dir: Path
    progress: Progress = no_progress
    # the model's own training augmentation (a train.augment.MelAugmenter: (mel_db, rng) → mel_db), or None
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    transfer: np.ndarray | None = None  # slim_transfer_audio's chunk spectrograms (unlabelled), or None
    _pruned: tuple | None = None

    def settings(self, epochs: int, learning_rate: float) -> FinetuneSettings:
        c = self.config
        return FinetuneSettings(epochs, learning_rate, c.batch_size, c.optimizer, seed=c.seed,
                                distill_weight=c.distill_weight, temperature=c.distill_temperature,
                                average_decay=c.average_decay)

    def pruned(self) -> tuple[object, dict]:
        """The pruned, fine-tuned and stripped float model with its details; built once, then reused."""
        if self._pruned is None:
            self._pruned = _load_or_prune(self)
        return self._pruned


def integer_dtype(name: str) -> str | None:
    """The input, output and activation type of a full-integer variant (None for a float one)."""
    return "int16" if name == "int16x8" else "int8" if name.endswith("int8") else None


# Every config field the pruned stage depends on: a resumed run reuses OUT/stages/pruned-<key>.h5 only if
# all of them are unchanged.
PRUNED_STAGE_FIELDS = ("sparsity", "sparsity_allocation", "sparsity_pattern", "min_weights", "prune_epochs",
                       "prune_learning_rate", "distill_weight", "distill_temperature", "average_decay", "optimizer",
                       "batch_size", "prune_augment", "seed")
# Config fields that only some recipes read, and the variants that read them (every other field may change
# any variant). A variant built earlier is reused whatever the fields it does not read are now: changing how
# slim-int8 slims must not rebuild int8. A recipe that starts reading a field of another group adds itself
# to that group here.
OWN_FIELDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("sparsity", "sparsity_allocation", "sparsity_pattern", "min_weights", "prune_epochs", "prune_learning_rate",
     "prune_augment"): ("pruned-int8", "pqat-int8", "clustered-int8"),
    ("qat_epochs", "qat_learning_rate"): ("qat-int8", "pqat-int8", "clustered-int8"),
    ("slim_macs", "slim_criterion", "slim_epochs", "slim_fade", "slim_augment", "slim_learning_rate",
     "slim_transfer_audio"): ("slim-int8",),
    ("clusters", "cluster_epochs", "cluster_learning_rate"): ("clustered-int8",),
}


def unread_fields(variant: str) -> frozenset[str]:
    """The config fields ``variant``'s recipe never reads (those of other variants' stages)."""
    return frozenset(field for fields, readers in OWN_FIELDS.items() if variant not in readers for field in fields)


Recipe = Callable[[VariantContext], Built]
RECIPES: dict[str, Recipe] = {}


def register_variant(name: str) -> Callable[[Recipe], Recipe]:
    if name not in VARIANTS:
        raise ValueError(f"{name} is not in config.VARIANTS")

    def decorator(recipe: Recipe) -> Recipe:
        RECIPES[name] = recipe
        return recipe
    return decorator


@register_variant("float32")
def _float32(ctx: VariantContext) -> Built:
    return Built(convert_model(ctx.model, "float32"))


@register_variant("float16")
def _float16(ctx: VariantContext) -> Built:
    return Built(convert_model(ctx.model, "float16"))


@register_variant("dynamic")
def _dynamic(ctx: VariantContext) -> Built:
    return Built(convert_model(ctx.model, "dynamic"))


@register_variant("int8")
def _int8(ctx: VariantContext) -> Built:
    return _post_training(ctx, ctx.model, "int8")


@register_variant("int16x8")
def _int16x8(ctx: VariantContext) -> Built:
    return _post_training(ctx, ctx.model, "int16x8")


@register_variant("pruned-int8")
def _pruned_int8(ctx: VariantContext) -> Built:
    pruned, details = ctx.pruned()
    return _post_training(ctx, pruned, "int8", details=details, pruned_layers=details["layers"])


def _post_training(ctx: VariantContext, model, kind: str, *, details: dict | None = None,
                   pruned_layers: list[str] | None = None) -> Built:
    """Post-training quantization, after the configured repairs of the float model (``compress.ptq``)."""
    details = dict(details or {})
    if ctx.config.bias_correction:
        model, details["bias_correction"] = correct_bias(model, ctx.representative)
    return Built(convert_model(model, kind, representative=ctx.representative), details, pruned_layers or [])


@register_variant("qat-int8")
def _qat_int8(ctx: VariantContext) -> Built:
    qat, details = _quantization_aware(ctx, ctx.model, preserve="none")
    return Built(convert_model(qat, "int8", representative=ctx.representative), details)


@register_variant("pqat-int8")
def _pqat_int8(ctx: VariantContext) -> Built:
    pruned, details = ctx.pruned()
    qat, qat_details = _quantization_aware(ctx, pruned, preserve="sparsity")
    return Built(convert_model(qat, "int8", representative=ctx.representative),
                 {**details, **qat_details}, details["layers"])


@register_variant("slim-int8")
def _slim_int8(ctx: VariantContext) -> Built:
    """Channel pruning (``compress.channels``): whole channels removed to ``slim_macs`` of the MACs and the
    model rebuilt smaller and dense, fine-tuned with the float model as teacher, then post-training int8.
    With ``slim_fade`` the dropped channels fade out while the full-width model fine-tunes, and are removed
    once they are zero; otherwise they are removed at once and the slimmed model fine-tunes. With
    ``slim_transfer_audio`` every batch also holds as many unlabelled chunks, scored by the float model."""
    c = ctx.config
    plan = choose_channels(ctx.model, macs_fraction=c.slim_macs, criterion=c.slim_criterion,
                           batches=_labelled_batches(ctx.train, ctx.frontend, c.batch_size))
    augment = ctx.augment if c.slim_augment else None
    settings = ctx.settings(c.slim_epochs, c.slim_learning_rate)
    steps = c.slim_epochs * steps_per_epoch(ctx.train, settings)
    fade = c.slim_fade and steps >= 2  # a ramp needs two steps; with fewer the channels go at once

    def tune(model, **fading) -> list[dict]:
        return finetune(model, ctx.train, ctx.devel, ctx.frontend, settings, teacher=ctx.model,
                        progress=ctx.progress, desc="slim", augment=augment, transfer=ctx.transfer, **fading)

    if fade:
        ramp = PruningSchedule.fit(1.0, steps)
        full = fresh_copy(ctx.model)
        history = tune(full, callbacks=(ChannelFade(plan, ramp.sparsity_at),), eligible_from_step=ramp.end_step)
        slim, details = slim_model(full, macs_fraction=c.slim_macs, criterion=c.slim_criterion, plan=plan)
    else:
        slim, details = slim_model(ctx.model, macs_fraction=c.slim_macs, criterion=c.slim_criterion, plan=plan)
        history = tune(slim) if steps else []
    details.update(slim_augmented=augment is not None, slim_faded=fade, slim_history=history,
                   slim_transfer_chunks=0 if ctx.transfer is None else len(ctx.transfer))
    return _post_training(ctx, slim, "int8", details=details)


def _labelled_batches(train: FeatureSet, frontend: Frontend,
                      batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The training chunks in order as (model input, one-hot labels) batches, made as they are read."""
    for start in range(0, len(train), batch_size):
        chunk = slice(start, start + batch_size)
        inputs = frontend.model_input(train.mel_db[chunk]).astype(np.float32)
        yield inputs, one_hot(train.labels[chunk], len(train.classes))


@register_variant("clustered-int8")
def _clustered_int8(ctx: VariantContext) -> Built:
    """Prune → cluster (sparsity-preserving) → cluster-preserving QAT: the smallest gzip size."""
    pruned, details = ctx.pruned()
    c = ctx.config
    clustered = cluster_model(pruned, details["layers"], clusters=c.clusters, preserve_sparsity=True)
    cluster_history = finetune(clustered, ctx.train, ctx.devel, ctx.frontend,
                               ctx.settings(c.cluster_epochs, c.cluster_learning_rate), teacher=ctx.model,
                               progress=ctx.progress, desc="cluster")
    clustered = strip_clustering(clustered)
    qat, qat_details = _quantization_aware(ctx, clustered, preserve="clusters")
    return Built(convert_model(qat, "int8", representative=ctx.representative),
                 {**details, "clusters": c.clusters, "cluster_history": cluster_history, **qat_details},
                 details["layers"])


def _quantization_aware(ctx: VariantContext, model, *, preserve: str) -> tuple[object, dict]:
    """A QAT copy of ``model`` with ranges calibrated on the representative images, then fine-tuned; and
    its details. With ``bias_correction``, QAT starts from the model with its Conv/Dense rounding shift
    removed (QAT sees that rounding, so it starts where PTQ would), and after training the depthwise
    layers are corrected: their kernels train in float and are rounded only at conversion
    (``quantize.PerChannelDepthwise``), so QAT never sees, and cannot learn away, that shift."""
    details: dict = {}
    if ctx.config.bias_correction:
        model, details["bias_correction"] = correct_bias(model, ctx.representative, depthwise=False)
    qat = quantize_model(model, preserve=preserve)
    calibrate_ranges(qat, model, ctx.representative)
    details["qat_history"] = [] if ctx.config.qat_epochs == 0 else finetune(
        qat, ctx.train, ctx.devel, ctx.frontend, ctx.settings(ctx.config.qat_epochs, ctx.config.qat_learning_rate),
        teacher=ctx.model, progress=ctx.progress, desc=f"QAT ({preserve})" if preserve != "none" else "QAT")
    if ctx.config.bias_correction:
        details["depthwise_bias_correction"] = correct_depthwise_bias(qat, ctx.representative)
    return qat, details


def _load_or_prune(ctx: VariantContext) -> tuple[object, dict]:
    c = ctx.config
    key = stage_key(ctx, PRUNED_STAGE_FIELDS)
    path = ctx.stages_dir / f"pruned-{key}.h5"
    details_path = path.with_suffix(".json")
    if path.is_file() and details_path.is_file():
        log.info("reusing the pruned model %s", path)
        return load_keras_model(path), json.loads(details_path.read_text())
    structured = c.sparsity_pattern == "2:4"
    layers = weight_layer_names(ctx.model, min_weights=c.min_weights, structured=structured)
    if not layers:
        raise ValueError(f"no layer has {c.min_weights} or more kernel weights to prune (lower min_weights)")
    settings = ctx.settings(c.prune_epochs, c.prune_learning_rate)
    steps = c.prune_epochs * steps_per_epoch(ctx.train, settings)
    schedule = PruningSchedule.fit(0.5 if structured else c.sparsity, steps)
    allocation = "uniform" if structured else c.sparsity_allocation
    targets = layer_sparsities(ctx.model, layers, schedule.sparsity, allocation)
    wrapped, callback = prune_model(ctx.model, targets, schedule, pattern=c.sparsity_pattern)
    history = finetune(wrapped, ctx.train, ctx.devel, ctx.frontend, settings, teacher=ctx.model,
                       callbacks=(callback,), eligible_from_step=schedule.end_step, progress=ctx.progress,
                       desc="prune", augment=ctx.augment if c.prune_augment else None)
    pruned = strip_pruning(wrapped)
    details = {"layers": layers, "sparsity_target": schedule.sparsity, "pattern": c.sparsity_pattern,
               "layer_targets": {name: round(target, 4) for name, target in targets.items()},
               "schedule": dataclasses.asdict(schedule), "keras_sparsity": round(kernel_sparsity(pruned, layers), 6),
               "prune_history": history}
    ctx.stages_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), atomic_path(path, suffix=".h5") as tmp:
        warnings.filterwarnings("ignore", message=".*HDF5 file.*")
        pruned.save(tmp, include_optimizer=False)
    write_json(details_path, details)
    return pruned, details


def stage_key(ctx: VariantContext, fields: tuple[str, ...]) -> str:
    """The name of a stage built from ``ctx``'s source model and data and these config fields."""
    config = to_dict(ctx.config)
    text = json.dumps({"inputs": ctx.fingerprint, **{f: config[f] for f in fields}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
