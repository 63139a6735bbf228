"""Shared fixtures: real loopback servers in their own processes.

The target is crestline's own `crestline.servers.target` (a uvloop HTTP/1.1 server with known delay,
stalls and injected faults), started as a subprocess so it never shares the client's GIL.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

# tests/ is on sys.path: pytest puts it there for this file.
from servers import Target, stopped_at_teardown


@pytest.fixture
def target():
    """Factory: target('--delay-ms', '5') -> a running Target, stopped at teardown."""
    yield from stopped_at_teardown(Target)


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CountingListener:
    """A bare TCP listener that only counts accepted connections (to prove nothing was sent)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def accepted(self) -> int:
        n = 0
        time.sleep(0.2)
        with contextlib.suppress(BlockingIOError):
            while True:
                conn, _ = self.sock.accept()
                conn.close()
                n += 1
        return n


@pytest.fixture
def listener():
    lst = CountingListener()
    yield lst
    lst.sock.close()
