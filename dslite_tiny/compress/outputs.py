"""Reading a compress output folder back (its layout is in ``pipeline``), for export and report alike.

Only JSON and the config dataclasses: no TensorFlow import, so ``export`` and ``report`` stay quick.
"""
from __future__ import annotations

import json
from pathlib import Path

from dslite_tiny.config import FrontendConfig, from_mapping
from dslite_tiny.errors import ConfigError, UserError


def read_output_json(path: Path) -> dict:
    """A ``metrics.json`` or ``reference.json``; missing or invalid is a one-line user error naming it."""
    if not path.is_file():
        raise UserError("missing: is this a complete `dslite-tiny compress` output?", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON ({exc.msg}, line {exc.lineno})", path=path) from None


def recorded_frontend(reference: dict, path: Path) -> FrontendConfig | None:
    """The frontend a ``reference.json`` (at ``path``) records; None from a compress run that predates it."""
    if "frontend" not in reference:
        return None
    try:
        return from_mapping(FrontendConfig, reference["frontend"], source=path.name)
    except ConfigError as exc:
        raise UserError(f"invalid frontend ({exc})", path=path) from None
