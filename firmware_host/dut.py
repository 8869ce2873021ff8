"""A device under test on a ``Transport``: identify it, load an input (hex ``db`` lines or a CRC-checked
binary bulk), run ``infer`` or ``classify``, and check every reply before trusting it.

A command's reply is the lines up to ``m-ready``. Noise is logged and skipped; ``m-init-done`` means the
device rebooted (``DeviceReset``); ``e-[...]`` is ``CommandFailed``; a reply missing a line, or whose scores
fail their CRC, is ``ReplyInvalid``. The harness retries a chunk on any of them, after ``resync``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from dslite_tiny.errors import DeviceError
from firmware_host.protocol import (DB_BYTES_PER_LINE, ProtocolError, Reply, bulk_command, command, crc32,
                                    parse_line, parse_model, parse_scores)
from firmware_host.transport import DeviceTimeout, Transport

log = logging.getLogger(__name__)
RESYNC_TIMEOUT_S = 2.5  # longer than the firmware's 1 s bulk timeout, so a stalled bulk ends first


class CommandFailed(DeviceError):
    """The device answered ``e-[...]``."""


class DeviceReset(DeviceError):
    """``m-init-done`` arrived in the middle of a command: the device rebooted and lost its state."""


class ReplyInvalid(DeviceError):
    """A reply is incomplete or inconsistent (a line was lost or corrupted on the link)."""


RETRYABLE = (DeviceTimeout, CommandFailed, ReplyInvalid, DeviceReset)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    name: str
    profile: str
    model: dict  # parse_model(): sha256, variant, classes, labels (dslite-tiny firmware) or {"name": ...}

    @property
    def dslite(self) -> bool:
        """dslite-tiny firmware (audio, bulk, classify, CRCs), not a plain MLPerf Tiny one."""
        return "sha256" in self.model


@dataclasses.dataclass(frozen=True)
class Inference:
    scores: list[float]
    infer_us: float  # one inference (the mean of the timed runs)
    frontend_us: float | None = None  # on-device features (classify only)


class Dut:
    def __init__(self, transport: Transport, *, timeout_s: float = 10.0) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.noise_lines = 0
        self.info: DeviceInfo | None = None

    def __enter__(self) -> Dut:
        return self

    def __exit__(self, *exc) -> None:
        self.transport.close()

    # --- one command ----------------------------------------------------------------------------------

    def send(self, raw: bytes, *, payload: bytes = b"", timeout_s: float | None = None) -> list[Reply]:
        """Write a command (and raw payload) and return its reply lines before ``m-ready``."""
        self.transport.write(raw + payload)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        replies: list[Reply] = []
        while True:
            reply = parse_line(self.transport.read_line(max(0.0, deadline - time.monotonic())))
            if reply.kind == "ready":
                break
            if reply.kind == "init_done":
                raise DeviceReset(f"{self.transport.url}: the device reset during {raw[:20]!r}")
            if reply.kind == "noise":
                self.noise_lines += 1
                log.debug("skipping noise %r", reply.line[:80])
                continue
            replies.append(reply)
        errors = [r for r in replies if r.kind == "error"]
        if errors:
            raise CommandFailed(f"{raw.decode('latin-1')[:30]!r}: {errors[0].values[0]}")
        return replies

    def command(self, *tokens: str | int, payload: bytes = b"", timeout_s: float | None = None) -> list[Reply]:
        return self.send(command(*tokens), payload=payload, timeout_s=timeout_s)

    def resync(self) -> None:
        """Back to a known state after garbage: drop what is queued, end any half command with a lone
        ``%``, wait for its ``m-ready``, drop the rest."""
        self.transport.drain(0.1)
        self.transport.write(b"%")
        deadline = time.monotonic() + RESYNC_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if parse_line(self.transport.read_line(deadline - time.monotonic())).kind == "ready":
                    break
            except DeviceError:
                break
        self.transport.drain(0.1)

    def retry(self, action: Callable[[], T], *, attempts: int = 8) -> T:
        """``action()`` until it gets through: after a lost or corrupted reply or a reset, resync and repeat.
        ``action`` must start from scratch (reload what it needs). A dead link is not retried."""
        failures = []
        for attempt in range(1, attempts + 1):
            try:
                return action()
            except RETRYABLE as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                log.info("attempt %d failed: %s", attempt, failures[-1])
                self.resync()
        raise DeviceError(f"{self.transport.url}: failed {attempts} times; last: {failures[-1]}")

    # --- identity, loading, inference -----------------------------------------------------------------

    def identify(self) -> DeviceInfo:
        name = _one(self.command("name"), "name")
        profile_replies = self.command("profile")
        profile = _one(profile_replies, "profile").values[0]
        model = _find(profile_replies, "model")
        try:
            model_fields = parse_model(_one(self.command("model"), "model").values[0])
        except CommandFailed:  # MLPerf Tiny firmware: the model name of profile% is all there is
            model_fields = {"name": model.values[0] if model else ""}
        self.info = DeviceInfo(name.values[1], profile, model_fields)
        return self.info

    def load(self, data: bytes, *, audio: bool, binary: bool) -> None:
        """Fill the device's input buffer: int16 PCM (``audio load``) or the int8 tensor (``db load``)."""
        header = ("audio", "load", len(data) // 2) if audio else ("db", "load", len(data))
        expecting = _one(self.command(*header), "expecting")
        if int(expecting.values[0]) != len(data):
            raise ReplyInvalid(f"the device expects {expecting.values[0]} bytes, not {len(data)}")
        if binary:
            replies = self.send(bulk_command(data), payload=data)
            if int(_one(replies, "bulk_ok").values[0]) != len(data):
                raise ReplyInvalid("bulk acknowledged with another length")
        else:
            for start in range(0, len(data), DB_BYTES_PER_LINE):
                replies = self.command("db", data[start:start + DB_BYTES_PER_LINE].hex())
            if self.info is not None and self.info.dslite:  # hex has no checksum of its own
                got = _one(self.command("crc"), "crc").values[0]
                if int(got, 16) != crc32(data):
                    raise ReplyInvalid(f"loaded data CRC {got} != {crc32(data):08x}")
        _one(replies, "load_done")

    def infer(self, *, runs: int = 1, warmup: int = 0, timeout_s: float | None = None) -> Inference:
        """MLPerf ``infer N W``: the mean time of ``runs`` timed inferences between the two laps."""
        replies = self.command("infer", runs, warmup, timeout_s=timeout_s or self.timeout_s * (1 + runs + warmup))
        laps = [int(r.values[0]) for r in replies if r.kind == "lap"]
        if len(laps) != 2:
            raise ReplyInvalid(f"infer: {len(laps)} lap lines instead of 2")
        return Inference(self._scores(replies), ((laps[1] - laps[0]) % 2**32) / runs)

    def classify(self, *, warmup: int = 0) -> Inference:
        """The on-device frontend on the loaded audio, then the model."""
        replies = self.command("classify", warmup, timeout_s=self.timeout_s * (2 + warmup))
        scores = self._scores(replies)
        predicted = int(_one(replies, "class").values[0])
        if predicted != max(range(len(scores)), key=scores.__getitem__):
            raise ReplyInvalid(f"m-class-{predicted} is not the arg-max of the scores")
        return Inference(scores, float(_one(replies, "infer_us").values[0]),
                         float(_one(replies, "frontend_us").values[0]))

    def _scores(self, replies: list[Reply]) -> list[float]:
        payload = _one(replies, "results").values[0]
        check = _find(replies, "results_crc")
        if check is None and self.info is not None and self.info.dslite:
            raise ReplyInvalid("the results CRC line is missing")
        if check is not None and int(check.values[0], 16) != crc32(payload.encode("latin-1")):
            raise ReplyInvalid("results CRC mismatch")
        try:
            scores = parse_scores(payload)
        except ProtocolError as exc:
            raise ReplyInvalid(str(exc)) from None
        classes = self.info.model.get("classes") if self.info else None
        if classes is not None and len(scores) != int(classes):
            raise ReplyInvalid(f"{len(scores)} scores for {classes} classes")
        return scores


def _find(replies: list[Reply], kind: str) -> Reply | None:
    return next((r for r in replies if r.kind == kind), None)


def _one(replies: list[Reply], kind: str) -> Reply:
    found = _find(replies, kind)
    if found is None:
        raise ReplyInvalid(f"no {kind} line in the reply ({', '.join(r.kind for r in replies) or 'empty'})")
    return found


def find_port() -> str:
    """The one serial port whose USB id belongs to a known board; otherwise a user error listing ports."""
    from dslite_tiny.errors import UserError
    from dslite_tiny.export.boards import known_usb_ids
    from firmware_host.transport import discover_ports

    ports = discover_ports(known_usb_ids())
    boards = [(device, board) for device, _, board in ports if board]
    if len(boards) == 1:
        log.info("using %s (%s)", *boards[0])
        return boards[0][0]
    seen = ", ".join(f"{d} ({b or desc or 'unknown'})" for d, desc, b in ports) or "none"
    raise UserError(f"give --port: {'several' if boards else 'no'} known boards found; serial ports: {seen}")


def connect(port: str | None, *, baudrate: int = 115200, timeout_s: float = 10.0) -> Dut:
    """A ``Dut`` on ``port`` (discovered when None), identified and in sync; ``with`` closes its port."""
    dut = Dut(Transport(port or find_port(), baudrate=baudrate), timeout_s=timeout_s)
    try:
        dut.resync()
        dut.retry(dut.identify)
    except DeviceError:
        dut.transport.close()
        raise
    return dut
