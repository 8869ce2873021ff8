"""A dataset's clips → one in-memory table of chunk spectrograms with labels, through the cache.

Bad files are counted and skipped (a long job does not die on file 2,817) unless ``strict``; short clips
are padded or dropped per the frontend config, and both counts are reported. The table holds mel
spectrograms, not images: images are rendered per batch by ``Frontend.model_input``, which keeps a
3000-clip, 224×224×3 dataset within memory. ``audio_chunks`` reads a folder of unlabelled audio the same
way, for distillation.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from dslite_tiny.artifacts import write_json
from dslite_tiny.audio.frontend import Frontend, normalize_image
from dslite_tiny.audio.io import audio_files
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.data.layouts import Clip, Dataset
from dslite_tiny.errors import AudioError, DataError
from dslite_tiny.progress import Progress, no_progress

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FeatureReport:
    """What happened to the files: a user should know how much data was actually used."""

    files: int
    chunks: int
    padded: int
    dropped: int
    skipped: tuple[tuple[str, str], ...]  # (file, reason)

    def describe(self) -> str:
        parts = [f"{self.files} files → {self.chunks} chunks", f"{self.padded} short clips padded",
                 f"{self.dropped} short clips dropped", f"{len(self.skipped)} bad files skipped"]
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """Chunk spectrograms of some clips; ``clip_index[i]`` says which clip chunk ``i`` came from."""

    mel_db: np.ndarray  # (n, frames, n_mels) float32
    labels: np.ndarray  # (n,) class index
    clip_index: np.ndarray  # (n,) index into ``clips``
    clips: tuple[Clip, ...]
    classes: tuple[str, ...]
    report: FeatureReport

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def compute_features(dataset: Dataset, frontend: Frontend, *, splits: Sequence[str] | None = None,
                     cache: FeatureCache | None = None, strict: bool = False,
                     progress: Progress = no_progress) -> FeatureSet:
    """Spectrograms of every clip in ``splits`` (all when None); ``progress`` wraps the clip loop."""
    cache = cache or FeatureCache(None)
    clips = tuple(c for c in dataset.clips if splits is None or c.split in splits)
    class_index = {label: i for i, label in enumerate(dataset.classes)}
    mels, labels, owners, skipped = [], [], [], []
    padded = dropped = 0
    for i, clip in enumerate(progress(clips, desc=f"features {'+'.join(splits) if splits else ''}".strip())):
        try:
            features = cache.clip_features(clip.path, frontend)
        except AudioError as exc:
            if strict:
                raise
            log.warning("skipping %s", exc)
            skipped.append((str(clip.path), exc.message))
            continue
        padded += features.padded
        dropped += features.dropped
        mels.append(features.mel_db)
        labels.extend([class_index[clip.label]] * len(features.mel_db))
        owners.extend([i] * len(features.mel_db))
    c = frontend.config
    if not mels:
        mel_db = np.zeros((0, c.n_frames, c.n_mels), np.float32)
    else:  # one long recording's spectrograms are not copied a second time
        mel_db = mels[0] if len(mels) == 1 else np.concatenate(mels)
    report = FeatureReport(len(clips), len(labels), padded, dropped, tuple(skipped))
    return FeatureSet(mel_db, np.asarray(labels, np.int64), np.asarray(owners, np.int64), clips,
                      dataset.classes, report)


def audio_chunks(folder: Path, frontend: Frontend, *, cache: FeatureCache | None = None,
                 progress: Progress = no_progress) -> np.ndarray:
    """The chunk spectrograms (n, frames, n_mels) of every audio file under ``folder``, whatever its layout:
    unlabelled audio for distillation, so nothing about labels or splits is read. Bad files are skipped with a
    warning, as a dataset's are; a folder without usable audio is refused."""
    if not folder.is_dir():
        raise DataError("not a folder", path=folder)
    paths = audio_files(folder)
    if not paths:
        raise DataError("no audio files (.wav, .flac, .ogg) under it", path=folder)
    cache = cache or FeatureCache(None)
    mels = []
    for path in progress(paths, desc="unlabelled audio"):
        try:
            mels.append(cache.clip_features(path, frontend).mel_db)
        except AudioError as exc:
            log.warning("skipping %s", exc)
    if not sum(len(m) for m in mels):
        raise DataError(f"none of its {len(paths)} audio files gives a chunk", path=folder)
    return np.concatenate(mels)


