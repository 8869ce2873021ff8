"""The two kinds of failure a user sees, and nothing else.

``UserError`` is input the user can fix (a file, a value, a config key); the CLI prints its message on one
line and exits 2. ``DeviceError`` is a link or device that failed; exit 1. Any other exception is a bug and
keeps its traceback (shown with ``--debug``).
"""
from __future__ import annotations

import re
from pathlib import Path

_MARKERS = re.compile(r"(?<!\S)[\^~]{2,}(?!\S)")  # a traceback's ^^^^ / ~~~~ under an expression


class UserError(Exception):
    """Fixable input: the message names the file or parameter, the value and what is allowed."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.message = " ".join(_MARKERS.sub(" ", str(message)).split())  # one line, whatever a cause's text held
        super().__init__(f"{self.path}: {self.message}" if self.path else self.message)


class ConfigError(UserError):
    """A configuration value or key that is not allowed; ``key`` lets the loader name the file that set it."""

    def __init__(self, message: str, *, path: str | Path | None = None, key: str | None = None) -> None:
        self.key = key
        super().__init__(message, path=path)


class AudioError(UserError):
    """An audio file that cannot be used (missing, not audio, empty, non-finite, unsupported)."""


class DataError(UserError):
    """A dataset layout, label file or split that cannot be used."""


class DeviceError(Exception):
    """A serial link or device that failed; the run can be resumed."""

    exit_code = 1
