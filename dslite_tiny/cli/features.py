"""``dslite-tiny features``: spectrogram plots of audio files or a whole dataset, to look at or reuse."""
from __future__ import annotations

from pathlib import Path

import click

from dslite_tiny.cli.options import data_options, frontend_options, progress_bar, resolve_data, resolve_frontend


def cache_options(command):
    command = click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache.")(command)
    return click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="Feature cache folder (default: $DSLITE_TINY_CACHE or ~/.cache/dslite-tiny).")(command)


def make_cache(cache_dir: Path | None, no_cache: bool):
    from dslite_tiny.data.cache import FeatureCache, default_cache_dir

    return FeatureCache(None if no_cache else (cache_dir or default_cache_dir()))


@click.command()
@click.argument("audio", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", "data_path", metavar="DATA", help="A dataset folder or YAML instead of AUDIO files.")
@data_options
@frontend_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder.")
@click.option("--format", "formats", default="png", show_default=True,
              help="Comma-separated: png (the plot, to look at), npy (the normalised model input).")
@click.option("--per-class", type=click.IntRange(0), help="With --data: images for at most N clips per split "
              "and class (all clips are still computed and cached).")
@cache_options
def features(audio: tuple[Path, ...], data_path: str | None, frontend_config: str, hp_config: Path | None,
             config_index: int, overrides: tuple[str, ...], out: Path, formats: str, per_class: int | None,
             cache_dir: Path | None, no_cache: bool, **data_opts) -> None:
    """Write the DeepSpectrumLite spectrogram images of AUDIO files/folders (or --data) to --out."""
    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.audio.io import audio_files
    from dslite_tiny.data.features import FORMATS, featurize_dataset, featurize_files
    from dslite_tiny.errors import UserError

    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    if not chosen or any(f not in FORMATS for f in chosen):
        raise UserError(f"--format {formats!r}: choose from {', '.join(FORMATS)}")
    if bool(audio) == bool(data_path):
        raise UserError("give AUDIO files/folders or --data DATA (one of the two)")
    frontend = Frontend(resolve_frontend(frontend_config, hp_config, config_index, overrides))
    cache = make_cache(cache_dir, no_cache)
    if data_path:
        from dslite_tiny.data.layouts import load_dataset
        config = resolve_data(data_path, **data_opts)
        dataset = load_dataset(config, require=())
        manifest = featurize_dataset(
            dataset, frontend, out, formats=chosen, cache=cache, strict=config.strict, per_class=per_class,
            progress=progress_bar)
    else:
        paths = [p for a in audio for p in (audio_files(a) if a.is_dir() else [a])]
        if not paths:
            raise UserError(f"no audio files (.wav, .flac, .ogg) in {', '.join(map(str, audio))}")
        manifest = featurize_files(paths, frontend, out, formats=chosen, cache=cache)
    report = manifest["report"]
    click.echo(f"{report['files']} files → {report['chunks']} chunks ({report['padded']} short clips padded, "
               f"{report['dropped']} dropped, {len(report['skipped'])} bad files skipped)")
    for file, reason in report["skipped"][:5]:
        click.echo(f"  skipped {file}: {reason}", err=True)
    click.echo(f"wrote {len(manifest['files'])} files' images and {out / 'features.json'}")
