"""``dslite-tiny device``: serial ports, a device's identity, evaluation and MLPerf benchmark on a device,
the virtual device, and flashing boards."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from dslite_tiny.cli.options import data_options, progress_bar, resolve_data

_port = click.option("--port", help="Serial port or pyserial URL (socket://host:port, loop://); "
                                    "default: the one connected board with a known USB id.")
_model_dir = click.option("--model-dir", required=True, type=click.Path(path_type=Path),
                          help="A compress variant folder (OUT/<variant>).")
_timeout = click.option("--timeout", "timeout_s", type=click.FloatRange(0.1), default=10.0, show_default=True,
                        help="Seconds to wait for one reply.")


@click.group()
def device() -> None:
    """Run models on boards (or the virtual device) over the serial protocol (firmware_host/PROTOCOL.md)."""


@device.command("list")
def list_ports() -> None:
    """Serial ports, with the board their USB id belongs to."""
    from dslite_tiny.export.boards import known_usb_ids
    from firmware_host.transport import discover_ports

    ports = discover_ports(known_usb_ids())
    for path, description, board in ports:
        click.echo(f"{path:<20} {board or '-':<12} {description}")
    if not ports:
        click.echo("no serial ports")


@device.command()
@_port
@_timeout
def info(port: str | None, timeout_s: float) -> None:
    """The device's name, firmware and model."""
    from firmware_host.dut import connect

    with connect(port, timeout_s=timeout_s) as dut:
        identity = dut.info  # identified on connecting
        url = dut.transport.url
    click.echo(f"device    {identity.name} on {url}")
    click.echo(f"firmware  {identity.profile}")
    for key, value in identity.model.items():
        click.echo(f"model     {key} = {'|'.join(value) if isinstance(value, list) else value}")


@device.command("eval")
@_port
@_model_dir
@click.option("--data", "data_path", required=True, metavar="DATA", help="Dataset folder or dataset YAML.")
@data_options
@click.option("--mode", type=click.Choice(["audio", "tensor"]), default="audio", show_default=True,
              help="audio: send PCM, the device computes features; tensor: send the host's int8 input (MLPerf).")
@click.option("--transfer", type=click.Choice(["binary", "hex"]), default="binary", show_default=True,
              help="binary: CRC-checked bulk; hex: db lines (MLPerf Tiny firmware).")
@click.option("--limit", type=click.IntRange(1), help="At most N chunks, spread evenly over the test split.")
@click.option("--warmup", type=click.IntRange(0), default=0, show_default=True,
              help="Untimed inferences before each timed one.")
@click.option("--name", "device_name", help="Name of the results (device-<name>.json); default: the device's.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run with the same settings.")
@_timeout
def eval_command(port: str | None, model_dir: Path, data_path: str, mode: str, transfer: str, limit: int | None,
                 warmup: int, device_name: str | None, resume: bool, timeout_s: float, **data_opts) -> None:
    """Stream the test split's chunks to a device: on-device UAR, agreement with the host and latency."""
    from firmware_host.harness import EvalSettings, evaluate_on_device

    settings = EvalSettings(mode=mode, binary=transfer == "binary", warmup=warmup, limit=limit)
    try:
        summary, path = evaluate_on_device(port, model_dir, resolve_data(data_path, **data_opts), settings,
                                           device_name=device_name, resume=resume, timeout_s=timeout_s,
                                           progress=progress_bar)
    except KeyboardInterrupt:
        click.echo("interrupted: finished chunks are saved; run again with --resume to continue", err=True)
        raise SystemExit(130) from None
    click.echo(format_summary(summary))
    click.echo(f"wrote {path}")


def format_summary(summary: dict) -> str:
    """The run in a few lines: the device's timings in its clock's unit (M instructions on QEMU), the link's
    in host milliseconds."""
    from dslite_tiny.records import CLOCKS

    accuracy, latency = summary["accuracy"], summary["latency"]
    unit, meaning = CLOCKS[summary.get("clock", "undeclared")]
    lines = [f"{summary['device']}: {summary['variant']}, {summary['chunks']} of {summary['test_chunks']} test "
             f"chunks, {summary['mode']} mode, {summary['transfer']} transfer; device figures: {meaning}",
             f"  UAR {accuracy['chunks']['uar']:.3f} (host {accuracy['host_uar']:.3f} on the same chunks)  accuracy "
             f"{accuracy['chunks']['accuracy']:.3f}  agreement with host {accuracy['agreement']:.1%}"]
    for key, key_unit in (("frontend", unit), ("inference", unit), ("transfer", "ms"), ("harness_overhead", "ms")):
        if key in latency:
            lines.append(f"  {key.replace('_', ' '):<17} median {latency[key]['median_ms']:.3f} {key_unit}  "
                         f"p90 {latency[key]['p90_ms']:.3f} {key_unit}")
    link = summary["link"]
    lines.append(f"  link: {link['bytes_per_chunk']:.0f} bytes per chunk, {link['retried_chunks']} chunks recovered "
                 f"from faults ({link['recoveries']} steps redone), {link['noise_lines']} noise lines skipped")
    return "\n".join(lines)


