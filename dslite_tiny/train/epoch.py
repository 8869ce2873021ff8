"""One epoch of training and the devel score after it: the core that ``train`` (two-phase fit) and
compression's fine-tunes (pruning, QAT, clustering, channel pruning) share, so every unit of work trains the
same way wherever it runs. The callers keep what differs: which epochs run with which optimizer, how a batch
becomes targets (augmentation, a teacher), and which epoch is kept.

An epoch draws its batches (oversampling rare classes if asked), augments the spectrograms, renders the
images per batch (a dataset of 224×224×3 inputs never has to fit in memory) and takes one optimizer step per
batch, all from one random generator in one order, so a seed fixes the run.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.data.features import FeatureSet, epoch_batches
from dslite_tiny.measure.metrics import uar
from dslite_tiny.models.inference import predict_mel
from dslite_tiny.progress import Progress, no_progress

# (images, labels) → (images, targets, sample weights or None): augmentation on images, a teacher's targets
Batch = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, "np.ndarray | None"]]
MelAugment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def train_epoch(model, train: FeatureSet, frontend: Frontend, *, batch_size: int, balance: str,
                rng: np.random.Generator, make_batch: Batch, augment: MelAugment | None = None, hooks=None,
                after_step: Callable[[], None] | None = None, progress: Progress = no_progress,
                desc: str = "epoch") -> float:
    """One pass over ``train``; returns the mean loss. ``hooks`` (a Keras ``CallbackList``) sees every batch,
    as TFMOT's ``UpdatePruningStep`` must; ``after_step`` runs after each optimizer step (a weight average)."""
    losses = []
    batches = epoch_batches(train.labels, model.output_shape[-1], batch_size=batch_size, balance=balance, rng=rng)
    for i, batch in enumerate(progress(batches, desc=desc)):
        if hooks is not None:
            hooks.on_train_batch_begin(i)
        mel_db = train.mel_db[batch] if augment is None else augment(train.mel_db[batch], rng)
        x, y, weights = make_batch(frontend.model_input(mel_db), train.labels[batch])
        losses.append(float(model.train_on_batch(x, y, sample_weight=weights)))
        if hooks is not None:
            hooks.on_train_batch_end(i)
        if after_step is not None:
            after_step()
    return float(np.mean(losses))


def devel_decisions(model, devel: FeatureSet, frontend: Frontend) -> np.ndarray:
    """The model's class decision for every devel chunk."""
    return predict_mel(model, devel.mel_db, frontend).argmax(axis=1)


def devel_uar(model, devel: FeatureSet, frontend: Frontend) -> float:
    return uar(devel.labels, devel_decisions(model, devel, frontend), model.output_shape[-1])


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]
