"""Typed, versioned records of what one stage writes and another reads back, each with one validated
reader and one atomic writer: a missing or malformed field is a one-line error naming the file and the
field, never a KeyError deep in a report or "—" in a table.

Each file carries ``format`` and ``version``; a file written before versions is read as version 1 and a
newer version is refused with the reason. Low in the layering: only config, errors and artifacts.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from dslite_tiny.artifacts import atomic_path, write_json
from dslite_tiny.config import VARIANTS, FrontendConfig, from_mapping, to_dict
from dslite_tiny.errors import ConfigError, UserError

REFERENCE_FORMAT, REFERENCE_VERSION = "dslite-tiny reference", 1
SIDECAR_FORMAT, SIDECAR_VERSION = "dslite-tiny model", 1
METRICS_FORMAT, METRICS_VERSION = "dslite-tiny variant metrics", 1
DEVICE_FORMAT, DEVICE_VERSION = "dslite-tiny device results", 1
NUMBER = (int, float)
COMPRESS_OUTPUT_HINT = "is this a complete `dslite-tiny compress` output?"  # for a missing file of OUT


@dataclasses.dataclass(frozen=True)
class Reference:
    """``OUT/reference.json`` of ``compress``: the float Keras model on the test chunks, with the labels and
    frontend that export, report and the device side need without reopening the source model."""

    model: str  # path of the source .h5
    sha256: str
    split: str
    classes: tuple[str, ...]
    frontend: FrontendConfig
    features: str  # how the test split's chunks came about (FeatureReport.describe)
    accuracy: dict[str, Any]  # classification reports: {"chunks": {...}, "files": {...}}

    @property
    def float_uar(self) -> float:
        return self.accuracy["chunks"]["uar"]


def write_reference(path: str | Path, reference: Reference) -> Path:
    data = {"format": REFERENCE_FORMAT, "version": REFERENCE_VERSION, **dataclasses.asdict(reference),
            "classes": list(reference.classes), "frontend": to_dict(reference.frontend)}
    return write_json(path, data, sort_keys=False)


def read_reference(path: str | Path) -> Reference:
    path = Path(path)
    data = read_json_object(path, COMPRESS_OUTPUT_HINT)
    _check_version(data, path, REFERENCE_FORMAT, REFERENCE_VERSION)
    classes = _class_names(data, path)
    if not 0 <= field_at(data, "accuracy.chunks.uar", (int, float), path) <= 1:
        raise UserError("field 'accuracy.chunks.uar' must be in [0, 1]", path=path)
    frontend = _frontend(data, path)
    model, sha256, split, features = (field_at(data, name, str, path) for name in ("model", "sha256", "split",
                                                                                   "features"))
    return Reference(model, sha256, split, tuple(classes), frontend, features, data["accuracy"])


@dataclasses.dataclass(frozen=True)
class Scores:
    """Accuracy where a variant ran (host or device), from an ``accuracy`` block: UAR and accuracy per
    chunk and per file, agreement with the float model (None where a split had no chunks), the per-chunk
    confusion matrix, and the standard error of the per-chunk UAR's difference from the float model's (a
    host measurement's; None in a device's results and in metrics written before it was recorded)."""

    uar: float | None
    uar_files: float | None
    accuracy: float | None
    accuracy_files: float | None
    agreement: float | None
    confusion: tuple[tuple[int, ...], ...]
    delta_uar_se: float | None = None

    @classmethod
    def read(cls, data: dict, path: Path) -> Scores:
        figures = tuple(field_at(data, name, NUMBER, path, optional=True, at_least=0, at_most=1)
                        for name in ("accuracy.chunks.uar", "accuracy.files.uar", "accuracy.chunks.accuracy",
                                     "accuracy.files.accuracy", "accuracy.agreement"))
        confusion = field_at(data, "accuracy.chunks.confusion_matrix", list, path)
        recorded = "delta_uar_se" in data["accuracy"]  # not by a device, nor by compress before it was
        error = field_at(data, "accuracy.delta_uar_se", NUMBER, path, optional=True, at_least=0, at_most=1) \
            if recorded else None
        return cls(*figures, tuple(tuple(row) for row in confusion), error)


@dataclasses.dataclass(frozen=True)
class Timing:
    median_ms: float
    p90_ms: float

    @classmethod
    def read(cls, data: dict, dotted: str, path: Path) -> Timing:
        return cls(*(field_at(data, f"{dotted}.{name}", NUMBER, path, at_least=0) for name in ("median_ms", "p90_ms")))


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Bytes of the .tflite, of its gzip, of its weights; parameters; MACs; every activation tensor's bytes
    (the no-reuse upper bound of an arena)."""

    tflite_bytes: int
    gzip_bytes: int
    weight_bytes: int
    params: int
    macs: int
    activation_bytes: int


