"""Two-phase transfer learning with SapAugment, selected by devel UAR, written incrementally.

Each epoch is ``train.epoch.train_epoch`` (shared with compression's fine-tunes). After every epoch the devel
UAR is measured; a better one replaces ``OUT/model.h5`` + ``model.json`` at once, so an interrupted run keeps
its best model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.config import TrainConfig, to_dict
from dslite_tiny.data.features import FeatureSet, batches_per_epoch
from dslite_tiny.errors import UserError
from dslite_tiny.models.registry import backbone_layers, create_model
from dslite_tiny.train.optimizers import make_optimizer, warmup_rate
from dslite_tiny.models.trained import load_trained, save_trained, sidecar_path
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.records import Sidecar, read_sidecar, write_sidecar
from dslite_tiny.train.augment import AugmentSettings, MelAugmenter, MelAugmentSettings, augment_batch, sap_lambdas
from dslite_tiny.train.distill import Teacher
from dslite_tiny.train.epoch import devel_uar, one_hot, train_epoch

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict], "bool | None"]  # True ends the training after this epoch (a sweep's early stop)


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    learning_rate: float
    trainable: str  # "all", "head" or "finetune"


@dataclasses.dataclass
class TrainResult:
    model: object
    path: Path
    history: list[dict]
    best: dict


def plan_phases(config: TrainConfig) -> list[Phase]:
    """Pretrained: head on a frozen backbone, then fine-tuning; from scratch: everything, one phase."""
    if config.weights == "none":
        return [Phase("train", config.epochs, config.learning_rate, "all")]
    phases = [Phase("head", config.epochs, config.learning_rate, "head")]
    if config.fine_epochs > 0 and config.finetune_layers > 0:
        fine_lr = config.fine_learning_rate or config.learning_rate / 10
        phases.append(Phase("finetune", config.fine_epochs, fine_lr, "finetune"))
    return phases


def set_trainable(model, mode: str, finetune_layers: float) -> int:
    """Freeze/unfreeze for a phase; returns the number of trainable backbone layers. BatchNormalization
    stays frozen (inference mode) while fine-tuning: a few batches of spectrograms would wreck ImageNet
    statistics."""
    import tf_keras as keras

    layers = backbone_layers(model)
    count = int(round(finetune_layers * len(layers))) if finetune_layers <= 1 else int(finetune_layers)
    first_unfrozen = {"all": 0, "head": len(layers), "finetune": len(layers) - min(count, len(layers))}[mode]
    for i, layer in enumerate(layers):
        frozen_bn = mode == "finetune" and isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= first_unfrozen and not frozen_bn
    return sum(1 for layer in layers if layer.trainable)


def train_model(train: FeatureSet, devel: FeatureSet, frontend: Frontend, config: TrainConfig, *, out_dir: Path,
                sidecar: Sidecar, teacher: Teacher | None = None, on_epoch: EpochCallback | None = None,
                progress: Progress = no_progress) -> TrainResult:
    """Fit per ``config`` (with ``teacher``'s probabilities in the targets, if given); the best epoch by
    devel UAR is saved to ``out_dir/model.h5`` (+ sidecar)."""
    import tf_keras as keras

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    classes = train.classes
    model = create_model(config.backbone, input_shape=frontend.config.image_shape, num_classes=len(classes),
                         units=config.units, dropout=config.dropout, alpha=config.alpha,
                         arelu_learnable=config.arelu == "learnable",
                         weights=None if config.weights == "none" else config.weights)
    settings = AugmentSettings(config.sapaugment, config.sap_a, config.sap_s, config.cutmix, config.specaugment,
                               config.aug_prob_min, config.aug_prob_max, config.cutmix_max, config.specaugment_max)
    mel_settings = MelAugmentSettings.from_config(config)
    augment_mel = (MelAugmenter(mel_settings, frontend.config, train.mel_db, rng=np.random.default_rng([config.seed, 1]))
                   if mel_settings.enabled else None)
    weights = _class_weights(train.labels, len(classes)) if config.balance == "class_weights" else None

    def make_batch(x: np.ndarray, labels: np.ndarray):
        return _augmented_batch(model, x, labels, settings, weights, rng, teacher)

    writer = _tensorboard_writer(out_dir) if config.tensorboard else None
    path, history, best = out_dir / "model.h5", [], {"devel_uar": -1.0, "epoch": 0}
    epoch = 0
    average = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    epoch_steps = batches_per_epoch(train.labels, len(classes), batch_size=config.batch_size, balance=config.balance)
    stopped = False
    for phase in plan_phases(config):
        if stopped:
            break
        stale = 0  # early stopping ends a phase; fine-tuning still gets its own chance
        trainable = set_trainable(model, phase.trainable, config.finetune_layers)
        model.compile(optimizer=make_optimizer(config.optimizer, phase_schedule(config, phase, epoch_steps),
                                               config.weight_decay),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing))
        log.info("phase %s: %d epochs, lr %g (%s), %d trainable backbone layers", phase.name, phase.epochs,
                 phase.learning_rate, config.lr_schedule, trainable)
        for _ in range(phase.epochs):
            epoch += 1
            start = time.perf_counter()
            loss = train_epoch(model, train, frontend, batch_size=config.batch_size, balance=config.balance,
                               rng=rng, make_batch=make_batch, augment=augment_mel,
                               after_step=average.update if average else None, progress=progress,
                               desc=f"epoch {epoch} ({phase.name})")
            with average.applied() if average else contextlib.nullcontext():
                score = devel_uar(model, devel, frontend)
            record = {"epoch": epoch, "phase": phase.name, "loss": loss, "devel_uar": score,
                      "seconds": round(time.perf_counter() - start, 2)}
            history.append(record)
            stale += 1
            if score > best["devel_uar"]:
                best, stale = dict(record), 0
                with average.applied() if average else contextlib.nullcontext():
                    save_trained(model, path, dataclasses.replace(sidecar, history=tuple(history), details={
                        **sidecar.details, "best": best, "train": to_dict(config)}))
            _log_scalars(writer, record)
            if on_epoch and on_epoch(record) is True:
                log.info("stopped after epoch %d by the caller", epoch)
                stopped = True
                break
            if config.early_stopping and stale >= config.early_stopping:
                log.info("early stop after %d epochs without a better devel UAR", stale)
                break
    _write_full_history(path, history)  # the sidecar of the best epoch also learns what came after it
    return TrainResult(load_trained(path).model, path, history, best)


def phase_schedule(config: TrainConfig, phase: Phase, epoch_steps: int):
    """The phase's learning rate: constant, or cosine decay to 1 % of it; either after a linear warm-up
    from a tenth of it over ``warmup_epochs`` (a new phase, e.g. one that unfreezes ImageNet layers, starts
    on a fresh optimizer whose first steps would otherwise jolt the trained head)."""
    import tf_keras as keras

    rate, total = phase.learning_rate, max(1, phase.epochs * epoch_steps)
    warmup = min(total - 1, int(round(config.warmup_epochs * epoch_steps)))
    if config.lr_schedule == "cosine":
        start = rate / 10 if warmup else rate
        return keras.optimizers.schedules.CosineDecay(start, decay_steps=total - warmup, alpha=0.01,
                                                      warmup_target=rate if warmup else None, warmup_steps=warmup)
    return warmup_rate(rate, warmup)


class WeightAverage:
    """An exponential moving average of a model's weights, updated after every training step, with the
    decay warming up as (1 + t) / (10 + t) so that a short run is not dominated by its random start.
    Evaluating and saving the average instead of the last step's weights smooths the epoch-to-epoch noise
    that makes the "best devel epoch" a matter of luck (Polyak averaging). ``variables`` limits it to some
    of the model's variables (a fine-tune averages the trainable ones: a pruning mask or step counter must
    stay as it is)."""

    def __init__(self, model, decay: float, variables: list | None = None) -> None:
        self.variables = list(model.weights if variables is None else variables)
        self.decay, self.steps = decay, 0
        self.average = [np.asarray(v.numpy(), dtype=np.float64) for v in self.variables]

    def update(self) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for average, variable in zip(self.average, self.variables):
            average *= decay
            average += (1 - decay) * variable.numpy()

    @contextlib.contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its own again after it."""
        own = [v.numpy() for v in self.variables]
        for variable, average, value in zip(self.variables, self.average, own):
            variable.assign(average.astype(value.dtype))
        try:
            yield
        finally:
            for variable, value in zip(self.variables, own):
                variable.assign(value)


