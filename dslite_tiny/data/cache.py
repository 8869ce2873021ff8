"""On-disk cache of per-file mel spectrograms, keyed by file content and spectrogram settings.

A 3000-clip dataset is decoded, resampled and transformed once; later runs (another colour map, image
size, model, or a resumed job) read ``(chunks, frames, n_mels)`` float32 arrays back in milliseconds.
The key is the SHA-256 of the file's bytes (renaming or moving a file keeps its entry; editing it does
not) plus ``Frontend.spectrogram_key``. Entries are written atomically, so a killed run leaves no
half-written file behind; an entry that is damaged anyway (truncated, another shape or type, NaN or
infinite values) is recomputed and replaced, with a warning: the cache may save time, never change a result.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from dslite_tiny.artifacts import atomic_path
from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.audio.io import check_header, stream_audio
from dslite_tiny.errors import AudioError

CACHE_ENV = "DSLITE_TINY_CACHE"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ClipFeatures:
    """A file's mel spectrograms in dB (one per chunk) and what happened if it was shorter than a chunk."""

    mel_db: np.ndarray  # (chunks, frames, n_mels) float32
    padded: bool = False
    dropped: bool = False


def default_cache_dir() -> Path:
    """``$DSLITE_TINY_CACHE``, else ``$XDG_CACHE_HOME/dslite-tiny``, else ``~/.cache/dslite-tiny``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dslite-tiny"


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes; a missing or unreadable file is the user's ``AudioError``."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise AudioError("no such file", path=path) from None
    except OSError as exc:
        raise AudioError(f"cannot read ({exc.strerror or exc})", path=path) from None
    return digest.hexdigest()


class FeatureCache:
    """``root/features/<spectrogram key>/<sha[:2]>/<sha>.npz``; ``root=None`` disables caching."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = None if root is None else Path(root)

    def clip_features(self, path: str | Path, frontend: Frontend) -> ClipFeatures:
        """The file's spectrograms, from the cache or computed (and stored)."""
        if self.root is None:
            return compute_clip_features(path, frontend)
        entry = self._entry(file_digest(path), frontend.spectrogram_key)
        cached = _read(entry, frontend)
        if cached is not None:
            return cached
        features = compute_clip_features(path, frontend)
        self._write(entry, features)
        return features

    def _entry(self, digest: str, key: str) -> Path:
        return self.root / "features" / key / digest[:2] / f"{digest}.npz"

    @staticmethod
    def _write(entry: Path, features: ClipFeatures) -> None:
        with atomic_path(entry) as tmp, open(tmp, "wb") as out:
            np.savez(out, mel_db=features.mel_db, padded=features.padded, dropped=features.dropped)


def _read(entry: Path, frontend: Frontend) -> ClipFeatures | None:
    """The entry if it is there and sound; None means compute it (again)."""
    try:
        with np.load(entry, allow_pickle=False) as data:
            mel_db, padded, dropped = data["mel_db"], data["padded"], data["dropped"]
    except FileNotFoundError:
        return None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return _damaged(entry, f"unreadable ({exc})")
    shape = (frontend.config.n_frames, frontend.config.n_mels)
    if mel_db.dtype != np.float32 or mel_db.ndim != 3 or mel_db.shape[1:] != shape:
        return _damaged(entry, f"{mel_db.dtype} {mel_db.shape} instead of float32 (chunks, {shape[0]}, {shape[1]})")
    if padded.shape or dropped.shape or (not mel_db.shape[0] and not bool(dropped)):
        return _damaged(entry, "inconsistent chunk flags")
    if not np.isfinite(mel_db).all():
        return _damaged(entry, "NaN or infinite values")
    return ClipFeatures(mel_db, bool(padded), bool(dropped))


def _damaged(entry: Path, problem: str) -> None:
    log.warning("%s: damaged feature-cache entry (%s); recomputing it", entry, problem)
    return None


def compute_clip_features(path: str | Path, frontend: Frontend) -> ClipFeatures:
    """Decoded and transformed block by block into an array sized from the header: a long recording
    costs its spectrograms once, not its samples (a 2-hour file: 0.2 GB of spectrograms, not 8 GB)."""
    c = frontend.config
    out = np.empty((_chunks_upper_bound(Path(path), frontend), c.n_frames, c.n_mels), np.float32)
    n, padded, dropped = 0, False, False
    for chunks in frontend.stream_chunks(stream_audio(path, sr=c.sr)):
        mel = frontend.spectrogram(chunks.data)
        if n + len(mel) > len(out):  # the header undercounted: grow (never seen; kept for safety)
            out = np.concatenate([out[:n], np.empty((len(mel), *out.shape[1:]), np.float32)])
        out[n:n + len(mel)] = mel
        n, padded, dropped = n + len(mel), padded or chunks.padded, dropped or chunks.dropped
    return ClipFeatures(out[:n], padded, dropped)


def _chunks_upper_bound(path: Path, frontend: Frontend) -> int:
    """Chunks of the file by its header (resampling rounds by at most a sample), plus one."""
    info = check_header(path)
    c = frontend.config
    samples = int(np.ceil(info.frames * c.sr / info.samplerate)) + 1
    return max(1, (samples - c.chunk_length) // c.chunk_hop_length + 1) + 1 if samples >= c.chunk_length else 1
