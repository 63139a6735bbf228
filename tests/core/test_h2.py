"""HTTP/2 (--http2) against a real HTTP/2 server on loopback (tests/h2_server.py, the `h2`
package): prior knowledge and ALPN over TLS, many streams per connection bounded by the
server's SETTINGS, flow control both ways past 64 KiB, RST_STREAM, GOAWAY, a stalled stream
among flowing ones, a timeout as a stream reset, and servers that do not speak HTTP/2."""

from __future__ import annotations

import pytest

import crestline

pytest.importorskip("h2")
pytest.importorskip("cryptography")


def _run(url, **kw):
    kw.setdefault("rate_rps", 200)
    kw.setdefault("duration_s", 1)
    kw.setdefault("connections", 2)
    kw.setdefault("timeout_s", 2)
    return crestline.run(url, http2=True, **kw).to_dict()


def _log(path):
    rows = [dict(f.split("=") for f in line.split()) for line in path.read_text().splitlines()]
    return [{k: int(v) for k, v in r.items()} for r in rows]


def _errors(d):
    return {k: v for k, v in d["requests"]["by_error"].items() if v}


def test_prior_knowledge_many_streams_on_few_sockets(h2_server, tmp_path):
    log = tmp_path / "h2.log"
    s = h2_server("--delay-ms", "20", "--log", str(log))
    # 200 rps x 20 ms: ~4 requests in flight, more at the start; 8 streams per socket.
    d = _run(s.url, streams=8, connections=2)
    r = d["requests"]
    assert r["ok"] == r["scheduled"] == 200 and r["errors"] == 0, r
    rows = _log(log)
    assert len(rows) == 200
    assert max(row["max_open"] for row in rows) >= 2  # streams did share a socket
    assert d["connection_setup_ms"]["connections"] == len({row["conn"] for row in rows}) <= 2
    assert d["latency_ms"]["p50"] >= 20


def test_streams_bounded_by_the_servers_settings(h2_server, tmp_path):
    log = tmp_path / "h2.log"
    s = h2_server("--max-streams", "3", "--delay-ms", "50", "--log", str(log))
    d = _run(s.url, streams=10, connections=1, rate_rps=150)
    assert d["requests"]["ok"] == 150 and not _errors(d)
    rows = _log(log)
    assert max(row["max_open"] for row in rows) == 3  # never past the server's limit
    # 150 rps x 50 ms wants ~8 at once: the extra streams went to more sockets.
    assert len({row["conn"] for row in rows}) >= 2


def test_flow_control_past_64k_both_ways(h2_server, tmp_path):
    log = tmp_path / "h2.log"
    s = h2_server("--body-bytes", "300000", "--log", str(log))
    d = _run(s.url, method="POST", body=b"q" * 200_000, rate_rps=40, streams=4)
    assert d["requests"]["ok"] == 40 and not _errors(d), d["requests"]
    assert {row["body"] for row in _log(log)} == {200_000}


def test_rst_stream_fails_only_its_request(h2_server):
    s = h2_server("--rst-every", "10")
    d = _run(s.url, streams=4)
    r = d["requests"]
    assert r["by_error"]["read"] == 20 and r["ok"] == 180, r
    assert r["error_messages"]["read"] == ["stream reset by the server: INTERNAL_ERROR"]


def test_goaway_moves_the_run_to_a_new_connection(h2_server, tmp_path):
    log = tmp_path / "h2.log"
    s = h2_server("--goaway-after", "60", "--log", str(log))
    d = _run(s.url, streams=4, connections=1, rate_rps=150)
    r = d["requests"]
    # Streams the server did not process fail as read errors; the rest of the run goes on.
    assert r["ok"] + r["by_error"]["read"] == r["scheduled"] == 150, r
    assert r["ok"] >= 140
    assert len({row["conn"] for row in _log(log)}) >= 2
    assert d["connection_setup_ms"]["connections"] >= 2


def test_a_stalled_stream_shows_in_latency_while_others_flow(h2_server):
    s = h2_server("--stall-every", "50", "--stall-ms", "300")
    d = _run(s.url, streams=16, connections=1)
    r = d["requests"]
    assert r["ok"] == 200 and not _errors(d)
    # Four stalled of 200: p99 carries the stall, the median does not.
    assert d["latency_ms"]["max"] >= 300
    assert d["latency_ms"]["p50"] < 50


def test_timeout_resets_the_stream_and_keeps_the_connection(h2_server, tmp_path):
    log = tmp_path / "h2.log"
    s = h2_server("--stall-every", "20", "--stall-ms", "3000", "--log", str(log))
    d = _run(s.url, streams=8, connections=1, timeout_s=0.3)
    r = d["requests"]
    assert r["by_error"]["timeout"] == 10 and r["ok"] == 190, r
    # RST_STREAM(CANCEL), not a new socket per timeout
    assert d["connection_setup_ms"]["connections"] <= 2


def test_h2_over_tls_by_alpn(certs, h2_server):
    s = h2_server("--tls", certs.good.cert, certs.good.key)
    d = _run(f"https://127.0.0.1:{s.port}/", cacert=certs.ca, streams=4)
    assert d["requests"]["ok"] == 200 and not _errors(d)
    assert d["connection_setup_ms"]["tls_handshake"]["p50"] > 0


def test_tls_server_without_h2_is_a_protocol_error(certs, h2_server):
    s = h2_server("--tls", certs.good.cert, certs.good.key, "--alpn", "http/1.1")
    d = _run(f"https://127.0.0.1:{s.port}/", cacert=certs.ca, rate_rps=50)
    assert _errors(d) == {"protocol": 50}
    assert "did not agree to HTTP/2 by ALPN" in d["requests"]["error_messages"]["protocol"][0]


def test_http1_server_is_a_protocol_error(target):
    t = target()
    d = _run(t.url, rate_rps=50)
    assert _errors(d) == {"protocol": 50}
    assert "not HTTP/2" in d["requests"]["error_messages"]["protocol"][0]


def test_streams_without_http2_refused():
    from crestline.errors import ConfigError

    with pytest.raises(ConfigError, match="--streams 4 applies to HTTP/2 only"):
        crestline.run("http://127.0.0.1:9/", rate_rps=1, duration_s=1, streams=4)


def test_cli_http2_with_workers(h2_server):
    from cli_process import crestline as cli

    s = h2_server()
    p = cli("run", s.url, "--rate", "100", "--duration", "1s", "--http2", "--streams", "4",
            "--connections", "2", "--workers", "2")
    assert p.returncode == 0, p.stderr
    assert "100 ok, 0 errors" in p.stdout
    p = cli("run", s.url, "--rate", "100", "--duration", "1s", "--streams", "4")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "crestline: error: --streams 4 applies to HTTP/2 only (HTTP/1.1 carries one request "
        "per connection): add --http2, or drop it"]


def test_a_server_allowing_no_streams_fails_each_open_without_a_storm(h2_server, tmp_path):
    s = h2_server("--max-streams", "0")
    d = _run(s.url, rate_rps=50, streams=4)
    assert _errors(d) == {"protocol": 50}
    assert "allows no streams" in d["requests"]["error_messages"]["protocol"][0]
    # one socket per failed request at most, not a loop of reconnects
    assert d["connection_setup_ms"]["connections"] <= 50