@dataclasses.dataclass(frozen=True)
class TensorSparsity:
    name: str
    sparsity: float


@dataclasses.dataclass(frozen=True)
class Sparsity:
    weights: float  # zeros among all int8/float weights
    pruned_layers: float | None  # zeros among the pruned layers' weights (None: nothing pruned)
    target: float | None  # what pruning aimed at
    tensors: tuple[TensorSparsity, ...]  # per weight tensor, in graph order


@dataclasses.dataclass(frozen=True)
class TensorError:
    """One quantized tensor against the float model (``measure.layer_error``)."""

    layer: str
    op: str
    sqnr_db: float | None
    rmse_scale: float


@dataclasses.dataclass(frozen=True)
class CortexM4:
    """The generated engine on a Cortex-M4 (``measure.cortex_m4``): flash (kernels, model code, constants),
    RAM (arena, input, output) and instructions per inference; ``method`` says how they were had."""

    ok: bool
    reason: str
    flash_bytes: int | None
    ram_bytes: int | None
    instructions: int | None  # counted by QEMU, or estimated by the calibrated model (method "estimate")
    method: str | None  # "qemu-icount" or "estimate" (no QEMU: flash from the constants, instructions modelled)
    constant_bytes: int | None = None  # of flash_bytes: the model's weights, biases and parameters
    op_calls: int | None = None  # kernel calls per inference


M4_METHODS = ("qemu-icount", "estimate")


@dataclasses.dataclass(frozen=True)
class VariantMetrics:
    """``OUT/<variant>/metrics.json`` of ``compress``: a built variant's status and everything measured
    about it. A failed variant has its reason and no measurements (None / empty)."""

    variant: str
    status: str  # "ok" or "failed"
    reason: str
    key: str  # of the inputs and config it was built from: a resumed run skips it if unchanged
    finished: str
    build_seconds: float | None
    sizes: Sizes | None
    scores: Scores | None  # LiteRT on the host, test split
    latency: Timing | None  # LiteRT, one thread
    latency_all_threads: Timing | None
    threads: int | None
    sparsity: Sparsity | None
    input_dtype: str | None
    ops: tuple[str, ...]  # the builtin ops it uses
    tflm_ok: bool | None  # None: not run in TFLite Micro (a float variant, or tflm off)
    arena_bytes: int | None  # TFLM's minimum arena
    layer_error: tuple[TensorError, ...]  # empty unless an integer variant with the record
    versions: dict[str, str]
    caveats: tuple[str, ...] = ()  # what the name promises and the build did not do (``_caveats``)
    cortex_m4: CortexM4 | None = None  # int8 variants measured since the engine's figures were recorded

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def write_metrics(path: str | Path, metrics: dict) -> Path:
    """Write a variant's measurements (``measure.tflite_model``'s dict plus the pipeline's fields), stamped
    with the format; the file must read back as a ``VariantMetrics``."""
    return write_json(path, {"format": METRICS_FORMAT, "version": METRICS_VERSION, **metrics})


