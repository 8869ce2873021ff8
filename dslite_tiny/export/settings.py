"""``<name>_model_settings.h``: every number a firmware needs around the model, as C macros.

Macros (not ``static const`` variables) so that plain C and C++ include it without unused-variable
warnings, and so that ``#if`` can select code paths (``<NAME>_COLOR_MAP_VIRIDIS``). Arrays are brace
initialisers: ``static const char *const labels[] = KWS_LABELS;``.

The recommended tensor arena is the TFLM minimum measured on the host plus ``ARENA_MARGIN_FRACTION`` and
``ARENA_MARGIN_BYTES``: the host's TFLM build has 64-bit pointers and reference kernels, while a board's
optimised kernels (CMSIS-NN, ESP-NN) ask for scratch buffers the reference kernels do not, and a board's
arena must also absorb alignment of its start address. On a Cortex-M4 (32-bit pointers) the demo model's
minimum arena, bisected on QEMU, is below the host's with reference kernels, CMSIS-NN and the Chirale
library alike (88800, 88880 and 89984 bytes against 90448; reports/benchmarks/tflm_m4.md).
"""
from __future__ import annotations

import numpy as np

from dslite_tiny.audio.frontend import colormap_lut, dct_matrix, hann_window, mel_matrix, resize_taps
from dslite_tiny.config import FrontendConfig
from dslite_tiny.c_source import banner, c_float, c_string, include_guard
from dslite_tiny.export.variant import Variant

ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_BYTES = 1024
_ARENA_ALIGN = 16


