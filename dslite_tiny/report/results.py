"""The report's data: a compress output folder read back from its files, never recomputed.

    OUT/summary.csv                   which variants ran, in order, with status and reason
    OUT/<variant>/metrics.json        sizes, sparsity, TFLM arena, host (LiteRT) accuracy and latency
    OUT/<variant>/device-<name>.json  one device's accuracy and latency (written by the device harness)
    OUT/reference.json                the float Keras model's accuracy, the labels and the frontend

Accuracy and speed are ``Measurement``s, one per place the variant ran: the host first, then each device
file. Tables and plots iterate over measurements, so device results join them without new code. Every
file is read through its record in ``dslite_tiny.records`` (``VariantMetrics``, ``DeviceResults``,
``Reference``): a malformed one is a one-line error naming the file and the field.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from dslite_tiny.records import (CLOCKS, Reference, Scores, Sizes, Timing, VariantMetrics, read_device_results,
                                 read_metrics, read_reference, read_summary_variants)
from dslite_tiny.config import FrontendConfig
from dslite_tiny.errors import UserError

DEVICE_RESULTS_GLOB = "device-*.json"


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Accuracy and latency of one variant where it ran, with what its timings count and on which chunks
    (both from the record the measuring harness wrote, never from a device's name)."""

    source: str  # "host" or the device's name
    scores: Scores
    latency: Timing  # inference
    frontend: Timing | None  # on-device feature computation (None on the host: features come precomputed)
    clock: str = "host-litert"  # "host-litert", or a key of records.CLOCKS
    chunks: int | None = None  # chunks it ran (None: the whole test split, or not recorded)
    test_chunks: int | None = None
    host_uar: float | None = None  # the host's UAR on the same chunks (devices)

    @property
    def unit(self) -> str:
        """The unit of its milliseconds: "ms", or "M instr." for instructions counted by QEMU."""
        return "ms" if self.clock == "host-litert" else CLOCKS[self.clock][0]

    @property
    def uar(self) -> float | None:  # per chunk
        return self.scores.uar

    @property
    def uar_files(self) -> float | None:  # per file (mean-score vote over its chunks)
        return self.scores.uar_files

    @property
    def accuracy(self) -> float | None:
        return self.scores.accuracy

    @property
    def agreement(self) -> float | None:  # share of chunks predicted as the float model predicts them
        return self.scores.agreement

    @property
    def delta_uar_se(self) -> float | None:  # standard error of UAR − the float model's (host runs)
        return self.scores.delta_uar_se

    @property
    def confusion(self) -> tuple[tuple[int, ...], ...]:
        return self.scores.confusion


@dataclasses.dataclass(frozen=True)
class VariantResult:
    metrics: VariantMetrics
    measurements: tuple[Measurement, ...]

    @property
    def name(self) -> str:
        return self.metrics.variant

    @property
    def status(self) -> str:
        return self.metrics.status

    @property
    def reason(self) -> str:
        return self.metrics.reason

    @property
    def ok(self) -> bool:
        return self.metrics.ok

    @property
    def host(self) -> Measurement | None:
        return self.measurements[0] if self.measurements else None

    @property
    def size(self) -> Sizes | None:
        return self.metrics.sizes

    @property
    def arena_bytes(self) -> int | None:
        return self.metrics.arena_bytes


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
    def model_path(self) -> str:
        """The source model relative to the output folder: a report travels with its run, and a machine's
        absolute path means nothing elsewhere (reference.json keeps the full one)."""
        model = Path(self.reference.model)
        if not model.is_absolute():
            return model.as_posix()
        try:
            return Path(os.path.relpath(model, self.out_dir.resolve())).as_posix()
        except ValueError:  # another drive (Windows)
            return model.name

    @property
    def finished(self) -> str:
        """When the run's last variant finished (ISO date and time, UTC as recorded)."""
        return max((v.metrics.finished for v in self.variants), default="")

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
    names = read_summary_variants(summary)
    variants = tuple(_variant(out_dir / name) for name in names)
    return Results(out_dir, reference, variants)


def _variant(folder: Path) -> VariantResult:
    metrics = read_metrics(folder / "metrics.json")
    measurements = []
    if metrics.ok:
        measurements.append(Measurement("host", metrics.scores, metrics.latency, None))
        for path in sorted(folder.glob(DEVICE_RESULTS_GLOB)):
            d = read_device_results(path)
            measurements.append(Measurement(d.device, d.scores, d.inference, d.frontend, d.clock, d.chunks,
                                            d.test_chunks, d.host_uar))
    return VariantResult(metrics, tuple(measurements))
