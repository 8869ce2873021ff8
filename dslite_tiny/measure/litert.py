"""Running a ``.tflite`` model on the host with LiteRT: predictions with the model's own input quantization,
and latency.

An int8 model takes int8 input: the float image is quantized with the input tensor's scale and zero-point
(q = round(x / scale) + zero_point, clipped), and int8 scores are dequantized, so every variant is scored
on the same float images. The model has batch size 1, as on a device.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from dslite_tiny.native import capture_native_stderr
from dslite_tiny.progress import Progress, no_progress


def create_interpreter(data: bytes, *, num_threads: int = 1, reference_kernels: bool = False,
                       preserve_all_tensors: bool = False):
    """A ready interpreter; LiteRT's C-level "Created XNNPACK delegate" line is kept off the console.

    ``reference_kernels`` runs LiteRT's reference kernels, the arithmetic TFLite Micro's kernels share: the
    optimised int8 kernels round differently and can move an int8 score by several steps.
    ``preserve_all_tensors`` keeps every intermediate tensor readable after ``invoke`` (no buffer reuse)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    with capture_native_stderr():
        interpreter = Interpreter(model_content=data, num_threads=num_threads,
                                  experimental_op_resolver_type=resolver,
                                  experimental_preserve_all_tensors=preserve_all_tensors)
        interpreter.allocate_tensors()
    return interpreter


def quantize_input(images: np.ndarray, detail: dict) -> np.ndarray:
    """Float images → the input tensor's dtype (unchanged for a float model)."""
    dtype = detail["dtype"]
    scale, zero_point = detail["quantization"]
    if dtype == np.float32 or not scale:
        return images.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize_output(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or not scale:
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def predict_tflite(interpreter, images: np.ndarray, *, progress: Progress = no_progress,
                   desc: str = "LiteRT") -> np.ndarray:
    """Scores (dequantized) of each image, one invoke per image."""
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    quantized = quantize_input(images, input_detail)
    scores = []
    for x in progress(quantized, desc=desc):
        interpreter.set_tensor(input_detail["index"], x[None])
        interpreter.invoke()
        scores.append(dequantize_output(interpreter.get_tensor(output_detail["index"])[0], output_detail))
    return np.stack(scores) if scores else np.zeros((0, output_detail["shape"][-1]), np.float32)


def measure_latency(data: bytes, image: np.ndarray, *, runs: int = 50, warmup: int = 5,
                    num_threads: int = 1) -> dict:
    """Median and 90th percentile of single invokes (ms) after ``warmup`` untimed ones."""
    interpreter = create_interpreter(data, num_threads=num_threads)
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], quantize_input(image[None], detail))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 4), "p90_ms": round(float(np.percentile(times, 90)), 4),
            "runs": runs, "threads": num_threads}


def all_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
