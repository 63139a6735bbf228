"""Signals and crashes on real processes, mid-run and mid-search: SIGINT and SIGTERM stop within
about a second with the result written, marked interrupted, holding every finished interval;
after SIGKILL the runlog holds every finished interval and `crestline report` rebuilds the
result from it. (Run-only Ctrl-C basics: test_cli.py; a runlog cut at every byte:
test_report.py.)"""

import json
import signal
import subprocess
import time

import pytest
from cli_process import CLI, crestline

from crestline.measure.runlog import read_runlog

# Generous: the stop drains for at most 1 s, then the outputs are written; a shared 2-core CI
# machine adds its own seconds.
STOP_S = 4.0

COMMANDS = {
    "run": ["run", "{url}", "--rate", "300", "--duration", "60s", "--interval", "0.5s"],
    "search": ["search", "{url}", "--slo", "p99=50ms", "--start-rate", "200", "--max-rate", "5k",
               "--step-duration", "3s", "--interval", "0.5s", "--warmup", "none",
               "--max-time", "60s"],
}


def _intervals(path) -> int:
    try:
        return len(read_runlog(str(path))[1])
    except Exception:  # not written yet, or its header still on the way
        return 0


def _start(command, url, tmp_path, min_intervals=4):
    out, runlog = tmp_path / "r.json", tmp_path / "r.runlog"
    args = [a.replace("{url}", url) for a in COMMANDS[command]]
    proc = subprocess.Popen(CLI + [*args, "--quiet", "--out", str(out), "--runlog", str(runlog)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _intervals(runlog) < min_intervals:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    return proc, out, runlog


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_within_a_second_and_keeps_every_finished_interval(target, tmp_path,
                                                                          command, sig):
    t = target("--delay-ms", "2")
    proc, out, runlog = _start(command, t.url, tmp_path)
    before = _intervals(runlog)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    stopped_s = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert stopped_s < STOP_S, stopped_s
    d = json.loads(out.read_text())
    assert d["interrupted"] is True
    header, intervals, summary = read_runlog(str(runlog))
    assert summary is not None and summary["interrupted"] is True
    # every interval finished before the signal is in both, and the two agree
    assert len(intervals) >= before
    assert len(d["intervals"]) == len(intervals), (len(d["intervals"]), len(intervals))
    assert sum(iv["requests"]["ok"] if "requests" in iv else iv["ok"] for iv in d["intervals"]) \
        == sum(s.ok for s in intervals)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_after_sigkill_the_runlog_rebuilds_the_result(target, tmp_path, command):
    t = target("--delay-ms", "2")
    # a search: past its first step's verdict (3 s), so there is a step to rebuild
    proc, out, runlog = _start(command, t.url, tmp_path, 4 if command == "run" else 12)
    time.sleep(0.3)
    proc.kill()
    proc.communicate(timeout=30)
    assert not out.exists()  # killed: nothing but the runlog
    header, intervals, summary = read_runlog(str(runlog))
    assert summary is None and len(intervals) >= 4
    p = crestline("report", runlog, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["kind"] == command and r["interrupted"] is True
    assert len(r["intervals"]) == len(intervals)
    if command == "run":
        assert r["requests"]["ok"] == sum(s.ok for s in intervals) > 0
    else:
        assert r["steps"] and r["reason"] == "runlog ends before the search finished"
    text = crestline("report", runlog)
    assert text.returncode == 0 and "[interrupted]" in text.stdout