def read_metrics(path: str | Path) -> VariantMetrics:
    path = Path(path)
    data = read_json_object(path, COMPRESS_OUTPUT_HINT)
    _check_version(data, path, METRICS_FORMAT, METRICS_VERSION)
    status = field_at(data, "status", str, path)
    if status not in ("ok", "failed"):
        raise UserError(f"field 'status' must be ok or failed, got {status!r:.40}", path=path)
    head = (field_at(data, "variant", str, path), status, str(data.get("reason") or ""),
            field_at(data, "key", str, path), field_at(data, "finished", str, path),
            field_at(data, "build_seconds", NUMBER, path, optional=True, at_least=0) if "build_seconds" in data else None)
    if status != "ok":  # failed before (or while) it was measured: its reason is all there is
        versions = data.get("versions")
        return VariantMetrics(*head, sizes=None, scores=None, latency=None, latency_all_threads=None, threads=None,
                              sparsity=None, input_dtype=None, ops=(), tflm_ok=None, arena_bytes=None,
                              layer_error=(), versions=versions if isinstance(versions, dict) else {})
    tflm = data.get("tflm")
    return VariantMetrics(
        *head, Sizes(*(field_at(data, f"size.{f.name}", int, path, at_least=0) for f in dataclasses.fields(Sizes))),
        Scores.read(data, path), Timing.read(data, "latency.one_thread", path),
        Timing.read(data, "latency.all_threads", path),
        field_at(data, "latency.all_threads.threads", int, path, at_least=1),
        _sparsity(data, path), field_at(data, "input.dtype", str, path),
        tuple(field_at(data, "ops", dict, path)),
        None if tflm is None else field_at(data, "tflm.ok", bool, path),
        None if tflm is None or not tflm.get("ok") else field_at(data, "tflm.arena_bytes", int, path, at_least=1),
        _layer_error(data, path), field_at(data, "versions", dict, path), _caveats(data, path),
        _cortex_m4(data, path))


def _cortex_m4(data: dict, path: Path) -> CortexM4 | None:
    if "cortex_m4" not in data:
        return None
    if not field_at(data, "cortex_m4.ok", bool, path):
        return CortexM4(False, str(data["cortex_m4"].get("reason") or ""), None, None, None, None)
    method = field_at(data, "cortex_m4.method", str, path)
    if method not in M4_METHODS:
        raise UserError(f"field 'cortex_m4.method' must be one of {', '.join(M4_METHODS)}, got {method!r:.40}",
                        path=path)
    return CortexM4(True, str(data["cortex_m4"].get("reason") or ""),
                    field_at(data, "cortex_m4.flash_bytes", int, path, at_least=0),
                    field_at(data, "cortex_m4.ram_bytes", int, path, at_least=1),
                    field_at(data, "cortex_m4.instructions", int, path, optional=True, at_least=1), method,
                    field_at(data, "cortex_m4.constant_bytes", int, path, at_least=0),
                    field_at(data, "cortex_m4.ops", int, path, at_least=1))


# Fine-tunes whose epoch 0 (the model before any step) can be the one kept: details key → (what it is, what
# the variant then is).
_FINETUNES = {"qat_history": ("QAT", "this is post-training quantization"),
              "cluster_history": ("the clustering fine-tune", "the clusters were never trained"),
              "slim_history": ("the slimmed model's fine-tune", "the slimmed model was never trained")}
SPARSITY_SHORTFALL = 0.005  # pruned layers this far below their target did not reach it


def _caveats(data: dict, path: Path) -> tuple[str, ...]:
    """Where a variant is not what its name says, in words for the table and the recommendation: a QAT (or
    clustering) fine-tune whose selected epoch is 0 trained nothing that was kept, so the variant is
    post-training quantization of the QAT graph; pruning that stayed below its sparsity target."""
    details = data.get("details") if isinstance(data.get("details"), dict) else {}
    notes = []
    for key, (stage, consequence) in _FINETUNES.items():
        if key not in details:
            continue
        history = _objects(data, f"details.{key}", {"epoch": int, "selected": bool}, path)
        kept = [epoch for epoch, selected in history if selected]
        if not history:
            notes.append(f"{stage} ran no epoch")
        elif kept == [0]:
            notes.append(f"{stage} kept epoch 0 of {max(e for e, _ in history)}: no trained epoch did better on "
                         f"devel, so {consequence}")
    pruned = field_at(data, "sparsity.pruned_layers", NUMBER, path, optional=True)
    target = details.get("sparsity_target")
    if isinstance(target, (int, float)) and pruned is not None and pruned < target - SPARSITY_SHORTFALL:
        notes.append(f"its pruned layers reached {100 * pruned:.1f} % sparsity of a {100 * target:.0f} % target")
    return tuple(notes)


def _sparsity(data: dict, path: Path) -> Sparsity:
    tensors = [TensorSparsity(*fields) for fields in _objects(data, "sparsity.layers", {"name": str, "sparsity": NUMBER},
                                                               path)]
    details = data.get("details")
    target = (field_at(data, "details.sparsity_target", NUMBER, path, optional=True)
              if isinstance(details, dict) and "sparsity_target" in details else None)
    return Sparsity(field_at(data, "sparsity.weights", NUMBER, path, at_least=0, at_most=1),
                    field_at(data, "sparsity.pruned_layers", NUMBER, path, optional=True, at_least=0, at_most=1),
                    target, tuple(tensors))


