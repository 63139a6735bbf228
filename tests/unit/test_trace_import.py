"""Importers (JSON Lines, HAR 1.2) and the workload description of a trace."""

import base64
import json

import numpy as np
import pytest

from crestline.errors import ConfigError
from crestline.trace.format import Trace, TraceRecord, read_trace
from crestline.trace.importers import convert, import_har, import_jsonl, parse_iso8601_ns
from crestline.trace.info import describe, format_info, model_of


def jsonl(tmp_path, *lines, name="r.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_jsonl_sorts_stably_and_fills_defaults(tmp_path):
    p = jsonl(tmp_path,
              '{"t": 1700000012.5, "method": "POST", "path": "/v2/models/m/infer", '
              '"headers": {"content-type": "application/json", "Host": "x"}, "body": "{}"}',
              '', '{"t": 1700000010.25, "path": "/a"}',
              '{"t": 1700000012.5, "path": "/b", "body_b64": "AP8A", "model": "m2", "x": 1}',
              '{"t": 1700000010.2500001, "path": "/c", "headers": [["x-a", "1"], ["x-a", "2"]]}')
    recs, base_url, meta = import_jsonl(p)
    assert base_url is None and meta == {"ignored_keys": ["x"]}
    assert [r.path for r in recs] == ["/a", "/c", "/v2/models/m/infer", "/b"]
    assert [r.offset_ns for r in recs] == [0, 100, 2_250_000_000, 2_250_000_000]
    assert recs[0].method == "GET" and recs[0].headers == [] and recs[0].body == b""
    assert recs[1].headers == [("x-a", "1"), ("x-a", "2")]
    assert recs[2].headers == [("content-type", "application/json")]  # Host dropped
    assert recs[2].body == b"{}" and recs[3].body == b"\x00\xff\x00"
    assert recs[3].extras == {"model": "m2"}


def test_jsonl_extras_floats_stay_floats(tmp_path):
    p = jsonl(tmp_path, '{"t": 0.5, "path": "/", "extras": {"w": 0.25, "l": [1.5]}}')
    assert import_jsonl(p).records[0].extras == {"w": 0.25, "l": [1.5]}


@pytest.mark.parametrize("line, what", [
    ("{not json", "not valid JSON"),
    ('[1, 2]', "JSON list where an object"),
    ('{"path": "/"}', 'no "t"'),
    ('{"t": "soon", "path": "/"}', '"t" must be a number'),
    ('{"t": true, "path": "/"}', '"t" must be a number'),
    ('{"t": 1, "path": "/", "body": "a", "body_b64": "YQ=="}', 'both "body" and "body_b64"'),
    ('{"t": 1, "path": "/", "body_b64": "!!"}', "not valid base64"),
    ('{"t": 1, "method": 7, "path": "/"}', '"method" must be'),
    ('{"t": 1, "path": 7}', '"path" must be a string'),
    ('{"t": 1}', '"path" must be a string'),
    ('{"t": 1, "path": "http://h/x"}', 'must start with "/"'),
    ('{"t": 1, "path": "/a b"}', "spaces or control"),
    ('{"t": 1, "path": "/", "headers": {"a": 1}}', "header 'a'"),
    ('{"t": 1, "path": "/", "body": {"a": 1}}', '"body" must be a string'),
])
def test_jsonl_bad_line_names_its_number(tmp_path, line, what):
    p = jsonl(tmp_path, '{"t": 0, "path": "/"}', "", line)
    with pytest.raises(ConfigError) as e:
        import_jsonl(p)
    assert f"{p}, line 3: " in str(e.value) and what in str(e.value)
    assert "\n" not in str(e.value)


def test_jsonl_empty_file_is_an_error(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n  \n")
    with pytest.raises(ConfigError, match="no requests"):
        import_jsonl(p)


def har_entry(when, method, url, headers=(), post=None):
    req = {"method": method, "url": url, "httpVersion": "HTTP/2",
           "headers": [{"name": k, "value": v} for k, v in headers],
           "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0}
    if post is not None:
        req["postData"] = post
    return {"startedDateTime": when, "time": 12.3, "request": req,
            "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/2",
                         "headers": [], "cookies": [],
                         "content": {"size": 2, "mimeType": "application/json"},
                         "redirectURL": "", "headersSize": -1, "bodySize": 2},
            "cache": {}, "timings": {"send": 0.1, "wait": 10, "receive": 0.2}}


def write_har(tmp_path):
    payload = bytes([0, 1, 2, 255])
    entries = [
        har_entry("2024-05-01T12:00:00.250+02:00", "POST",
                  "http://model.local:8000/v2/models/ranker/infer?trace=1",
                  [(":method", "POST"), (":authority", "model.local:8000"),
                   ("content-type", "application/octet-stream"), ("Content-Length", "4"),
                   ("connection", "keep-alive"), ("x-req", "a")],
                  {"mimeType": "application/octet-stream",
                   "text": base64.b64encode(payload).decode(), "encoding": "base64"}),
        har_entry("2024-05-01T10:00:00.000Z", "GET", "http://model.local:8000/v2/health/ready",
                  [("Host", "model.local:8000"), ("accept", "*/*")]),
        har_entry("2024-05-01T10:00:01.5Z", "POST", "https://auth.example.com/login",
                  [], {"mimeType": "application/x-www-form-urlencoded",
                       "params": [{"name": "user", "value": "a b"}, {"name": "x", "value": "&"}]}),
        har_entry("2024-05-01T10:00:01Z", "GET", "data:text/plain,hi"),
    ]
    p = tmp_path / "capture.har"
    p.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "test",
                                                                    "version": "1"},
                                     "entries": entries}}))
    return p, payload


