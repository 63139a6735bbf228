"""`crestline run https://...` as a user runs it: bad TLS options are one line and exit 2
before any load; --insecure is said in the summary and the result; the runlog keeps the
connections' set-up times."""

from __future__ import annotations

import json
import subprocess

import pytest

from crestline.measure.runlog import read_runlog

pytest.importorskip("cryptography")
from cli_process import CLI, crestline  # noqa: E402  (tests/ is on sys.path)
from test_tls import TlsServer  # noqa: E402


@pytest.mark.parametrize("flags, says", [
    (["--cacert", "/nonexistent/ca.pem"], "--cacert file '/nonexistent/ca.pem' not found"),
    (["--cert", "/nonexistent/c.pem"], "--cert file '/nonexistent/c.pem' not found"),
])
def test_bad_tls_file_is_exit_2_before_load(flags, says, listener):
    p = crestline("run", f"https://127.0.0.1:{listener.port}/", "--rate", "10",
                  "--duration", "1s", *flags)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [f"crestline: error: {says}: give a PEM file's path"]
    assert listener.accepted() == 0


def test_insecure_said_in_summary_and_result_and_setup_in_runlog(certs, tmp_path):
    s = TlsServer(certs.unknown_ca)
    try:
        out, log = tmp_path / "r.json", tmp_path / "r.runlog"
        p = crestline("run", s.url, "--rate", "100", "--duration", "1s", "--connections", "2",
                      "--insecure", "--out", out, "--runlog", log)
    finally:
        s.stop()
    assert p.returncode == 0, p.stderr
    assert "tls       INSECURE: the server's certificate was not verified" in p.stdout
    assert "TLS handshake p50" in p.stdout
    d = json.loads(out.read_text())
    assert d["tls"]["insecure"] is True and d["requests"]["ok"] == 100
    _, snaps, _ = read_runlog(str(log))
    opened = sum(sn.setup["tls_handshake"].total for sn in snaps if sn.setup)
    assert opened == d["connection_setup_ms"]["connections"] >= 1


def test_sweep_over_https_says_how_tls_was_checked(certs, tmp_path):
    s = TlsServer(certs.good)
    try:
        p = crestline("sweep", s.url, "--rates", "50,100", "--step-duration", "1.5s",
                      "--interval", "0.5s", "--warmup", "none", "--settle", "0",
                      "--cacert", certs.ca, "--connections", "2")
    finally:
        s.stop()
    assert p.returncode == 0, p.stderr
    assert f"tls: verified against {certs.ca}" in p.stdout, p.stdout


def test_record_through_an_https_upstream(certs, tmp_path):
    import urllib.request

    from crestline.trace.format import read_trace

    s = TlsServer(certs.good)
    out = tmp_path / "rec.cltrace"
    proc = subprocess.Popen(CLI + ["record", "--listen", "127.0.0.1:0", "--upstream", s.url,
                                   "--cacert", certs.ca, "-o", str(out), "--max-requests", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        addr = proc.stdout.readline().strip().removeprefix("listening on ")
        for i in range(3):
            with urllib.request.urlopen(f"http://{addr}/v1/x?i={i}", timeout=10) as r:
                assert r.status == 200 and r.read() == b"ok"
        proc.wait(timeout=20)
    finally:
        proc.kill()
        s.stop()
    t = read_trace(out)
    assert [r.path for r in t.records] == ["/v1/x?i=0", "/v1/x?i=1", "/v1/x?i=2"]
    assert t.header["base_url"].startswith("https://127.0.0.1:")
    assert [r.extras["status"] for r in t.records] == [200] * 3


def test_record_refuses_an_unverifiable_upstream_per_request(certs, tmp_path):
    import urllib.error
    import urllib.request

    s = TlsServer(certs.good)  # no --cacert: the test CA is in no system store
    proc = subprocess.Popen(CLI + ["record", "--listen", "127.0.0.1:0", "--upstream", s.url,
                                   "-o", str(tmp_path / "r.cltrace"), "--max-requests", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        addr = proc.stdout.readline().strip().removeprefix("listening on ")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://{addr}/", timeout=10)
        assert e.value.code == 502 and b"certificate verify failed" in e.value.read()
    finally:
        proc.kill()
        s.stop()
