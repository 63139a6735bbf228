"""Bad input: one line naming the option, the value and the fix, exit 2, nothing sent.

Each case is what a user can type; the listener counts connections, so "nothing sent" is
measured, not assumed."""

import resource
import subprocess
import sys

import pytest
from cli_process import CLI, crestline

from crestline.trace.format import TraceRecord, TraceWriter


@pytest.fixture
def one_request_trace(tmp_path):
    path = tmp_path / "one.cltrace"
    with TraceWriter(path, source="test") as w:
        w.write(TraceRecord(0, "GET", "/", [], b""))
    return str(path)


CASES = [
    (["run", "{url}", "--rate", "10", "-H", "X\tTab: 1"], "bad header name"),
    (["run", "{url}", "--rate", "10", "-H", "X-Name: café"], "non-ASCII"),
    (["run", "{url}", "--rate", "10", "-H", "X-Name: é"], "non-ASCII"),  # U+00E9: Latin-1
    (["run", "{url}", "--rate", "10", "-H", ""], "bad header"),
    (["run", "{urlport0}", "--rate", "10"], "port 0"),
    (["run", "{urlcreds}", "--rate", "10"], "credentials in the URL"),
    (["run", "{url}", "--rate", "10", "--speed", "2"], "--speed 2 applies only"),
    (["run", "{url}", "--rate", "10", "--arrival", "poisson", "--seed", "-1"], "--seed"),
    (["run", "{url}", "--rate", "10", "--body", "@/proc/self/mem"], "cannot be read"),
    (["run", "{url}", "--rate", "10", "--connections", "1000000"], "--connections"),
    (["run", "{url}", "--rate", "10", "--connections", str(2**40)], "--connections"),
    (["run", "{url}", "--rate", "10", "--max-inflight", str(10**9)], "--max-inflight"),
    (["run", "{url}", "--rate", "10", "--interval", "1ns"], "--interval"),
    (["run", "{url}", "--rate", "1e12"], "--rate"),
    (["run", "{url}", "--rate", ""], "--rate"),
    (["run", "{url}", "--rate", "10", "--timeout", "2h"], "--timeout"),
    (["run", "{url}", "--rate", "10", "--duration", "30d"], "--duration"),
    (["run", "{url}", "--trace", "{trace}", "--arrival", "trace"], "share one timestamp"),
    (["run", "{url}", "--trace", "{trace}", "--rate", "10", "--method", "POST"],
     "--method POST does not apply"),
    (["search", "{url}", "--slo", "p99=10ms", "--trace", "{trace}", "--arrival", "trace"],
     "share one timestamp"),
    (["search", "{url}", "--slo", "p99=10ms", "--seed", "-5"], "--seed"),
]


@pytest.mark.parametrize("args,expect", CASES, ids=[f"{i}-{c[1][:20]}" for i, c in
                                                     enumerate(CASES)])
def test_refused_with_one_line_before_any_load(listener, one_request_trace, args, expect):
    port = listener.port
    subs = {"{url}": f"http://127.0.0.1:{port}/", "{urlport0}": "http://127.0.0.1:0/",
            "{urlcreds}": f"http://admin:hunter2@127.0.0.1:{port}/",
            "{trace}": one_request_trace}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    p = crestline(*argv)
    assert p.returncode == 2, (argv, p.stdout, p.stderr)
    # (a search names what it will search for before it checks the workload: that line aside)
    lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("searching ")]
    assert len(lines) == 1 and lines[0].startswith("crestline: error:"), p.stderr
    assert expect in lines[0], lines[0]
    assert "hunter2" not in p.stderr  # a password in a URL is never echoed
    assert listener.accepted() == 0


def test_connections_beyond_the_open_file_limit_are_refused_before_load(listener):
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    p = subprocess.run(CLI + ["run", f"http://127.0.0.1:{listener.port}/", "--rate", "10",
                              "--connections", "1000", "--max-inflight", "2000"],
                       capture_output=True, text=True, timeout=60, preexec_fn=low_limit)
    assert p.returncode == 2, p.stderr
    assert "limit is 256 (ulimit -n)" in p.stderr and "--workers" in p.stderr
    assert listener.accepted() == 0


def test_unicode_and_ipv6_urls_are_sent_as_valid_http(target):
    # A non-ASCII path is percent-encoded as UTF-8 (never raw Latin-1 bytes); an IPv6 literal
    # gets a bracketed Host. The target answers any path, so the run must be clean.
    t = target()
    p = crestline("run", t.url + "café/ü?q=é", "--rate", "50", "--duration", "1s", "--quiet")
    assert p.returncode == 0, p.stderr
    from crestline.engine.spec import RunSpec

    spec = RunSpec(f"http://[::1]:{t.port}/café", 1, 1).validated()
    raw = spec.request_bytes()
    assert raw.startswith(b"GET /caf%C3%A9 HTTP/1.1\r\n")
    assert f"Host: [::1]:{t.port}".encode() in raw


def test_record_brackets_an_ipv6_upstream(closed_port):
    p = crestline("record", "--listen", "127.0.0.1:0", "--upstream", f"http://[::1]:{closed_port}",
                  "-o", "/tmp/never.cltrace")
    assert p.returncode == 2
    assert f"http://[::1]:{closed_port}/" in p.stderr


def test_header_checks_from_the_python_api():
    from crestline.engine.spec import RunSpec
    from crestline.errors import ConfigError

    for name, value in (("X\x00", "1"), ("X", "a\x00b"), ("X Y", "1"), ("X", "line\r\nX: 2")):
        with pytest.raises(ConfigError, match="header"):
            RunSpec("http://127.0.0.1:1/", 1, 1, headers=[(name, value)]).validated()
    assert sys.maxsize  # the module imports nothing else
