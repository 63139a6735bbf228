"""Secret header values are sent but never written: every output file of real runs, searches
and recordings is searched for them byte by byte (crestline.redact holds the rule)."""

import http.server
import json
import threading

import pytest
from cli_process import crestline
from test_record import raw_exchange, start_record

from crestline.redact import MASK
from crestline.trace.format import read_trace

SECRETS = {"Authorization": "Bearer s3cret-auth-7f3a", "Cookie": "sid=s3cret-cookie-91c2",
           "X-Api-Key": "s3cret-key-55d0", "X-Session-Token": "s3cret-custom-c0de"}
HEADER_ARGS = [a for n, v in SECRETS.items() for a in ("-H", f"{n}: {v}")]


class HeaderServer:
    """A keep-alive HTTP/1.1 server on 127.0.0.1:0 that keeps every header value it got, to
    prove the secrets were sent."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                seen.append(list(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client's reset is no news
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def values(self, name):
        return {v for h in self.seen for n, v in h if n.lower() == name.lower()}


@pytest.fixture
def header_server():
    s = HeaderServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _leaks(texts) -> list[str]:
    """(where, text or bytes) pairs that contain any secret value."""
    found = []
    for where, data in texts:
        raw = data if isinstance(data, bytes) else data.encode()
        found += [f"{where}: {v}" for v in SECRETS.values() if v.encode() in raw]
    return found


def test_run_and_search_outputs_and_reports_hold_no_secret(header_server, tmp_path):
    out, runlog, hlog = tmp_path / "run.json", tmp_path / "run.runlog", tmp_path / "run.hlog"
    p = crestline("run", header_server.url, "--rate", "50", "--duration", "1s", *HEADER_ARGS,
                  "--redact", "token$", "--out", out, "--runlog", runlog, "--hdr-log", hlog)
    assert p.returncode == 0, p.stderr
    for name, value in SECRETS.items():
        assert header_server.values(name) == {value}, name  # sent as given
    s_out, s_log = tmp_path / "search.json", tmp_path / "search.runlog"
    s = crestline("search", header_server.url, "--slo", "p99=500ms", *HEADER_ARGS,
                  "--redact", "TOKEN", "--start-rate", "200", "--max-rate", "400",
                  "--step-duration", "1.5s", "--interval", "0.5s", "--warmup", "none",
                  "--max-steps", "2", "--max-time", "4s", "--out", s_out, "--runlog", s_log)
    assert s.returncode in (0, 1), s.stderr
    reports = [crestline("report", f, "--json") for f in (out, s_out)]
    reports += [crestline("report", f, "--json", "--html", tmp_path / f"{f.stem}.html")
                for f in (runlog, s_log)]
    assert all(r.returncode == 0 for r in reports), [r.stderr for r in reports]
    files = [(f.name, f.read_bytes()) for f in tmp_path.iterdir()]
    assert len(files) == 7
    streams = [("run stderr", p.stderr), ("run stdout", p.stdout), ("search", s.stderr + s.stdout)]
    streams += [(f"report {i}", r.stdout + r.stderr) for i, r in enumerate(reports)]
    assert _leaks(files + streams) == []
    spec = json.loads(out.read_text())["spec"]
    assert dict(map(tuple, spec["headers"])) == dict.fromkeys(SECRETS, MASK)
    assert json.loads(s_out.read_text())["spec"]["headers"][3] == ["X-Session-Token", MASK]


def test_show_secrets_writes_them_and_says_so(header_server, tmp_path):
    out = tmp_path / "run.json"
    p = crestline("run", header_server.url, "--rate", "20", "--duration", "1s", "--quiet",
                  "-H", "Authorization: Bearer s3cret-auth-7f3a", "--show-secrets", "--out", out)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["spec"]["headers"] == [["Authorization", SECRETS["Authorization"]]]
    assert d["spec"]["show_secrets"] is True
    assert any("--show-secrets" in w and "Authorization" in w for w in d["warnings"])


def test_record_masks_secrets_and_a_replay_sends_what_h_gives(target, header_server, tmp_path):
    trace = tmp_path / "rec.cltrace"
    proc, addr = start_record(target().url, trace, "--max-requests", "2", "--redact", "token")
    try:
        head = "".join(f"{n}: {v}\r\n" for n, v in SECRETS.items())
        got = raw_exchange(addr, [f"GET /a/{i} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode()
                                  for i in range(2)])
        assert [s for s, _, _ in got] == [200, 200]
        assert proc.wait(timeout=10) == 0
        record_out = proc.stdout.read() + proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert _leaks([("trace", trace.read_bytes()), ("record", record_out)]) == []
    rec = read_trace(trace).records[0]
    assert {n: v for n, v in rec.headers if n in SECRETS} == dict.fromkeys(SECRETS, MASK)
    info = crestline("trace", "info", trace, "--json")
    assert info.returncode == 0 and _leaks([("info", info.stdout)]) == []

    # The replay leaves the masked headers out, sends -H's, and names the ones still missing.
    out = tmp_path / "replay.json"
    p = crestline("run", header_server.url, "--trace", trace, "--rate", "20", "--duration", "1s",
                  "--quiet", "-H", "Authorization: Bearer fresh-1", "--out", out)
    assert p.returncode == 0, p.stderr
    assert header_server.values("Authorization") == {"Bearer fresh-1"}
    assert header_server.values("Cookie") == set() and header_server.values("X-Api-Key") == set()
    warnings = json.loads(out.read_text())["warnings"]
    assert any("Cookie, X-Api-Key, X-Session-Token" in w and "-H" in w for w in warnings)


def test_refusals_never_echo_a_secret(listener):
    url = f"http://127.0.0.1:{listener.port}/"
    p = crestline("run", url, "--rate", "10", "-H", "Authorization Bearer s3cret-auth-7f3a")
    assert p.returncode == 2 and "bad header 'Authorization ...'" in p.stderr, p.stderr
    p2 = crestline("run", url, "--rate", "10", "-H", ": s3cret-auth-7f3a")
    p3 = crestline("run", url, "--rate", "10", "-H", "Authorization: Bearer \x01s3cret-auth-7f3a")
    p4 = crestline("run", url, "--rate", "10", "--redact", "([")
    for q in (p, p2, p3, p4):
        assert q.returncode == 2 and len(q.stderr.strip().splitlines()) == 1, q.stderr
    assert _leaks([("stderr", p.stderr + p2.stderr + p3.stderr)]) == []
    assert "--redact '(['" in p4.stderr and "not a regular expression" in p4.stderr
    assert listener.accepted() == 0


def test_trace_import_masks_secrets_unless_shown(tmp_path):
    src = tmp_path / "cap.jsonl"
    src.write_text(json.dumps({"t": 0, "path": "/a", "headers": SECRETS}) + "\n"
                   + json.dumps({"t": 1, "path": "/b", "headers": {"Accept": "*/*"}}) + "\n")
    masked, shown = tmp_path / "masked.cltrace", tmp_path / "shown.cltrace"
    p = crestline("trace", "import", src, "-o", masked, "--redact", "token")
    assert p.returncode == 0, p.stderr
    assert _leaks([("trace", masked.read_bytes()), ("out", p.stdout + p.stderr)]) == []
    got = dict(read_trace(masked).records[0].headers)
    assert {n: got[n] for n in SECRETS} == dict.fromkeys(SECRETS, MASK)
    p = crestline("trace", "import", src, "-o", shown, "--show-secrets")
    assert p.returncode == 0, p.stderr
    assert dict(read_trace(shown).records[0].headers)["Authorization"] == SECRETS["Authorization"]
