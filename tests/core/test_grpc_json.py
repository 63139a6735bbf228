"""gRPC calls whose message is a JSON --body encoded through the method's schema: --proto
FILE.proto (compiled by crestline with grpcio-tools) or --descriptor-set FILE, against a real
grpcio server on loopback (tests/grpc_server.py --schema) that decodes each call with classes
built from its own copy of the schema and checks it equals what the JSON said. Bad input is
refused with one line and exit 2 before any connection."""

from __future__ import annotations

import json

import pytest

import crestline
from crestline.engine.spec import RunSpec
from crestline.errors import ConfigError

pytest.importorskip("grpc")
pytest.importorskip("hpack")
pytest.importorskip("grpc_tools")
from cli_process import crestline as cli  # noqa: E402  (tests/ is on sys.path)
from servers import stopped_at_teardown  # noqa: E402
from test_grpc import GrpcServer, _log  # noqa: E402  (the same server script)

ITEM_PROTO = """syntax = "proto3";
package common;
message Item { string id = 1; repeated float features = 2; map<string, string> tags = 3; }
"""
ECHO_PROTO = """syntax = "proto3";
package demo;
import "common/item.proto";
import "google/protobuf/timestamp.proto";
message Query { string text = 1; int32 top_k = 2; }
message ScoreRequest {
  Query query = 1;
  repeated common.Item items = 2;
  google.protobuf.Timestamp at = 3;
  repeated int64 ids = 4;
  bool explain = 5;
}
message ScoreReply { repeated float scores = 1; }
service Echo {
  rpc Score(ScoreRequest) returns (ScoreReply);
  rpc Ping(Query) returns (Query);
}
"""
# nested, repeated, a map, a well-known type, both field-name spellings
REQUEST = {"query": {"text": "shoes", "topK": 5},
           "items": [{"id": "a", "features": [0.5, 1.5], "tags": {"color": "red"}},
                     {"id": "b", "features": [2.5]}],
           "at": "2024-05-01T12:00:00Z", "ids": [7, 9], "explain": True}
SCORE = "/demo.Echo/Score"


@pytest.fixture
def grpc_server():
    yield from stopped_at_teardown(GrpcServer)


@pytest.fixture
def schema(tmp_path):
    """The .proto files under protos/ (one importing the other), the request JSON, and a
    FileDescriptorSet compiled here with grpcio-tools, apart from crestline's own compile."""
    from importlib import resources

    from grpc_tools import protoc

    root = tmp_path / "protos"
    (root / "common").mkdir(parents=True)
    (root / "demo").mkdir()
    (root / "common" / "item.proto").write_text(ITEM_PROTO)
    (root / "demo" / "echo.proto").write_text(ECHO_PROTO)
    fds = tmp_path / "echo.fds"
    wkt = resources.files("grpc_tools") / "_proto"
    assert protoc.main(["protoc", f"-I{root}", f"-I{wkt}", "--include_imports",
                        f"--descriptor_set_out={fds}", str(root / "demo" / "echo.proto")]) == 0
    request = tmp_path / "req.json"
    request.write_text(json.dumps(REQUEST))
    return {"root": root, "proto": root / "demo" / "echo.proto", "fds": fds,
            "json": request, "tmp": tmp_path}


def _expect_all_matched(log, n):
    rows = _log(log)
    assert len(rows) == n, rows[:3]
    assert {(r["method"], r["match"]) for r in rows} == {("Score", "1")}, rows[0]
    got = json.loads(rows[0]["json"])
    assert got["query"] == {"text": "shoes", "topK": 5} and got["ids"] == ["7", "9"]
    assert got["items"][0]["tags"] == {"color": "red"}


def test_json_from_a_proto_is_the_message_the_server_decodes(grpc_server, schema):
    log = schema["tmp"] / "calls.log"
    s = grpc_server("--schema", str(schema["fds"]), "--expect", str(schema["json"]),
                    "--log", str(log))
    d = crestline.run(s.base + SCORE, rate_rps=100, duration_s=1, connections=1, streams=8,
                      timeout_s=2, body=schema["json"].read_bytes(),
                      proto=[str(schema["proto"])], proto_path=[str(schema["root"])]).to_dict()
    r = d["requests"]
    assert r["ok"] == r["scheduled"] == 100 and not any(r["by_error"].values()), r
    _expect_all_matched(log, 100)
    assert d["spec"]["proto"] == [str(schema["proto"])] and "proto_schema" not in d["spec"]


