"""Loopback servers in their own processes, shared by the fixtures and the tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator


class Target:
    """A loopback server program in its own process: crestline.servers.target by default, or another
    module that takes --port 0 and --max-seconds and prints "listening on HOST:PORT"."""

    def __init__(self, *flags: str, max_seconds: float = 120.0,
                 module: str = "crestline.servers.target"):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", "0",
             "--max-seconds", str(max_seconds), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"target did not start: {line!r} {self.proc.stderr.read()}")
        self.host, port = line.removeprefix("listening on ").rsplit(":", 1)
        self.port = int(port)
        self.url = f"http://{self.host}:{self.port}/"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


def stopped_at_teardown(make: Callable) -> Iterator[Callable]:
    """A factory fixture's body (`yield from`): yields make, and stops everything it made."""
    made = []

    def start(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]

    yield start
    for server in made:
        server.stop()
