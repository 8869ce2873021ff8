"""``dslite-tiny compress``: every compressed variant of a trained model, measured, with a closing table."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from dslite_tiny.cli.features import cache_options, make_cache
from dslite_tiny.cli.options import TensorFlowCommand, data_options, progress_bar, ray_option, resolve_data

if TYPE_CHECKING:
    from dslite_tiny.records import Reference


@click.command(cls=TensorFlowCommand)
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_path", metavar="DATA",
              help="Dataset folder or YAML (default: the dataset the model was trained on, from its sidecar).")
@data_options
@click.option("--config", "compress_config", default="default", show_default=True,
              help="Compression preset name (configs/compress/) or YAML file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one compression key.")
@click.option("--only", callback=lambda ctx, param, value: _variant_list(value),
              help="Comma-separated variants to build (default: the config's variants).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: compressed/ next to MODEL).")
@click.option("--force", is_flag=True, help="Rebuild variants whose results are up to date.")
@cache_options
@ray_option
def compress(model: Path, data_path: str | None, compress_config: str, overrides: tuple[str, ...],
             only: list[str] | None, out: Path | None, force: bool, cache_dir: Path | None, no_cache: bool,
             ray_address: str | None, **data_opts) -> None:
    """Build, convert and measure the compressed variants of MODEL (.h5 with its sidecar).

    With --ray the variants build at once on a Ray cluster (pruned-int8 and pqat-int8, which share the pruned
    model, in one task); their host latency is then measured while others build.
    """
    from dslite_tiny.compress.pipeline import run_compress
    from dslite_tiny.config import CompressConfig, load_config, parse_overrides
    from dslite_tiny.errors import ConfigError
    from dslite_tiny.flows.runner import make_runner

    config = load_config(CompressConfig, compress_config, ("--set", parse_overrides(overrides)), stage="compress")
    if not data_path and any(value is not None for value in data_opts.values()):
        raise ConfigError("data options need --data DATA (without it the model's own dataset and split are used)")
    data = resolve_data(data_path, **data_opts) if data_path else None
    out = out or model.parent / "compressed"
    result = run_compress(model, config=config, out_dir=out, data=data, force=force,
                          only=only, cache=make_cache(cache_dir, no_cache), runner=make_runner(ray_address),
                          progress=progress_bar,
                          on_variant=lambda row: click.echo(variant_line(row)))
    click.echo("")
    click.echo(format_summary(result.rows, result.reference))
    click.echo(f"\nwrote {out}/summary.csv, {out}/<variant>/model.tflite + metrics.json, {out}/compress.log")


def _variant_list(value: str | None) -> list[str] | None:
    """``--only a,b`` checked while the arguments parse, before TensorFlow is imported."""
    from dslite_tiny.config import unknown_variant
    from dslite_tiny.errors import ConfigError

    names = [v.strip() for v in value.split(",") if v.strip()] if value else None
    if names and (problem := unknown_variant(names)):
        raise ConfigError(f"--only: {problem}")
    return names


def variant_line(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['variant']}: FAILED: {row['reason']}"
    line = f"{row['variant']}: UAR {row['uar']:.3f}, {row['tflite_bytes'] / 1024:.1f} KB, {row['latency_ms']:.2f} ms"
    return line + (" (unchanged: not rebuilt)" if row.get("skipped") else "")


def _scaled(value, unit: float, digits: int) -> str:
    """A summary-row figure in ``unit``s, or "-" where it is empty."""
    return "-" if value in ("", None) else f"{value / unit:.{digits}f}"


def _m4_instructions(row: dict) -> str:
    """Millions of Cortex-M4 instructions; "≈" marks the calibrated model's estimate (no QEMU)."""
    scaled = _scaled(row["m4_instructions"], 1e6, 2)
    return f"≈{scaled}" if row.get("m4_method") == "estimate" and scaled != "-" else scaled


def format_summary(rows: list[dict], reference: Reference) -> str:
    """The compact table the console ends with; float Keras first as the reference. The last three columns
    are the generated engine's on a Cortex-M4: flash, RAM and millions of instructions per inference."""
    float_uar = reference.float_uar
    header = (f"{'variant':<15}{'status':<8}{'UAR':>7}{'ΔUAR':>7}{'agree':>7}{'KB':>9}{'gzip KB':>9}"
              f"{'sparsity':>9}{'ms':>8}{'arena KB':>10}{'M4 flash':>10}{'M4 RAM':>8}{'M4 Minstr':>10}")
    lines = [header, "-" * len(header), f"{'keras float':<15}{'ref':<8}{float_uar:>7.3f}"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"{row['variant']:<15}{'failed':<8} {row['reason'][:70]}")
            continue
        arena, flash, ram = (_scaled(row[key], 1024, 1) for key in ("arena_bytes", "m4_flash_bytes", "m4_ram_bytes"))
        lines.append(f"{row['variant']:<15}{'ok':<8}{row['uar']:>7.3f}{(row['uar'] - float_uar) * 100:>+7.1f}"
                     f"{row['agreement'] * 100:>6.0f}%{row['tflite_bytes'] / 1024:>9.1f}"
                     f"{row['gzip_bytes'] / 1024:>9.1f}{row['sparsity'] * 100:>8.0f}%{row['latency_ms']:>8.2f}"
                     f"{arena:>10}{flash:>10}{ram:>8}{_m4_instructions(row):>10}")
    return "\n".join(lines)