def test_cli_run_with_a_descriptor_set_and_two_workers(grpc_server, schema):
    log = schema["tmp"] / "calls.log"
    s = grpc_server("--schema", str(schema["fds"]), "--expect", str(schema["json"]),
                    "--log", str(log))
    p = cli("run", s.base + SCORE, "--descriptor-set", schema["fds"], "--body",
            f"@{schema['json']}", "--rate", "50", "--duration", "1s", "--connections", "2",
            "--streams", "4", "--workers", "2")
    assert p.returncode == 0, p.stderr
    assert "50 ok, 0 errors" in p.stdout, p.stdout
    _expect_all_matched(log, 50)


def test_cli_sweep_with_a_proto(grpc_server, schema):
    log = schema["tmp"] / "calls.log"
    s = grpc_server("--schema", str(schema["fds"]), "--expect", str(schema["json"]),
                    "--log", str(log))
    p = cli("sweep", s.base + SCORE, "--proto", schema["proto"], "--proto-path", schema["root"],
            "--body", f"@{schema['json']}", "--rates", "40,80", "--step-duration", "1.5s",
            "--interval", "0.5s", "--warmup", "none", "--settle", "0", "--connections", "1",
            "--streams", "4", "--slo", "p99=500ms")
    assert p.returncode == 0, p.stderr
    rows = _log(log)
    assert len(rows) > 100 and {r["match"] for r in rows} == {"1"}  # Poisson: about 180


def test_trace_replay_encodes_the_records_the_schema_defines(grpc_server, schema):
    from crestline.trace.format import TraceRecord, write_trace

    log = schema["tmp"] / "calls.log"
    s = grpc_server("--schema", str(schema["fds"]), "--expect", str(schema["json"]),
                    "--log", str(log))
    body = schema["json"].read_bytes()
    records = [TraceRecord(i * 20_000_000, "POST", SCORE if i % 2 else "/test.Echo/Call", [],
                           body if i % 2 else b"\x0a\x01x") for i in range(20)]
    trace = schema["tmp"] / "calls.cltrace"
    write_trace(trace, records, source="test")
    d = crestline.run(s.base + "/", trace=str(trace), arrival="trace", rate_rps=50,
                      duration_s=0.4, connections=1, streams=4,
                      descriptor_set=str(schema["fds"])).to_dict()
    assert d["requests"]["ok"] == 20, d["requests"]
    rows = _log(log)
    assert [r["method"] for r in rows].count("Call") == 10
    assert {r["match"] for r in rows if r["method"] == "Score"} == {"1"}


def test_the_message_is_encoded_once_not_per_call(grpc_server, schema, monkeypatch):
    from google.protobuf import json_format

    calls = []
    parse = json_format.ParseDict
    monkeypatch.setattr(json_format, "ParseDict", lambda *a, **k: calls.append(1) or parse(*a,
                                                                                          **k))
    s = grpc_server("--schema", str(schema["fds"]), "--expect", str(schema["json"]))
    d = crestline.run(s.base + SCORE, rate_rps=100, duration_s=0.5, connections=1, streams=4,
                      body=schema["json"].read_bytes(), descriptor_set=str(schema["fds"]))
    assert d.to_dict()["requests"]["ok"] == 50
    assert len(calls) == 1  # validated twice (the API, the session), rendered once more: cached


def _spec(url, **kw):
    return RunSpec(url=url, rate_rps=1, duration_s=1, **kw).validated()


def test_protobuf_bytes_with_a_schema_are_sent_as_given(schema):
    from crestline.transport.proto_json import _message_class

    spec = _spec("grpc://127.0.0.1:1/demo.Echo/Ping", body=b"{}",
                 descriptor_set=str(schema["fds"]))
    cls = _message_class(spec.proto_schema.fds, "demo.Query")
    # a 123-byte text: the message starts "\n{", which looks like JSON and is not
    raw = cls(text="x" * 123, top_k=3).SerializeToString()
    assert raw[:2] == b"\n{"
    for body in (raw, b""):
        spec = _spec("grpc://127.0.0.1:1/demo.Echo/Ping", body=body,
                     descriptor_set=str(schema["fds"]))
        assert spec.grpc_target().call_for(spec.request_bytes()).message == body
    spec = _spec("grpc://127.0.0.1:1/demo.Echo/Ping", body=b'{"text": "hi", "top_k": 2}',
                 proto=str(schema["proto"]), proto_path=str(schema["root"]))
    assert spec.grpc_target().call_for(spec.request_bytes()).message == \
        cls(text="hi", top_k=2).SerializeToString()


