"""DeepSpectrumLite 1.0.2's files: label CSV + class_config.json datasets, and hp_config.json grids.

DSLite's ComParE parser reads ``filename,label,duration_frames`` and takes the split from the file name's
prefix (``train``/``devel``/``test``); ``class_config.json`` maps labels to display names and its key
order is the class index. An hp_config holds a list per key; DSLite runs the Cartesian product in key
order, and ``--config-index`` picks one combination the same way.
"""
from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path
from typing import Any

from dslite_tiny.config import DataConfig
from dslite_tiny.data.layouts import SPLITS, Clip, Dataset, read_csv
from dslite_tiny.errors import ConfigError, DataError

# DSLite's basemodel_name → the preprocess_input mode it applied (its DataPipeline.preprocessors table).
BACKBONE_NORMALIZATION = {
    "densenet121": "torch", "densenet169": "torch", "densenet201": "torch",
    "mobilenet": "tf", "mobilenet_v2": "tf", "xception": "tf", "inception_v3": "tf",
    "inception_resnet_v2": "tf", "nasnet_large": "tf", "nasnet_mobile": "tf",
    "resnet50": "caffe", "squeezenet_v1": "caffe",
}
# hp_config key → FrontendConfig key (same meaning, same unit).
_FRONTEND_KEYS = {
    "sample_rate": "sr", "normalize_audio": "normalize_audio", "chunk_size": "chunk_s",
    "chunk_hop_size": "chunk_hop_s", "stft_window_size": "window_s", "stft_hop_size": "hop_s",
    "stft_fft_length": "fft_s", "num_mel_bins": "n_mels", "lower_edge_hertz": "fmin",
    "upper_edge_hertz": "fmax", "color_map": "color_map", "image_width": "image_width",
    "image_height": "image_height", "resize_method": "resize", "anti_alias": "antialias",
}
# Settings under which DSLite computes something other than mel spectrogram plots.
_REQUIRED = {"mel_scale": True, "db_scale": True, "use_plot_images": True, "num_mfccs": 0}


def load_dslite_dataset(config: DataConfig) -> Dataset:
    """Clips of a DSLite label CSV; labels must be keys of class_config.json."""
    if not config.labels_csv or not config.class_config:
        raise DataError("a DeepSpectrumLite dataset needs both --labels (label CSV) and --class-config")
    csv_path, root = Path(config.labels_csv), Path(config.root) if config.root else Path(config.labels_csv).parent
    if not csv_path.is_file():
        raise DataError("no such label CSV", path=csv_path)
    classes = read_class_config(Path(config.class_config))
    frame = read_csv(csv_path, required=("filename", "label"))
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise DataError(f"label(s) {', '.join(unknown[:5])} missing from {config.class_config} "
                        f"(its classes: {', '.join(classes)})", path=csv_path)
    clips, skipped = [], 0
    for name, label in zip(frame["filename"], frame["label"]):
        split = next((s for s in SPLITS if str(name).startswith(s)), None)
        if split is None:
            skipped += 1
            continue
        clips.append(Clip(root / str(name), str(label), split))
    if skipped:
        warnings.warn(f"{csv_path}: {skipped} row(s) whose file name starts with none of "
                      f"{'/'.join(SPLITS)} are ignored, as DeepSpectrumLite ignores them", stacklevel=2)
    return Dataset(source=str(csv_path), classes=tuple(classes), clips=tuple(clips),
                   split_method="DeepSpectrumLite file-name prefix")


def read_class_config(path: Path) -> list[str]:
    """Class labels in class-index order (the JSON object's key order)."""
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError("expected a non-empty JSON object {label: display name}", path=path)
    return [str(k) for k in data]


def read_hp_config(path: Path, *, index: int = 0) -> dict[str, Any]:
    """Combination ``index`` of a DSLite hp_config grid (every key a list), in DSLite's product order."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object of hyper-parameter lists", path=path)
    not_lists = [k for k, v in data.items() if not isinstance(v, list) or not v]
    if not_lists:
        raise ConfigError(f"every key must hold a non-empty list (DSLite grid); not: {', '.join(not_lists)}",
                          path=path)
    total = 1
    for values in data.values():
        total *= len(values)
    if not 0 <= index < total:
        raise ConfigError(f"--config-index {index} is out of range; this grid has {total} combination(s): 0..{total - 1}",
                          path=path)
    combination = next(itertools.islice(itertools.product(*data.values()), index, None))
    return dict(zip(data.keys(), combination))


def hp_config_to_frontend(hparams: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The frontend keys of one hp_config combination, as dslite-tiny FrontendConfig values."""
    for key, needed in _REQUIRED.items():
        if key in hparams and hparams[key] != needed:
            raise ConfigError(f"{key}={hparams[key]!r} is not supported: dslite-tiny reproduces DSLite's mel "
                              f"spectrogram plots ({key}={needed!r})", path=source)
    chunk = hparams.get("chunk_size", 1.0)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, float)):
        raise ConfigError(f"chunk_size={chunk!r} is not a number of seconds", path=source)
    if chunk <= 0:
        raise ConfigError("chunk_size <= 0 (whole files as one variable-length input) is not supported; "
                          "give a chunk length in seconds", path=source)
    frontend = {ours: hparams[theirs] for theirs, ours in _FRONTEND_KEYS.items() if theirs in hparams}
    for key in ("chunk_s", "chunk_hop_s", "window_s", "hop_s", "fft_s", "fmin", "fmax"):
        if key in frontend and isinstance(frontend[key], int):
            frontend[key] = float(frontend[key])
    backbone = hparams.get("basemodel_name")
    if backbone is not None:
        if backbone not in BACKBONE_NORMALIZATION:
            raise ConfigError(f"basemodel_name={backbone!r}: its DSLite input preprocessing is not reproduced; "
                              f"supported: {', '.join(sorted(BACKBONE_NORMALIZATION))}", path=source)
        frontend["normalization"] = BACKBONE_NORMALIZATION[backbone]
    return frontend


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError("no such file", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", path=path) from None
