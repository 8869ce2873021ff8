"""The serial protocol as data (``PROTOCOL.md`` is the spec): command builders that enforce the 80-character
limit, and anchored patterns that turn a device line into a typed ``Reply``.

Parsing never raises on what a link delivers: a line that matches no pattern is ``noise`` (logged and
skipped by the harness), so garbage on the wire cannot crash a run.
"""
from __future__ import annotations

import dataclasses
import re
import zlib

MAX_COMMAND = 80  # characters, including the terminating '%' (EEMBC's EE_CMD_SIZE)
TERMINATOR = "%"
DB_BYTES_PER_LINE = 38  # "db " + 76 hex digits + "%" = 80


class ProtocolError(ValueError):
    """A command that cannot be sent as asked, or a reply whose payload is malformed."""


@dataclasses.dataclass(frozen=True)
class Reply:
    kind: str  # a key of REPLIES, or "noise"
    values: tuple[str, ...] = ()
    line: str = ""


# Anchored, so a line that merely contains a reply is noise. Order matters only for readability.
REPLIES: dict[str, re.Pattern[str]] = {name: re.compile(pattern) for name, pattern in {
    "ready": r"^m-ready$",
    "init_done": r"^m-init-done$",
    "name": r"^m-name-(.+?)-\[(.*)\]$",
    "profile": r"^m-profile-\[(.*)\]$",
    "model": r"^m-model-\[(.*)\]$",
    "clock": r"^m-clock-\[(.*)\]$",
    "expecting": r"^m-\[Expecting (\d+) bytes\]$",
    "load_done": r"^m-load-done$",
    "bulk_ok": r"^m-bulk-ok-(\d+)$",
    "lap": r"^m-lap-us-(\d+)$",
    "warmup_start": r"^m-warmup-start-(\d+)$",
    "warmup_done": r"^m-warmup-done$",
    "infer_start": r"^m-infer-start-(\d+)$",
    "infer_done": r"^m-infer-done$",
    "results": r"^m-results-\[([^\]]*)\]$",
    "results_crc": r"^m-results-crc-([0-9a-f]{8})$",
    "crc": r"^m-crc-([0-9a-f]{8})$",
    "frontend_us": r"^m-frontend-us-(\d+)$",
    "infer_us": r"^m-infer-us-(\d+)$",
    "class": r"^m-class-(\d+)$",
    "buffer": r"^m-buffer-([0-9a-f]{2}(?:-[0-9a-f]{2})*)$",
    "error": r"^e-\[(.*)\]$",
}.items()}


def parse_line(line: str) -> Reply:
    """One device line (without its ``\\r\\n``) as a ``Reply``; anything unrecognised is ``noise``."""
    text = line.strip("\r\n")
    for kind, pattern in REPLIES.items():
        match = pattern.match(text)
        if match:
            return Reply(kind, match.groups(), text)
    return Reply("noise", (), text)


def parse_scores(payload: str) -> list[float]:
    """``0.100,-0.250,…`` of an ``m-results-[…]`` line."""
    try:
        scores = [float(item) for item in payload.split(",")]
    except ValueError:
        raise ProtocolError(f"malformed scores: {payload[:60]!r}") from None
    if not scores or any(s != s for s in scores):  # empty or NaN
        raise ProtocolError(f"malformed scores: {payload[:60]!r}")
    return scores


def parse_model(payload: str) -> dict[str, str | list[str]]:
    """``sha256=…,variant=…,classes=…,labels=a|b`` of an ``m-model-[…]`` line; other firmware's plain model
    names come back as ``{"name": payload}``."""
    if "=" not in payload:
        return {"name": payload}
    fields: dict[str, str | list[str]] = {}
    for item in payload.split(","):
        key, _, value = item.partition("=")
        fields[key] = value.split("|") if key == "labels" else value
    return fields


def command(*tokens: str | int) -> bytes:
    """Tokens joined by spaces and terminated by ``%``, refused if longer than 80 characters or if a token
    holds the terminator or a space."""
    parts = [str(t) for t in tokens]
    for part in parts:
        if not part or any(c in part for c in f" {TERMINATOR}\r\n"):
            raise ProtocolError(f"invalid command token {part!r}")
    text = " ".join(parts) + TERMINATOR
    if len(text) > MAX_COMMAND:
        raise ProtocolError(f"command of {len(text)} characters exceeds {MAX_COMMAND}: {text[:40]}…")
    if not text.isascii():
        raise ProtocolError(f"command is not ASCII: {text[:40]!r}")
    return text.encode("ascii")


def db_commands(data: bytes) -> list[bytes]:
    """``db load N`` then ``db <hex>`` lines of at most 38 bytes each."""
    return [command("db", "load", len(data))] + [command("db", data[i:i + DB_BYTES_PER_LINE].hex())
                                                 for i in range(0, len(data), DB_BYTES_PER_LINE)]


def bulk_command(data: bytes) -> bytes:
    """The ``bulk N CRC`` header; the raw bytes follow it on the wire."""
    return command("bulk", len(data), f"{crc32(data):08x}")


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF
