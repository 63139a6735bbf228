"""`crestline record`: a recording reverse proxy in front of crestline's own target."""

import signal
import socket
import subprocess
import time
import urllib.request

from cli_process import CLI

from crestline.servers.target import BODY
from crestline.trace.format import read_trace


def start_record(upstream: str, out, *flags: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(CLI + ["record", "--listen", "127.0.0.1:0", "--upstream", upstream,
                                   "-o", str(out), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise AssertionError(f"record did not start: {line!r} {proc.stderr.read()}")
    return proc, line.removeprefix("listening on ")


def read_response(f) -> tuple[int, dict, bytes]:
    status_line = f.readline()
    status = int(status_line.split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers["content-length"]))
    return status, headers, body


def raw_exchange(addr: str, requests: list[bytes]) -> list[tuple[int, dict, bytes]]:
    """One keep-alive connection: send each request, read its response before the next."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        f = s.makefile("rb")
        out = []
        for req in requests:
            s.sendall(req)
            out.append(read_response(f))
        return out


def test_record_forwards_and_records_then_stops_at_max_requests(target, tmp_path):
    t = target()
    out = tmp_path / "rec.cltrace"
    proc, addr = start_record(t.url, out, "--max-requests", "6")
    try:
        # 1: urllib GET with a query (its own connection, Connection: close)
        with urllib.request.urlopen(f"http://{addr}/v1/ping?x=1&y=two", timeout=10) as r:
            assert r.status == 200 and r.read() == BODY
        # 2-5: one keep-alive connection: GET, POST (Content-Length), chunked POST, GET
        body = b'{"inputs":[1,2,3]}'
        chunked = b"7\r\n{\"a\":1,\r\n6\r\n\"b\":2}\r\n0\r\n\r\n"
        got = raw_exchange(addr, [
            f"GET /v2/models/m/ready HTTP/1.1\r\nHost: {addr}\r\nX-Tag: a\r\n\r\n".encode(),
            (f"POST /v2/models/m/infer?v=2 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: "
             f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body,
            (f"POST /v2/models/m/infer HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked"
             f"\r\nX-Tag: chunked\r\n\r\n").encode() + chunked,
            f"GET /last HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode(),
        ])
        assert [(s, b) for s, _, b in got] == [(200, BODY)] * 4
        # 6: urllib POST
        req = urllib.request.Request(f"http://{addr}/post", data=b"x" * 5000, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and r.read() == BODY
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
        assert proc.stdout.read().startswith("recorded 6 requests over ")
    finally:
        proc.kill()
        proc.wait()
    tr = read_trace(out)
    assert tr.header["source"] == "crestline record"
    assert tr.header["meta"]["max_body_bytes"] == 16 << 20
    assert [(r.method, r.path) for r in tr.records] == [
        ("GET", "/v1/ping?x=1&y=two"), ("GET", "/v2/models/m/ready"),
        ("POST", "/v2/models/m/infer?v=2"), ("POST", "/v2/models/m/infer"),
        ("GET", "/last"), ("POST", "/post")]
    assert [r.body for r in tr.records] == [b"", b"", body, b'{"a":1,"b":2}', b"", b"x" * 5000]
    offsets = list(tr.offsets_ns)
    assert offsets[0] == 0 and offsets == sorted(offsets)
    for r in tr.records:
        names = {n.lower() for n, _ in r.headers}
        assert not names & {"host", "content-length", "connection", "transfer-encoding"}
        assert r.extras["status"] == 200 and r.extras["latency_ms"] >= 0
    assert ("X-Tag", "a") in tr.records[1].headers
    assert ("Content-Type", "application/json") in tr.records[2].headers
    assert ("X-Tag", "chunked") in tr.records[3].headers
    assert tr.trailer["skipped_large"] == 0


def test_sigint_leaves_a_valid_trace(target, tmp_path):
    t = target("--delay-ms", "1")
    out = tmp_path / "rec.cltrace"
    proc, addr = start_record(t.url, out, "--max-requests", "1000")
    try:
        reqs = [f"GET /r/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3)]
        got = raw_exchange(addr, reqs)
        assert [s for s, _, _ in got] == [200] * 3
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    tr = read_trace(out)
    assert [r.path for r in tr.records] == ["/r/0", "/r/1", "/r/2"]


def test_large_body_forwarded_not_recorded(target, tmp_path):
    t = target()
    out = tmp_path / "rec.cltrace"
    proc, addr = start_record(t.url, out, "--max-requests", "2", "--max-body-bytes", "100")
    try:
        got = raw_exchange(addr, [
            b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000,
            b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + b"s" * 10])
        assert [(s, b) for s, _, b in got] == [(200, BODY)] * 2
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    tr = read_trace(out)
    assert [r.path for r in tr.records] == ["/small"]
    assert tr.trailer["skipped_large"] == 1


def test_upstream_gone_later_gives_502(target, tmp_path):
    t = target()
    out = tmp_path / "rec.cltrace"
    proc, addr = start_record(t.url, out, "--max-requests", "1")
    try:
        t.stop()
        got = raw_exchange(addr, [b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"])
        assert got[0][0] == 502
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    tr = read_trace(out)
    assert tr.records[0].extras["status"] == 502 and "upstream" in tr.records[0].extras["error"]


def test_unreachable_upstream_and_bad_options_exit_2(closed_port, tmp_path):
    out = tmp_path / "rec.cltrace"
    for args in (["--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{closed_port}"],
                 ["--listen", "nonsense", "--upstream", f"http://127.0.0.1:{closed_port}"],
                 ["--listen", "127.0.0.1:0", "--upstream", "https://127.0.0.1:1/"]):
        p = subprocess.run(CLI + ["record", *args, "-o", str(out)], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("crestline: error: ")
    assert not out.exists()
