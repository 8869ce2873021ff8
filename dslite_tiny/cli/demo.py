"""``dslite-tiny demo``: the whole product on built-in synthetic data, offline, in minutes on 2 cores.

It generates the dataset, splits it speaker-independently, renders spectrogram plots through the feature
cache, trains the MCU model (DS-CNN on 64×64 grey plots), evaluates it on the held-out speaker,
compresses it into every default variant (shorter fine-tuning than the preset), exports the most accurate
int8 variant as TFLite Micro C sources (fit-checked on the Nano 33 BLE) and as a phone bundle, evaluates it
on the virtual device (the C firmware core and TFLite Micro, over a pseudo-terminal), and writes the
trade-off report with the device's columns. The pipeline is ``dslite_tiny.flows.demo``; this command runs it
and prints what each stage made (imported when it runs, so ``--help`` stays instant).
"""
from __future__ import annotations

from pathlib import Path

import click

from dslite_tiny.cli.options import TensorFlowCommand, progress_bar


@click.command(cls=TensorFlowCommand)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"),
              show_default=True, help="Everything the demo makes goes here.")
@click.option("--clips-per-class", type=click.IntRange(5, 1000), default=40, show_default=True)
@click.option("--epochs", type=click.IntRange(1), help="Training epochs (default: the mcu-dscnn preset's).")
def demo(out: Path, clips_per_class: int, epochs: int | None) -> None:
    """Synthetic data → train → evaluate → compress → export → report, offline (~2 min on 2 cores)."""
    from dslite_tiny.cli.compress import format_summary, variant_line
    from dslite_tiny.cli.device import format_summary as format_device
    from dslite_tiny.cli.evaluate import format_report
    from dslite_tiny.flows.demo import DEMO_COMPRESS_FILE, run_demo

    def show(record: dict) -> None:
        if record["epoch"] % 5 == 0 or record["epoch"] == 1:
            click.echo(f"train     epoch {record['epoch']:>3}: loss {record['loss']:.3f}  devel UAR "
                       f"{record['devel_uar']:.3f}")

    click.echo(f"demo      into {out}: synthetic data → features → train → evaluate → compress → export → device "
               f"→ report (about 2 minutes on 2 cores)")
    result = run_demo(out, clips_per_class=clips_per_class, epochs=epochs, progress=progress_bar, on_epoch=show,
                      on_variant=lambda row: click.echo("compress  " + variant_line(row)))
    dataset, report = result.dataset, result.manifest["report"]
    click.echo(f"data      {result.data_spec}  ({len(dataset.clips)} clips, classes: {', '.join(dataset.classes)})")
    click.echo(f"          split by {dataset.split_method}")
    click.echo("          " + dataset.counts().to_string().replace("\n", "\n          "))
    click.echo(f"features  {report['files']} files → {report['chunks']} chunks "
               f"({report['padded']} short clips padded), cached in {result.out_dir / 'cache'}")
    click.echo(f"images    {result.features_dir} (2 clips per split and class; features.json has the config)")
    click.echo(f"model     {result.model_path} (+ model.json): best devel UAR {result.best['devel_uar']:.3f} "
               f"at epoch {result.best['epoch']}")
    click.echo("evaluate  " + format_report(result.evaluation).replace("\n", "\n          "))
    compressed = result.compression
    click.echo(f"compress  {compressed.out_dir} (summary.csv, <variant>/model.tflite + metrics.json); its config "
               f"is {result.out_dir / DEMO_COMPRESS_FILE}: `dslite-tiny compress {result.model_path} --config "
               f"{result.out_dir / DEMO_COMPRESS_FILE} --out {compressed.out_dir}` reuses these variants")
    click.echo("          " + format_summary(compressed.rows, compressed.reference).replace("\n", "\n          "))
    for exported in result.exports:
        click.echo(f"export    {exported.variant.name} → {exported.out_dir}: "
                   + ", ".join(path.name for path in exported.files))
        if exported.fit is not None:
            click.echo(f"          {exported.fit.describe()}")
    if result.device is not None:
        click.echo("device    " + format_device(result.device).replace("\n  ", "\n          "))
    for advice in result.report.recommendations:
        click.echo(f"recommend {advice.board}: {advice.text.replace('**', '')}")
    click.echo(f"report    {result.report.html}")
