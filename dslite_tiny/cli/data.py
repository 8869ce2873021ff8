"""``dslite-tiny data``: look at a dataset before training on it, or make the synthetic one."""
from __future__ import annotations

from pathlib import Path

import click

from dslite_tiny.cli.options import data_options, resolve_data


@click.group()
def data() -> None:
    """Inspect datasets and generate the synthetic demo dataset."""


@data.command()
@click.argument("data_path", metavar="DATA")
@data_options
def summary(data_path: str, **options) -> None:
    """Split sizes, class counts, speakers and durations of DATA (a folder or a dataset YAML)."""
    from dslite_tiny.audio.io import audio_duration
    from dslite_tiny.data.layouts import SPLITS, load_dataset
    from dslite_tiny.data.splits import speaker_list

    dataset = load_dataset(resolve_data(data_path, **options))
    click.echo(f"{dataset.source}: {len(dataset.clips)} files, {len(dataset.classes)} classes; "
               f"split by {dataset.split_method}")
    click.echo(dataset.counts().to_string())
    for split in SPLITS:
        clips = dataset.split(split)
        seconds = [d for d in (audio_duration(c.path) for c in clips) if d is not None]
        speakers = dataset.speakers(split)
        line = f"{split:>5}: {len(clips)} files"
        if seconds:
            line += f", {sum(seconds) / 60:.1f} min (clips {min(seconds):.2f}–{max(seconds):.2f} s)"
        if speakers:
            line += f"; {speaker_list(speakers)}"
        if len(seconds) < len(clips):
            line += f"; {len(clips) - len(seconds)} unreadable"
        click.echo(line)


@data.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips-per-class", type=click.IntRange(5, 10000), default=40, show_default=True)
@click.option("--speakers", type=click.IntRange(3, 100), default=5, show_default=True)
@click.option("--sr", type=click.IntRange(8000, 48000), default=16000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def synth(out: Path, clips_per_class: int, speakers: int, sr: int, seed: int) -> None:
    """Write the synthetic demo dataset (5 classes, several generator speakers) to OUT."""
    from dslite_tiny.data.synthetic import make_demo_dataset

    spec = make_demo_dataset(out, clips_per_class=clips_per_class, n_speakers=speakers, sr=sr, seed=seed)
    click.echo(f"wrote {out} ({clips_per_class} clips per class); use it as DATA: {spec}")
