"""Deterministic train/devel/test splits: whole speakers per split when speakers are known.

A model evaluated on a speaker it was trained on looks better than it is; in paralinguistics and keyword
spotting the held-out speaker is the real test. Without speakers, files are split per class (stratified).

The fractions count only files whose header reads (``check_header``): a few corrupt files of one speaker
must not move another speaker between splits. Unreadable files keep a split (their speaker's, else train)
so that the feature step reports them as skipped, or fails on them when strict.

Files in which the speaker regex finds no speaker (Speech Commands' background-noise clips) are refused,
or, with ``speakerless: by_file``, each is a speaker of its own: split and dealt to cross-validation folds
file by file, by the same seeded order as the speakers.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from dslite_tiny.audio.io import check_header
from dslite_tiny.config import DataConfig
from dslite_tiny.data.layouts import Clip, Dataset, compile_regex, natural_key, regex_group
from dslite_tiny.errors import AudioError, DataError

log = logging.getLogger(__name__)
FILE_SPEAKER = "file:"  # the speaker id of a file without one (speakerless: by_file), before its path
SPEAKERS_SHOWN = 8  # speakers a summary names before it counts the rest


def split_dataset(source: str, labelled: list[tuple[Path, str]], *, given: dict[Path, str] | None,
                  config: DataConfig) -> Dataset:
    """Clips with splits from ``given`` (splits.csv) or assigned by speaker / stratified by class."""
    speakers = _speakers(source, [p for p, _ in labelled], config)
    if given is not None:
        assigned, method = given, "splits.csv"
    elif config.speaker_regex:
        assigned = assign_by_speaker(speakers, config=config, readable=_readable(speakers, config.strict))
        alone = sum(is_file_speaker(s) for s in speakers.values())
        method = f"speaker (regex '{config.speaker_regex}', seed {config.split_seed}" + \
            (f"; {alone} files without a speaker one by one)" if alone else ")")
    else:
        readable = _readable([p for p, _ in labelled], config.strict)
        assigned = assign_stratified(labelled, config=config, readable=readable)
        method = f"stratified random files (seed {config.split_seed}; not speaker-independent)"
    classes = tuple(sorted({label for _, label in labelled}, key=natural_key))
    clips = tuple(Clip(p, label, assigned[p], speakers.get(p)) for p, label in labelled)
    return Dataset(source=source, classes=classes, clips=clips, split_method=method)


def assign_by_speaker(speakers: dict[Path, str], *, config: DataConfig,
                      readable: set[Path]) -> dict[Path, str]:
    """Forced speakers first, then the rest in a seeded order: test, then devel, each until it holds its
    share of the readable files; every remaining speaker trains."""
    files_of: dict[str, list[Path]] = defaultdict(list)
    for path, speaker in speakers.items():
        if path in readable:
            files_of[speaker].append(path)
        else:
            files_of.setdefault(speaker, [])
    known = set(files_of)
    for option, names in (("test_speakers", config.test_speakers), ("devel_speakers", config.devel_speakers)):
        unknown = sorted(set(names) - known)
        if unknown:
            raise DataError(f"{option}: no files of speaker(s) {', '.join(unknown)}; speakers found: "
                            f"{', '.join(sorted(known))}")
    split_of = {s: "test" for s in config.test_speakers} | {s: "devel" for s in config.devel_speakers}
    free = [s for s in sorted(known) if s not in split_of]
    order = [free[i] for i in np.random.default_rng(config.split_seed).permutation(len(free))]
    total = sum(len(files) for files in files_of.values())
    for split, fraction, forced in (("test", config.test_fraction, config.test_speakers),
                                    ("devel", config.devel_fraction, config.devel_speakers)):
        held = sum(len(files_of[s]) for s in forced)
        while not forced and order and held < fraction * total and len(order) > 1:
            speaker = order.pop(0)
            split_of[speaker] = split
            held += len(files_of[speaker])
    for speaker in order:
        split_of[speaker] = "train"
    return {path: split_of[speaker] for path, speaker in speakers.items()}


def assign_stratified(labelled: list[tuple[Path, str]], *, config: DataConfig,
                      readable: set[Path]) -> dict[Path, str]:
    """Per class, a seeded shuffle of the readable files: the first share to test, the next to devel, the
    rest (and every unreadable file) to train."""
    rng = np.random.default_rng(config.split_seed)
    by_class: dict[str, list[Path]] = defaultdict(list)
    assigned = {}
    for path, label in labelled:
        if path in readable:
            by_class[label].append(path)
        else:
            assigned[path] = "train"
    for label in sorted(by_class, key=natural_key):
        paths = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        n_test = int(round(config.test_fraction * len(paths)))
        n_devel = int(round(config.devel_fraction * len(paths)))
        for i, path in enumerate(paths):
            assigned[path] = "test" if i < n_test else "devel" if i < n_test + n_devel else "train"
    return assigned


def _readable(paths, strict: bool) -> set[Path]:
    """The files whose header reads; strict stops at the first that does not (the feature step would)."""
    readable, bad = set(), []
    for path in paths:
        try:
            check_header(path)
            readable.add(path)
        except AudioError as exc:
            if strict:
                raise
            bad.append(str(exc))
    if bad:  # the feature step reports each one as skipped
        log.info("%d unreadable file(s) left out of the split fractions, e.g. %s", len(bad), bad[0])
    return readable


def _speakers(source: str, paths: list[Path], config: DataConfig) -> dict[Path, str]:
    """Each file's speaker by ``speaker_regex``; with ``speakerless: by_file`` a file in which it finds none
    is a speaker of its own (``file_speaker``)."""
    if not config.speaker_regex:
        return {}
    pattern = compile_regex(config.speaker_regex, "--speaker-regex")
    found = {p: regex_group(pattern, "speaker", p.name) for p in paths}
    missing = [p for p, s in found.items() if not s]
    if missing and config.speakerless == "refuse":
        raise DataError(f"--speaker-regex '{config.speaker_regex}' finds no speaker in {len(missing)} of "
                        f"{len(paths)} file names, e.g. {missing[0].name} (--speakerless by-file splits "
                        f"such files one by one)", path=source)
    return {p: str(s) if s else file_speaker(p, Path(source)) for p, s in found.items()}


def file_speaker(path: Path, root: Path) -> str:
    """The speaker a file without one stands for: its path under the dataset folder, marked."""
    return FILE_SPEAKER + (path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name)


def is_file_speaker(speaker: str) -> bool:
    return speaker.startswith(FILE_SPEAKER)


def speaker_list(speakers: list[str]) -> str:
    """``3 speakers: a, b, c``, the first ``SPEAKERS_SHOWN`` of a long list and how many more, then how many
    files stand for a speaker of their own: thousands of ids are a wall, not a summary."""
    real = [s for s in speakers if not is_file_speaker(s)]
    alone = len(speakers) - len(real)
    more = f", … ({len(real) - SPEAKERS_SHOWN} more)" if len(real) > SPEAKERS_SHOWN else ""
    named = f"{len(real)} speaker{'s' if len(real) != 1 else ''}: {', '.join(real[:SPEAKERS_SHOWN])}{more}"
    files = f"{alone} file{'s' if alone != 1 else ''} without a speaker" if alone else ""
    return "; ".join(part for part in (named if real else "", files) if part)
