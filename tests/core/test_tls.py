"""https:// against a real loopback TLS server, with certificates the tests make: verification
on by default, --cacert, --insecure, SNI and ALPN, mTLS, and every handshake failure counted as
a `tls` error; handshake time recorded apart from request latency."""

from __future__ import annotations

import pytest

import crestline
from crestline.errors import ConfigError

pytest.importorskip("cryptography")
from script_server import ScriptServer  # noqa: E402  (tests/ is on sys.path)
from servers import stopped_at_teardown  # noqa: E402


class TlsServer(ScriptServer):
    """tests/tls_server.py in its own process."""

    def __init__(self, pair, *flags: str):
        super().__init__("tls_server.py", "--cert", pair.cert, "--key", pair.key, *flags)
        self.url = f"https://127.0.0.1:{self.port}/"


@pytest.fixture
def tls_server():
    yield from stopped_at_teardown(TlsServer)


def _run(url, **kw):
    kw.setdefault("rate_rps", 200)
    kw.setdefault("duration_s", 1)
    kw.setdefault("connections", 4)
    return crestline.run(url, **kw).to_dict()


def _only_tls_errors(d):
    r = d["requests"]
    assert r["ok"] == 0, r
    assert r["by_error"]["tls"] == r["scheduled"] > 0, r
    assert r["by_error"]["connect"] == 0
    return " ".join(r["error_messages"]["tls"])


def test_good_certificate_with_cacert_and_handshakes_kept_apart(certs, tls_server):
    s = tls_server(certs.good)
    d = _run(s.url, cacert=certs.ca)
    r = d["requests"]
    assert r["ok"] == r["scheduled"] == 200 and r["errors"] == 0, r
    setup = d["connection_setup_ms"]
    # One handshake per connection opened (at most --connections), not per request: the
    # connections stay warm.
    assert 1 <= setup["connections"] <= 4, setup
    assert 0 < setup["tls_handshake"]["p50"] < 1000
    assert 0 < setup["connect"]["p50"] < 1000
    assert d["tls"] == {"verify": True, "insecure": False, "cacert": certs.ca,
                        "client_cert": False}


def test_tls_connections_are_handshaken_before_the_first_interval(certs):
    # A slow TLS terminator: 300 ms to answer each ClientHello. Opened on demand, the first
    # requests wait for their handshakes, and that reads as 300+ ms of latency (and as the
    # client's send lag) in the first interval; pre-opened (the default for https://), every
    # handshake is done before the schedule starts, and is still recorded apart.
    s = TlsServer(certs.good, "--handshake-delay-ms", "300")
    try:
        warm = _run(s.url, cacert=certs.ca, rate_rps=50, connections=3)
        cold = _run(s.url, cacert=certs.ca, rate_rps=50, connections=3, preopen=0)
    finally:
        s.stop()
    assert warm["requests"]["ok"] == warm["requests"]["scheduled"] == 50, warm["requests"]
    assert warm["connection_setup_ms"]["connections"] == 3
    assert warm["connection_setup_ms"]["tls_handshake"]["p50"] >= 290
    assert warm["latency_ms"]["max"] < 200, warm["latency_ms"]
    assert warm["send_lag_ms"]["max"] < 200, warm["send_lag_ms"]
    assert cold["requests"]["ok"] == 50
    assert cold["latency_ms"]["max"] >= 290, cold["latency_ms"]
    assert cold["send_lag_ms"]["max"] >= 290, cold["send_lag_ms"]


def test_preopen_counts_and_range(target, listener):
    # plain http: none pre-opened unless asked (connects are cheap; 50 rps needs one)
    assert _run(target().url, rate_rps=50)["connection_setup_ms"]["connections"] == 1
    assert _run(target().url, rate_rps=50, preopen=3)["connection_setup_ms"]["connections"] == 3
    for bad in (-1, 5):
        with pytest.raises(ConfigError, match=r"--preopen .* out of range \(0 to --connections"):
            _run(f"http://127.0.0.1:{listener.port}/", preopen=bad)
    assert listener.accepted() == 0


