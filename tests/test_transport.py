"""The serial transport over pyserial's real loop:// and socket:// ports: lines, timeouts, bounded lines."""
from __future__ import annotations

import socket
import threading

import pytest

from dslite_tiny.errors import DeviceError
from firmware_host.transport import MAX_LINE, DeviceTimeout, Transport


def test_loop_port_splits_lines_and_times_out():
    with Transport("loop://") as link:
        link.write(b"m-ready\r\nm-lap-us-12")
        assert link.read_line(2.0) == "m-ready"
        with pytest.raises(DeviceTimeout, match="no reply within 0.2 s"):
            link.read_line(0.2)  # the second line is incomplete
        link.write(b"34\r\n")
        assert link.read_line(2.0) == "m-lap-us-1234"
        assert link.bytes_written == len(b"m-ready\r\nm-lap-us-12") + 4


def test_garbage_is_cut_into_bounded_lines_and_drained():
    with Transport("loop://") as link:
        link.write(bytes(range(256)) * 40 + b"\r\nm-ready\r\n")
        dropped = link.drain(quiet_s=0.3)
        assert dropped[-1] == "m-ready" and all(len(line) <= MAX_LINE for line in dropped)
        assert sum(len(line) for line in dropped[:-1]) >= 256 * 40 - 256  # nothing lost but the newlines


def test_socket_url_talks_to_a_real_peer():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def peer():
        conn, _ = server.accept()
        with conn:
            if conn.recv(64) == b"name%":
                conn.sendall(b"m-name-dut-[peer]\r\nm-ready\r\n")

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    with Transport(f"socket://127.0.0.1:{port}") as link:
        link.write(b"name%")
        assert [link.read_line(2.0), link.read_line(2.0)] == ["m-name-dut-[peer]", "m-ready"]
    thread.join(2)
    server.close()


def test_unopenable_port_is_a_device_error():
    with pytest.raises(DeviceError, match="/dev/does-not-exist: cannot open the port"):
        Transport("/dev/does-not-exist")