def test_har_import(tmp_path):
    p, payload = write_har(tmp_path)
    recs, base_url, meta = import_har(p)
    assert base_url == "http://model.local:8000"
    # 12:00:00.250+02:00 is 10:00:00.250Z: second in time, though first in the file
    assert [r.offset_ns for r in recs] == [0, 250_000_000, 1_500_000_000]
    ready, infer, login = recs
    assert (ready.method, ready.path, ready.headers) == ("GET", "/v2/health/ready",
                                                        [("accept", "*/*")])
    assert infer.path == "/v2/models/ranker/infer?trace=1" and infer.body == payload
    assert infer.headers == [("content-type", "application/octet-stream"), ("x-req", "a")]
    assert login.body == b"user=a+b&x=%26"
    assert ("content-type", "application/x-www-form-urlencoded") in login.headers
    assert login.extras == {"origin": "https://auth.example.com:443"} and infer.extras is None
    assert meta["other_origins"] == {"https://auth.example.com:443": 1}
    assert meta["skipped_non_http"] == 1


def test_har_errors_name_the_entry(tmp_path):
    p = tmp_path / "x.har"
    p.write_text(json.dumps({"log": {"entries": [
        har_entry("2024-05-01T10:00:00Z", "GET", "http://h/"),
        har_entry("2024-05-01 10:00:00", "GET", "http://h/")]}}))
    with pytest.raises(ConfigError, match=r"entry 1 \(log.entries\[1\]\): startedDateTime"):
        import_har(p)
    p.write_text('{"log": {}}')
    with pytest.raises(ConfigError, match="not a HAR file"):
        import_har(p)


def test_iso8601_is_exact_to_the_ns():
    assert parse_iso8601_ns("1970-01-01T00:00:01.123456789Z") == 1_123_456_789
    assert parse_iso8601_ns("1970-01-01T01:00:00+01:00") == 0
    with pytest.raises(ValueError):
        parse_iso8601_ns("1970-01-01T00:00:00")


def test_convert_picks_the_format_and_writes_a_trace(tmp_path):
    p, _ = write_har(tmp_path)
    out = tmp_path / "o.cltrace"
    assert convert(p, out) == 3
    t = read_trace(out)
    assert t.header["source"] == "har:capture.har" and t.base_url == "http://model.local:8000"
    assert t.header["meta"]["other_origins"] == {"https://auth.example.com:443": 1}
    with pytest.raises(ConfigError, match="--format har\\|jsonl"):
        convert(tmp_path / "x.txt", out)