def epoch_batches(labels: np.ndarray, num_classes: int, *, batch_size: int, balance: str,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of index batches; ``oversample`` draws every class as often as the largest one."""
    if balance == "oversample":
        per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
        target = max(len(p) for p in per_class)
        order = np.concatenate([np.concatenate([p, rng.choice(p, target - len(p))]) for p in per_class if len(p)])
        order = rng.permutation(order)
    else:
        order = rng.permutation(len(labels))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def batches_per_epoch(labels: np.ndarray, num_classes: int, *, batch_size: int, balance: str) -> int:
    """How many batches ``epoch_batches`` yields (the same every epoch): what a schedule is sized by."""
    if balance == "oversample":
        counts = np.bincount(labels, minlength=num_classes)
        size = int(counts.max()) * int(np.count_nonzero(counts))
    else:
        size = len(labels)
    return -(-size // batch_size)


FORMATS = ("png", "npy")


def write_chunk_images(mel_db: np.ndarray, frontend: Frontend, stem: str | Path, *,
                       formats: Sequence[str] = ("png",)) -> list[str]:
    """Each chunk as ``<stem>_c<k>.png`` (the [0, 255] plot a person looks at) and/or ``.npy`` (the
    normalised float32 model input); returns the files written."""
    from PIL import Image

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    plots = frontend.plot(mel_db)
    written = []
    for k, plot in enumerate(plots):
        base = stem.parent / f"{stem.name}_c{k}"
        if "png" in formats:
            pixels = np.rint(plot).astype(np.uint8)
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(f"{base}.png")
            written.append(f"{base}.png")
        if "npy" in formats:
            np.save(f"{base}.npy", normalize_image(plot, frontend.config.normalization))
            written.append(f"{base}.npy")
    return written


def featurize_files(paths: Sequence[Path], frontend: Frontend, out_dir: Path, *,
                    formats: Sequence[str] = ("png",), cache: FeatureCache | None = None) -> dict:
    """Images of every chunk of each file in ``out_dir``; a bad file raises (the user named it)."""
    cache = cache or FeatureCache(None)
    entries, stems = [], set()
    padded = dropped = 0
    for path in paths:
        features = cache.clip_features(path, frontend)
        padded, dropped = padded + features.padded, dropped + features.dropped
        stem = _unique(Path(path).stem, stems)
        written = write_chunk_images(features.mel_db, frontend, out_dir / stem, formats=formats)
        entries.append({"file": str(path), "chunks": len(features.mel_db), "padded": features.padded,
                        "dropped": features.dropped, "outputs": [Path(w).name for w in written]})
    report = FeatureReport(len(paths), sum(e["chunks"] for e in entries), padded, dropped, ())
    return _write_manifest(out_dir, frontend, report, entries)


def featurize_dataset(dataset: Dataset, frontend: Frontend, out_dir: Path, *, formats: Sequence[str] = ("png",),
                      cache: FeatureCache | None = None, strict: bool = False, per_class: int | None = None,
                      progress: Progress = no_progress) -> dict:
    """All clips through the cache (bad files counted and skipped), images under ``split/label/``;
    ``per_class`` limits how many clips per split and class get images."""
    table = compute_features(dataset, frontend, cache=cache, strict=strict, progress=progress)
    entries, shown = [], {}
    for i, clip in enumerate(table.clips):
        rows = np.flatnonzero(table.clip_index == i)
        group = (clip.split, clip.label)
        if rows.size == 0 or (per_class is not None and shown.get(group, 0) >= per_class):
            continue
        shown[group] = shown.get(group, 0) + 1
        stem = out_dir / clip.split / clip.label / clip.path.stem
        written = write_chunk_images(table.mel_db[rows], frontend, stem, formats=formats)
        entries.append({"file": str(clip.path), "label": clip.label, "split": clip.split,
                        "speaker": clip.speaker, "chunks": int(rows.size),
                        "outputs": [str(Path(w).relative_to(out_dir)) for w in written]})
    return _write_manifest(out_dir, frontend, table.report, entries, dataset=dataset)


def _unique(stem: str, taken: set[str]) -> str:
    name, k = stem, 1
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    taken.add(name)
    return name


def _write_manifest(out_dir: Path, frontend: Frontend, report: FeatureReport, entries: list[dict], *,
                    dataset: Dataset | None = None) -> dict:
    """``features.json``: the resolved config, versions and what was written, for provenance."""
    from dslite_tiny import __version__
    from dslite_tiny.config import to_dict

    manifest = {
        "dslite_tiny_version": __version__,
        "frontend": to_dict(frontend.config),
        "spectrogram_key": frontend.spectrogram_key,
        "report": dataclasses.asdict(report),
        "classes": list(dataset.classes) if dataset else None,
        "split_method": dataset.split_method if dataset else None,
        "files": entries,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "features.json", manifest)
    return manifest
