"""Runs on a device: ``evaluate`` streams the test-split chunks of a dataset and compares the device's
predictions and timings with the host's (LiteRT); ``benchmark`` is MLPerf Tiny's performance mode.

Agreement is measured against LiteRT's reference kernels, whose arithmetic TFLite Micro's kernels share
(outputs within one int8 step); agreement with LiteRT's default, optimised kernels (what ``compress``
scored) is reported beside it, since those round differently.

Every chunk's result is appended to ``device-<name>.jsonl`` in the variant folder the moment it arrives
(one ``write`` per line, flushed and synced), so a crash or Ctrl-C loses at most the chunk in flight and
``resume`` continues. When all chunks are done, ``device-<name>.json`` summarises them in the schema the
report reads. The ``Dut`` redoes what a fault spoiled (a command, a load); after a device reset the chunk
starts over. A result is recorded once, from a reply that passed every check, with the steps redone.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np

from dslite_tiny.artifacts import write_json
from dslite_tiny.config import DataConfig
from dslite_tiny.errors import AudioError, UserError
from dslite_tiny.export.variant import Variant
from dslite_tiny.measure.metrics import classification_report, file_votes
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.records import write_device_results
from firmware_host.dut import DeviceInfo, Dut, Inference

log = logging.getLogger(__name__)
MODES = ("audio", "tensor")
LOG_VERSION = 3  # 2: every record counts its recoveries; 3: the run names its clock and test-split size; an
# older log is not resumed (a one-line error)


@dataclasses.dataclass(frozen=True)
class EvalChunks:
    """The test-split chunks as the device receives them, with the host's LiteRT predictions."""

    pcm: np.ndarray  # (n, chunk_samples) int16: what audio mode sends
    tensors: np.ndarray  # (n, h, w, c) int8: the host frontend's quantized input, what tensor mode sends
    labels: np.ndarray  # (n,) class index in the model's output order
    clip_index: np.ndarray  # (n,)
    clips: tuple[str, ...]
    classes: tuple[str, ...]
    host_scores: np.ndarray  # (n, classes) LiteRT's reference kernels on ``tensors`` (TFLM's arithmetic)
    host_scores_optimized: np.ndarray  # (n, classes) LiteRT's default kernels (what compress scored)
    test_chunks: int  # chunks in the whole test split (``labels`` has fewer with a limit)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    mode: str = "audio"  # audio: the device computes features; tensor: the host's int8 input (MLPerf)
    binary: bool = True  # bulk transfer with CRC-32; hex db lines otherwise (the only way for MLPerf firmware)
    warmup: int = 0
    retries: int = 8  # attempts per chunk before the run stops
    limit: int | None = None


def prepare_chunks(variant: Variant, data: DataConfig, *, limit: int | None = None,
                   progress: Progress = no_progress) -> EvalChunks:
    """The test split as int16 chunks, the host frontend's int8 tensors of the same samples, and LiteRT's
    scores on them; ``limit`` keeps that many chunks evenly spread over the split."""
    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.audio.io import load_audio
    from dslite_tiny.data.layouts import load_dataset
    from dslite_tiny.measure.litert import create_interpreter, predict_tflite, quantize_input

    if variant.frontend is None or not variant.labels_known:
        raise UserError("no recorded frontend or labels: give a compress variant folder (OUT/<variant>)",
                        path=variant.path)
    frontend = Frontend(variant.frontend)
    dataset = load_dataset(data, require=("test",))
    class_index = _class_index(dataset.classes, variant)
    pcm, labels, owners, clips = [], [], [], []
    for clip in progress(dataset.split("test"), desc="test chunks"):
        try:
            chunks = frontend.chunk(load_audio(clip.path, sr=frontend.config.sr)).data
        except AudioError as exc:  # as compress does: a bad file is skipped unless strict
            if data.strict:
                raise
            log.warning("skipping %s", exc)
            continue
        pcm.append(np.clip(np.round(chunks * 32768.0), -32768, 32767).astype(np.int16))
        labels += [class_index[clip.label]] * len(chunks)
        owners += [len(clips)] * len(chunks)
        clips.append(str(clip.path))
    if not labels:
        raise UserError("the test split yields no chunks", path=data.root)
    pcm_all = np.concatenate(pcm)
    keep = _spread(len(pcm_all), limit)
    pcm_all = pcm_all[keep]
    images = frontend.model_input(frontend.spectrogram(pcm_all.astype(np.float32) / np.float32(32768.0)))
    reference = create_interpreter(variant.data, reference_kernels=True)
    tensors = quantize_input(images, reference.get_input_details()[0])
    return EvalChunks(pcm_all, tensors, np.asarray(labels)[keep], np.asarray(owners)[keep], tuple(clips),
                      variant.labels, predict_tflite(reference, images),
                      predict_tflite(create_interpreter(variant.data), images), len(labels))


