"""Validation happens before any load: every bad input is a ConfigError naming the fix."""

import pytest

from crestline.engine.spec import RunSpec, parse_header, parse_url, read_body
from crestline.errors import ConfigError
from crestline.units import parse_duration_s, parse_rate_rps


@pytest.mark.parametrize("text,seconds", [
    ("30s", 30.0), ("2m", 120.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5", 1.5), ("250us", 250e-6),
])
def test_durations(text, seconds):
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text,rps", [("1000", 1000.0), ("10k", 10_000.0), ("2.5k", 2500.0),
                                      ("1M", 1e6), ("300/s", 300.0)])
def test_rates(text, rps):
    assert parse_rate_rps(text) == rps


@pytest.mark.parametrize("bad", ["fast", "10 parsecs", "-3s", "0s", ""])
def test_bad_durations(bad):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration_s(bad)


@pytest.mark.parametrize("bad", ["lots", "-5", "0", "10x"])
def test_bad_rates(bad):
    with pytest.raises(ConfigError, match="rate"):
        parse_rate_rps(bad)


def test_url_parsing():
    t = parse_url("http://127.0.0.1:8000/v2/models/m/infer?x=1")
    assert (t.host, t.port, t.path, t.host_header) == (
        "127.0.0.1", 8000, "/v2/models/m/infer?x=1", "127.0.0.1:8000")
    tls = parse_url("https://models.example/v1")
    assert (tls.scheme, tls.port, tls.host_header) == ("https", 443, "models.example")
    assert parse_url("https://models.example:8443/").host_header == "models.example:8443"
    v6 = parse_url("http://[::1]:9000")
    assert (v6.host, v6.port, v6.path, v6.host_header) == ("::1", 9000, "/", "[::1]:9000")


@pytest.mark.parametrize("bad,match", [
    ("ftp://127.0.0.1/", "http://"), ("127.0.0.1:80", "http://"),
    ("https://127.0.0.1:0/", "port 0"),
    ("http://127.0.0.1:99999/", "malformed"), ("http:///path", "no host"),
])
def test_bad_urls(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse_url(bad)


def test_request_is_rendered_once_with_body_and_headers():
    spec = RunSpec("http://127.0.0.1:8000/infer", 10, 1, method="post",
                   headers=[("Content-Type", "application/json")], body=b'{"x":1}').validated()
    raw = spec.request_bytes()
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /infer HTTP/1.1"
    assert "Host: 127.0.0.1:8000" in lines
    assert "Content-Type: application/json" in lines
    assert "Content-Length: 7" in lines
    assert body == b'{"x":1}'


def test_body_file_and_headers(tmp_path):
    f = tmp_path / "req.json"
    f.write_bytes(b"\x00\x01payload")
    assert read_body(f"@{f}") == b"\x00\x01payload"
    assert read_body("text") == b"text"
    with pytest.raises(ConfigError, match="not found"):
        read_body(f"@{tmp_path / 'missing.json'}")
    assert parse_header("X-Model:  ranker ") == ("X-Model", "ranker")
    with pytest.raises(ConfigError, match="Name: value"):
        parse_header("novalue")


@pytest.mark.parametrize("field,value,match", [
    ("connections", 0, "connections"), ("workers", 0, "workers"), ("method", "FETCH", "method"),
    ("max_inflight", 5, "max-inflight"), ("arrival", "bursty", "arrival"),
    ("method", "HEAD", "HEAD is not supported"),
])
def test_bad_spec_fields(field, value, match):
    spec = RunSpec("http://127.0.0.1:8000/", 10, 1)
    setattr(spec, field, value)
    with pytest.raises(ConfigError, match=match):
        spec.validated()


def test_worker_shares_add_up():
    spec = RunSpec("http://127.0.0.1:8000/", 10, 1, connections=7, max_inflight=101,
                   workers=3).validated()
    shares = [spec.share(w) for w in range(3)]
    assert sum(c for c, _ in shares) == 7
    assert sum(i for _, i in shares) == 101
