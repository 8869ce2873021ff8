"""One way to measure a ``.tflite`` model, whoever produced it: accuracy on an evaluation set, agreement with
the float Keras model, sizes, sparsity, MACs, host latency (LiteRT) and TFLite Micro's verdict and arena.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from dslite_tiny.measure.flatbuffer import describe_tflite, pruned_sparsity
from dslite_tiny.measure.litert import all_threads, create_interpreter, measure_latency, predict_tflite, quantize_input
from dslite_tiny.measure.tflm import TFLMError, check_tflm
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.measure.metrics import classification_report, file_votes, uar_change_error

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """The chunks every variant is scored on, with the float Keras model's predictions for agreement."""

    images: np.ndarray  # (n, h, w, c) float32, normalised as the model expects
    labels: np.ndarray  # (n,) model class index
    clip_index: np.ndarray  # (n,) which file a chunk came from (per-file vote)
    classes: tuple[str, ...]
    reference: np.ndarray  # (n,) class predicted by the float Keras model


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    latency_runs: int = 50
    latency_warmup: int = 5
    tflm: bool = True


def measure_model(path: Path, eval_set: EvalSet, settings: MeasureSettings, *,
                  pruned_layers: list[str] | None = None, progress: Progress = no_progress,
                  desc: str = "LiteRT") -> dict:
    """Everything about one model file, as plain data for ``metrics.json``."""
    data = Path(path).read_bytes()
    described = describe_tflite(data)
    interpreter = create_interpreter(data)
    scores = predict_tflite(interpreter, eval_set.images, progress=progress, desc=desc)
    metrics = {
        "size": {key: described[key] for key in ("tflite_bytes", "gzip_bytes", "weight_bytes", "params", "macs",
                                                      "activation_bytes")},
        "ops": described["ops"], "float_ops": described["float_ops"],
        "input": described["input"], "output": described["output"],
        "sparsity": {"weights": described["sparsity"]["weights"],
                     "pruned_layers": pruned_sparsity(described["sparsity"]["layers"], pruned_layers or []),
                     "layers": described["sparsity"]["layers"]},
        "accuracy": accuracy(scores, eval_set),
        "latency": {"one_thread": measure_latency(data, eval_set.images[0], runs=settings.latency_runs,
                                                  warmup=settings.latency_warmup, num_threads=1),
                    "all_threads": measure_latency(data, eval_set.images[0], runs=settings.latency_runs,
                                                   warmup=settings.latency_warmup, num_threads=all_threads())},
    }
    if settings.tflm and described["input"]["dtype"] in ("int8", "int16"):
        metrics["tflm"] = tflm_verdict(path, interpreter, eval_set.images[0])
    return metrics


def accuracy(scores: np.ndarray, eval_set: EvalSet) -> dict:
    """Per-chunk and per-file (mean-score vote) reports, agreement with the float Keras model, and the
    standard error of the per-chunk UAR's difference from the float model's (``metrics.uar_change_error``)."""
    files, file_scores = file_votes(scores, eval_set.clip_index)
    file_labels = eval_set.labels[np.searchsorted(eval_set.clip_index, files)]
    predicted = scores.argmax(axis=1)
    error = uar_change_error(eval_set.labels, predicted, eval_set.reference, eval_set.clip_index,
                             len(eval_set.classes))
    return {"chunks": classification_report(eval_set.labels, scores, eval_set.classes),
            "files": classification_report(file_labels, file_scores, eval_set.classes),
            "agreement": round(float(np.mean(predicted == eval_set.reference)), 6) if len(predicted) else None,
            "delta_uar_se": None if np.isnan(error) else round(error, 6),
            "predicted": predicted.tolist()}


def tflm_verdict(path: Path, interpreter, image: np.ndarray) -> dict:
    """Run the model once in TFLM and compare its int8 output with LiteRT's on the same input."""
    detail = interpreter.get_input_details()[0]
    sample = quantize_input(image[None], detail)
    try:
        result = check_tflm(Path(path), sample)
    except TFLMError as exc:
        return {"ok": False, "reason": str(exc)}
    interpreter.set_tensor(detail["index"], sample)
    interpreter.invoke()
    litert = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    difference = int(np.abs(result["output"].astype(np.int32) - litert.astype(np.int32)).max())
    return {"ok": True, "arena_bytes": result["arena_bytes"], "recorded_arena_bytes": result["recorded_arena_bytes"],
            "max_output_difference_vs_litert": difference}
