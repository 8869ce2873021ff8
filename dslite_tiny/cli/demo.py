"""``dslite-tiny demo``: the README's main job, on built-in synthetic data."""
from __future__ import annotations

from pathlib import Path

import click

from dslite_tiny.cli.options import progress


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"),
              show_default=True, help="Everything the demo makes goes here.")
@click.option("--clips-per-class", type=click.IntRange(5, 1000), default=40, show_default=True)
def demo(out: Path, clips_per_class: int) -> None:
    """Generate the synthetic dataset and run the pipeline on it (offline, a few minutes on 2 cores)."""
    from dslite_tiny.demo import run_demo

    result = run_demo(out, clips_per_class=clips_per_class,
                      progress=progress("features"))
    dataset, report = result.dataset, result.manifest["report"]
    click.echo(f"data      {result.data_spec}  ({len(dataset.clips)} clips, classes: {', '.join(dataset.classes)})")
    click.echo(f"          split by {dataset.split_method}")
    click.echo("          " + dataset.counts().to_string().replace("\n", "\n          "))
    click.echo(f"features  {report['files']} files → {report['chunks']} chunks "
               f"({report['padded']} short clips padded), cached in {result.out_dir / 'cache'}")
    click.echo(f"images    {result.features_dir} (2 clips per split and class; features.json has the config)")