def test_plain_http_records_connect_time_and_no_handshake(target):
    d = _run(target().url)
    setup = d["connection_setup_ms"]
    assert 1 <= setup["connections"] <= 4 and setup["connect"]["p50"] > 0
    assert setup["tls_handshake"] is None and d["tls"] is None


def test_sni_and_alpn_sent(certs, tls_server, tmp_path):
    log = tmp_path / "hello.log"
    s = tls_server(certs.good, "--log", str(log))
    d = _run(f"https://localhost:{s.port}/", cacert=certs.ca, rate_rps=50, connections=2)
    assert d["requests"]["ok"] == 50
    lines = log.read_text().splitlines()
    assert lines and set(lines) == {"sni=localhost alpn=http/1.1"}, lines


def test_verification_is_on_by_default(certs, tls_server):
    # The test CA is in no system store: without --cacert the certificate is refused.
    s = tls_server(certs.good)
    assert "unable to get local issuer" in _only_tls_errors(_run(s.url, rate_rps=50))


def test_expired_certificate_is_a_tls_error(certs, tls_server):
    s = tls_server(certs.expired)
    assert "expired" in _only_tls_errors(_run(s.url, cacert=certs.ca, rate_rps=50))


def test_wrong_host_is_a_tls_error(certs, tls_server):
    s = tls_server(certs.wrong_host)
    msg = _only_tls_errors(_run(s.url, cacert=certs.ca, rate_rps=50))
    assert "mismatch" in msg and "127.0.0.1" in msg, msg


def test_unknown_ca_is_a_tls_error_and_insecure_accepts_it(certs, tls_server):
    s = tls_server(certs.unknown_ca)
    assert "unable to get local issuer" in _only_tls_errors(
        _run(s.url, cacert=certs.ca, rate_rps=50))
    d = _run(s.url, insecure=True, rate_rps=50)
    assert d["requests"]["ok"] == 50
    assert d["tls"]["insecure"] is True and d["spec"]["insecure"] is True


def test_mtls_needs_the_client_certificate(certs, tls_server):
    s = tls_server(certs.good, "--client-ca", certs.ca)
    # TLS 1.3: the server refuses the missing certificate after the client's handshake ends,
    # so its alert arrives on the first read; a tls error all the same.
    assert "certificate required" in _only_tls_errors(_run(s.url, cacert=certs.ca, rate_rps=50))
    d = _run(s.url, cacert=certs.ca, cert=certs.client.cert, key=certs.client.key, rate_rps=50)
    assert d["requests"]["ok"] == 50 and d["tls"]["client_cert"] is True


@pytest.mark.parametrize("opts, says", [
    ({"cacert": "/nonexistent/ca.pem"}, "--cacert file '/nonexistent/ca.pem' not found"),
    ({"key": "k.pem"}, "--key needs --cert"),
    ({"insecure": True, "cacert": __file__}, "choose one"),
    ({"cacert": __file__}, "holds no usable CA certificate"),
    ({"cert": __file__}, "cannot be loaded"),
])
def test_bad_tls_options_refused_before_load(opts, says, listener):
    with pytest.raises(ConfigError, match=None) as e:
        _run(f"https://127.0.0.1:{listener.port}/", **opts)
    assert says in str(e.value)
    assert listener.accepted() == 0


def test_tls_options_refused_for_http(listener):
    with pytest.raises(ConfigError, match="applies only to https://"):
        _run(f"http://127.0.0.1:{listener.port}/", insecure=True)
    assert listener.accepted() == 0


def test_tls_with_worker_processes(certs, tls_server):
    # Each worker builds its own context from the spec (an SSLContext does not pickle).
    s = tls_server(certs.good)
    d = _run(s.url, cacert=certs.ca, rate_rps=100, workers=2)
    assert d["requests"]["ok"] == 100 and d["requests"]["errors"] == 0
    assert d["connection_setup_ms"]["connections"] == 4  # every one pre-opened