def _layer_error(data: dict, path: Path) -> tuple[TensorError, ...]:
    if "layer_error" not in data:
        return ()
    fields = {"layer": str, "op": str, "sqnr_db": NUMBER, "rmse_scale": NUMBER}
    return tuple(TensorError(*values) for values in _objects(data, "layer_error.tensors", fields, path,
                                                              optional=("sqnr_db",)))


def _objects(data: dict, dotted: str, fields: dict[str, type | tuple[type, ...]], path: Path,
             optional: tuple[str, ...] = ()) -> list[tuple]:
    """The values of ``fields`` in every object of the list at ``dotted``, each checked like ``field_at``."""
    rows = []
    for i, item in enumerate(field_at(data, dotted, list, path)):
        rows.append(tuple(field_at({"item": item}, f"item.{name}", kinds, path, optional=name in optional,
                                   label=f"{dotted}[{i}].{name}") for name, kinds in fields.items()))
    return rows


SUMMARY_COLUMNS = (
    "variant", "status", "reason", "tflite_bytes", "gzip_bytes", "weight_bytes", "params", "macs",
    "uar", "accuracy", "uar_files", "accuracy_files", "agreement", "delta_uar_se", "sparsity", "pruned_sparsity",
    "sparsity_target", "latency_ms", "latency_p90_ms", "latency_ms_all_threads", "latency_p90_ms_all_threads",
    "threads", "tflm_ok", "arena_bytes", "m4_flash_bytes", "m4_ram_bytes", "m4_instructions", "m4_method",
    "input_dtype", "ops",
    "build_seconds", "notes",
)


def summary_row(metrics: VariantMetrics) -> dict:
    """One flat row of ``summary.csv`` from a variant's metrics (missing figures stay empty)."""
    sizes, scores, sparsity = metrics.sizes, metrics.scores, metrics.sparsity
    one, every = metrics.latency, metrics.latency_all_threads
    row = {
        "variant": metrics.variant, "status": metrics.status, "reason": metrics.reason,
        **{k: getattr(sizes, k) if sizes else None for k in ("tflite_bytes", "gzip_bytes", "weight_bytes", "params",
                                                             "macs")},
        "uar": scores and scores.uar, "accuracy": scores and scores.accuracy, "uar_files": scores and scores.uar_files,
        "accuracy_files": scores and scores.accuracy_files, "agreement": scores and scores.agreement,
        "delta_uar_se": scores and scores.delta_uar_se,
        "sparsity": sparsity and sparsity.weights, "pruned_sparsity": sparsity and sparsity.pruned_layers,
        "sparsity_target": sparsity and sparsity.target,
        "latency_ms": one and one.median_ms, "latency_p90_ms": one and one.p90_ms,
        "latency_ms_all_threads": every and every.median_ms, "latency_p90_ms_all_threads": every and every.p90_ms,
        "threads": metrics.threads, "tflm_ok": metrics.tflm_ok, "arena_bytes": metrics.arena_bytes,
        **_m4_columns(metrics.cortex_m4),
        "input_dtype": metrics.input_dtype, "ops": " ".join(metrics.ops), "build_seconds": metrics.build_seconds,
        "notes": "; ".join(metrics.caveats),
    }
    return {k: ("" if v is None else v) for k, v in row.items()}


def _m4_columns(m4: CortexM4 | None) -> dict:
    ok = m4 is not None and m4.ok
    return {"m4_flash_bytes": m4.flash_bytes if ok else None, "m4_ram_bytes": m4.ram_bytes if ok else None,
            "m4_instructions": m4.instructions if ok else None, "m4_method": m4.method if ok else None}


def write_summary_csv(path: str | Path, rows: list[dict]) -> Path:
    """``OUT/summary.csv``: the rows of ``summary_row``, one per variant, for people and spreadsheets."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def read_summary_variants(path: str | Path) -> tuple[str, ...]:
    """The variants ``summary.csv`` lists, in order: all the report takes from it (the figures come from each
    variant's ``metrics.json``). A file without the variant column or with an unknown variant is one line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing: {COMPRESS_OUTPUT_HINT}", path=path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if "variant" not in (reader.fieldnames or ()):
                raise UserError("not a summary table: no 'variant' column", path=path)
            names = tuple(row["variant"] for row in reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read ({exc})", path=path) from None
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})", path=path)
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        raise UserError(f"lists variant {repeated[0]!r} twice", path=path)
    if not names:
        raise UserError("lists no variants", path=path)
    return names