@device.command()
@_port
@_model_dir
@click.option("--window-s", type=click.FloatRange(0.01), default=10.0, show_default=True,
              help="Minimum seconds per timed window (MLPerf Tiny uses 10).")
@click.option("--windows", type=click.IntRange(1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=10, show_default=True)
@click.option("--name", "device_name", help="Name of the results (bench-<name>.json); default: the device's.")
@_timeout
def bench(port: str | None, model_dir: Path, window_s: float, windows: int, warmup: int, device_name: str | None,
          timeout_s: float) -> None:
    """MLPerf Tiny performance mode: median throughput over timed windows (a random int8 input)."""
    from firmware_host.harness import benchmark_on_device

    result, path = benchmark_on_device(port, model_dir, window_s=window_s, windows=windows, warmup=warmup,
                                       device_name=device_name, timeout_s=timeout_s)
    click.echo(f"{result['device']}: {result['median_inferences_per_s']:.2f} inferences/s, median latency "
               f"{result['median_latency_ms']:.3f} ms ({result['windows']} windows of {result['runs_per_window']} runs)")
    click.echo(f"wrote {path}")


def _stop_on_interrupt() -> None:
    """SIGINT (Ctrl-C) stops a device command even where it started with SIGINT ignored: a shell starts a
    background job (``&``, ``nohup``) that way, and its children inherit it, so "until Ctrl-C" would not hold."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@device.command()
@_model_dir
@click.option("--port-link", type=click.Path(path_type=Path), help="Also reachable as this symlink to the pty.")
@click.option("--fault-rate", type=click.FloatRange(0.0, 0.5), default=0.0, show_default=True,
              help="Probability that a byte is dropped or replaced, each direction (tests).")
@click.option("--reset-after", type=click.IntRange(1), help="Reboot after every N commands (tests).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault injection.")
def virtual(model_dir: Path, port_link: Path | None, fault_rate: float, reset_after: int | None, seed: int) -> None:
    """Serve the protocol on a pseudo-terminal: the C firmware core and TFLite Micro, until Ctrl-C."""
    from firmware_host.virtual import VirtualDevice

    virtual_device = VirtualDevice(model_dir, fault_rate=fault_rate, reset_after=reset_after, seed=seed)
    _stop_on_interrupt()
    path = virtual_device.open(port_link)
    click.echo(f"virtual device ({virtual_device.variant.name}) on {path}")
    try:
        virtual_device.serve()
    except KeyboardInterrupt:
        pass
    finally:
        virtual_device.close()


@device.command()
@_model_dir
@click.option("--port", "tcp_port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="TCP port of the device's serial line (0: a free one).")
def qemu(model_dir: Path, tcp_port: int) -> None:
    """Run the model's generated engine with the firmware core on an emulated Cortex-M4 (QEMU mps2-an386),
    its serial line on a local TCP port, until Ctrl-C. Latencies it reports are instructions / 1000."""
    from firmware_host.qemu import QemuDevice

    qemu_device = QemuDevice(model_dir)
    url = qemu_device.start(tcp_port)
    # QEMU spins a core while it runs: a terminated or hung-up command must stop it too, not only Ctrl-C
    _stop_on_interrupt()
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, lambda *_: sys.exit(0))
    click.echo(f"QEMU device ({qemu_device.variant.name}, Cortex-M4) on {url}")
    try:
        qemu_device.wait()
    except KeyboardInterrupt:
        pass
    finally:
        qemu_device.close()


@device.command()
@click.option("--board", required=True, help="Board profile (configs/boards/) with a firmware project.")
@_model_dir
@click.option("--port", help="Serial port of the board (for flashers that need one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Project folder (default: firmware-<board>/ in the variant folder).")
@click.option("--dry-run", is_flag=True, help="Write the project and print the commands without running them.")
@click.option("--runtime", type=click.Choice(["tflm", "engine"]),
              help="What runs the model: TFLite Micro (the library the profile names) or the generated int8 "
                   "engine (no library). Default: the profile's runtime.")
def flash(board: str, model_dir: Path, port: str | None, out: Path | None, dry_run: bool, runtime: str | None) -> None:
    """Generate the board's firmware project (model, firmware core, TFLM or the generated engine) and build and
    flash it."""
    import dataclasses
    import shlex

    from dslite_tiny.errors import UserError
    from dslite_tiny.export.boards import load_board
    from dslite_tiny.export.variant import load_variant
    from firmware_host.flash import flash as flash_board

    variant = load_variant(model_dir)
    profile = load_board(board)
    if runtime is not None:
        if not profile.microcontroller:
            raise UserError(f"board {profile.name!r} runs {profile.runtime}; --runtime is for microcontroller boards")
        profile = dataclasses.replace(profile, runtime=runtime)
    plan = flash_board(variant, profile, out_dir=out or variant.path.parent / f"firmware-{profile.name}",
                       port=port, dry_run=dry_run)
    click.echo(f"project   {plan.project} ({len(plan.files)} files)")
    for command in plan.commands:
        click.echo(f"{'would run' if dry_run else 'ran':<9} {shlex.join(command)}")
