"""One model to export: a compress variant folder (``OUT/<variant>``) or a bare ``.tflite``.

A variant folder brings everything firmware needs: its ``metrics.json`` (status, measured TFLM arena,
converter versions) and the run's ``reference.json`` (labels, frontend). A bare ``.tflite`` brings only its
tensors; a ``metrics.json`` and ``reference.json`` beside it are used when present, otherwise the labels
are the class indices, the frontend is unknown, and the arena is measured here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np

from dslite_tiny.records import Reference, read_metrics, read_reference
from dslite_tiny.config import FrontendConfig
from dslite_tiny.errors import UserError
from dslite_tiny.measure.flatbuffer import check_tflite, describe_tflite

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A converted model and what is known about it."""

    path: Path  # the .tflite file
    name: str  # variant name (folder name), or the file's stem
    data: bytes
    sha256: str
    description: dict  # describe_tflite(): sizes, ops, input/output quantization
    labels: tuple[str, ...]
    labels_known: bool  # False: class indices stand in for the labels
    frontend: FrontendConfig | None
    arena_bytes: int | None  # measured TFLM minimum, None until measured
    converter: dict  # versions that converted the model (metrics.json), {} if unknown

    @property
    def num_classes(self) -> int:
        return int(self.description["output"]["shape"][-1])


def load_variant(path: str | Path) -> Variant:
    """Read a variant folder or ``.tflite``; a failed variant or a file that is no TFLite model is refused."""
    path = Path(path)
    tflite, name = _tflite_path(path)
    data = tflite.read_bytes()
    check_tflite(data, tflite)
    metrics_path = tflite.with_name("metrics.json")
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else None
    if metrics and not metrics.ok:
        raise UserError(f"variant {name} failed in compress ({metrics.reason or 'no reason recorded'}): "
                        f"nothing to export", path=path)
    reference_path = tflite.parent.parent / "reference.json"
    reference = read_reference(reference_path) if metrics and reference_path.is_file() else None
    description = describe_tflite(data)
    labels, frontend = _labels_and_frontend(reference, reference_path, description, tflite)
    return Variant(tflite, name, data, hashlib.sha256(data).hexdigest(), description, labels,
                   reference is not None, frontend, metrics.arena_bytes if metrics else None,
                   metrics.versions if metrics else {})


def with_measured_arena(variant: Variant) -> Variant:
    """The variant with its TFLM minimum arena, bisected now if ``metrics.json`` did not record it."""
    if variant.arena_bytes is not None:
        return variant
    from dslite_tiny.measure.tflm import TFLMError, check_tflm

    io = variant.description["input"]
    sample = np.zeros(io["shape"], dtype=np.dtype(io["dtype"]))
    log.info("measuring the TFLM arena of %s", variant.path)
    try:
        arena = check_tflm(variant.path, sample)["arena_bytes"]
    except TFLMError as exc:
        raise UserError(f"TensorFlow Lite Micro cannot run this model: {exc}", path=variant.path) from None
    return dataclasses.replace(variant, arena_bytes=arena)


def _tflite_path(path: Path) -> tuple[Path, str]:
    if path.is_dir():
        tflite = path / "model.tflite"
        if not tflite.is_file():
            raise UserError("no model.tflite in this folder; pass a compress variant folder (OUT/<variant>) "
                            "or a .tflite file", path=path)
        return tflite, path.name
    if not path.is_file():
        raise UserError("no such file or folder", path=path)
    if path.suffix != ".tflite":
        raise UserError("expected a compress variant folder (OUT/<variant>) or a .tflite file", path=path)
    return path, path.parent.name if path.name == "model.tflite" else path.stem


def _labels_and_frontend(reference: Reference | None, reference_path: Path, description: dict,
                         tflite: Path) -> tuple[tuple[str, ...], FrontendConfig | None]:
    n = int(description["output"]["shape"][-1])
    if reference is None:
        log.warning("%s: no labels or frontend recorded beside it (a compress run's reference.json), so labels "
                    "are class indices and the frontend is unknown", tflite)
        return tuple(str(i) for i in range(n)), None
    if len(reference.classes) != n:
        raise UserError(f"reference.json names {len(reference.classes)} classes but the model has {n} outputs",
                        path=reference_path)
    return reference.classes, reference.frontend
