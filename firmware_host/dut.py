"""A device under test on a ``Transport``: identify it, load an input (hex ``db`` lines or a CRC-checked
binary bulk), run ``infer`` or ``classify``, and check every reply before trusting it.

A command's reply is the lines up to ``m-ready``. Noise is logged and skipped; ``m-init-done`` means the
device rebooted (``DeviceReset``); ``e-[...]`` is ``CommandFailed``; a reply missing a line, or whose scores
fail their CRC, is ``ReplyInvalid``.

Recovery is as local as the device's state allows, so one lost byte costs one command, not a chunk: a
failed ``classify``/``infer`` is repeated on the input already loaded; an input goes in blocks (bulks of
``BULK_BLOCK`` bytes or ``db`` lines), and after a doubtful block the dslite-tiny firmware's ``crc`` says
how many bytes it holds (the CRC of exactly one prefix of the data matches), so the load continues there. Only a reset, or a device that
says its input is gone (``StateLost``), sends the caller back to reload. Reply timeouts are learned per
command (``TIMEOUT_FACTOR`` times the slowest reply seen, at least ``MIN_TIMEOUT_S``, plus the payload's
time on the wire), so a lost ``m-ready`` costs about a second, not the configured timeout; a port that has
sent nothing at all is not retried.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import time
import zlib
from collections.abc import Callable
from typing import TypeVar

from dslite_tiny.errors import DeviceError
from firmware_host.protocol import (DB_BYTES_PER_LINE, ProtocolError, Reply, bulk_command, command, crc32,
                                    parse_line, parse_model, parse_scores)
from firmware_host.transport import DeviceTimeout, Transport

log = logging.getLogger(__name__)
FIRMWARE_SILENCE_S = 1.0  # dt_protocol.h DT_BULK_TIMEOUT_US: the silence that fails a bulk and ends its discarding
RESYNC_ROUND_S = 1.5  # one '%' of a resync waits this long for m-ready: longer than that silence
RESYNC_ROUNDS = 4
MIN_TIMEOUT_S = 0.5  # the shortest learned reply timeout (a loaded host can stall a process that long)
TIMEOUT_FACTOR = 4  # a learned timeout is this many times the slowest reply seen for the command
BITS_PER_BYTE = 10  # 8N1 on a UART: a payload's time on the wire is bytes * 10 / baud rate
BULK_BLOCK = 4096  # bytes per bulk command: a fault on the link costs one block, not the whole input
_STATE_LOST = re.compile(r"load .*first|no load open")  # the firmware's words for "nothing is loaded"


class CommandFailed(DeviceError):
    """The device answered ``e-[...]``."""


class DeviceReset(DeviceError):
    """``m-init-done`` arrived in the middle of a command: the device rebooted and lost its state."""


class StateLost(DeviceReset):
    """The device answered that nothing is loaded: it rebooted and its ``m-init-done`` was lost."""


class ReplyInvalid(DeviceError):
    """A reply is incomplete or inconsistent (a line was lost or corrupted on the link)."""


RETRYABLE = (DeviceTimeout, CommandFailed, ReplyInvalid, DeviceReset)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    name: str
    profile: str
    model: dict  # parse_model(): sha256, variant, classes, labels (dslite-tiny firmware) or {"name": ...}
    clock: str = "board-us"  # what its µs count (clock%; records.CLOCKS); MLPerf Tiny firmware: a board's µs

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
    def __init__(self, transport: Transport, *, timeout_s: float = 10.0, attempts: int = 8) -> None:
        self.transport = transport
        self.timeout_s = timeout_s  # the longest a reply may take; learned timeouts never exceed it
        self.attempts = attempts  # tries of one recoverable step (a command, a load) before giving up
        self.noise_lines = 0
        self.recoveries = 0  # commands or loads redone after a fault, over the session
        self.info: DeviceInfo | None = None
        self._slowest: dict[str, float] = {}  # seconds from the end of a write to m-ready, per command
        self._discarding = False  # the device said a bulk timed out: it drops bytes until the link is silent

    def __enter__(self) -> Dut:
        return self

    def __exit__(self, *exc) -> None:
        self.transport.close()

    # --- one command ----------------------------------------------------------------------------------

    def send(self, raw: bytes, *, payload: bytes = b"", timeout_s: float | None = None,
             work: int = 1) -> list[Reply]:
        """Write a command (and raw payload) and return its reply lines before ``m-ready``. Without
        ``timeout_s`` the timeout is learned; until then it is ``work`` (inferences the command runs)
        times the configured one."""
        key = _timing_key(raw)
        timeout = timeout_s or self._learned_timeout(key, len(raw) + len(payload), work)
        self.transport.write(raw + payload)
        start = time.monotonic()
        try:
            replies = self._read_reply(raw, start + timeout)
        except DeviceTimeout:
            self._slowest.pop(key, None)  # perhaps a slow reply, not a lost one: the full timeout next time
            raise
        if timeout_s is None:
            self._slowest[key] = max(self._slowest.get(key, 0.0), time.monotonic() - start)
        errors = [r for r in replies if r.kind == "error"]
        if errors:
            reason = errors[0].values[0]
            self._discarding = self._discarding or reason.startswith("bulk timeout")
            lost = StateLost if _STATE_LOST.search(reason) else CommandFailed
            raise lost(f"{raw.decode('latin-1')[:30]!r}: {reason}")
        return replies

    def command(self, *tokens: str | int, timeout_s: float | None = None, work: int = 1) -> list[Reply]:
        return self.send(command(*tokens), timeout_s=timeout_s, work=work)

    def _read_reply(self, raw: bytes, deadline: float) -> list[Reply]:
        replies: list[Reply] = []
        while True:
            reply = parse_line(self.transport.read_line(max(0.0, deadline - time.monotonic())))
            if reply.kind == "ready":
                return replies
            if reply.kind == "init_done":
                raise DeviceReset(f"{self.transport.url}: the device reset during {raw[:20]!r}")
            if reply.kind == "noise":
                self.noise_lines += 1
                log.debug("skipping noise %r", reply.line[:80])
                continue
            replies.append(reply)

    def _learned_timeout(self, key: str, sent_bytes: int, work: int) -> float:
        wire_s = sent_bytes * BITS_PER_BYTE / self.transport.baudrate
        slowest = self._slowest.get(key)
        if slowest is None:
            return self.timeout_s * work + wire_s
        return min(self.timeout_s, max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * slowest)) + wire_s

    def resync(self) -> None:
        """Back to a known state after garbage: drop what is queued, end any half command with a lone ``%``
        and wait for its ``m-ready``, then drop the rest. A ``%`` that lands in a stalled bulk is taken as
        payload, and after a bulk timeout the firmware discards the rest of that payload until the link has
        been silent for a second, so then the host keeps quiet that long and sends another ``%``."""
        self.transport.drain(0.1)
        for _ in range(RESYNC_ROUNDS):
            if self._discarding:
                time.sleep(FIRMWARE_SILENCE_S + 0.2)
                self.transport.drain(0.0)
                self._discarding = False
            self.transport.write(b"%")
            if self._await_ready(time.monotonic() + RESYNC_ROUND_S) and not self._discarding:
                break
            if self.transport.bytes_read == 0:  # a device never heard has no bulk to end: retry() reports it
                break
        self.transport.drain(0.1)

    def _await_ready(self, deadline: float) -> bool:
        """Whether ``m-ready`` arrived before ``deadline``; notes a bulk timeout seen on the way."""
        while time.monotonic() < deadline:
            try:
                reply = parse_line(self.transport.read_line(deadline - time.monotonic()))
            except DeviceError:
                return False
            if reply.kind == "error" and reply.values[0].startswith("bulk timeout"):
                self._discarding = True
            if reply.kind == "ready":
                return True
        return False

    def retry(self, action: Callable[[], T], *, attempts: int | None = None,
              keep: tuple[type[Exception], ...] = ()) -> T:
        """``action()`` until it gets through: after a lost or corrupted reply or a reset, resync and repeat.
        ``action`` must start from scratch (reload what it needs) unless the failures it can meet are
        listed in ``keep``, which go to the caller at once. A dead or silent link is not retried."""
        attempts = attempts or self.attempts
        failures = []
        for attempt in range(1, attempts + 1):
            try:
                return action()
            except keep:
                raise
            except RETRYABLE as exc:
                self._check_heard(exc)
                failures.append(f"{type(exc).__name__}: {exc}")
                log.info("attempt %d failed: %s", attempt, failures[-1])
                self.recoveries += 1
                self.resync()
        raise DeviceError(f"{self.transport.url}: failed {attempts} times; last: {failures[-1]}")

    def _check_heard(self, exc: Exception) -> None:
        if isinstance(exc, DeviceTimeout) and self.transport.bytes_read == 0:
            raise DeviceError(f"{self.transport.url}: not one byte from the device ({exc}): is the firmware "
                              f"running, and the baud rate {self.transport.baudrate}?") from None

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
        self.info = DeviceInfo(name.values[1], profile, model_fields, self._clock())
        return self.info

    def _clock(self) -> str:
        """What the device's timings count; firmware without ``clock%`` (MLPerf Tiny's) times a board."""
        from dslite_tiny.records import CLOCKS

        try:
            clock = _one(self.command("clock"), "clock").values[0]
        except (CommandFailed, ReplyInvalid):
            return "board-us"
        if clock not in CLOCKS:
            raise ReplyInvalid(f"clock {clock[:40]!r} is none of {', '.join(CLOCKS)}")
        return clock

    def load(self, data: bytes, *, audio: bool, binary: bool) -> None:
        """Fill the device's input buffer: int16 PCM (``audio load``) or the int8 tensor (``db load``), in
        CRC-checked bulk blocks or hex ``db`` lines; retried until the device holds exactly ``data``."""
        header = ("audio", "load", len(data) // 2) if audio else ("db", "load", len(data))
        self.retry(lambda: self._load(data, header, binary))

    def _open(self, header: tuple, size: int) -> None:
        expecting = _one(self.command(*header), "expecting")
        if int(expecting.values[0]) != size:
            raise ReplyInvalid(f"the device expects {expecting.values[0]} bytes, not {size}")

    def _load(self, data: bytes, header: tuple, binary: bool) -> None:
        """Block by block; after a doubtful block the dslite-tiny firmware's CRC says where to go on (other
        firmware cannot say, so the load starts over). The CRC of the whole input proves a hex load, or
        one that needed a recovery; a clean binary load is proven by its blocks' CRCs."""
        checked = self.info is not None and self.info.dslite
        self._open(header, len(data))
        step = BULK_BLOCK if binary else DB_BYTES_PER_LINE
        at, misses, recovered, prefixes, replies = 0, 0, False, _PrefixCrcs(data), []
        while at < len(data):
            block = data[at:at + step]
            try:
                replies = self._send_block(block, binary)
                at, misses = at + len(block), 0
            except DeviceReset:
                raise
            except RETRYABLE as exc:
                misses += 1
                if not checked or misses >= self.attempts:
                    raise
                log.info("block at byte %d: %s", at, exc)
                self.recoveries += 1
                recovered = True
                self.resync()
                at = prefixes.length(self._loaded_crc())
        if not checked:
            _one(replies, "load_done")
        elif (recovered or not binary) and self._loaded_crc() != crc32(data):
            raise ReplyInvalid(f"the loaded data's CRC differs from {crc32(data):08x}")

    def _send_block(self, block: bytes, binary: bool) -> list[Reply]:
        if not binary:
            return self.command("db", block.hex())
        replies = self.send(bulk_command(block), payload=block)
        if int(_one(replies, "bulk_ok").values[0]) != len(block):
            raise ReplyInvalid("bulk acknowledged with another length")
        return replies

    def _loaded_crc(self) -> int:
        replies = self.retry(lambda: self.command("crc"), keep=(DeviceReset,))
        return int(_one(replies, "crc").values[0], 16)

    def infer(self, *, runs: int = 1, warmup: int = 0, timeout_s: float | None = None) -> Inference:
        """MLPerf ``infer N W``: the mean time of ``runs`` timed inferences between the two laps; repeated
        on the loaded input after a fault (a reset goes to the caller, which must reload)."""
        return self.retry(lambda: self._infer(runs, warmup, timeout_s), keep=(DeviceReset,))

    def _infer(self, runs: int, warmup: int, timeout_s: float | None) -> Inference:
        replies = self.command("infer", runs, warmup, timeout_s=timeout_s, work=1 + runs + warmup)
        laps = [int(r.values[0]) for r in replies if r.kind == "lap"]
        if len(laps) != 2:
            raise ReplyInvalid(f"infer: {len(laps)} lap lines instead of 2")
        return Inference(self._scores(replies), ((laps[1] - laps[0]) % 2**32) / runs)

    def classify(self, *, warmup: int = 0) -> Inference:
        """The on-device frontend on the loaded audio, then the model; repeated as ``infer`` is."""
        return self.retry(lambda: self._classify(warmup), keep=(DeviceReset,))

    def _classify(self, warmup: int) -> Inference:
        replies = self.command("classify", warmup, work=2 + warmup)
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


