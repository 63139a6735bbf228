"""gRPC unary calls (grpc:// and grpcs://) against a real grpcio server on loopback
(tests/grpc_server.py): protobuf bytes as given, KServe v2 ModelInfer built from the JSON
request the HTTP path takes, many calls per connection, messages past 64 KiB both ways,
errors by grpc-status (trailers-only responses), TLS, and bad input refused before load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import crestline
from crestline.errors import ConfigError

pytest.importorskip("grpc")
pytest.importorskip("hpack")
from cli_process import crestline as cli  # noqa: E402  (tests/ is on sys.path)
from script_server import ScriptServer  # noqa: E402
from servers import stopped_at_teardown  # noqa: E402

INFER = "/inference.GRPCInferenceService/ModelInfer"
KSERVE = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 3],
                      "data": [[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]]},
                     {"name": "ids", "datatype": "INT64", "shape": [2], "data": [7, 9]}]}


class GrpcServer(ScriptServer):
    """tests/grpc_server.py in its own process."""

    def __init__(self, *flags: str):
        super().__init__("grpc_server.py", *flags)
        self.base = f"grpc://127.0.0.1:{self.port}"


@pytest.fixture
def grpc_server():
    yield from stopped_at_teardown(GrpcServer)


def _run(url, **kw):
    kw.setdefault("rate_rps", 200)
    kw.setdefault("duration_s", 1)
    kw.setdefault("connections", 1)
    kw.setdefault("streams", 8)
    kw.setdefault("timeout_s", 2)
    return crestline.run(url, **kw).to_dict()


def _log(path):
    return [dict(f.split("=", 1) for f in line.split()) for line in path.read_text().splitlines()]


def _errors(d):
    return {k: v for k, v in d["requests"]["by_error"].items() if v}


def test_message_bytes_on_many_streams_of_one_connection(grpc_server, tmp_path):
    log = tmp_path / "calls.log"
    s = grpc_server("--log", str(log), "--delay-ms", "10")
    d = _run(f"{s.base}/test.Echo/Call", body=b"\x0a\x03abc")
    r = d["requests"]
    assert r["ok"] == r["scheduled"] == 200 and not _errors(d), r
    assert [row["size"] for row in _log(log)] == ["5"] * 200
    assert d["connection_setup_ms"]["connections"] == 1  # 200 calls x 10 ms on 8 streams


def test_model_infer_from_the_kserve_json_request(grpc_server, tmp_path):
    log = tmp_path / "calls.log"
    s = grpc_server("--log", str(log), "--model", "ranker")
    d = _run(s.base + INFER, body=json.dumps(KSERVE).encode(), model="ranker", rate_rps=100)
    assert d["requests"]["ok"] == 100 and not _errors(d)
    rows = _log(log)
    assert len(rows) == 100 and {row["model"] for row in rows} == {"ranker"}
    # 6 float32 values and 2 int64 ones, packed into raw_input_contents
    assert rows[0]["inputs"] == "features/FP32/2x3/24,ids/INT64/2/16"


def test_kserve_raw_contents_are_the_values_little_endian():
    from crestline.transport.grpc_body import kserve_request
    from crestline.transport.kserve_pb import ModelInferRequest

    req = ModelInferRequest.FromString(kserve_request(json.dumps(KSERVE).encode(), "m"))
    assert req.model_name == "m" and [t.name for t in req.inputs] == ["features", "ids"]
    np.testing.assert_array_equal(np.frombuffer(req.raw_input_contents[0], "<f4"),
                                  [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    np.testing.assert_array_equal(np.frombuffer(req.raw_input_contents[1], "<i8"), [7, 9])


def test_tf_serving_predict_from_its_rest_json(grpc_server, tmp_path):
    log = tmp_path / "calls.log"
    s = grpc_server("--log", str(log), "--model", "wide_deep")
    body = {"signature_name": "serving_default",
            "instances": [{"age": 31.5, "ids": [3, 4], "city": "lisbon"},
                          {"age": 40.0, "ids": [5, 6], "city": "porto"}]}
    d = _run(f"{s.base}/tensorflow.serving.PredictionService/Predict",
             body=json.dumps(body).encode(), model="wide_deep", rate_rps=50)
    assert d["requests"]["ok"] == 50 and not _errors(d)
    row = _log(log)[0]
    assert row["model"] == "wide_deep" and row["signature"] == "serving_default"
    # DT_FLOAT 1 [2] 8 bytes; DT_STRING 7 [2] two strings; DT_INT64 9 [2, 2] 32 bytes
    assert row["inputs"] == "age/1/2/8,city/7/2/2,ids/9/2x2/32"


def test_tf_serving_request_field_numbers_on_the_wire():
    from crestline.transport.grpc_body import tfserving_request

    wire = tfserving_request(b'{"inputs": {"x": [1.5]}}', "m")
    # predict.proto: model_spec = 1 (tag 0x0a), inputs = 2 (tag 0x12); model.proto: name = 1
    assert wire[:5] == b"\x0a\x03\x0a\x01m" and wire[5] == 0x12


def test_errors_by_grpc_status_from_trailers_only_responses(grpc_server):
    s = grpc_server("--fail-every", "5", "--fail-code", "14")
    d = _run(f"{s.base}/test.Echo/Call", body=b"x")
    r = d["requests"]
    assert _errors(d) == {"grpc_unavailable": 40} and r["ok"] == 160, r
    assert r["error_messages"]["grpc_unavailable"] == ["grpc-status 14 UNAVAILABLE: injected "
                                                       "failure"]
    s = grpc_server("--fail-every", "4", "--fail-code", "8")
    assert _errors(_run(f"{s.base}/test.Echo/Call", body=b"x")) == {
        "grpc_resource_exhausted": 50}


def test_unknown_method_and_model(grpc_server):
    s = grpc_server("--model", "ranker")
    assert _errors(_run(f"{s.base}/test.Echo/Nope", rate_rps=20)) == {"grpc_unimplemented": 20}
    d = _run(s.base + INFER, body=json.dumps(KSERVE).encode(), model="other", rate_rps=20)
    assert _errors(d) == {"grpc_not_found": 20}
    assert "model 'other' not found" in d["requests"]["error_messages"]["grpc_not_found"][0]


def test_messages_past_64k_both_ways(grpc_server, tmp_path):
    log = tmp_path / "calls.log"
    s = grpc_server("--reply-bytes", "300000", "--log", str(log))
    d = _run(f"{s.base}/test.Echo/Call", body=b"m" * 200_000, rate_rps=40, streams=4)
    assert d["requests"]["ok"] == 40 and not _errors(d), d["requests"]
    assert {row["size"] for row in _log(log)} == {"200000"}


def test_grpcs_with_verification(grpc_server, tmp_path):
    pytest.importorskip("cryptography")
    from tls_certs import make_certs

    certs = make_certs(tmp_path)
    s = grpc_server("--tls", certs.good.cert, certs.good.key)
    url = f"grpcs://127.0.0.1:{s.port}/test.Echo/Call"
    d = _run(url, body=b"x", cacert=certs.ca, rate_rps=50)
    assert d["requests"]["ok"] == 50 and d["tls"]["verify"] is True
    assert d["connection_setup_ms"]["tls_handshake"]["p50"] > 0
    d = _run(url, body=b"x", rate_rps=20)  # the test CA is in no system store
    assert _errors(d) == {"tls": 20}


@pytest.mark.parametrize("url, kw, says", [
    ("grpc://127.0.0.1/test.Echo/Call", {}, "needs its port"),
    ("grpc://127.0.0.1:1/Call", {}, "names the method"),
    ("grpc://127.0.0.1:1" + INFER, {"body": b"{}"}, "add --model NAME"),
    ("grpc://127.0.0.1:1" + INFER, {"body": b"{nope", "model": "m"}, "--body is not JSON"),
    ("http://127.0.0.1:1/", {"model": "m"}, "--model 'm' applies to grpc://"),
])
def test_bad_grpc_input_refused(url, kw, says):
    with pytest.raises(ConfigError) as e:
        crestline.run(url, rate_rps=1, duration_s=1, **kw)
    assert says in str(e.value)


def test_cli_grpc_run_and_exit_2(grpc_server, tmp_path):
    s = grpc_server()
    body = tmp_path / "req.json"
    body.write_text(json.dumps(KSERVE))
    p = cli("run", s.base + INFER, "--body", f"@{body}", "--model", "ranker", "--rate", "50",
            "--duration", "1s", "--connections", "2", "--streams", "4", "--workers", "2")
    assert p.returncode == 0, p.stderr
    assert "50 ok, 0 errors" in p.stdout
    p = cli("run", s.base + INFER, "--body", f"@{body}", "--rate", "50")
    assert p.returncode == 2 and "add --model NAME" in p.stderr


def test_sweep_over_grpc(grpc_server):
    s = grpc_server()
    p = cli("sweep", f"{s.base}/test.Echo/Call", "--body", "x", "--rates", "50,100",
            "--step-duration", "1.5s", "--interval", "0.5s", "--warmup", "none",
            "--settle", "0", "--connections", "1", "--streams", "4", "--slo", "p99=500ms")
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.splitlines() if line.strip()[:3] in ("50 ", "100")]
    assert [r[0] for r in rows] == ["50", "100"] and all(r[-1] == "yes" for r in rows), p.stdout


def test_trace_replay_of_recorded_messages_with_latency_by_method(grpc_server, tmp_path):
    from crestline.trace.format import TraceRecord, write_trace

    log = tmp_path / "calls.log"
    s = grpc_server("--log", str(log), "--model", "ranker")
    infer = json.dumps(KSERVE).encode()
    records = [TraceRecord(i * 10_000_000, "POST", INFER if i % 3 == 0 else "/test.Echo/Call",
                           [("x-tenant", "a")], infer if i % 3 == 0 else b"\x0a\x01" + bytes([i]))
               for i in range(60)]  # 20 ModelInfer and 40 Echo calls over 0.6 s
    trace = tmp_path / "calls.cltrace"
    write_trace(trace, records, source="test")
    d = _run(s.base + "/", trace=str(trace), arrival="trace", model="ranker", rate_rps=100,
             duration_s=0.6)
    assert d["requests"]["ok"] == 60 and not _errors(d), d["requests"]
    methods = [row["method"] for row in _log(log)]
    assert methods.count("ModelInfer") == 20 and methods.count("Call") == 40
    assert {name: c["completed"] for name, c in d["by_class"].items()} == {
        "/test.Echo/Call": 40, INFER: 20}


def test_goaway_from_grpcio_during_a_run(grpc_server):
    # grpcio sends GOAWAY on each connection 300 ms old (max_connection_age): the run moves to
    # new connections; calls the server took finish within its grace.
    s = grpc_server("--max-age-ms", "300")
    d = _run(f"{s.base}/test.Echo/Call", body=b"x", rate_rps=200, duration_s=1.5)
    r = d["requests"]
    assert r["ok"] + r["by_error"]["read"] == r["scheduled"] == 300, r
    assert r["ok"] >= 290
    assert d["connection_setup_ms"]["connections"] >= 3
