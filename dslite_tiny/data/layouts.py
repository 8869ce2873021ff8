"""Dataset layouts our users already have, read into one ``Dataset`` of labelled, split clips.

* folder: ``root/<label>/**/*.wav`` (flac, ogg), optional ``root/splits.csv`` (``filename,split``);
* flat: ``root/**/*.wav`` with the label taken from the file name by ``label_regex`` (FSDD:
  ``digit_speaker_take.wav``);
* dslite: DeepSpectrumLite's label CSV and class_config.json (see ``dslite_tiny.data.dslite``).

Files without a given split are split deterministically, speaker-independently when ``speaker_regex``
is set (``dslite_tiny.data.splits``).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dslite_tiny.audio.io import audio_files
from dslite_tiny.config import DataConfig
from dslite_tiny.errors import DataError

SPLITS = ("train", "devel", "test")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One audio file with its label, split and (if known) speaker."""

    path: Path
    label: str
    split: str
    speaker: str | None = None


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Clips plus the ordered class list (index = class id) and how the splits were made."""

    source: str
    classes: tuple[str, ...]
    clips: tuple[Clip, ...]
    split_method: str

    def split(self, name: str) -> list[Clip]:
        return [clip for clip in self.clips if clip.split == name]

    def counts(self) -> pd.DataFrame:
        """Files per class (rows, in class order) and split (columns), with totals."""
        frame = pd.DataFrame([(c.label, c.split) for c in self.clips], columns=["label", "split"])
        table = pd.crosstab(frame["label"], frame["split"]).reindex(index=list(self.classes), columns=list(SPLITS))
        table = table.fillna(0).astype(int)
        table["total"] = table.sum(axis=1)
        table.loc["total"] = table.sum(axis=0)
        return table

    def speakers(self, split: str) -> list[str]:
        return sorted({c.speaker for c in self.split(split) if c.speaker is not None})

    def require_splits(self, names: Iterable[str] = SPLITS) -> None:
        """Every named split must hold files: an empty split makes training or evaluation meaningless."""
        sizes = {name: len(self.split(name)) for name in SPLITS}
        for name in names:
            if sizes[name] == 0:
                detail = ", ".join(f"{k} {v}" for k, v in sizes.items())
                raise DataError(f"split '{name}' is empty ({detail} files; splits by {self.split_method})",
                                path=self.source)

    def require_classes(self, split: str = "train") -> None:
        """A classifier learns from two classes or more: trained on one, it scores a perfect, empty UAR."""
        present = sorted({clip.label for clip in self.split(split)}, key=natural_key)
        if len(present) < 2:
            raise DataError(f"split '{split}' holds {len(present)} class{'' if len(present) == 1 else 'es'} "
                            f"({', '.join(present) or 'none'}); a classifier needs at least two", path=self.source)


def load_dataset(config: DataConfig, *, require: Iterable[str] = SPLITS) -> Dataset:
    """Read the layout ``config`` describes; ``require`` names the splits that must not be empty."""
    from dslite_tiny.data import dslite, splits

    root = Path(config.root) if config.root else None
    layout = _detect_layout(config, root)
    if layout == "dslite":
        dataset = dslite.load_dslite_dataset(config)
    else:
        if root is None or not root.is_dir():
            raise DataError("no such dataset folder" if root is None or not root.exists() else "not a folder",
                            path=root or "(no root given)")
        labelled = _folder_files(root) if layout == "folder" else _flat_files(root, config.label_regex)
        given = _read_splits_csv(root, [p for p, _ in labelled])
        dataset = splits.split_dataset(str(root), labelled, given=given, config=config)
    _check_class_names(dataset)
    dataset.require_splits(require)
    return dataset


def _check_class_names(dataset: Dataset) -> None:
    """Class names end up one per line in labels.txt, in C string literals and in CSV rows: a line break,
    tab or other control character (a folder name can hold one) would corrupt all three."""
    for name in dataset.classes:
        if not name.strip() or not name.isprintable():
            raise DataError(f"class name {name!r} is empty or holds a line break or other control character; "
                            f"rename that class", path=dataset.source)


def natural_key(text: str) -> list[object]:
    """'2' before '10': class names that are numbers sort as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def regex_group(pattern: re.Pattern[str], name: str, text: str) -> str | None:
    """The named group (or group 1, or the whole match) of ``pattern`` searched in ``text``."""
    match = pattern.search(text)
    if match is None:
        return None
    if name in pattern.groupindex:
        return match.group(name)
    return match.group(1) if pattern.groups else match.group(0)


def compile_regex(pattern: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise DataError(f"{option} '{pattern}' is not a valid regular expression ({exc})") from None


def _detect_layout(config: DataConfig, root: Path | None) -> str:
    if config.layout != "auto":
        return config.layout
    if config.labels_csv:
        return "dslite"
    if config.label_regex:
        return "flat"
    if root is not None and root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        return "folder"
    raise DataError("cannot tell the layout: no class sub-folders; give --label-regex for a flat folder "
                    "or --labels/--class-config for a DeepSpectrumLite layout", path=root or "(no root given)")


def _folder_files(root: Path) -> list[tuple[Path, str]]:
    files = [(path, folder.name)
             for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
             for path in audio_files(folder)]
    if not files:
        raise DataError("no audio files (.wav, .flac, .ogg) in any class sub-folder", path=root)
    return files


def _flat_files(root: Path, label_regex: str | None) -> list[tuple[Path, str]]:
    if not label_regex:
        raise DataError("a flat folder needs --label-regex to find the label in each file name", path=root)
    pattern = compile_regex(label_regex, "--label-regex")
    audio = audio_files(root)
    if not audio:
        raise DataError("no audio files (.wav, .flac, .ogg)", path=root)
    labelled = [(p, regex_group(pattern, "label", p.name)) for p in audio]
    missing = [p.name for p, label in labelled if not label]
    if missing:
        raise DataError(f"--label-regex '{label_regex}' finds no label in {len(missing)} of {len(audio)} file "
                        f"names, e.g. {missing[0]}", path=root)
    return [(p, str(label)) for p, label in labelled]


def _read_splits_csv(root: Path, files: list[Path]) -> dict[Path, str] | None:
    """``root/splits.csv`` (filename relative to root, split) if present; every file must be listed."""
    csv_path = root / "splits.csv"
    if not csv_path.is_file():
        return None
    frame = read_csv(csv_path, required=("filename", "split"))
    bad = sorted(set(frame["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"unknown split name(s) {', '.join(map(str, bad))}; allowed: {', '.join(SPLITS)}",
                        path=csv_path)
    given = {(root / str(name)).resolve(): str(split) for name, split in zip(frame["filename"], frame["split"])}
    unlisted = [p for p in files if p.resolve() not in given]
    if unlisted:
        raise DataError(f"{len(unlisted)} audio file(s) have no split, e.g. {unlisted[0].relative_to(root)}",
                        path=csv_path)
    return {p: given[p.resolve()] for p in files}


def read_csv(path: Path, *, required: tuple[str, ...]) -> pd.DataFrame:
    """A CSV whose header must hold ``required`` columns; a one-line error otherwise."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read as CSV ({exc})", path=path) from None
    columns = [str(c).strip() for c in frame.columns]
    if any(name not in columns for name in required):
        raise DataError(f"wrong columns: expected {','.join(required)}, found {','.join(columns) or 'none'}",
                        path=path)
    frame.columns = columns
    return frame
