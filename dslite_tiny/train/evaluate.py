"""Evaluating and applying a trained model: per-chunk and per-file (mean-probability vote) results."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.audio.io import stream_audio
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.data.features import compute_features
from dslite_tiny.data.layouts import Dataset
from dslite_tiny.errors import DataError
from dslite_tiny.models.inference import predict_mel
from dslite_tiny.models.trained import TrainedModel
from dslite_tiny.measure.metrics import classification_report, file_votes


def evaluate(trained: TrainedModel, dataset: Dataset, *, split: str = "test", cache: FeatureCache | None = None,
             strict: bool = False, allow_overlap: bool = False) -> dict:
    """UAR, accuracy, per-class recall and confusion matrices, per chunk and per file, on ``split``; a split
    that shares data with what trained or selected the model is refused (``TrainedModel.split_overlap``)
    unless ``allow_overlap``, and then recorded in the result."""
    trained.check_labels(dataset)
    overlap = trained.split_overlap(dataset, split)
    if overlap and not allow_overlap:
        raise DataError(f"{overlap}: its UAR would flatter the model (leave out --data to use the model's own "
                        f"split, or pass --allow-overlap)", path=dataset.source)
    frontend = Frontend(trained.frontend_config)
    features = compute_features(dataset, frontend, splits=[split], cache=cache, strict=strict)
    if len(features) == 0:
        raise DataError(f"split '{split}' yields no chunks ({features.report.describe()})", path=dataset.source)
    labels = trained.labels_of(features)
    probabilities = predict_mel(trained.model, features.mel_db, frontend)
    files, file_probabilities = file_votes(probabilities, features.clip_index)
    file_labels = labels[np.searchsorted(features.clip_index, files)]
    return {
        "model": str(trained.path), "data": dataset.source, "split": split, "split_method": dataset.split_method,
        "speakers": dataset.speakers(split), "overlaps_training": overlap, "classes": list(trained.classes),
        "features": features.report.describe(),
        "chunks": classification_report(labels, probabilities, trained.classes),
        "files": classification_report(file_labels, file_probabilities, trained.classes),
        "per_file": [{"file": str(features.clips[f].path), "label": features.clips[f].label,
                      "predicted": trained.classes[int(p.argmax())], "probabilities": _rounded(p)}
                     for f, p in zip(files, file_probabilities)],
    }


def predict_files(trained: TrainedModel, paths: Sequence[Path]) -> list[dict]:
    """Per-chunk and per-file class probabilities of audio files, each decoded and classified batch by
    batch: memory stays bounded however long a recording is."""
    frontend = Frontend(trained.frontend_config)
    return [_predict_file(trained, frontend, Path(path)) for path in paths]


def _predict_file(trained: TrainedModel, frontend: Frontend, path: Path) -> dict:
    scores, padded, dropped = [], False, False
    for chunks in frontend.stream_chunks(stream_audio(path, sr=frontend.config.sr)):
        padded, dropped = padded or chunks.padded, dropped or chunks.dropped
        if len(chunks.data):
            scores.append(predict_mel(trained.model, frontend.spectrogram(chunks.data), frontend))
    if not scores:  # dropped: shorter than a chunk with short_clips=drop
        return {"file": str(path), "predicted": None, "probabilities": None, "chunks": [], "padded": False,
                "dropped": True}
    chunks = np.concatenate(scores)
    mean = chunks.mean(axis=0)
    return {"file": str(path), "predicted": trained.classes[int(mean.argmax())], "probabilities": _rounded(mean),
            "chunks": [_rounded(p) for p in chunks], "padded": padded, "dropped": False}


def _rounded(p: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in p]