def evaluate(dut: Dut, variant: Variant, chunks: EvalChunks, settings: EvalSettings, *, results_dir: Path,
             device_name: str | None = None, resume: bool = False, progress: Progress = no_progress) -> dict:
    """Every chunk on the device; returns the summary (also written as ``device-<name>.json``)."""
    info = dut.info or dut.retry(dut.identify)
    _check_device(info, variant, settings)
    name = _safe_name(device_name or info.name)
    log_path = Path(results_dir) / f"device-{name}.jsonl"
    run = {"device": name, "model_sha256": variant.sha256, "variant": variant.name, "mode": settings.mode,
           "transfer": "binary" if settings.binary else "hex", "warmup": settings.warmup,
           "chunks": len(chunks.labels), "test_chunks": chunks.test_chunks, "limit": settings.limit,
           "clock": info.clock, "log_version": LOG_VERSION}
    done = _read_log(log_path, run) if resume else {}
    with _ResultLog(log_path, run, fresh=not resume or not log_path.is_file()) as results:
        for index in progress([i for i in range(len(chunks.labels)) if i not in done], desc=f"device {name}"):
            done[index] = _run_chunk(dut, chunks, index, settings)
            results.append(done[index])
    summary = summarize(run, [done[i] for i in range(len(chunks.labels))], chunks, info, dut)
    write_device_results(Path(results_dir) / f"device-{name}.json", summary)
    return summary


def _run_chunk(dut: Dut, chunks: EvalChunks, index: int, settings: EvalSettings) -> dict:
    audio = settings.mode == "audio"
    data = (chunks.pcm[index].astype("<i2") if audio else chunks.tensors[index]).tobytes()
    attempts, recoveries = 0, dut.recoveries

    def attempt() -> tuple[Inference, float, float, int]:
        nonlocal attempts
        attempts += 1
        start, sent = time.perf_counter(), dut.transport.bytes_written
        dut.load(data, audio=audio, binary=settings.binary)
        loaded = time.perf_counter()
        result = dut.classify(warmup=settings.warmup) if audio else dut.infer(warmup=settings.warmup)
        return result, loaded - start, time.perf_counter() - start, dut.transport.bytes_written - sent

    result, transfer_s, total_s, sent = dut.retry(attempt, attempts=settings.retries)
    return {"index": index, "clip": chunks.clips[chunks.clip_index[index]], "label": int(chunks.labels[index]),
            "host": int(np.argmax(chunks.host_scores[index])), "predicted": int(np.argmax(result.scores)),
            "scores": result.scores, "frontend_us": result.frontend_us, "infer_us": result.infer_us,
            "transfer_ms": round(transfer_s * 1e3, 3), "total_ms": round(total_s * 1e3, 3), "bytes_sent": sent,
            "attempts": attempts, "recoveries": dut.recoveries - recoveries}


