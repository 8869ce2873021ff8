"""Knowledge distillation (Hinton et al. 2015): trained models (one, or several averaged) soften the training
targets of the model being trained, so that a small MCU model learns which classes a larger one finds alike.

A teacher sees exactly the student's input (the augmented images of the batch, CutMix and SpecAugment
included), so it must share the student's classes and frontend. It must not have trained on the speakers
or files the student selects or is tested on, or the student's devel and test UAR would inherit what the
teacher saw there: that is refused, as ``evaluate`` refuses an overlapping split.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from dslite_tiny.config import ConfigError, FrontendConfig
from dslite_tiny.data.layouts import Dataset
from dslite_tiny.errors import UserError

FOLD_FIELD = "{fold}"


@dataclasses.dataclass
class Teacher:
    models: list  # tf_keras models with the student's input and classes
    weight: float
    temperature: float

    def targets(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``y`` (one-hot or CutMix-mixed) blended with the teachers' mean probabilities on ``x``, softened:
        p^(1/T) renormalised, which is the softmax of the logits divided by T."""
        p = np.mean([model(x, training=False).numpy() for model in self.models], axis=0)
        return ((1.0 - self.weight) * y + self.weight * soften(p, self.temperature)).astype(np.float32)


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softened at ``temperature``: p^(1/T) renormalised, which is the softmax of the logits
    divided by T (without needing the logits). Training's teachers and compression's fine-tunes both use
    it; a probability that is exactly 0 counts as 1e-12."""
    soft = np.power(np.clip(probabilities.astype(np.float64), 1e-12, 1.0), 1.0 / temperature)
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


def load_teacher(paths: Sequence[str], *, weight: float, temperature: float, classes: Sequence[str],
                 frontend: FrontendConfig, dataset: Dataset) -> Teacher | None:
    """The teachers ``paths`` name, checked against the student's classes, frontend and data split."""
    from dslite_tiny.models.trained import load_trained

    if not paths:
        return None
    models = []
    for path in paths:
        if FOLD_FIELD in path:
            raise ConfigError(f"teacher '{path}': only 'dslite-tiny cv' fills in {FOLD_FIELD}", key="teacher")
        trained = load_trained(path)
        if tuple(trained.classes) != tuple(classes):
            raise UserError(f"the teacher's classes ({', '.join(trained.classes)}) are not the student's "
                            f"({', '.join(classes)})", path=path)
        if trained.frontend_config != frontend:
            raise UserError("the teacher was trained on another frontend: it must see the student's images "
                            "(same frontend preset and settings)", path=path)
        for split in ("devel", "test"):
            overlap = trained.split_overlap(dataset, split, owner="this teacher")
            if overlap:
                raise UserError(f"cannot teach: {overlap}", path=path)
        models.append(trained.model)
    return Teacher(models, weight, temperature)


def for_fold(paths: Sequence[str], fold: str) -> list[str]:
    """The teacher paths of one cross-validation fold: ``{fold}`` replaced by its name."""
    return [path.replace(FOLD_FIELD, fold) for path in paths]
