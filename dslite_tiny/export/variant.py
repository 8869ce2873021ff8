"""One model to export: a compress variant folder (``OUT/<variant>``) or a bare ``.tflite``.

A variant folder brings everything firmware needs: its ``metrics.json`` (status, converter versions) and
the run's ``reference.json`` (labels, frontend). A bare ``.tflite`` brings only its tensors; a
``metrics.json`` and ``reference.json`` beside it are used when present, otherwise the labels are the class
indices and the frontend is unknown.

Every model is read through ``measure.graph``'s validation, whoever made it, and the TFLite Micro check runs
on every C export (``with_tflm_check``): a ``metrics.json`` records an earlier run, it vouches for nothing.
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
from dslite_tiny.measure.graph import Graph, read_graph

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
    arena_bytes: int | None  # TFLM's minimum, None until ``with_tflm_check`` measured it
    converter: dict  # versions that converted the model (metrics.json), {} if unknown
    graph: Graph  # the validated tensors and ops
    recorded_arena_bytes: int | None = None  # what metrics.json recorded (a record, not a check)

    @property
    def num_classes(self) -> int:
        return int(self.description["output"]["shape"][-1])


def load_variant(path: str | Path) -> Variant:
    """Read a variant folder or ``.tflite``; a failed variant or a file that is no TFLite model is refused."""
    path = Path(path)
    tflite, name = _tflite_path(path)
    data = tflite.read_bytes()
    check_tflite(data, tflite)
    graph = read_graph(data, tflite)
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
                   reference is not None, frontend, None, metrics.versions if metrics else {}, graph,
                   metrics.arena_bytes if metrics else None)


def with_tflm_check(variant: Variant) -> Variant:
    """The variant with its TFLM minimum arena, after TFLite Micro's interpreter (in a child process: it may
    crash on a hostile model) built and invoked it; a refusal is a one-line ``UserError``. Runs every time,
    about half a second for the demo model; an arena ``metrics.json`` recorded differently is a warning."""
    if variant.arena_bytes is not None:  # checked already in this process
        return variant
    from dslite_tiny.measure.graph import check_limits
    from dslite_tiny.measure.tflm import TFLMError, check_tflm

    check_limits(variant.graph, variant.path)  # TFLM's arena search would allocate what the shapes ask
    io = variant.description["input"]
    sample = np.zeros(io["shape"], dtype=np.dtype(io["dtype"]))
    log.info("running %s in TensorFlow Lite Micro", variant.path)
    try:
        arena = check_tflm(variant.path, sample)["arena_bytes"]
    except TFLMError as exc:
        raise UserError(f"TensorFlow Lite Micro cannot run this model: {exc}", path=variant.path) from None
    recorded = variant.recorded_arena_bytes
    if recorded is not None and recorded != arena:
        log.warning("%s: metrics.json records a TFLM arena of %d bytes; measured now: %d (used)", variant.path,
                    recorded, arena)
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