def _augmented_batch(model, x: np.ndarray, labels: np.ndarray, settings: AugmentSettings,
                     class_weights: np.ndarray | None, rng: np.random.Generator, teacher: Teacher | None):
    """A training batch's images, targets and sample weights: SapAugment-driven CutMix and SpecAugment on the
    images (their targets mixed alike), then the teacher's share of every target."""
    y = one_hot(labels, model.output_shape[-1])
    if settings.cutmix or settings.specaugment:
        if settings.sapaugment:
            probabilities = model(x, training=False).numpy()
            losses = -np.log(np.clip((probabilities * y).sum(axis=1), 1e-7, 1.0))
            lambdas = sap_lambdas(losses, a=settings.sap_a, s=settings.sap_s)
        else:
            lambdas = rng.random(len(labels))
        x, y = augment_batch(x, y, lambdas, settings, rng)
    if teacher is not None:
        y = teacher.targets(x, y)
    return x, y, None if class_weights is None else class_weights[labels]


def _write_full_history(path: Path, history: list[dict]) -> None:
    side = sidecar_path(path)
    write_sidecar(side, dataclasses.replace(read_sidecar(side), history=tuple(history)))


def _class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0).astype(np.float32)


def _tensorboard_writer(out_dir: Path):
    import importlib.util

    import tensorflow as tf

    if importlib.util.find_spec("tensorboard") is None:
        raise UserError("tensorboard=true needs the tensorboard package: pip install 'dslite-tiny[tensorboard]'")
    return tf.summary.create_file_writer(str(out_dir / "tensorboard"))


def _log_scalars(writer, record: dict) -> None:
    if writer is None:
        return
    import tensorflow as tf

    with writer.as_default():
        tf.summary.scalar("loss", record["loss"], step=record["epoch"])
        tf.summary.scalar("devel_uar", record["devel_uar"], step=record["epoch"])
    writer.flush()