def summarize(run: dict, records: list[dict], chunks: EvalChunks, info: DeviceInfo, dut: Dut) -> dict:
    """The report's device schema (accuracy as in metrics.json, latency in ms of the device's ``clock``: M
    instructions under QEMU) plus the link's story; ``host_uar`` is the host's on the same chunks."""
    scores = np.asarray([r["scores"] for r in records], np.float32)
    predicted = scores.argmax(axis=1)
    files, file_scores = file_votes(scores, chunks.clip_index)
    compute_ms = [((r["frontend_us"] or 0.0) + r["infer_us"] * (1 + run["warmup"])) / 1e3 for r in records]
    latency = {"inference": _stats([r["infer_us"] / 1e3 for r in records]),
               "transfer": _stats([r["transfer_ms"] for r in records]),
               "harness_overhead": _stats([r["total_ms"] - r["transfer_ms"] - c for r, c in zip(records, compute_ms)]),
               "chunk_total": _stats([r["total_ms"] for r in records])}
    if run["mode"] == "audio":
        latency["frontend"] = _stats([r["frontend_us"] / 1e3 for r in records])
    return {**run, "firmware": {"name": info.name, "profile": info.profile, "model": info.model},
            "accuracy": {"chunks": classification_report(chunks.labels, scores, chunks.classes),
                         "files": classification_report(chunks.labels[np.searchsorted(chunks.clip_index, files)],
                                                        file_scores, chunks.classes),
                         "agreement": _agreement(predicted, chunks.host_scores),
                         "agreement_optimized_kernels": _agreement(predicted, chunks.host_scores_optimized),
                         "host_uar": classification_report(chunks.labels, chunks.host_scores, chunks.classes)["uar"]},
            "latency": latency,
            "link": {"bytes_sent": int(sum(r["bytes_sent"] for r in records)),
                     "bytes_per_chunk": round(float(np.mean([r["bytes_sent"] for r in records])), 1),
                     "retried_chunks": sum(r["recoveries"] > 0 for r in records),
                     "recoveries": sum(r["recoveries"] for r in records),
                     "noise_lines": dut.noise_lines}}


def benchmark(dut: Dut, data: bytes, *, window_s: float = 10.0, windows: int = 5, warmup: int = 10) -> dict:
    """MLPerf Tiny performance mode: ``windows`` timed windows of at least ``window_s`` each (the run count
    calibrated by one timed inference), median throughput."""
    info = dut.info or dut.retry(dut.identify)

    def timed(runs: int, warmup_runs: int) -> Inference:
        dut.load(data, audio=False, binary=info.dslite)  # again after a reset
        return dut.infer(runs=runs, warmup=warmup_runs, timeout_s=dut.timeout_s + 3 * window_s)

    probe = dut.retry(lambda: timed(1, warmup))
    runs = max(1, math.ceil(window_s * 1e6 / max(probe.infer_us, 1.0)))
    results = [dut.retry(lambda: timed(runs, 0)) for _ in range(windows)]
    throughput = [1e6 / r.infer_us for r in results]
    return {"device": info.name, "firmware": {"profile": info.profile, "model": info.model},
            "runs_per_window": runs, "window_s": window_s, "windows": windows,
            "window_latency_ms": [round(r.infer_us / 1e3, 4) for r in results],
            "median_inferences_per_s": round(statistics.median(throughput), 3),
            "median_latency_ms": round(statistics.median(r.infer_us for r in results) / 1e3, 4)}


# --- checks and files -----------------------------------------------------------------------------------

def _check_device(info: DeviceInfo, variant: Variant, settings: EvalSettings) -> None:
    if settings.mode not in MODES:
        raise UserError(f"--mode {settings.mode!r} is not one of {', '.join(MODES)}")
    if not info.dslite:
        if settings.mode == "audio" or settings.binary:
            raise UserError(f"device {info.name!r} runs MLPerf Tiny firmware ({info.profile}): use --mode tensor "
                            f"--transfer hex")
        log.warning("device %s cannot say which model it runs; assuming %s", info.name, variant.name)
        return
    if info.model.get("sha256") != variant.sha256:
        raise UserError(f"the device runs model {info.model.get('variant')} ({str(info.model.get('sha256'))[:12]}…),"
                        f" not this one ({variant.sha256[:12]}…): flash it with `dslite-tiny device flash`",
                        path=variant.path)


