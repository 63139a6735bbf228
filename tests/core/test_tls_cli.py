"""`crestline run https://...` as a user runs it: bad TLS options are one line and exit 2
before any load; --insecure is said in the summary and the result; the runlog keeps the
connections' set-up times."""

from __future__ import annotations

import json

import pytest

from crestline.measure.runlog import read_runlog

pytest.importorskip("cryptography")
from cli_process import crestline  # noqa: E402  (tests/ is on sys.path)
from test_tls import TlsServer  # noqa: E402
from tls_certs import make_certs  # noqa: E402


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


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