# What a device's timings count (the firmware answers ``clock%``; the harness records it): kind → (the
# unit of a figure recorded as milliseconds, what it is). Under QEMU's -icount shift=0 one instruction takes
# one nanosecond of virtual time, so its "milliseconds" are millions of Cortex-M4 instructions.
CLOCKS = {
    "board-us": ("ms", "wall-clock time on the board"),
    "qemu-icount": ("M instr.", "Cortex-M4 instructions counted by QEMU -icount (not time)"),
    "host-us": ("ms", "host time of the virtual device (not a board's)"),
    "undeclared": ("ms?", "a device clock that results written before clocks were recorded do not name"),
}


@dataclasses.dataclass(frozen=True)
class DeviceResults:
    """``OUT/<variant>/device-<name>.json`` of the device harness: one device's accuracy on the chunks it
    ran and its latency (the frontend's too, where the device computed the features), in the unit of its
    ``clock``; ``host_uar`` is the host's UAR on the same chunks, the figure a device is compared with."""

    device: str
    scores: Scores
    inference: Timing
    frontend: Timing | None
    clock: str = "undeclared"  # a key of CLOCKS
    chunks: int | None = None  # how many chunks the device ran (None: not recorded)
    test_chunks: int | None = None  # of how many in the test split (fewer with --limit)
    host_uar: float | None = None


def write_device_results(path: str | Path, results: dict) -> Path:
    """Write the harness's summary (the fields of ``DeviceResults`` plus the link's story), stamped with the
    format; it must read back as ``DeviceResults``."""
    return write_json(path, {"format": DEVICE_FORMAT, "version": DEVICE_VERSION, **results})


def read_device_results(path: str | Path) -> DeviceResults:
    path = Path(path)
    data = read_json_object(path, "no device results")
    _check_version(data, path, DEVICE_FORMAT, DEVICE_VERSION)
    frontend = Timing.read(data, "latency.frontend", path) if "frontend" in field_at(data, "latency", dict, path) else None
    clock = field_at(data, "clock", str, path) if "clock" in data else "undeclared"
    if clock not in CLOCKS:
        raise UserError(f"field 'clock' must be one of {', '.join(CLOCKS)}, got {clock!r:.40}", path=path)
    counts = (field_at(data, name, int, path, at_least=1) if name in data else None
              for name in ("chunks", "test_chunks"))
    host_uar = (field_at(data, "accuracy.host_uar", NUMBER, path, optional=True, at_least=0, at_most=1)
                if "host_uar" in field_at(data, "accuracy", dict, path) else None)
    return DeviceResults(field_at(data, "device", str, path), Scores.read(data, path),
                         Timing.read(data, "latency.inference", path), frontend, clock, *counts, host_uar)


@dataclasses.dataclass(frozen=True)
class Sidecar:
    """``model.json`` beside a trained ``model.h5``: what every later stage needs without the training config
    (the class names in output order, the frontend the model was trained with, the input it takes, the data
    it was trained on), and how the model came about (``details``: best epoch, train config, import
    provenance, versions, kept as written)."""

    classes: tuple[str, ...]
    frontend: FrontendConfig
    input_shape: tuple[int, ...]
    backbone: str
    data: dict[str, Any] | None = None  # source, split_method, config, files, speakers (per split), features;
    # None for an imported model
    history: tuple[dict[str, Any], ...] = ()
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def data_config(self) -> dict[str, Any] | None:
        """The data config of training (``--data`` may be left out when it is known)."""
        return None if self.data is None else self.data.get("config")


_SIDECAR_FIELDS = ("format", "version", "classes", "frontend", "input", "backbone", "data", "history")


def write_sidecar(path: str | Path, sidecar: Sidecar) -> Path:
    data = {**sidecar.details, "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION,
            "classes": list(sidecar.classes), "frontend": to_dict(sidecar.frontend),
            "input": {"shape": list(sidecar.input_shape), "dtype": "float32"}, "backbone": sidecar.backbone,
            "data": sidecar.data, "history": list(sidecar.history)}
    return write_json(path, data)