def _class_index(dataset_classes: tuple[str, ...], variant: Variant) -> dict[str, int]:
    missing = [c for c in dataset_classes if c not in variant.labels]
    if missing:
        raise UserError(f"dataset classes {missing} are not among the model's labels {list(variant.labels)}")
    return {c: variant.labels.index(c) for c in dataset_classes}


def _agreement(predicted: np.ndarray, host_scores: np.ndarray) -> float:
    return round(float(np.mean(predicted == host_scores.argmax(axis=1))), 6)


def _spread(n: int, limit: int | None) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(limit, 1)).round().astype(int))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "device"


def _stats(values: list[float]) -> dict:
    if not values:
        return {"median_ms": None, "p90_ms": None}
    return {"median_ms": round(statistics.median(values), 4), "p90_ms": round(float(np.percentile(values, 90)), 4)}


def _read_log(path: Path, run: dict) -> dict[int, dict]:
    """Finished chunks of an earlier run with the same settings; a cut last line (a crash) is ignored."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0])["run"] if lines else None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError("not a device results log; delete it to start over", path=path) from None
    if header != run:
        changed = sorted(k for k in run if header is None or header.get(k) != run[k])
        raise UserError(f"cannot resume: the earlier run differs in {', '.join(changed)}; drop --resume to "
                        f"start over", path=path)
    done = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[record["index"]] = record
    return done


class _ResultLog:
    """Appends one JSON line per chunk, durable before the next chunk starts."""

    def __init__(self, path: Path, run: dict, *, fresh: bool) -> None:
        self.path, self.run, self.fresh = path, run, fresh

    def __enter__(self) -> _ResultLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.fresh:  # drop a line cut by a crash, so the next one starts on its own line
            text = self.path.read_bytes()
            with open(self.path, "r+b") as cut:
                cut.truncate(text.rfind(b"\n") + 1)
        self._file = open(self.path, "w" if self.fresh else "a", encoding="utf-8")
        if self.fresh:
            self._write({"run": self.run})
        return self

    def append(self, record: dict) -> None:
        self._write(record)

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def __exit__(self, *exc) -> None:
        self._file.close()


def evaluate_on_device(port: str | None, model_dir: str | Path, data: DataConfig, settings: EvalSettings, *,
                       device_name: str | None = None, resume: bool = False, timeout_s: float = 10.0,
                       progress: Progress = no_progress) -> tuple[dict, Path]:
    """One call: connect, prepare the test chunks and ``evaluate``; the summary, and the results file it
    wrote next to the variant."""
    from dslite_tiny.export.variant import load_variant
    from firmware_host.dut import connect

    variant = load_variant(model_dir)
    chunks = prepare_chunks(variant, data, limit=settings.limit, progress=progress)
    with connect(port, timeout_s=timeout_s) as dut:
        summary = evaluate(dut, variant, chunks, settings, results_dir=variant.path.parent,
                           device_name=device_name, resume=resume, progress=progress)
    return summary, variant.path.parent / f"device-{summary['device']}.json"


def benchmark_on_device(port: str | None, model_dir: str | Path, *, window_s: float = 10.0, windows: int = 5,
                        warmup: int = 10, device_name: str | None = None, timeout_s: float = 10.0) -> tuple[dict, Path]:
    """``benchmark`` on a random int8 input of the variant's shape (int8 kernels take the same time on
    any input); the result is written as ``bench-<name>.json`` next to the variant."""
    from dslite_tiny.export.variant import load_variant
    from firmware_host.dut import connect

    variant = load_variant(model_dir)
    size = int(np.prod(variant.description["input"]["shape"]))
    data = np.random.default_rng(0).integers(-128, 128, size, dtype=np.int8).tobytes()
    with connect(port, timeout_s=timeout_s) as dut:
        result = {**benchmark(dut, data, window_s=window_s, windows=windows, warmup=warmup),
                  "variant": variant.name, "model_sha256": variant.sha256}
    path = variant.path.parent / f"bench-{_safe_name(device_name or result['device'])}.json"
    write_json(path, result)
    return result, path
