"""``export``: a variant as C sources for TFLite Micro, as a generated engine or as a phone bundle,
checked against a board.

    c       <name>_model_data.h/.cc, <name>_model_settings.h, <name>_op_resolver.h
    engine  <name>_engine.h/.c, dt_engine.h and dt_*.c (the kernels, one file per op), <name>_model_settings.h:
            no TFLite Micro
    phone   <name>.tflite, labels.txt, <name>.json

With a board, a model that does not fit (flash or RAM) is refused unless ``force``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from dslite_tiny.engine.codegen import Engine, generate
from dslite_tiny.errors import UserError
from dslite_tiny.export.boards import (Fit, Footprint, arena_estimate, check_fit, engine_need, footprint,
                                      load_board)
from dslite_tiny.c_source import c_identifier, c_string, model_data_files
from dslite_tiny.export.op_resolver import check_tflm_ops, op_resolver_file
from dslite_tiny.export.phone import phone_files
from dslite_tiny.export.settings import model_settings_file
from dslite_tiny.export.variant import Variant, load_variant, with_tflm_check

TARGETS = ("c", "engine", "phone")
Target = Literal["c", "engine", "phone"]


@dataclasses.dataclass
class ExportResult:
    variant: Variant
    out_dir: Path
    files: list[Path]
    fit: Fit | None
    engine: Engine | None = None  # the generated engine's figures (target engine)


def export_model(path: str | Path, *, target: Target, name: str | None = None, out_dir: str | Path | None = None,
                 board: str | Path | None = None, force: bool = False) -> ExportResult:
    """Write ``target``'s files for the variant folder or ``.tflite`` at ``path``."""
    if target not in TARGETS:
        raise UserError(f"unknown target '{target}'; targets: {', '.join(TARGETS)}")
    variant = load_variant(path)
    name = _name(name, variant)
    profile = load_board(board) if board is not None else None
    _check_shapes(variant)
    engine = None
    if target == "engine":
        variant = with_tflm_check(variant)  # for the settings header the firmware core reads
        engine, files = engine_files(variant, name=name)
        fit = _engine_fit(variant, engine, profile, force) if profile is not None else None
    else:
        if target == "c" or (profile is not None and profile.microcontroller):
            check_tflm_ops(variant)
            variant = with_tflm_check(variant)
        fit = _fit(variant, profile, force) if profile is not None else None
        files = c_files(variant, name=name) if target == "c" else phone_files(variant, name=name)
    out = Path(out_dir) if out_dir is not None else _default_out(variant, target)
    return ExportResult(variant, out, _write(files, out), fit, engine)


def c_files(variant: Variant, *, name: str) -> dict[str, str]:
    """Every C source of the variant, ``{file name: text}`` (the arena must be measured)."""
    provenance = provenance_lines(variant)
    return {**model_data_files(variant.data, name=name, provenance=provenance),
            **model_settings_file(variant, name=name, provenance=provenance),
            **op_resolver_file(variant, name=name, provenance=provenance)}


def engine_files(variant: Variant, *, name: str) -> tuple[Engine, dict[str, str]]:
    """The generated engine of the variant and its files with the settings header (the arena measured)."""
    provenance = provenance_lines(variant)
    engine = generate(variant.data, variant.path, name=name, provenance=provenance)
    return engine, {**engine.files, **model_settings_file(with_tflm_check(variant), name=name,
                                                          provenance=provenance)}


def provenance_lines(variant: Variant) -> list[str]:
    """The banner's lines: every value that comes from a file or a folder name is a C string literal."""
    converter = variant.converter.get("tensorflow")
    return [f"Source: {c_string(str(variant.path))}", f"SHA-256: {variant.sha256}",
            f"Variant: {c_string(variant.name)}",
            f"TensorFlow (converter): {c_string(str(converter)) if converter else 'unknown (no metrics.json)'}"]


def _name(name: str | None, variant: Variant) -> str:
    try:
        return c_identifier(name if name is not None else variant.name)
    except ValueError:
        raise UserError(f"--name {name!r} has no letters or digits for a C identifier") from None


def _check_shapes(variant: Variant) -> None:
    shape = variant.description["input"]["shape"]
    if len(shape) != 4:
        raise UserError(f"the model's input has shape {shape}; an image model takes (1, H, W, C)", path=variant.path)
    f = variant.frontend
    if f is not None and tuple(shape[1:]) != f.image_shape:
        raise UserError(f"the model's input {tuple(shape[1:])} differs from its frontend's image {f.image_shape}",
                        path=variant.path)


def _fit(variant: Variant, board, force: bool) -> Fit:
    arena = arena_estimate(variant.arena_bytes, variant.description["activation_bytes"])
    need = footprint(model_bytes=len(variant.data), arena_bytes=arena, frontend=variant.frontend,
                     ops=variant.description["ops"])
    return _checked(check_fit(need, board), variant, force)


def _engine_fit(variant: Variant, engine: Engine, board, force: bool) -> Fit:
    if not board.microcontroller:
        raise UserError(f"board {board.name!r} runs {board.runtime}, not a microcontroller firmware; the engine "
                        f"target is for microcontroller boards")
    return _checked(check_fit(engine_footprint(variant, engine), board), variant, force)


def engine_footprint(variant: Variant, engine: Engine) -> Footprint:
    """The generated engine's exact needs: its constants in flash, its arena with the input and output in RAM,
    and its kernels' code."""
    return engine_need(constant_bytes=engine.constant_bytes, op_calls=engine.ops, frontend=variant.frontend,
                       ram_bytes=engine.arena_bytes + engine.input_bytes + engine.output_bytes)


def _checked(fit: Fit, variant: Variant, force: bool) -> Fit:
    if not fit.fits and not force:
        raise UserError(f"the model does not fit {fit.describe()}; --force exports it anyway", path=variant.path)
    return fit


def _write(files: dict[str, str | bytes], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, content in files.items():
        path = out_dir / file_name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", newline="\n")
        else:
            path.write_bytes(content)
        paths.append(path)
    return paths


def _default_out(variant: Variant, target: str) -> Path:
    if variant.path.name == "model.tflite":
        return variant.path.parent / f"export-{target}"
    return variant.path.with_name(f"{variant.path.stem}-{target}")
