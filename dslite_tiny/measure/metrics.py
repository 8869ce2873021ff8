"""UAR (unweighted average recall = macro recall), the metric of computational paralinguistics: with
imbalanced classes, accuracy rewards always guessing the majority class, UAR does not."""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def recall_per_class(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for a class absent from the ground truth."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def uar(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes present in ``y_true``."""
    recalls = recall_per_class(confusion_matrix(y_true, y_pred, num_classes))
    return float(np.nanmean(recalls)) if np.isfinite(recalls).any() else float("nan")


def classification_report(y_true: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> dict:
    """UAR, accuracy, per-class recall and the confusion matrix as plain data."""
    y_pred = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred, len(classes))
    recalls = recall_per_class(matrix)
    return {
        "uar": uar(y_true, y_pred, len(classes)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else float("nan"),
        "recall": {c: (None if np.isnan(r) else float(r)) for c, r in zip(classes, recalls)},
        "confusion_matrix": matrix.tolist(),
        "n": int(len(y_true)),
    }


def file_votes(probabilities: np.ndarray, clip_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-file probabilities as the mean over the file's chunks; returns (file ids, mean probabilities)."""
    files, inverse = np.unique(clip_index, return_inverse=True)
    sums = np.zeros((files.size, probabilities.shape[1]))
    np.add.at(sums, inverse, probabilities)
    return files, sums / np.bincount(inverse)[:, None]


def uar_change_error(y_true: np.ndarray, y_pred: np.ndarray, y_reference: np.ndarray, clip_index: np.ndarray,
                     num_classes: int, *, resamples: int = 1000, seed: int = 0) -> float:
    """The standard error of UAR(``y_pred``) − UAR(``y_reference``) on these chunks, by a paired bootstrap
    over files: each resample draws the files with replacement and scores both predictions on the same
    chunks. Files, not chunks, are drawn because a file's chunks share a speaker and a take, so they err
    together. A compressed variant's ΔUAR within about two of these of another's is not a ranking: on
    FSDD's one test speaker (504 chunks) it is about one UAR point per model. NaN without chunks."""
    if len(y_true) == 0:
        return float("nan")
    files, inverse = np.unique(clip_index, return_inverse=True)
    per_file = np.zeros((3, files.size, num_classes))  # chunks, variant correct, reference correct
    for row, weight in enumerate((np.ones(len(y_true)), y_pred == y_true, y_reference == y_true)):
        np.add.at(per_file[row], (inverse, np.asarray(y_true, np.int64)), weight)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(files.size, np.full(files.size, 1 / files.size), size=resamples)  # files drawn
    chunks, variant, reference = (draws @ table for table in per_file)  # (resamples, classes) each
    present = chunks > 0  # a class no drawn file holds has no recall in that resample
    recall_change = np.where(present, (variant - reference) / np.maximum(chunks, 1), 0.0)
    return float(np.std(recall_change.sum(axis=1) / present.sum(axis=1), ddof=1))