def recommended_arena_bytes(measured: int) -> int:
    """Measured TFLM minimum + 10 % + 1 KiB, rounded up to 16 bytes."""
    padded = measured + int(measured * ARENA_MARGIN_FRACTION) + ARENA_MARGIN_BYTES
    return -(-padded // _ARENA_ALIGN) * _ARENA_ALIGN


def model_settings_file(variant: Variant, *, name: str, provenance: list[str]) -> dict[str, str]:
    """``{file name: text}`` of the settings header (``variant.arena_bytes`` must be measured)."""
    prefix = name.upper()
    file_name = f"{name}_model_settings.h"
    guard = include_guard(file_name)
    sections = [_model_section(variant, prefix), _arena_section(variant, prefix),
                _labels_section(variant, prefix), _frontend_section(variant.frontend, prefix)]
    body = "\n\n".join(sections)
    return {file_name: f"{banner(provenance)}\n#ifndef {guard}\n#define {guard}\n\n{body}\n\n#endif  // {guard}\n"}


def _define(prefix: str, key: str, value: str, comment: str = "") -> str:
    line = f"#define {prefix}_{key} {value}"
    return f"{line}  // {comment}" if comment else line


def _model_section(variant: Variant, p: str) -> str:
    io_in, io_out = variant.description["input"], variant.description["output"]
    shape = io_in["shape"]
    lines = ["// Model tensors (batch 1).",
             _define(p, "MODEL_VARIANT", c_string(variant.name)),
             _define(p, "MODEL_SHA256", c_string(variant.sha256)),
             _define(p, "INPUT_HEIGHT", str(shape[1])), _define(p, "INPUT_WIDTH", str(shape[2])),
             _define(p, "INPUT_CHANNELS", str(shape[3])),
             _define(p, "INPUT_ELEMENTS", str(shape[1] * shape[2] * shape[3])),
             _define(p, "INPUT_DTYPE", c_string(io_in["dtype"])),
             _define(p, f"INPUT_IS_{io_in['dtype'].upper()}", "1")]
    lines += _quantization(p, "INPUT", io_in)
    lines += [_define(p, "OUTPUT_DTYPE", c_string(io_out["dtype"])),
              _define(p, f"OUTPUT_IS_{io_out['dtype'].upper()}", "1")]
    lines += _quantization(p, "OUTPUT", io_out)
    return "\n".join(lines)


def _lut_define(color_map: str, p: str) -> list[str]:
    """The colour map's 256 RGB nodes (the frontend interpolates between them); none for gray."""
    if color_map == "gray":
        return []
    values = ", ".join(c_float(float(v)) for v in colormap_lut(color_map).ravel())
    return [_define(p, "COLOR_MAP_LUT", "{" + values + "}", "256 x RGB in [0, 1], row-major")]


def _quantization(p: str, which: str, io: dict) -> list[str]:
    """real = scale · (q − zero_point); a float tensor gets scale 0 (TFLite's 'not quantized')."""
    scale = io.get("scale") or 0.0
    return [_define(p, f"{which}_SCALE", c_float(scale), "real = scale * (q - zero_point)"),
            _define(p, f"{which}_ZERO_POINT", str(int(io.get("zero_point") or 0)))]


def _arena_section(variant: Variant, p: str) -> str:
    measured = variant.arena_bytes
    return "\n".join([
        f"// Tensor arena: the TFLM minimum measured on the host ({measured} bytes) + "
        f"{ARENA_MARGIN_FRACTION:.0%} + {ARENA_MARGIN_BYTES} bytes",
        "// for optimised kernels' scratch buffers and alignment.",
        _define(p, "TENSOR_ARENA_MIN_BYTES", str(measured)),
        _define(p, "TENSOR_ARENA_SIZE", str(recommended_arena_bytes(measured)))])


def _labels_section(variant: Variant, p: str) -> str:
    note = "" if variant.labels_known else " (unknown: class indices stand in)"
    labels = ", ".join(c_string(label) for label in variant.labels)
    return "\n".join([f"// Classes in output order{note}.",
                      _define(p, "NUM_CLASSES", str(variant.num_classes)),
                      _define(p, "LABELS", "{" + labels + "}")])


def _frontend_section(frontend: FrontendConfig | None, p: str) -> str:
    if frontend is None:
        return ("// Frontend: unknown (no compress reference.json was found with this model).\n"
                + _define(p, "HAS_FRONTEND", "0"))
    f = frontend
    lines = ["// Frontend (DeepSpectrumLite): chunk -> periodic-Hann STFT -> |X|^2 -> HTK mel -> dB (-> MFCC)",
             "// -> min-max -> colour map -> resize (mel rows flipped: highest frequency on top) -> normalisation.",
             _define(p, "HAS_FRONTEND", "1"),
             _define(p, "SAMPLE_RATE", str(f.sr), "Hz"),
             _define(p, "CHUNK_SAMPLES", str(f.chunk_length)),
             _define(p, "CHUNK_HOP_SAMPLES", str(f.chunk_hop_length)),
             _define(p, "NORMALIZE_AUDIO", str(int(f.normalize_audio)), "peak-normalise each chunk to 0.7079"),
             _define(p, "WINDOW_SAMPLES", str(f.win_length)),
             _define(p, "HOP_SAMPLES", str(f.hop_length)),
             _define(p, "FFT_SIZE", str(f.n_fft)),
             _define(p, "FRAMES", str(f.n_frames), "STFT frames per chunk (no end padding)"),
             _define(p, "MEL_BINS", str(f.n_mels)),
             _define(p, "HAS_MFCC", str(int(f.n_mfcc is not None)), "plot MFCCs (DCT-II of the mel dB), not mel bands"),
             _define(p, "FEATURE_BINS", str(f.feature_bins), "rows plotted before resizing"),
             _define(p, "MEL_FMIN_HZ", c_float(f.fmin)),
             _define(p, "MEL_FMAX_HZ", c_float(f.fmax)),
             _define(p, "HAS_TOP_DB", str(int(f.top_db is not None))),
             _define(p, "TOP_DB", c_float(f.top_db or 0.0), "floor at (chunk max - TOP_DB) dB"),
             _define(p, "COLOR_MAP", c_string(f.color_map)),
             _define(p, f"COLOR_MAP_{f.color_map.upper()}", "1"),
             *_lut_define(f.color_map, p),
             _define(p, "IMAGE_HEIGHT", str(f.image_height)),
             _define(p, "IMAGE_WIDTH", str(f.image_width)),
             _define(p, "IMAGE_CHANNELS", str(f.channels)),
             _define(p, "RESIZE", c_string(f.resize)),
             _define(p, f"RESIZE_{f.resize.upper()}", "1"),
             _define(p, "RESIZE_ANTIALIAS", str(int(f.antialias))),
             _define(p, "NORMALIZATION", c_string(f.normalization)),
             _define(p, f"NORMALIZATION_{f.normalization.upper()}", "1"),
             "// The frontend's tables, computed here so that the device does no set-up arithmetic (and links no",
             "// double-precision sin/cos/log): the same float32 values the Python frontend uses.",
             *_table_defines(f, p)]
    return "\n".join(lines)


_TABLE_COMMENTS = {
    "WINDOW": "periodic Hann x 2^-15 (int16 -> [-1, 1) folded in; exact, a power of two)",
    "TWIDDLES": "exp(-2 pi i k / FFT_SIZE), (re, im) interleaved: k <= FFT_SIZE / 2 for a power-of-two "
                "size (real FFT), else k < FFT_SIZE (direct DFT)",
    "MEL_BAND": "per FFT bin from MEL_FIRST_BIN: the lower of the two bands it feeds",
    "MEL_WEIGHT_LOW": "its weight in band MEL_BAND",
    "MEL_WEIGHT_HIGH": "its weight in band MEL_BAND + 1 (0 where it feeds one band only)",
    "TIME_TAP_INDEX": "per image column, TIME_TAPS frame indices of the resize",
    "TIME_TAP_WEIGHT": "and their weights (0 pads a column with fewer taps)",
    "MEL_TAP_INDEX": "per image row (row 0: highest frequency), MEL_TAPS mel-band (or MFCC) indices",
    "MEL_TAP_WEIGHT": "and their weights",
    "DCT": "MFCC only: per coefficient, its DCT-II weights of the MEL_BINS mel dB values",
}


def frontend_tables(f: FrontendConfig) -> dict[str, np.ndarray]:
    """The C frontend's constant tables (uint16 indices, float32 weights), in the Python frontend's values:
    its window, its mel filterbank stored sparse (a bin feeds at most two adjacent bands), its resize
    taps and (MFCC) its DCT; twiddles in float32 from float64 angles."""
    n = f.n_fft
    k = np.arange(n // 2 + 1 if n & (n - 1) == 0 else n, dtype=np.float64)
    angle = -2.0 * np.pi * k / n
    mel = mel_matrix(sr=f.sr, n_fft=n, n_mels=f.n_mels, fmin=f.fmin, fmax=f.fmax)
    fed = np.flatnonzero((mel != 0).any(axis=1))
    band = np.argmax(mel[fed] != 0, axis=1)
    padded = np.hstack([mel, np.zeros((mel.shape[0], 1), np.float32)])  # the band above the last is empty
    time_index, time_weight = resize_taps(f.n_frames, f.image_width, method=f.resize, antialias=f.antialias)
    mel_index, mel_weight = resize_taps(f.feature_bins, f.image_height, method=f.resize, antialias=f.antialias)
    dct = {} if f.n_mfcc is None else {"DCT": dct_matrix(f.n_mels, f.n_mfcc).T.ravel()}
    return {**dct, "WINDOW": hann_window(f.win_length) * np.float32(2.0 ** -15),
            "TWIDDLES": np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32).ravel(),
            "MEL_BAND": band.astype(np.uint16),
            "MEL_WEIGHT_LOW": padded[fed, band], "MEL_WEIGHT_HIGH": padded[fed, band + 1],
            "TIME_TAP_INDEX": time_index.astype(np.uint16).ravel(), "TIME_TAP_WEIGHT": time_weight.ravel(),
            "MEL_TAP_INDEX": mel_index[::-1].astype(np.uint16).ravel(), "MEL_TAP_WEIGHT": mel_weight[::-1].ravel(),
            "_first_bin": int(fed[0]), "_time_taps": time_index.shape[1], "_mel_taps": mel_index.shape[1]}


def frontend_table_bytes(f: FrontendConfig) -> int:
    """Flash the C frontend's constant tables take (the colour map's LUT, 3 KB, is counted with them)."""
    tables = frontend_tables(f)
    lut = 0 if f.color_map == "gray" else 256 * 3 * 4
    return lut + sum(v.nbytes for k, v in tables.items() if not k.startswith("_"))


def _table_defines(f: FrontendConfig, p: str) -> list[str]:
    tables = frontend_tables(f)
    lines = [_define(p, "MEL_FIRST_BIN", str(tables["_first_bin"]), "lowest FFT bin with a mel weight"),
             _define(p, "MEL_BIN_COUNT", str(tables["MEL_BAND"].size), "FFT bins with a mel weight"),
             _define(p, "TIME_TAPS", str(tables["_time_taps"])), _define(p, "MEL_TAPS", str(tables["_mel_taps"]))]
    for key, comment in _TABLE_COMMENTS.items():
        if key not in tables:
            continue
        values = tables[key]
        text = [str(int(v)) for v in values] if values.dtype == np.uint16 else [c_float(float(v)) for v in values]
        rows = [", ".join(text[i:i + 8]) for i in range(0, len(text), 8)]
        lines.append(f"// {key}: {comment}.\n" + _define(p, key, "{ \\\n    " + ", \\\n    ".join(rows) + "}"))
    return lines
