"""The crestline command line in a child process, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

CLI = [sys.executable, "-m", "crestline.cli"]


def crestline(*args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`crestline ARGS` (paths and numbers passed as text); env adds to this process's own."""
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
