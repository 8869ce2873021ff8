"""Short fine-tuning of a wrapped (pruning, clustering or QAT) model, selected by devel UAR.

A plain loop over ``train_on_batch`` drives the Keras callbacks by hand, so TFMOT's ``UpdatePruningStep``
sees every batch (without it nothing is pruned). Images are rendered per batch as in training; there is no
augmentation: these runs are a few epochs long and start from a converged model. BatchNormalization stays
in inference mode and every other layer trains (see ``set_finetunable``). The weights of the best
eligible epoch by devel UAR are restored at the end; for pruning only epochs after the schedule reached its
final sparsity are eligible, so the selected model always meets the target.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.data.features import FeatureSet
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.train.fit import epoch_batches, make_optimizer, predict
from dslite_tiny.measure.metrics import uar

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    epochs: int
    learning_rate: float
    batch_size: int
    optimizer: str = "adam"
    balance: str = "oversample"
    seed: int = 0


def steps_per_epoch(train: FeatureSet, settings: FinetuneSettings) -> int:
    return len(epoch_batches(train.labels, len(train.classes), batch_size=settings.batch_size,
                             balance=settings.balance, rng=np.random.default_rng(settings.seed)))


def finetune(model, train: FeatureSet, devel: FeatureSet, frontend: Frontend, settings: FinetuneSettings, *,
             callbacks: tuple = (), eligible_from_step: int = 0, progress: Progress = no_progress,
             desc: str = "fine-tune") -> list[dict]:
    """Train ``model`` in place; returns the per-epoch history (loss, devel UAR, selected)."""
    import tf_keras as keras

    keras.utils.set_random_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    set_finetunable(model)
    model.compile(optimizer=make_optimizer(settings.optimizer, settings.learning_rate),
                  loss="categorical_crossentropy")
    hooks = keras.callbacks.CallbackList(list(callbacks), model=model)
    hooks.on_train_begin()
    num_classes = model.output_shape[-1]
    history, best, best_weights, step = [], -1.0, None, 0
    for epoch in range(settings.epochs):
        losses = []
        batches = epoch_batches(train.labels, num_classes, batch_size=settings.batch_size,
                                balance=settings.balance, rng=rng)
        for i, batch in enumerate(progress(batches, desc=f"{desc} epoch {epoch + 1}/{settings.epochs}")):
            hooks.on_train_batch_begin(i)
            x = frontend.model_input(train.mel_db[batch])
            y = np.eye(num_classes, dtype=np.float32)[train.labels[batch]]
            losses.append(float(model.train_on_batch(x, y)))
            hooks.on_train_batch_end(i)
            step += 1
        hooks.on_epoch_end(epoch)
        devel_uar = uar(devel.labels, predict(model, devel, frontend).argmax(axis=1), num_classes)
        eligible = step > eligible_from_step
        record = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 6), "devel_uar": devel_uar,
                  "eligible": eligible, "selected": False}
        if eligible and devel_uar > best:
            best, best_weights = devel_uar, model.get_weights()
        history.append(record)
        log.info("%s epoch %d: loss %.4f, devel UAR %.4f", desc, epoch + 1, record["loss"], devel_uar)
    hooks.on_train_end()
    if best_weights is not None:
        model.set_weights(best_weights)
        max((r for r in history if r["eligible"]), key=lambda r: r["devel_uar"])["selected"] = True
    return history


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
