"""A serial link to a device: a pyserial port by name (``/dev/ttyACM0``, ``COM3``) or URL (``socket://host:port``,
``loop://``), with a reader thread that splits what arrives into lines on a queue.

Reads never block without a limit: ``read_line`` raises ``DeviceTimeout`` after its timeout, so a silent
or dead device cannot hang a run. Over-long lines are cut (bounded memory whatever the link delivers) and
decoded as Latin-1, which accepts every byte.
"""
from __future__ import annotations

import queue
import threading
import time

from dslite_tiny.errors import DeviceError

MAX_LINE = 4096  # bytes; a longer run without a newline is cut into pieces (a well-formed reply is < 1 KiB)
_POLL_S = 0.02


class DeviceTimeout(DeviceError):
    """No complete line arrived in time."""


class Transport:
    def __init__(self, url: str, *, baudrate: int = 115200) -> None:
        import serial

        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=_POLL_S, write_timeout=5)
        except (serial.SerialException, ValueError) as exc:
            raise DeviceError(f"{url}: cannot open the port ({exc})") from None
        self.url = url
        self.baudrate = baudrate
        self.bytes_written = 0
        self.bytes_read = 0  # zero after a timeout: the port is silent, not merely slow or noisy
        self._lines: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._read_loop, name=f"serial-reader {url}", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        import serial

        try:
            self._port.write(data)
            self._port.flush()
        except serial.SerialException as exc:
            raise DeviceError(f"{self.url}: write failed ({exc})") from None
        self.bytes_written += len(data)

    def read_line(self, timeout_s: float) -> str:
        """The next line without its ``\\r\\n``."""
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            if self._error is not None:
                raise DeviceError(f"{self.url}: the link failed ({self._error})") from None
            raise DeviceTimeout(f"{self.url}: no reply within {timeout_s:g} s") from None

    def drain(self, quiet_s: float = 0.1) -> list[str]:
        """Discard input until the link has been quiet for ``quiet_s``; returns the discarded lines."""
        dropped = []
        deadline = time.monotonic() + quiet_s
        while time.monotonic() < deadline:
            try:
                dropped.append(self._lines.get(timeout=max(0.0, deadline - time.monotonic())))
                deadline = time.monotonic() + quiet_s
            except queue.Empty:
                break
        return dropped

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._port.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_loop(self) -> None:
        pending = bytearray()
        while not self._stop.is_set():
            try:
                chunk = self._port.read(self._port.in_waiting or 1)
            except Exception as exc:  # the port vanished (unplugged board, closed pty): reported by read_line
                self._error = exc
                return
            self.bytes_read += len(chunk)
            pending += chunk
            *lines, rest = pending.split(b"\n")
            for line in lines:
                self._lines.put(line.rstrip(b"\r").decode("latin-1"))
            while len(rest) > MAX_LINE:
                self._lines.put(rest[:MAX_LINE].decode("latin-1"))
                rest = rest[MAX_LINE:]
            pending = bytearray(rest)


def discover_ports(usb_ids: dict[str, str]) -> list[tuple[str, str, str | None]]:
    """Serial ports as ``(device, description, board)``; ``board`` is the name whose ``VID:PID`` (lower-case
    hex, from ``usb_ids``) matches, else None."""
    from serial.tools import list_ports

    found = []
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        key = f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None and port.pid is not None else ""
        found.append((port.device, port.description or "", usb_ids.get(key)))
    return found
