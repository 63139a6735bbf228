"""Live progress: colour and a repeated header on a terminal, plain lines in a pipe, nothing
with --quiet. The terminal is a real pseudo-terminal (os.openpty)."""

import os
import select
import subprocess

from cli_process import CLI

ESC = "\x1b["


def run_with_stderr_on_a_pty(args) -> tuple[int, str]:
    master, slave = os.openpty()
    p = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_live_lines_on_a_terminal_and_in_a_pipe(target):
    t = target("--delay-ms", "1", "--fail-every", "50")
    args = ["run", t.url, "--rate", "200", "--duration", "2s"]
    rc, tty = run_with_stderr_on_a_pty(args)
    assert rc == 0
    assert f"{ESC}1m" in tty and "elapsed" in tty  # a bold header
    assert f"{ESC}31m" in tty  # the errors column in red: every 50th request is a 503
    piped = subprocess.run(CLI + args, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0
    lines = piped.stderr.splitlines()
    assert ESC not in piped.stderr
    assert lines[0].split()[:3] == ["elapsed", "offered/s", "achieved/s"]
    assert [ln.split()[0] for ln in lines[1:]] == ["1.0s", "2.0s", "drain"]
    # every 50th of 400 requests failed: 8 errors across the lines (which line a late
    # completion lands in depends on the machine)
    assert sum(int(ln.split()[5]) for ln in lines[1:]) == 8
    quiet = subprocess.run(CLI + args + ["--quiet"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
