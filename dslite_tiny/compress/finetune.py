"""Short fine-tuning of a wrapped (pruning, clustering or QAT) model that stays a copy of the float model.

A compressed variant is only worth having if it still makes the float model's decisions, so the float
model is the teacher: the loss mixes the labels with the teacher's soft targets at a temperature
(knowledge distillation, Hinton et al. 2015; ``distill_weight`` 0 trains on labels alone), and the epoch
kept is the one with the best mean of devel UAR and devel agreement with the teacher; for QAT and
clustering the untrained start competes too (a calibrated QAT MobileNet already is its PTQ model, and two
epochs at 1e-5 took its test agreement from 96 % to 93 %). The learning rate
warms up linearly over the first epoch (from a tenth of its value), so the first steps, with pruning
masks or fake quantization newly in place, cannot throw the model off its trained optimum.

Each epoch is training's own (``train.epoch.train_epoch``), which drives the Keras callbacks by hand, so
TFMOT's ``UpdatePruningStep`` sees every batch (without it nothing is pruned); no image augmentation (CutMix,
SpecAugment), but pruning and slimming replay the model's own spectrogram augmentation (the teacher sees the
same augmented input, so the student learns to match it on more than the training chunks), and with
``average_decay`` the weights evaluated and kept are a moving average (both raised agreement with the float
model on Speech Commands, ``configs/compress/default.yaml``); slimming can also learn the teacher on unlabelled
audio (``transfer_batch``), since what a slimmed student lacks is the teacher's behaviour beyond the training
chunks, which it already matches on all of them (FSDD DS-CNN). BatchNormalization stays
in inference mode and every other layer trains (see ``set_finetunable``). For pruning only epochs after the
schedule reached its final sparsity are eligible, so the selected model always meets the target.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging

import numpy as np

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.data.features import FeatureSet, batches_per_epoch
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.measure.metrics import uar
from dslite_tiny.train.distill import soften
from dslite_tiny.train.epoch import devel_decisions, one_hot, train_epoch
from dslite_tiny.train.fit import WeightAverage
from dslite_tiny.train.optimizers import make_optimizer, warmup_rate

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    epochs: int
    learning_rate: float
    batch_size: int
    optimizer: str = "adam"
    balance: str = "oversample"
    seed: int = 0
    distill_weight: float = 0.0  # share of the loss on the teacher's soft targets (the rest: the labels)
    temperature: float = 1.0
    average_decay: float = 0.0  # of the trainable weights' moving average that is evaluated and kept (0: none)


def steps_per_epoch(train: FeatureSet, settings: FinetuneSettings) -> int:
    return batches_per_epoch(train.labels, len(train.classes), batch_size=settings.batch_size,
                             balance=settings.balance)


def finetune(model, train: FeatureSet, devel: FeatureSet, frontend: Frontend, settings: FinetuneSettings, *,
             teacher=None, callbacks: tuple = (), eligible_from_step: int = 0, progress: Progress = no_progress,
             desc: str = "fine-tune", augment=None, transfer: np.ndarray | None = None) -> list[dict]:
    """Train ``model`` in place (distilled from ``teacher`` when given); returns the per-epoch history
    (loss, devel UAR, devel agreement with the teacher, selected). Where every step is eligible (QAT, not
    pruning) the untrained model is epoch 0 of the history and is kept if no epoch scores better. With
    ``average_decay`` each epoch is evaluated (and kept) as the moving average of the trainable weights
    since the first eligible step.
    ``augment(mel_db, rng)`` (a ``train.augment.MelAugmenter``) augments each batch; the teacher's soft
    targets are computed on the augmented input too. ``transfer``: unlabelled chunk spectrograms (mel dB); each
    batch adds as many of them, drawn at random, labelled by the teacher (``transfer_batch``)."""
    import tf_keras as keras

    if transfer is not None and teacher is None:
        raise ValueError("unlabelled transfer chunks need a teacher to label them")

    keras.utils.set_random_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    num_classes = model.output_shape[-1]
    distill = teacher is not None and settings.distill_weight > 0
    epoch_steps = steps_per_epoch(train, settings)
    set_finetunable(model)
    model.compile(optimizer=make_optimizer(settings.optimizer, _schedule(settings, epoch_steps)),
                  loss=distillation_loss(num_classes, settings.distill_weight, settings.temperature) if distill
                  else "categorical_crossentropy")
    hooks = keras.callbacks.CallbackList(list(callbacks), model=model)
    hooks.on_train_begin()
    teacher_devel = None if teacher is None else devel_decisions(teacher, devel, frontend)
    history, best, best_weights = [], -1.0, None
    average = _EligibleAverage(model, settings.average_decay, eligible_from_step)
    if eligible_from_step == 0:  # the starting point competes too: fine-tuning must beat it to be kept
        start = {"epoch": 0, "loss": None, **_evaluate_epoch(model, devel, frontend, teacher_devel, num_classes),
                 "eligible": True, "selected": False}
        history.append(start)
        best, best_weights = start["score"], model.get_weights()

    def make_batch(x: np.ndarray, labels: np.ndarray):
        y = one_hot(labels, num_classes)
        if distill:
            y = np.concatenate([y, soften(teacher(x, training=False).numpy(), settings.temperature)], 1)
        if transfer is not None:
            extra_x, extra_y = transfer_batch(teacher, transfer, frontend, rng, len(x),
                                              settings.temperature if distill else None)
            x, y = np.concatenate([x, extra_x.astype(x.dtype)]), np.concatenate([y, extra_y])
        return x, y, None

    for epoch in range(settings.epochs):
        loss = train_epoch(model, train, frontend, batch_size=settings.batch_size, balance=settings.balance,
                           rng=rng, make_batch=make_batch, augment=augment, hooks=hooks,
                           after_step=average.step, progress=progress,
                           desc=f"{desc} epoch {epoch + 1}/{settings.epochs}")
        hooks.on_epoch_end(epoch)
        with average.applied():
            record = _evaluate_epoch(model, devel, frontend, teacher_devel, num_classes)
            record = {"epoch": epoch + 1, "loss": round(loss, 6), **record,
                      "eligible": (epoch + 1) * epoch_steps > eligible_from_step, "selected": False}
            if record["eligible"] and record["score"] > best:
                best, best_weights = record["score"], model.get_weights()
        history.append(record)
        log.info("%s epoch %d: loss %.4f, devel UAR %.4f, agreement %s", desc, epoch + 1, record["loss"],
                 record["devel_uar"], record["devel_agreement"])
    hooks.on_train_end()
    if best_weights is not None:
        model.set_weights(best_weights)
        max((r for r in history if r["eligible"]), key=lambda r: r["score"])["selected"] = True
    return history


def transfer_batch(teacher, chunks: np.ndarray, frontend: Frontend, rng: np.random.Generator, count: int,
                   temperature: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``count`` chunks drawn from the unlabelled ``chunks`` as model input, and their targets: the teacher's
    probabilities in place of labels, followed by them softened at ``temperature`` where the fine-tune
    distils (None: it does not). Without labels the teacher is the only truth, so these chunks teach its
    function on voices and words the labelled split lacks; they are not augmented (they are the variety)."""
    x = frontend.model_input(chunks[rng.integers(0, len(chunks), count)]).astype(np.float32)
    probabilities = teacher(x, training=False).numpy()
    if temperature is None:
        return x, probabilities
    return x, np.concatenate([probabilities, soften(probabilities, temperature)], 1)


