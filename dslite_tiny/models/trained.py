"""A trained model on disk: ``model.h5`` plus the ``model.json`` sidecar next to it.

The sidecar holds everything later stages need without the training config: class labels in order, the
resolved frontend config, the input shape and dtype, backbone and normalisation, training history, data
summary and versions. Any command given only ``model.h5`` finds it next to the file.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dslite_tiny.artifacts import atomic_path
from dslite_tiny.config import DataConfig, FrontendConfig, from_mapping
from dslite_tiny.errors import DataError, UserError
from dslite_tiny.records import Sidecar, read_sidecar, write_sidecar

if TYPE_CHECKING:
    from dslite_tiny.data.features import FeatureSet
    from dslite_tiny.data.layouts import Dataset

# The only top-level packages a stored architecture may name (Keras resolves and imports them on load).
SAFE_MODULES = ("keras", "tf_keras", "builtins", "dslite_tiny")


@dataclasses.dataclass
class TrainedModel:
    model: Any  # tf_keras.Model
    sidecar: Sidecar
    path: Path

    @property
    def classes(self) -> tuple[str, ...]:
        return self.sidecar.classes

    @property
    def frontend_config(self) -> FrontendConfig:
        return self.sidecar.frontend

    def check_labels(self, dataset: Dataset) -> None:
        """Every class of ``dataset`` must be one of the model's (a dataset may hold fewer)."""
        unknown = sorted(set(dataset.classes) - set(self.classes))
        if unknown:
            raise DataError(f"labels {', '.join(unknown[:5])} are not classes of the model {self.path.name} "
                            f"(its classes: {', '.join(self.classes)})", path=dataset.source)

    def saved_data(self) -> DataConfig:
        """The dataset and split the model was trained with (a command's default ``--data``)."""
        saved = self.sidecar.data_config
        if not saved:
            raise UserError("the model's sidecar names no dataset: pass --data DATA", path=self.path)
        return from_mapping(DataConfig, saved, source=f"{self.path.name} sidecar")

    def split_overlap(self, dataset: Dataset, split: str, *, owner: str = "the model") -> str | None:
        """Why scoring the model on ``dataset``'s ``split`` would flatter it, or None: on the dataset it was
        trained on, that split shares speakers with the splits that trained it (train) or selected it
        (devel, when scoring test), or, where either split knows no speakers, it was cut differently, so its
        files may have been trained on. Scoring ``train`` is never flagged: it is asked for on purpose.
        ``owner`` is how the message names the model (a teacher, for distillation)."""
        data = self.sidecar.data
        if split == "train" or data is None or Path(dataset.source).resolve() != Path(data["source"]).resolve():
            return None
        used = ("train",) if split == "devel" else ("train", "devel")
        seen = {speaker for part in used for speaker in data["speakers"][part]}
        current = set(dataset.speakers(split))
        if seen and current:
            shared = sorted(seen & current)
            return (f"the {split} split shares speakers {', '.join(shared[:5])} with the {' and '.join(used)} "
                    f"split{'s' if len(used) > 1 else ''} of {owner}") if shared else None
        if dataset.split_method != data["split_method"]:
            return (f"the {split} split ({dataset.split_method}) is cut differently from {owner}'s "
                    f"({data['split_method']}), so it may hold files {owner} was trained on")
        return None

    def labels_of(self, features: FeatureSet) -> np.ndarray:
        """The chunks' dataset class indices as the model's output indices."""
        mapping = np.array([self.classes.index(c) for c in features.classes])
        return mapping[features.labels]


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def versions() -> dict[str, str]:
    import numpy
    import tensorflow as tf
    import tf_keras

    from dslite_tiny import __version__

    return {"dslite_tiny": __version__, "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def save_trained(model, path: str | Path, sidecar: Sidecar) -> Path:
    """Write ``path`` (.h5), then its sidecar (stamped with the input shape, time and versions), each via a
    temporary file: a crash leaves the old pair, or the new model beside the old one's labels and frontend."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = {"model_file": path.name, "versions": versions(),
             "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    sidecar = dataclasses.replace(sidecar, input_shape=tuple(model.input_shape[1:]),
                                  details={**sidecar.details, **stamp})
    with atomic_path(path, suffix=".h5") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file.*")  # "legacy" to Keras; what the toolchain expects
        model.save(tmp, include_optimizer=False)
    write_sidecar(sidecar_path(path), sidecar)
    return path


def read_model_config(path: Path) -> dict[str, Any]:
    """The architecture Keras stored in an .h5 model file; one-line errors for a missing file, a file that
    is not HDF5 and a weights-only file."""
    import h5py

    if not path.is_file():
        raise UserError("no such model file", path=path)
    try:
        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
    except OSError:
        raise UserError("not a Keras model: not an HDF5 (.h5) file", path=path) from None
    if config is None:
        raise UserError("not a Keras model: an HDF5 file without a model config (a weights-only file?)", path=path)
    try:
        parsed = json.loads(config)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise UserError(f"not a Keras model: its model_config is not valid JSON ({exc})", path=path) from None
    if not isinstance(parsed, dict):
        raise UserError("not a Keras model: its model_config is not a JSON object", path=path)
    return parsed


def load_trained(path: str | Path) -> TrainedModel:
    """The model and its sidecar; one-line errors for a missing, non-Keras or DeepSpectrumLite file."""
    path = Path(path)
    config = read_model_config(path)
    side = sidecar_path(path)
    if not side.is_file():
        if config.get("class_name") == "AugmentableModel" or '"ARelu"' in json.dumps(config):
            raise UserError("a DeepSpectrumLite model: convert it first with 'dslite-tiny import-dslite "
                            "MODEL.h5 --class-config class_config.json --hp-config hp_config.json --out DIR'",
                            path=path)
        raise UserError(f"no sidecar {side.name} next to the model: dslite-tiny needs the labels and frontend "
                        f"settings it saves at training time", path=path)
    sidecar = read_sidecar(side)  # before the (slow) model load: a bad sidecar fails at once
    trained = TrainedModel(load_keras_model(path, config=config), sidecar, path)
    check_consistency(trained)
    return trained


def check_consistency(trained: TrainedModel) -> None:
    """The sidecar describes this model: one label per output, and frontend images of the input's shape
    (a mismatch would misalign every score column or fail deep inside a later stage)."""
    side = sidecar_path(trained.path)
    outputs = trained.model.output_shape[-1]
    if outputs != len(trained.classes):
        raise UserError(f"the sidecar lists {len(trained.classes)} classes but the model has {outputs} outputs",
                        path=side)
    image = tuple(trained.frontend_config.image_shape)
    expected = tuple(trained.model.input_shape[1:])
    if image != expected:
        raise UserError(f"the sidecar's frontend makes {image} images but the model takes {expected}", path=side)


def load_keras_model(path: str | Path, *, config: dict[str, Any] | None = None):
    """A tf_keras model from an .h5 file, after ``check_no_code`` passed on its stored architecture.

    Keras runs a Lambda layer's marshalled bytecode when it loads a legacy .h5 (its ``safe_mode`` argument
    only guards the .keras format), so the architecture is checked first, and the load itself also runs in
    Keras's safe-mode scope."""
    import tf_keras as keras
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    import dslite_tiny.models.arelu  # noqa: F401  (registers AReLU for deserialisation)

    path = Path(path)
    check_no_code(read_model_config(path) if config is None else config, path=path)
    try:
        with SafeModeScope(True):
            return keras.models.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"cannot load the Keras model ({exc})", path=path) from None


def check_no_code(config: Any, *, path: Path) -> None:
    """Refuse an architecture whose deserialisation could run code: a Lambda layer (its function is stored
    as Python bytecode or looked up by name), or a reference to a module other than Keras, builtins and
    dslite_tiny (Keras's newer deserialiser imports such a module and calls what it finds; the legacy .h5
    path ignores it today, and a model file must not depend on which path Keras takes)."""
    if isinstance(config, list):
        for item in config:
            check_no_code(item, path=path)
        return
    if not isinstance(config, dict):
        return
    if config.get("class_name") == "Lambda" or "function_type" in config:
        name = (config.get("config") or {}).get("name") or config.get("name") or "?"
        raise UserError(f"the model has a Lambda layer '{name}': loading it would run Python code stored in the "
                        f"file, which dslite-tiny never does; build the model from registered layers instead",
                        path=path)
    module = config.get("module")
    if isinstance(module, str) and module.split(".")[0] not in SAFE_MODULES:
        raise UserError(f"the model's architecture names the Python module '{module}' "
                        f"({config.get('class_name', '?')}): loading it would import and run that code, which "
                        f"dslite-tiny never does (allowed: {', '.join(SAFE_MODULES)})", path=path)
    for value in config.values():
        check_no_code(value, path=path)