def test_api_refusals_name_the_option(schema):
    with pytest.raises(ConfigError, match="has no method 'Pong'"):
        _spec("grpc://127.0.0.1:1/demo.Echo/Pong", body=b"{}", descriptor_set=str(schema["fds"]))
    with pytest.raises(ConfigError, match="--model 'm' does not apply"):
        _spec("grpc://127.0.0.1:1/demo.Echo/Ping", body=b"{}", model="m",
              descriptor_set=str(schema["fds"]))
    with pytest.raises(ConfigError, match="has no method 'Pong'"):  # the method first
        _spec("grpc://127.0.0.1:1/demo.Echo/Pong", body=b"{}", model="m",
              descriptor_set=str(schema["fds"]))
    with pytest.raises(ConfigError, match="neither a JSON object nor a serialized demo.Query"):
        _spec("grpc://127.0.0.1:1/demo.Echo/Ping", body=b"\xff\xff\xff",
              descriptor_set=str(schema["fds"]))


@pytest.fixture
def bad_files(schema):
    tmp = schema["tmp"]
    (tmp / "bad.proto").write_text('syntax = "proto3";\npackage demo;\nmessage A { int32 x = 1 }\n')
    (tmp / "nosyntax.proto").write_text("package demo;\nmessage A { int32 x = 1 }\n")
    from importlib import resources

    from grpc_tools import protoc

    wkt = resources.files("grpc_tools") / "_proto"
    assert protoc.main(["protoc", f"-I{schema['root']}", f"-I{wkt}",
                        f"--descriptor_set_out={tmp / 'no-imports.fds'}",
                        str(schema["proto"])]) == 0
    fake = tmp / "no_grpc_tools" / "grpc_tools"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no grpcio-tools here')\n")
    return tmp


CASES = [
    (["{grpc}/demo.Nope/Score", "--descriptor-set", "{fds}", "--body", "{}"],
     "has no service 'demo.Nope'"),
    (["{grpc}/demo.Echo/Scor", "--proto", "{proto}", "--proto-path", "{root}", "--body",
      '{"query": {}}'], "has no method 'Scor'"),
    # --model for a method the schema lacks: the method is what is wrong, not --model
    (["{grpc}/demo.Echo/Scor", "--descriptor-set", "{fds}", "--body", "{}", "--model", "m"],
     "has no method 'Scor'"),
    (["{grpc}/demo.Echo/Score", "--descriptor-set", "{fds}", "--body", '{"query": {"txt": 1}}'],
     'no field named "txt"'),
    (["{grpc}/demo.Echo/Score", "--descriptor-set", "{fds}", "--body",
      '{"query": {"topK": "many"}}'], "topK"),
    (["{grpc}/demo.Echo/Score", "--descriptor-set", "{fds}", "--body", '{"query": '],
     "--body is not JSON"),
    (["{grpc}/demo.Echo/Score", "--descriptor-set", "{fds}", "--model", "m"],
     "--model 'm' does not apply"),
    (["{http}/", "--proto", "{proto}"], "applies to grpc:// and grpcs:// URLs"),
    (["{http}/", "--descriptor-set", "{fds}"], "--descriptor-set"),
    (["{grpc}/demo.Echo/Score", "--proto", "{tmp}/nope.proto"],
     "--proto file '{tmp}/nope.proto' not found"),
    (["{grpc}/demo.Echo/Score", "--descriptor-set", "{tmp}/nope.fds"],
     "--descriptor-set file '{tmp}/nope.fds' not found"),
    (["{grpc}/demo.Echo/Score", "--descriptor-set", "{proto}"], "not a FileDescriptorSet"),
    (["{grpc}/demo.Echo/Score", "--descriptor-set", "{tmp}/no-imports.fds"],
     "imports 'common/item.proto', which the set does not hold: write it with "
     "--include_imports"),
    (["{grpc}/demo.A/Score", "--proto", "{tmp}/bad.proto"],
     "does not compile: {tmp}/bad.proto:3:25: Expected \";\"."),
    # no syntax line: protoc's abseil banner and warning come before the error
    (["{grpc}/demo.A/Score", "--proto", "{tmp}/nosyntax.proto"],
     "does not compile: {tmp}/nosyntax.proto:2:13: Expected \"required\""),
    (["{grpc}/demo.Echo/Score", "--proto", "{proto}", "--descriptor-set", "{fds}"],
     "give one"),
    (["{grpc}/demo.Echo/Score", "--proto-path", "{root}"], "applies with --proto"),
    (["{grpc}/demo.Echo/Score", "--proto", "{proto}", "--proto-path", "{root}", "--nogrpctools"],
     "pip install grpcio-tools"),
]


