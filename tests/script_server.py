"""A test server script (tests/*_server.py) in its own process: it takes --port 0 and prints
"listening on HOST:PORT"; stopped (killed) at teardown."""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent


class ScriptServer:
    def __init__(self, script: str, *flags: str, max_seconds: float = 60.0):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / script), "--port", "0", "--max-seconds",
             str(max_seconds), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"{script} did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


class H2Server(ScriptServer):
    """tests/h2_server.py in its own process."""

    def __init__(self, *flags: str):
        super().__init__("h2_server.py", *flags)
        self.url = f"http://127.0.0.1:{self.port}/v1/score"
