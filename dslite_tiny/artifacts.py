"""Writing results so that a crash, Ctrl-C or a second run never leaves a half-written or mixed file.

Every file goes to a uniquely named temporary beside its target and is renamed over it (atomic on one file
system), so a reader sees the old file or the new one, never a part; two writers never share a temporary.
A folder a long run fills (``compress --out``) is locked for the run: a second run into it stops with a
one-line error instead of interleaving its results with the first one's. A written file gets the mode
``open()`` would give it (0666 less the umask), not ``mkstemp``'s private 0600: results folders are shared.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dslite_tiny.errors import UserError

LOCK_NAME = ".dslite-tiny.lock"


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for a writer that needs a file name (Keras, numpy); it
    becomes ``path`` when the block ends normally and is removed otherwise. ``suffix`` keeps an extension
    a writer looks at (``.h5``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """``path`` holds ``data`` (text as UTF-8) in full, or keeps what it held."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | Path, data: Any, *, sort_keys: bool = True) -> Path:
    """``data`` as indented JSON, atomically, with a final newline."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Holds an exclusive lock on ``folder`` (created if missing) for the block; a second holder is refused
    at once. The lock is the kernel's (``flock``): a killed run leaves no stale lock behind."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise UserError(f"another dslite-tiny run ({owner}) is writing into this folder; wait for it or "
                            f"give another output folder", path=folder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