class _EligibleAverage:
    """``train.fit.WeightAverage`` of the trainable weights from the step after the first eligible one: a
    pruned model's masks are final then (their last update is at that step), a faded channel is zero. A weight
    the model holds at exactly zero when the average is applied stays zero: between steps a masked weight can
    hold the optimizer's last update (~1e-3, TFMOT masks again at its next call), and an average over it must
    not revive it, whichever mechanism (TFMOT's wrappers, block masks, channel fading) zeroed it."""

    def __init__(self, model, decay: float, start_step: int) -> None:
        self.model, self.decay, self.start_step, self.steps = model, decay, start_step, 0
        self.average: WeightAverage | None = None

    def step(self) -> None:
        self.steps += 1
        if not self.decay or self.steps <= self.start_step:
            return
        if self.average is None:
            self.average = WeightAverage(self.model, self.decay, self.model.trainable_weights)
        else:
            self.average.update()

    @contextlib.contextmanager
    def applied(self):
        if self.average is None:
            yield
            return
        zeros = [variable.numpy() == 0 for variable in self.average.variables]
        with self.average.applied():
            for variable, zero in zip(self.average.variables, zeros):
                if zero.any():
                    variable.assign(np.where(zero, 0, variable.numpy()))
            yield


def _evaluate_epoch(model, devel: FeatureSet, frontend: Frontend, teacher_devel: np.ndarray | None,
                    num_classes: int) -> dict:
    """Devel UAR, agreement with the teacher's devel decisions, and the selection score (their mean)."""
    predicted = devel_decisions(model, devel, frontend)
    devel_uar = uar(devel.labels, predicted, num_classes)
    if teacher_devel is None:
        return {"devel_uar": devel_uar, "devel_agreement": None, "score": devel_uar}
    agreement = round(float(np.mean(predicted == teacher_devel)), 6)
    return {"devel_uar": devel_uar, "devel_agreement": agreement, "score": (devel_uar + agreement) / 2}


def _schedule(settings: FinetuneSettings, epoch_steps: int):
    """Linear warm-up over the first epoch (at most a third of the run), then the constant rate. Not a
    decay: pruning reaches its final sparsity at 75 % of the steps and needs a real learning rate after
    that to recover (a cosine decay to zero cost 11–14 UAR points of pruned-int8 on FSDD MobileNet)."""
    return warmup_rate(settings.learning_rate, min(epoch_steps, max(1, settings.epochs * epoch_steps) // 3))


def distillation_loss(num_classes: int, weight: float, temperature: float):
    """A Keras loss over targets ``[one-hot labels | teacher soft targets]`` and the student's probabilities:
    (1 − w)·CE(labels, p) + w·T²·CE(teacher_T, softmax(log p / T)). T² keeps the soft term's gradient on
    the scale of the hard one (Hinton et al.)."""
    import tensorflow as tf

    def loss(y_true, y_pred):
        labels, teacher = y_true[:, :num_classes], y_true[:, num_classes:]
        log_p = tf.math.log(tf.clip_by_value(y_pred, 1e-7, 1.0))
        hard = -tf.reduce_sum(labels * log_p, axis=-1)
        soft = -tf.reduce_sum(teacher * tf.nn.log_softmax(log_p / temperature, axis=-1), axis=-1)
        return (1.0 - weight) * hard + weight * temperature ** 2 * soft

    return loss


def set_finetunable(model) -> None:
    """Every layer trains, BatchNormalization (also inside TFMOT wrappers) stays in inference mode.

    A trained model comes back from its .h5 with the trainable flags of its last phase (the first part of
    an ImageNet backbone frozen): pruning a frozen layer zeroes weights the rest of that layer can never
    compensate. BatchNorm statistics were frozen in that training too; batch statistics of a few small
    batches would shift every activation at once. The wrappers' own variables (masks, quantizer ranges)
    still update."""
    import tf_keras as keras

    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        layer.trainable = True
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False
