"""``dslite-tiny report``: the accuracy/size/latency trade-off of a compress run, as Markdown, HTML and plots."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--out", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default: OUT/report).")
@click.option("--board", default="nano33ble", show_default=True,
              help="Board whose flash/RAM totals the variant table shows (name or YAML).")
@click.option("--boards", help="Comma-separated boards of the fit matrix (default: every profile).")
@click.option("--tolerance", type=float, default=1.0, show_default=True,
              help="UAR points below the float model a recommended variant may lose.")
@click.option("--min-agreement", type=float, default=0.95, show_default=True,
              help="Share of chunks on which a recommended variant must predict what the float model predicts.")
def report(out: Path, report_dir: Path | None, board: str, boards: str | None, tolerance: float,
           min_agreement: float) -> None:
    """Write the trade-off report of OUT, the output folder of `dslite-tiny compress`."""
    from dslite_tiny.report.build import build_report

    result = build_report(out, report_dir=report_dir, board=board, tolerance_points=tolerance,
                          min_agreement=min_agreement,
                          boards=[b.strip() for b in boards.split(",") if b.strip()] if boards else None)
    for advice in result.recommendations:
        click.echo(f"{advice.board}: {advice.text.replace('**', '')}")
    click.echo(f"report: {result.html}")
    click.echo(f"        {result.markdown} (+ {len(result.plots)} plots in {result.report_dir / 'plots'})")
