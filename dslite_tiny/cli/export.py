"""``dslite-tiny export``: C sources for TensorFlow Lite Micro or the generated engine, or a phone bundle,
with a board fit check."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", type=click.Choice(["c", "engine", "phone"]), default="c", show_default=True,
              help="c: TFLite Micro C array, settings and op resolver; engine: the int8 model as generated C99 "
                   "(no TFLite Micro, bit-exact with its reference kernels); phone: .tflite, labels.txt, JSON.")
@click.option("--name", help="Name of the C symbols and files (default: the variant's name).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: export-<target>/ in the variant folder).")
@click.option("--board", metavar="BOARD", help="Check flash and RAM against a board profile (name or YAML).")
@click.option("--force", is_flag=True, help="Export even if the model does not fit --board.")
def export(model: Path, target: str, name: str | None, out: Path | None, board: str | None, force: bool) -> None:
    """Export MODEL: a compress variant folder (OUT/<variant>) or a .tflite file."""
    from dslite_tiny.export.boards import format_bytes
    from dslite_tiny.export.targets import export_model

    result = export_model(model, target=target, name=name, out_dir=out, board=board, force=force)
    arena, engine = result.variant.arena_bytes, result.engine
    if engine is not None:
        click.echo(f"{result.variant.name}: engine of {engine.ops} ops, {format_bytes(engine.constant_bytes)} "
                   f"constants, arena {format_bytes(engine.arena_bytes)} (+ {engine.input_bytes} B input, "
                   f"{engine.output_bytes} B output)")
        for band in engine.bands:  # the planner's patch-based choice (engine/bands.py)
            click.echo(f"  run in bands: {band.describe()}")
    else:
        click.echo(f"{result.variant.name}: {format_bytes(len(result.variant.data))} model"
                   + (f", TFLM arena {format_bytes(arena)}" if arena else ""))
    if result.fit is not None:
        click.echo(("" if result.fit.fits else "DOES NOT FIT (--force) ") + result.fit.describe())
    for path in result.files:
        click.echo(f"wrote {path}")


@click.command()
def boards() -> None:
    """List the board profiles (configs/boards/) for --board."""
    from dslite_tiny.export.boards import list_boards, load_board

    for board_name in list_boards():
        b = load_board(board_name)
        click.echo(f"{b.name:<12} {b.runtime:<7} flash {b.flash_kib:>7} KB  RAM {b.ram_kib:>7} KB"
                   + (f" + {b.external_ram_kib} KB external" if b.external_ram_kib else "") + f"  {b.description}")
        if b.runtime == "engine":
            click.echo(f"{'':<12} the generated int8 engine (export --target engine); bit-exact with the host: "
                       f"{b.host_match}")
        elif b.tflm_library:
            click.echo(f"{'':<12} TFLite Micro: {b.tflm_library}; bit-exact with the host: {b.host_match}")
