"""The phone bundle: ``<name>.tflite``, ``labels.txt`` and ``<name>.json``, enough for an Android or iOS app.

TFLite metadata is not embedded: the only writer, ``tflite-support``'s metadata writers, is no longer
maintained (last release 0.4.4 of 2023, which installs protobuf 3.20 and so breaks TensorFlow 2.21), and
LiteRT ships no replacement. The JSON descriptor
carries what the metadata would (tensor quantization, labels, the preprocessing) plus the frontend's
parameters, which the metadata schema has no place for.
"""
from __future__ import annotations

import json

from dslite_tiny import __version__
from dslite_tiny.config import to_dict
from dslite_tiny.export.variant import Variant

DESCRIPTOR_FORMAT = "dslite-tiny phone bundle"
DESCRIPTOR_VERSION = 1


def phone_files(variant: Variant, *, name: str) -> dict[str, bytes]:
    """``{file name: content}`` of the bundle."""
    descriptor = phone_descriptor(variant, model_file=f"{name}.tflite")
    return {f"{name}.tflite": variant.data,
            "labels.txt": "".join(f"{label}\n" for label in variant.labels).encode("utf-8"),
            f"{name}.json": (json.dumps(descriptor, indent=2, sort_keys=True) + "\n").encode("utf-8")}


def phone_descriptor(variant: Variant, *, model_file: str) -> dict:
    f = variant.frontend
    frontend = None if f is None else {
        **to_dict(f), "chunk_samples": f.chunk_length, "chunk_hop_samples": f.chunk_hop_length,
        "window_samples": f.win_length, "hop_samples": f.hop_length, "fft_size": f.n_fft, "frames": f.n_frames}
    return {
        "format": DESCRIPTOR_FORMAT, "format_version": DESCRIPTOR_VERSION,
        "model": {"file": model_file, "sha256": variant.sha256, "bytes": len(variant.data),
                  "variant": variant.name, "ops": variant.description["ops"]},
        "input": _tensor(variant.description["input"]),
        "output": _tensor(variant.description["output"]),
        "labels": list(variant.labels), "labels_known": variant.labels_known,
        "frontend": frontend,
        "usage": _usage(variant),
        "provenance": {"dslite_tiny": __version__, "converter": variant.converter, "source": str(variant.path)},
    }


def _tensor(io: dict) -> dict:
    quantized = bool(io.get("scale"))
    return {"name": io["name"], "shape": io["shape"], "dtype": io["dtype"], "quantized": quantized,
            "scale": io.get("scale") if quantized else None,
            "zero_point": io.get("zero_point") if quantized else None}


def _usage(variant: Variant) -> str:
    io_in, io_out = variant.description["input"], variant.description["output"]
    steps = ["Resample mono audio to frontend.sr and cut chunk_samples chunks every chunk_hop_samples.",
             "Per chunk: periodic-Hann STFT (window_samples, hop_samples, fft_size, no end padding) -> power -> "
             "HTK mel (mel_bins, fmin..fmax) -> 10*log10 dB (floored at max - top_db if set) -> min-max to [0, 1] "
             "-> colour map -> resize to image_height x image_width (highest frequency in row 0) -> x255 -> "
             "backbone normalisation."]
    if io_in.get("scale"):
        steps.append("Quantize the input: q = round(x / input.scale) + input.zero_point, clipped to int8.")
    if io_out.get("scale"):
        steps.append("Dequantize the scores: p = output.scale * (q - output.zero_point); argmax is the label.")
    return " ".join(steps)
