"""The report's data: a compress output folder read back from its files, never recomputed.

    OUT/summary.csv                   which variants ran, in order, with status and reason
    OUT/<variant>/metrics.json        sizes, sparsity, TFLM arena, host (LiteRT) accuracy and latency
    OUT/<variant>/device-<name>.json  one device's accuracy and latency (written by the device harness)
    OUT/reference.json                the float Keras model's accuracy, the labels and the frontend

Accuracy and speed are ``Measurement``s, one per place the variant ran: the host first, then each device
file. Tables and plots iterate over measurements, so device results join them without new code. A device
file holds ``{"device": name, "accuracy": <as in metrics.json>, "latency": {"inference": {"median_ms",
"p90_ms"}, "frontend": {...}}}``.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from dslite_tiny.records import COMPRESS_OUTPUT_HINT, Reference, field_at, read_json_object, read_reference
from dslite_tiny.config import FrontendConfig
from dslite_tiny.errors import UserError

DEVICE_RESULTS_GLOB = "device-*.json"
NUMBER = (int, float)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Accuracy and latency of one variant where it ran."""

    source: str  # "host" or the device's name
    uar: float | None  # per chunk
    uar_files: float | None  # per file (mean-score vote over its chunks)
    accuracy: float | None
    agreement: float | None  # share of chunks predicted as the float model predicts them
    latency_ms: float | None  # median inference time
    latency_p90_ms: float | None
    frontend_ms: float | None  # on-device feature computation (None on the host: features come precomputed)
    confusion: list[list[int]] | None


@dataclasses.dataclass(frozen=True)
class VariantResult:
    name: str
    status: str
    reason: str
    metrics: dict
    measurements: tuple[Measurement, ...]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def host(self) -> Measurement | None:
        return self.measurements[0] if self.measurements else None

    @property
    def size(self) -> dict:
        return self.metrics.get("size", {})

    @property
    def arena_bytes(self) -> int | None:
        return self.metrics.get("tflm", {}).get("arena_bytes")


@dataclasses.dataclass(frozen=True)
class Results:
    out_dir: Path
    reference: Reference
    variants: tuple[VariantResult, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.reference.classes

    @property
    def frontend(self) -> FrontendConfig:
        return self.reference.frontend

    @property
    def float_uar(self) -> float:
        return self.reference.float_uar

    @property
    def sources(self) -> list[str]:
        """Every measurement source, host first, in the order first seen."""
        seen: list[str] = []
        for variant in self.variants:
            seen += [m.source for m in variant.measurements if m.source not in seen]
        return seen


def load_results(out_dir: str | Path) -> Results:
    out_dir = Path(out_dir)
    summary = out_dir / "summary.csv"
    if not summary.is_file():
        raise UserError("no summary.csv: pass the output folder of `dslite-tiny compress`", path=out_dir)
    reference = read_reference(out_dir / "reference.json")
    with summary.open(newline="", encoding="utf-8") as handle:
        names = [row["variant"] for row in csv.DictReader(handle)]
    if not names:
        raise UserError("summary.csv lists no variants", path=summary)
    variants = tuple(_variant(out_dir / name) for name in names)
    return Results(out_dir, reference, variants)


def _variant(folder: Path) -> VariantResult:
    path = folder / "metrics.json"
    metrics = read_json_object(path, COMPRESS_OUTPUT_HINT)
    status = field_at(metrics, "status", str, path)
    measurements = []
    if status == "ok":
        measurements.append(_host(metrics, path))
        measurements += [_device(device) for device in sorted(folder.glob(DEVICE_RESULTS_GLOB))]
    return VariantResult(field_at(metrics, "variant", str, path), status, str(metrics.get("reason", "")), metrics,
                         tuple(measurements))


def _host(metrics: dict, path: Path) -> Measurement:
    """LiteRT on the host, from a variant's ``metrics.json``."""
    return Measurement("host", *_scores(metrics, path), field_at(metrics, "latency.one_thread.median_ms", NUMBER, path),
                       field_at(metrics, "latency.one_thread.p90_ms", NUMBER, path), None,
                       field_at(metrics, "accuracy.chunks.confusion_matrix", list, path))


def _device(path: Path) -> Measurement:
    """One device's run, from the ``device-<name>.json`` the harness wrote."""
    data = read_json_object(path, COMPRESS_OUTPUT_HINT)
    frontend = (field_at(data, "latency.frontend.median_ms", NUMBER, path)
                if "frontend" in field_at(data, "latency", dict, path) else None)
    return Measurement(field_at(data, "device", str, path), *_scores(data, path),
                       field_at(data, "latency.inference.median_ms", NUMBER, path),
                       field_at(data, "latency.inference.p90_ms", NUMBER, path), frontend,
                       field_at(data, "accuracy.chunks.confusion_matrix", list, path))


def _scores(data: dict, path: Path) -> tuple[float | None, ...]:
    """UAR per chunk and per file, accuracy and agreement (None where a split had no chunks)."""
    return tuple(field_at(data, name, NUMBER, path, optional=True)
                 for name in ("accuracy.chunks.uar", "accuracy.files.uar", "accuracy.chunks.accuracy",
                              "accuracy.agreement"))