def read_sidecar(path: Path) -> Sidecar:
    """The sidecar, every field the stages use checked before the (slow) model load."""
    data = read_json_object(path, "no sidecar next to the model")
    if data.get("format") != SIDECAR_FORMAT:
        raise UserError("not a dslite-tiny sidecar", path=path)
    _check_version(data, path, SIDECAR_FORMAT, SIDECAR_VERSION)
    classes = _class_names(data, path)
    frontend = _frontend(data, path)
    shape = field_at(data, "input.shape", list, path)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise UserError(f"field 'input.shape' must list positive integers, got {shape!r:.60}", path=path)
    saved = field_at(data, "data", dict, path, optional=True) if "data" in data else None
    if saved is not None:
        _data_summary(data, path)
    history = field_at(data, "history", list, path) if "history" in data else []
    if history:
        _objects(data, "history", {"epoch": int}, path)  # each item an epoch record
    details = {k: v for k, v in data.items() if k not in _SIDECAR_FIELDS}
    return Sidecar(tuple(classes), frontend, tuple(shape), field_at(data, "backbone", str, path), saved,
                   tuple(history), details)


def _data_summary(data: dict, path: Path) -> None:
    """The fields of the sidecar's data summary that commands rely on: where the data was and how it split."""
    if "config" in data["data"]:
        field_at(data, "data.config", dict, path, optional=True)
    field_at(data, "data.source", str, path)
    field_at(data, "data.split_method", str, path)
    for split in ("train", "devel", "test"):
        speakers = field_at(data, f"data.speakers.{split}", list, path)
        if not all(isinstance(speaker, str) for speaker in speakers):
            raise UserError(f"field 'data.speakers.{split}' must list speaker names", path=path)


def _frontend(data: dict, path: Path) -> FrontendConfig:
    try:
        return from_mapping(FrontendConfig, field_at(data, "frontend", dict, path), source=path.name)
    except ConfigError as exc:
        raise UserError(f"field 'frontend' is invalid ({exc})", path=path) from None


def _class_names(data: dict, path: Path) -> list[str]:
    classes = field_at(data, "classes", list, path)
    if len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise UserError(f"field 'classes' must list two or more class names, got {classes!r:.80}", path=path)
    return classes


def read_json_object(path: Path, missing_hint: str) -> dict[str, Any]:
    """A JSON object from ``path``; missing, unreadable, not JSON or not an object is one line."""
    if not path.is_file():
        raise UserError(f"missing: {missing_hint}", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read ({exc})", path=path) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON ({exc.msg}, line {exc.lineno})", path=path) from None
    if not isinstance(data, dict):
        raise UserError("not a JSON object", path=path)
    return data


def _check_version(data: dict, path: Path, form: str, version: int) -> None:
    if data.get("format", form) != form:
        raise UserError(f"a {data['format']!r} file, not a {form!r} one", path=path)
    found = data.get("version", 1)
    if not isinstance(found, int) or found > version:
        raise UserError(f"version {found!r} of the {form} format is newer than this dslite-tiny reads "
                        f"({version}): upgrade dslite-tiny", path=path)


_MISSING = object()


def field_at(data: dict, dotted: str, kinds: type | tuple[type, ...], path: Path, *, optional: bool = False,
             label: str | None = None, at_least: float | None = None, at_most: float | None = None) -> Any:
    """``data["a"]["b"]`` for ``dotted`` "a.b", checked to be of ``kinds`` (None allowed when ``optional``)
    and, for a number, finite and within ``[at_least, at_most]``; otherwise a one-line error naming the file
    and the field (``label``, default ``dotted``). ``bool`` never passes for a number (nor NaN, which
    Python's JSON reader accepts)."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    label = label or dotted
    value: Any = data
    for key in dotted.split("."):
        value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            raise UserError(f"field '{label}' is missing", path=path)
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise UserError(f"field '{label}' must be {names}, got {value!r:.60}", path=path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_range(value, label, path, at_least, at_most)
    return value


def _check_range(value: float, label: str, path: Path, at_least: float | None, at_most: float | None) -> None:
    if not math.isfinite(value):
        raise UserError(f"field '{label}' must be a finite number, got {value}", path=path)
    if at_least is not None and value < at_least or at_most is not None and value > at_most:
        bounds = f"in [{at_least}, {at_most}]" if at_least is not None and at_most is not None else (
            f"at least {at_least}" if at_least is not None else f"at most {at_most}")
        raise UserError(f"field '{label}' must be {bounds}, got {value}", path=path)
