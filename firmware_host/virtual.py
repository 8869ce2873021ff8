"""The virtual device: the firmware core compiled for the host (``build.host_library``) serving the
protocol on a pseudo-terminal, with the ``tflite-micro`` wheel's interpreter (the real TFLM kernels) behind
its inference interface. The frontend, parser, loaders and timings are the C a board runs; only the
serial port and the clock are the host's. Inference timings include the ctypes call into Python (~10 µs).

Fault injection for tests: ``fault_rate`` is the probability that one transfer (a block the host wrote,
as the pty delivers it, or one burst of replies) loses a byte or has one replaced, in both directions;
``reset_after``
reboots the core whenever it has handled that many commands since its last boot, losing that command's
reply and everything loaded (as a watchdog reset would). A reboot takes ``BOOT_S``, during which what the
host sends is lost (a board's UART is down while it boots); ``m-init-done`` follows.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import select
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dslite_tiny.data.cache import default_cache_dir
from dslite_tiny.errors import UserError
from dslite_tiny.export.settings import recommended_arena_bytes
from dslite_tiny.export.variant import Variant, load_variant, with_tflm_check
from dslite_tiny.native import capture_native_stderr
from firmware_host.build import host_library

log = logging.getLogger(__name__)

_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)
_INVOKE = ctypes.CFUNCTYPE(ctypes.c_int)
_POLL_S = 0.05
BOOT_S = 0.2


class VirtualDevice:
    def __init__(self, model_dir: str | Path, *, fault_rate: float = 0.0, reset_after: int | None = None,
                 seed: int = 0, cache_dir: Path | None = None) -> None:
        variant = with_tflm_check(load_variant(model_dir))
        self.variant = variant
        cache_dir = cache_dir or default_cache_dir() / "firmware"  # the project's cache root, as features use
        self._core = ctypes.CDLL(str(host_library(variant, cache_dir=cache_dir)))
        self._core.dt_protocol_commands.restype = ctypes.c_uint32
        self._interpreter = _tflm_interpreter(variant)
        self._input_shape = tuple(variant.description["input"]["shape"])
        self._input = (ctypes.c_int8 * int(np.prod(self._input_shape)))()
        self._output = (ctypes.c_int8 * variant.num_classes)()
        self._pending = bytearray()
        self._write_callback, self._invoke_callback = _WRITE(self._on_write), _INVOKE(self._on_invoke)
        self.fault_rate, self.reset_after = fault_rate, reset_after
        self._random = random.Random(seed)
        self.resets = 0
        self._booting_until: float | None = None
        self._master: int | None = None
        self._slave: int | None = None

    def open(self, link: str | Path | None = None) -> str:
        """Opens the pseudo-terminal (raw: no echo, no line-end translation) and boots the core; returns
        the port path a host opens (``link``, a symlink to it, when given)."""
        if link is not None:
            check_port_link(Path(link))
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        path = os.ttyname(self._slave)
        if link is not None:
            replace_symlink(Path(link), path)
            path = str(link)
        self._boot()
        return path

    def serve(self, stop: threading.Event | None = None) -> None:
        """Answers the host until ``stop`` is set (or forever)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            readable, _, _ = select.select([self._master], [], [], _POLL_S)
            if self._booting_until is not None and time.monotonic() >= self._booting_until:
                self._booting_until = None
                self._boot()
            if readable:
                self._handle(os.read(self._master, 4096))
            else:
                self._core.dt_protocol_poll()
                self._flush()

    def close(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def _handle(self, data: bytes) -> None:
        if self._booting_until is not None:
            return  # lost: the device is booting
        data = self._corrupt(data)
        self._core.dt_protocol_feed(data, len(data))
        if self.reset_after and self._core.dt_protocol_commands() >= self.reset_after:
            self._pending.clear()  # the reply dies with the device
            self.resets += 1
            log.info("virtual device: simulated reset %d", self.resets)
            self._booting_until = time.monotonic() + BOOT_S
        self._flush()

    def _boot(self) -> None:
        self._core.dt_host_boot(self._write_callback, self._invoke_callback, self._input, self._output, None)
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = self._corrupt(bytes(self._pending))
            self._pending.clear()
            _write_all(self._master, data)

    def _corrupt(self, data: bytes) -> bytes:
        """With probability fault_rate, one random byte of ``data`` dropped or replaced (half each)."""
        draw = self._random.random()
        if not data or draw >= self.fault_rate:
            return data
        at = self._random.randrange(len(data))
        replacement = b"" if draw < self.fault_rate / 2 else bytes([self._random.randrange(256)])
        return data[:at] + replacement + data[at + 1:]

    def _on_write(self, text: int, length: int) -> None:
        self._pending += ctypes.string_at(text, length)

    def _on_invoke(self) -> int:
        try:
            self._interpreter.set_input(np.frombuffer(self._input, np.int8).reshape(self._input_shape), 0)
            self._interpreter.invoke()
            scores = np.ascontiguousarray(self._interpreter.get_output(0), np.int8).ravel()
            ctypes.memmove(self._output, scores.ctypes.data, len(self._output))
        except Exception:  # reported to the host as e-[... inference failed]; the traceback goes to the log
            log.exception("TFLM inference failed")
            return 1
        return 0


def _tflm_interpreter(variant: Variant):
    from tflite_micro import runtime

    with capture_native_stderr():  # TFLM prints its allocations
        return runtime.Interpreter.from_bytes(variant.data, arena_size=recommended_arena_bytes(variant.arena_bytes))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@contextlib.contextmanager
def serve_virtual(model_dir: str | Path, **options) -> Iterator[str]:
    """A virtual device serving on a background thread for the duration of the block; yields its port."""
    device = VirtualDevice(model_dir, **options)
    port = device.open()
    stop = threading.Event()
    thread = threading.Thread(target=device.serve, args=(stop,), name="virtual device", daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        device.close()


def check_port_link(link: Path) -> None:
    """A port link may only replace a symlink: the path a user names could be a file, a folder or a real
    serial port (as root, /dev/ttyACM0), none of which is ours to remove."""
    if os.path.lexists(link) and not link.is_symlink():
        kind = "a folder" if link.is_dir() else "a file or device"
        raise UserError(f"--port-link: {link} is {kind}, not a symlink; name a new path (only an old symlink is "
                        f"replaced)")
    if not link.parent.is_dir():
        raise UserError(f"--port-link: the folder {link.parent} does not exist")


def replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new symlink renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)
