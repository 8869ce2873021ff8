"""Typed, versioned records of what one stage writes and another reads back, each with one validated
reader and one atomic writer: a missing or malformed field is a one-line error naming the file and the
field, never a KeyError deep in a report or "—" in a table.

Each file carries ``format`` and ``version``; a file written before versions is read as version 1 and a
newer version is refused with the reason. Low in the layering: only config, errors and artifacts.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from dslite_tiny.artifacts import write_json
from dslite_tiny.config import FrontendConfig, from_mapping, to_dict
from dslite_tiny.errors import ConfigError, UserError

REFERENCE_FORMAT, REFERENCE_VERSION = "dslite-tiny reference", 1
SIDECAR_FORMAT, SIDECAR_VERSION = "dslite-tiny model", 1
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
    try:
        frontend = from_mapping(FrontendConfig, field_at(data, "frontend", dict, path), source=path.name)
    except ConfigError as exc:
        raise UserError(f"field 'frontend' is invalid ({exc})", path=path) from None
    model, sha256, split, features = (field_at(data, name, str, path) for name in ("model", "sha256", "split",
                                                                                   "features"))
    return Reference(model, sha256, split, tuple(classes), frontend, features, data["accuracy"])


def read_sidecar(path: Path) -> dict[str, Any]:
    """``model.json`` beside a trained ``model.h5``: its format, and the keys every stage needs (the class
    names in output order, the frontend settings the model was trained with), checked before the model loads."""
    data = read_json_object(path, "no sidecar next to the model")
    if data.get("format") != SIDECAR_FORMAT:
        raise UserError("not a dslite-tiny sidecar", path=path)
    _check_version(data, path, SIDECAR_FORMAT, SIDECAR_VERSION)
    _class_names(data, path)
    field_at(data, "frontend", dict, path)
    return data


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


def field_at(data: dict, dotted: str, kinds: type | tuple[type, ...], path: Path, *, optional: bool = False) -> Any:
    """``data["a"]["b"]`` for ``dotted`` "a.b", checked to be of ``kinds`` (None allowed when ``optional``);
    otherwise a one-line error naming the file and the field. ``bool`` never passes for a number."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    value: Any = data
    for key in dotted.split("."):
        value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            raise UserError(f"field '{dotted}' is missing", path=path)
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise UserError(f"field '{dotted}' must be {names}, got {value!r:.60}", path=path)
    return value
