"""Options shared by several commands, and turning them into validated configs."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dslite_tiny.config import DataConfig, FrontendConfig, load_config, parse_overrides, to_dict

DEFAULT_FRONTEND = "dslite-code"


class TensorFlowCommand(click.Command):
    """A command that needs TensorFlow, imported only once its arguments have parsed: ``--help`` and a wrong
    option answer at once instead of after TensorFlow's 5-20 s import."""

    def invoke(self, ctx: click.Context) -> Any:
        import logging

        from dslite_tiny.native import import_tensorflow_quietly

        import_tensorflow_quietly()  # its start-up lines would break one-line errors and tidy logs
        verbose = ctx.find_root().params.get("verbose", 0)
        logging.getLogger("tensorflow").setLevel(logging.getLogger().level if verbose >= 2 else logging.ERROR)
        return super().invoke(ctx)


def with_options(command: Callable, options: list[Callable]) -> Callable:
    """``command`` decorated with ``options`` in the order listed (as if written above it in that order)."""
    for option in reversed(options):
        command = option(command)
    return command


def frontend_options(command: Callable) -> Callable:
    """--config PRESET|YAML, --hp-config/--config-index (DeepSpectrumLite grids), --set KEY=VALUE."""
    options = [
        click.option("--config", "frontend_config", default=DEFAULT_FRONTEND, show_default=True,
                     help="Frontend preset name (configs/frontend/) or YAML file."),
        click.option("--hp-config", type=click.Path(dir_okay=False, path_type=Path),
                     help="A DeepSpectrumLite hp_config.json; its frontend keys override --config."),
        click.option("--config-index", type=int, default=0, show_default=True,
                     help="Which combination of the hp_config grid (DSLite's order)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override one frontend key (repeatable), e.g. --set n_mels=64."),
    ]
    return with_options(command, options)


def resolve_frontend(frontend_config: str, hp_config: Path | None, config_index: int,
                     overrides: tuple[str, ...]) -> FrontendConfig:
    """Layers: defaults → preset/YAML → hp_config → --set."""
    from dslite_tiny.data.dslite import hp_config_to_frontend, read_hp_config

    dslite_layer = None
    if hp_config is not None:
        hparams = read_hp_config(hp_config, index=config_index)
        dslite_layer = (str(hp_config), hp_config_to_frontend(hparams, source=str(hp_config)))
    return load_config(FrontendConfig, frontend_config, dslite_layer, ("--set", parse_overrides(overrides)),
                       stage="frontend")


def data_options(command: Callable) -> Callable:
    """How to read a dataset folder (or override a dataset YAML)."""
    options = [
        click.option("--layout", type=click.Choice(["auto", "folder", "flat", "dslite"]), default=None,
                     help="Dataset layout (default: detected)."),
        click.option("--label-regex", help="Flat folder: regex whose group 'label' (or 1) is the label."),
        click.option("--speaker-regex", help="Regex whose group 'speaker' (or 1) is the speaker: "
                     "whole speakers go to one split."),
        click.option("--speakerless", type=click.Choice(["refuse", "by-file"]),
                     help="Files in which --speaker-regex finds no speaker: refuse them (default), or split "
                     "and fold each as a speaker of its own."),
        click.option("--labels", "labels_csv", type=click.Path(path_type=Path),
                     help="DeepSpectrumLite label CSV (filename,label,duration_frames)."),
        click.option("--class-config", type=click.Path(path_type=Path),
                     help="DeepSpectrumLite class_config.json (key order = class index)."),
        click.option("--test-speakers", help="Comma-separated speakers held out for test."),
        click.option("--devel-speakers", help="Comma-separated speakers held out for devel."),
        click.option("--split-seed", type=int, help="Seed of the deterministic split."),
        click.option("--strict", is_flag=True, default=None, help="Abort on the first bad file."),
    ]
    return with_options(command, options)


def resolve_data(data: str | None, *, saved: DataConfig | None = None, **options: Any) -> DataConfig:
    """DATA is a dataset folder or a dataset YAML, or None for ``saved`` (a model's own dataset and split);
    options given on the command line win."""
    overrides = {k: v for k, v in options.items() if v is not None}
    for key in ("test_speakers", "devel_speakers"):
        if key in overrides:
            overrides[key] = [s.strip() for s in overrides[key].split(",") if s.strip()]
    if "speakerless" in overrides:
        overrides["speakerless"] = overrides["speakerless"].replace("-", "_")
    for key in ("labels_csv", "class_config"):
        if key in overrides:
            overrides[key] = str(Path(overrides[key]).resolve())
    if data is None:
        return load_config(DataConfig, ("the model's sidecar", to_dict(saved)), ("command line", overrides),
                           stage="data")
    path = Path(data)
    if path.suffix in (".yaml", ".yml"):
        return load_config(DataConfig, path, ("command line", overrides), stage="data")
    overrides["root"] = str(path.resolve())
    return load_config(DataConfig, ("command line", overrides), stage="data")


LOG_PROGRESS_S = 15.0  # without a terminal, a long loop reports at most this often


def progress_bar(items, *, desc: str = ""):
    """The library's ``progress=`` hook: a tqdm bar on a terminal; in a log (CI, nohup, a pipe) a plain line
    now and then, so a long job is never silent for minutes and never fills a log with bar redraws."""
    import sys

    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(items, desc=desc, leave=False)
    return progress_lines(items, desc=desc)


def progress_lines(items, *, desc: str = "", every_s: float = LOG_PROGRESS_S):
    """Yields ``items``; every ``every_s`` seconds writes "desc: i/n (p %) after t s" to stderr, and a last
    line when a loop that reported finishes."""
    import time

    total = len(items) if hasattr(items, "__len__") else None
    start = last = time.monotonic()
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            share = f"/{total} ({100 * done / total:.0f} %)" if total else ""
            click.echo(f"{desc}: {done}{share} after {now - start:.0f} s", err=True)
    if last != start:
        click.echo(f"{desc}: {done} done in {time.monotonic() - start:.0f} s", err=True)


def ray_option(command: Callable) -> Callable:
    """--ray local|auto|ADDRESS: run the command's independent runs on a Ray cluster."""
    return click.option("--ray", "ray_address", metavar="local|auto|ADDRESS",
                        help="Run on Ray: 'local' starts a cluster on this machine's cores, 'auto' joins the one "
                        "'ray start' made, or give its address (needs pip install 'dslite-tiny[distributed]').")(command)
