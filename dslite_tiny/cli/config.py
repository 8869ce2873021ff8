"""``dslite-tiny config``: every default, visible and resolved."""
from __future__ import annotations

import click

from dslite_tiny.cli.options import frontend_options, resolve_frontend


@click.group()
def config() -> None:
    """Show resolved configurations and the shipped presets."""


@config.command("show")
@frontend_options
def show(frontend_config: str, hp_config, config_index: int, overrides: tuple[str, ...]) -> None:
    """Print the resolved frontend config as YAML, every key with its help."""
    from dslite_tiny.config import to_yaml

    click.echo(to_yaml(resolve_frontend(frontend_config, hp_config, config_index, overrides)), nl=False)


@config.command("list")
def list_() -> None:
    """List the shipped presets per stage."""
    from dslite_tiny.config import list_presets, presets_dir

    for stage in sorted(p.name for p in presets_dir().iterdir() if p.is_dir()):
        click.echo(f"{stage}: {', '.join(list_presets(stage))}")