def trace_of(offsets_ns, paths=None, bodies=None, extras=None):
    n = len(offsets_ns)
    recs = [TraceRecord(int(o), "POST", paths[i] if paths else "/",
                        [], bodies[i] if bodies else b"", extras[i] if extras else None)
            for i, o in enumerate(offsets_ns)]
    return Trace({"source": "test", "base_url": None}, recs,
                 {"end": True, "count": n, "duration_ns": int(offsets_ns[-1]) if n else 0})


def test_describe_poisson_vs_bursty():
    rng = np.random.default_rng(1)
    poisson = np.cumsum(rng.exponential(1e9 / 200, 12_000)).astype(np.int64)  # ~60 s at 200/s
    d = describe(trace_of(poisson - poisson[0]))
    assert d["count"] == 12_000
    assert d["mean_rate_rps"] == pytest.approx(200, rel=0.05)
    assert d["interarrival"]["cv"] == pytest.approx(1.0, abs=0.05)
    disp = d["index_of_dispersion"]
    assert disp["window_s"] == 1.0 and disp["windows"] >= 55
    assert disp["value"] == pytest.approx(1.0, abs=0.4)

    # the same mean rate in bursts: 2 000 requests packed into 100 ms every 10 s
    bursts = np.sort(np.concatenate([k * 10e9 + rng.uniform(0, 1e8, 2000) for k in range(6)]))
    b = describe(trace_of(bursts.astype(np.int64)))
    assert b["index_of_dispersion"]["value"] > 100
    assert b["interarrival"]["cv"] > 5

    constant = describe(trace_of(np.arange(5000) * 1_000_000))  # 5 s: ~10-arrival windows
    assert constant["index_of_dispersion"]["window_s"] == pytest.approx(0.01)
    assert constant["index_of_dispersion"]["value"] < 0.1
    assert constant["interarrival"]["cv"] == pytest.approx(0.0, abs=1e-9)


def test_describe_mix_by_path_model_and_payload():
    paths = (["/v2/models/ranker/infer"] * 6 + ["/v2/models/ranker/versions/3/infer"] * 2
             + ["/v1/models/tf_m:predict", "/health?x=1", "/health?x=2", "/v2/models/x/infer"])
    extras = [None] * 11 + [{"model": "override"}]
    bodies = [b"x" * i for i in range(12)]
    d = describe(trace_of(np.arange(12) * 1000, paths, bodies, extras))
    assert d["by_model"]["top"][0] == {"model": "ranker", "count": 8, "share": 8 / 12}
    assert {r["model"] for r in d["by_model"]["top"]} == {"ranker", "tf_m", "override"}
    assert d["by_model"]["unnamed"] == {"count": 2, "share": 2 / 12}
    assert {"path": "/health", "count": 2, "share": 2 / 12} in d["by_path"]["top"]
    assert d["payload_bytes"] == {"min": 0, "p50": 5, "p90": 10, "p99": 11, "max": 11,
                                  "mean": 5.5}
    assert d["methods"] == {"POST": 12}
    text = format_info(d, "t.cltrace")
    assert "ranker" in text and "/health" in text and "dispersion" in text
    json.dumps(d)  # JSON-ready

    none = describe(trace_of(np.arange(3), ["/a", "/b", "/c"]))
    assert "by_model" not in none and none["index_of_dispersion"] is None


def test_model_of_paths():
    def m(path, extras=None):
        return model_of(TraceRecord(0, "POST", path, [], b"", extras))

    assert m("/v2/models/bert%2Dbase/versions/2/infer") == "bert-base"
    assert m("/v1/models/half_plus_two:predict") == "half_plus_two"
    assert m("/v1/models/x/versions/1:classify") == "x"
    assert m("/v1/models/x") is None and m("/v2/health/ready") is None
    assert m("/anything", {"model": "llm"}) == "llm"


def test_describe_top_20_and_other():
    paths = [f"/p{i:02d}" for i in range(25)] * 2
    d = describe(trace_of(np.arange(50) * 1000, sorted(paths)))
    assert len(d["by_path"]["top"]) == 20 and d["by_path"]["distinct"] == 25
    assert d["by_path"]["other"] == {"distinct": 5, "count": 10, "share": 0.2}
