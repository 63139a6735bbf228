"""The client's own limits: named as such, and bounded.

(The open-file limit against --connections is refused before load: tests/integration/
test_bad_input.py.)"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import hostile
import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _netns_ok() -> bool:
    """A private network namespace (root, unshare): its own loopback and port range, so the
    test never touches the host's sysctls."""
    if not (shutil.which("unshare") and shutil.which("ip") and os.geteuid() == 0):
        return False
    return subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                          capture_output=True).returncode == 0


# Inside the namespace: loopback up, four ephemeral ports, a target with 50 ms responses (so
# the queue grows and the core wants more connections than there are ports), then a run.
_IN_NETNS = textwrap.dedent("""
    import json, subprocess, sys
    sys.path.insert(0, {tests!r})
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("40000 40003")
    from servers import Target
    t = Target("--delay-ms", "50", max_seconds=60)
    try:
        p = subprocess.run([sys.executable, "-m", "crestline.cli", "run", t.url, "--rate", "300",
                            "--duration", "2s", "--connections", "32", "--timeout", "1s",
                            "--quiet", "--out", {out!r}], capture_output=True, text=True)
        print(json.dumps({{"rc": p.returncode, "stderr": p.stderr}}))
    finally:
        t.stop()
""")


@pytest.mark.skipif(not _netns_ok(), reason="needs root and unshare -n for a private port range")
def test_ephemeral_port_exhaustion_is_named_as_the_clients(tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run(["unshare", "-n", sys.executable, "-c",
                        _IN_NETNS.format(tests=TESTS, out=str(out))],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout.strip().splitlines()[-1])
    assert run["rc"] == 0, run["stderr"]
    r = json.loads(out.read_text())["requests"]
    assert r["ok"] > 0 and r["by_error"]["connect"] > 0, r
    msgs = " | ".join(r["error_messages"]["connect"])
    assert "client out of local ports (EADDRNOTAVAIL)" in msgs, msgs
    assert "ip_local_port_range" in msgs


def test_a_stalled_server_with_max_inflight_sheds_in_bounded_memory(tmp_path):
    # The server accepts and never answers: at most --max-inflight requests are held (waiting
    # or written), the rest are shed and counted; the client's peak RSS is within 40 MiB of
    # the same run against a server that answers at once.
    args = ["--rate", "10k", "--duration", "2s", "--connections", "50", "--max-inflight",
            "1000", "--timeout", "2s", "--quiet"]
    fast = hostile.HostileServer(hostile.answering(hostile.OK))
    stalled = hostile.HostileServer(hostile.silent)
    try:
        base = hostile.run_measured(["run", fast.url, *args], 60)
        out = tmp_path / "stalled.json"
        got = hostile.run_measured(["run", stalled.url, *args, "--out", out], 60)
    finally:
        fast.close()
        stalled.close()
    assert base["rc"] == 0 and got["rc"] == 0, (base["stderr"], got["stderr"])
    assert got["wall_s"] < 2 + 2 + 5, got["wall_s"]
    d = json.loads(out.read_text())
    r = d["requests"]
    assert r["ok"] == 0 and r["shed"] >= 0.9 * r["scheduled"] > 0, r
    assert r["scheduled"] == r["shed"] + r["by_error"]["timeout"], r
    assert r["by_error"]["timeout"] >= 1000, r  # the held ones, timed out or abandoned
    assert any("shed at --max-inflight 1000" in w for w in d["warnings"])
    assert got["max_rss_mb"] < base["max_rss_mb"] + 40, (got["max_rss_mb"], base["max_rss_mb"])