def _refused(listener, schema, bad_files, command, args, expect):
    subs = {"{grpc}": f"grpc://127.0.0.1:{listener.port}", "{http}":
            f"http://127.0.0.1:{listener.port}", "{fds}": str(schema["fds"]),
            "{proto}": str(schema["proto"]), "{root}": str(schema["root"]),
            "{tmp}": str(schema["tmp"])}

    def sub(text):
        for k, v in subs.items():
            text = text.replace(k, v)
        return text

    env = {}
    if "--nogrpctools" in args:  # grpc_tools present but not importable
        args = [a for a in args if a != "--nogrpctools"]
        env["PYTHONPATH"] = str(bad_files / "no_grpc_tools")
    load = {"run": ["--rate", "10", "--duration", "1s"], "search": ["--slo", "p99=10ms"],
            "sweep": ["--rates", "10,20"]}[command]
    p = cli(command, *[sub(a) for a in args], *load, env=env)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    # (a search names what it will search for before it checks the workload: that line aside)
    lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("searching ")]
    assert len(lines) == 1 and lines[0].startswith("crestline: error:"), p.stderr
    assert sub(expect) in lines[0], lines[0]
    assert listener.accepted() == 0


@pytest.mark.parametrize("args,expect", CASES, ids=[f"{i}-{c[1][:24]}" for i, c in
                                                     enumerate(CASES)])
def test_refused_with_one_line_before_any_connection(listener, schema, bad_files, args, expect):
    _refused(listener, schema, bad_files, "run", args, expect)


@pytest.mark.parametrize("command", ["search", "sweep"])
def test_search_and_sweep_refuse_the_same(listener, schema, bad_files, command):
    _refused(listener, schema, bad_files, command, *CASES[2])


def test_a_method_the_schema_lacks_is_sent_as_without_a_schema(schema):
    # as a trace's records of other methods are: the built-in ModelInfer JSON, bytes as given
    from crestline.transport.grpc_body import MODEL_INFER, kserve_request

    kserve = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
                                     "data": [1.0, 2.0]}]}).encode()
    spec = _spec("grpc://127.0.0.1:1" + MODEL_INFER, body=kserve, model="m",
                 descriptor_set=str(schema["fds"]))
    assert spec.grpc_target().call_for(spec.request_bytes()).message == \
        kserve_request(kserve, "m")
    spec = _spec("grpc://127.0.0.1:1/other.Svc/Call", body=b"\x0a\x01x",
                 descriptor_set=str(schema["fds"]))
    assert spec.grpc_target().call_for(spec.request_bytes()).message == b"\x0a\x01x"
    with pytest.raises(ConfigError, match="has no service 'other.Svc'"):  # JSON it cannot encode
        _spec("grpc://127.0.0.1:1/other.Svc/Call", body=b'{"a": 1}',
              descriptor_set=str(schema["fds"]))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_trace_record_is_refused_before_any_connection(listener, schema, workers):
    from crestline.trace.format import TraceRecord, write_trace

    body = schema["json"].read_bytes()
    records = [TraceRecord(i * 10_000_000, "POST", SCORE, [],
                           b'{"query": {"txt": 1}}' if i == 2 else body) for i in range(5)]
    trace = schema["tmp"] / "bad.cltrace"
    write_trace(trace, records, source="test")
    p = cli("run", f"grpc://127.0.0.1:{listener.port}/", "--trace", trace, "--arrival",
            "trace", "--rate", "10", "--duration", "1s", "--descriptor-set", schema["fds"],
            "--workers", workers)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crestline: error:"), p.stderr
    assert f"--trace {trace} record 2 JSON does not match demo.ScoreRequest" in lines[0], lines
    assert 'no field named "txt"' in lines[0] and "--body" not in lines[0], lines[0]
    assert listener.accepted() == 0


def test_trace_messages_are_encoded_before_the_spec_goes_to_workers(schema, monkeypatch):
    # encoded once in the session; the workers' renders find every message in the cache
    import asyncio

    from crestline.session import LoadSession
    from crestline.trace.format import TraceRecord, write_trace

    body = schema["json"].read_bytes()
    trace = schema["tmp"] / "ok.cltrace"
    write_trace(trace, [TraceRecord(i * 10_000_000, "POST", SCORE, [], body) for i in range(3)],
                source="test")
    spec = RunSpec(url="grpc://127.0.0.1:1/", trace=str(trace), arrival="trace", rate_rps=10,
                   duration_s=1, descriptor_set=str(schema["fds"])).validated()
    assert not spec.proto_schema.encoded

    async def stop(target):
        raise ConnectionRefusedError("preflight reached")

    monkeypatch.setattr("crestline.session.preflight", stop)
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(LoadSession.open(spec))
    assert list(spec.proto_schema.encoded) == [(SCORE, body)]


def test_protocs_error_line_is_not_abseils_logging():
    from crestline.transport.proto_json import _first_error

    banner = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
              "STDERR\nW0000 00:00:1796148924.123227    1066 parser.cc:614] No edition or "
              "syntax specified for the proto file: a.proto.\n")
    located = 'a.proto:2:13: Expected ";".'
    assert _first_error(f"{banner}{located}\nb\n") == located
    assert _first_error(banner + "\nimport cycle in a.proto\n") == "import cycle in a.proto"
    assert _first_error(banner) is None