class _PrefixCrcs:
    """Which prefix of ``data`` a device holds, from the CRC-32 it reports (computed once, on demand)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._lengths: dict[int, int] | None = None

    def length(self, crc: int) -> int:
        if self._lengths is None:
            running, self._lengths = 0, {0: 0}
            for end in range(1, len(self._data) + 1):
                running = zlib.crc32(self._data[end - 1:end], running)
                self._lengths.setdefault(running, end)
        if crc not in self._lengths:
            raise ReplyInvalid(f"the device holds data that is no prefix of the input (CRC {crc:08x})")
        return self._lengths[crc]


def _timing_key(raw: bytes) -> str:
    """What a reply's time depends on: the command without its data (``db`` lines, a bulk's CRC)."""
    tokens = raw.decode("latin-1").rstrip("%").split(" ")
    if tokens[0] == "db" and len(tokens) == 2 and tokens[1] != "print":
        return "db HEX"
    return " ".join(tokens[:2]) if tokens[0] == "bulk" else " ".join(tokens)


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


def connect(port: str | None, *, baudrate: int = 115200, timeout_s: float = 10.0, attempts: int = 8) -> Dut:
    """A ``Dut`` on ``port`` (discovered when None), identified and in sync; ``with`` closes its port."""
    dut = Dut(Transport(port or find_port(), baudrate=baudrate), timeout_s=timeout_s, attempts=attempts)
    try:
        dut.resync()
        dut.retry(dut.identify)
    except DeviceError:
        dut.transport.close()
        raise
    return dut
