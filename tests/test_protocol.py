"""The host side of the serial protocol: command limits, reply patterns, and random bytes never crashing it."""
from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_host.protocol import (DB_BYTES_PER_LINE, MAX_COMMAND, ProtocolError, bulk_command, command,
                                    db_commands, parse_line, parse_model, parse_scores)


def test_commands_are_terminated_and_limited():
    assert command("infer", 10, 1) == b"infer 10 1%"
    assert command("name") == b"name%"
    assert len(command("db", "ab" * DB_BYTES_PER_LINE)) == MAX_COMMAND
    with pytest.raises(ProtocolError, match="exceeds 80"):
        command("db", "ab" * (DB_BYTES_PER_LINE + 1))
    for bad in ("a%b", "two words", "", "é"):
        with pytest.raises(ProtocolError):
            command("db", bad)


def test_db_commands_split_the_data_into_full_lines():
    data = bytes(range(100))
    lines = db_commands(data)
    assert lines[0] == b"db load 100%" and len(lines) == 1 + 3
    assert bytes.fromhex("".join(line[3:-1].decode() for line in lines[1:])) == data
    assert all(len(line) <= MAX_COMMAND for line in lines)


def test_bulk_header_carries_length_and_crc32():
    data = b"\x00\x01\xff" * 1000
    assert bulk_command(data) == f"bulk 3000 {zlib.crc32(data):08x}%".encode()


@pytest.mark.parametrize("line, kind, values", [
    ("m-ready", "ready", ()),
    ("m-init-done\r\n", "init_done", ()),
    ("m-name-dut-[dslite-tiny virtual]", "name", ("dut", "dslite-tiny virtual")),
    ("m-[Expecting 27648 bytes]", "expecting", ("27648",)),
    ("m-lap-us-123456789", "lap", ("123456789",)),
    ("m-results-[0.100,-0.250,0.150]", "results", ("0.100,-0.250,0.150",)),
    ("m-bulk-ok-4096", "bulk_ok", ("4096",)),
    ("m-frontend-us-5120", "frontend_us", ("5120",)),
    ("m-class-3", "class", ("3",)),
    ("e-[unknown command foo]", "error", ("unknown command foo",)),
    ("m-buffer-00-1f-a0", "buffer", ("00-1f-a0",)),
])
def test_valid_replies(line, kind, values):
    reply = parse_line(line)
    assert (reply.kind, reply.values) == (kind, values)


@pytest.mark.parametrize("line", ["m-readyx", "xm-ready", "m-lap-us-", "m-lap-us-12a", "m-results-[1,2",
                                  "e-unbracketed", "", "m-[Expecting many bytes]", "m-buffer-0g"])
def test_malformed_replies_are_noise(line):
    assert parse_line(line).kind == "noise"


def test_scores_and_model_payloads():
    assert parse_scores("0.1,-2.5e-1,3") == [0.1, -0.25, 3.0]
    for bad in ("", "0.1,,0.2", "nan", "a,b"):
        with pytest.raises(ProtocolError):
            parse_scores(bad)
    model = parse_model("sha256=ab12,variant=int8,classes=2,labels=yes|no")
    assert model == {"sha256": "ab12", "variant": "int8", "classes": "2", "labels": ["yes", "no"]}
    assert parse_model("kws01") == {"name": "kws01"}


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_line_parser(data):
    for line in data.decode("latin-1").split("\n"):
        reply = parse_line(line)
        assert reply.kind in {"noise", "error", "ready"} or reply.line.startswith("m-")
        if reply.kind == "results":
            try:
                parse_scores(reply.values[0])
            except ProtocolError:
                pass
