"""The ``dslite-tiny`` command line: thin click commands over the library.

Each command parses options, makes one library call and echoes a summary. A ``UserError`` becomes
``Error: <one line>`` and exit 2 (``DeviceError``: exit 1); ``--debug`` shows the traceback instead.
Heavy libraries are imported inside commands so ``dslite-tiny --help`` stays instant.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

import click

from dslite_tiny import __version__
from dslite_tiny.errors import DeviceError, UserError



class _Group(click.Group):
    """Turns the library's user-facing errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (UserError, DeviceError) as exc:
            if ctx.find_root().meta.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dslite-tiny")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """DeepSpectrumLite-style audio classifiers: features, training, compression, export and devices."""
    ctx.meta["debug"] = debug
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # a library file log (compress.log) may lower its loggers' level
        handler.setLevel(level)
        handler.addFilter(_ConsoleFilter(level))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log (a CPU-only cuInit "error"); failures raise in Python
    warnings.showwarning = _show_warning


class _ConsoleFilter(logging.Filter):
    """Other libraries' chatter (TensorFlow retracing notes, TFMOT's root-logger warnings) only with -vv."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("dslite_tiny") or self.level <= logging.DEBUG or record.levelno >= logging.ERROR


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"Warning: {' '.join(str(message).split())}", err=True)


def main() -> None:
    cli(prog_name="dslite-tiny")


def _register() -> None:
    from dslite_tiny.cli import compress, config, data, demo, device, evaluate, export, features, report, train

    for command in (compress.compress, config.config, train.cv, data.data, demo.demo, device.device, evaluate.evaluate,
                    evaluate.predict, train.ensemble, export.boards, export.export, features.features, report.report,
                    train.import_dslite, train.sweep, train.train):
        cli.add_command(command)


_register()
