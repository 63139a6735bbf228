#!/usr/bin/env python3
"""Long fuzz run of the HTTP/1.1 response path: the real Core and Http1Conn, fed arbitrary byte
streams split at arbitrary points, millions of inputs (issue 15). Not in the test suite: the
short, socket-backed property run is tests/fuzz/.

Each input is: byte 0 = number of cuts (mod 9), then that many big-endian uint16 cut offsets,
then the response stream. It is fed to a real crestline._core.Core through a real
crestline._http1.Http1Protocol on a sink transport (bench/fuzz/pending_connector.pyx, built
here at start: open() only counts, the harness makes the connection), one part per
data_received, then EOF and connection_lost, as uvloop would deliver them. Every input must
end as exactly one outcome (a response by status, or a counted protocol/read error), nothing
may raise, and the process RSS may grow at most --max-rss-growth after the first 10 % of the
run (checked every 100k inputs).

Engines: atheris (pip install crestline[fuzz]; libFuzzer's mutator over a seed corpus of valid
responses; coverage guidance reaches the Python harness only: httptools' llhttp and the
Cython modules are built by gcc without libFuzzer instrumentation), or random (byte-level
mutations of the same seeds, no extra install).

  .venv/bin/python bench/fuzz_bench.py --runs 10000000              # atheris, the long run
  .venv/bin/python bench/fuzz_bench.py --engine random --runs 200000 # smoke
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out" / "fuzz"
sys.path.insert(0, str(REPO / "tests" / "fuzz"))
from feed import OUTCOMES, REQUEST, split  # noqa: E402  (the suite's harness: one definition)

SEEDS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    b"HTTP/1.1 404 No\r\nContent-Length: 3\r\n\r\nnon",
    b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\nbody",
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"close\": \"delimited\"}",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
]


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_connector():
    """Compile bench/fuzz/pending_connector.pyx against ext/ (needs Cython and a C compiler,
    as building crestline itself does) and import it."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    build = OUT / "build"
    exts = cythonize([Extension("pending_connector", [str(HERE / "fuzz/pending_connector.pyx")])],
                     include_path=[str(REPO / "ext")], build_dir=str(build / "c"), quiet=True)
    dist = Distribution({"ext_modules": exts, "script_name": "fuzz_bench",
                         "script_args": ["build_ext", "--build-lib", str(build),
                                         "--build-temp", str(build / "tmp"), "-q"]})
    dist.parse_command_line()
    dist.run_commands()
    sys.path.insert(0, str(build))
    import pending_connector

    return pending_connector


class Sink:
    """The transport under the Http1Protocol: writes go nowhere; close and abort stop the
    feeding, as a real transport stops reading."""

    def __init__(self):
        self.closing = False

    def write(self, data):
        pass

    def close(self):
        self.closing = True

    abort = close


class DirectFeeder:
    def __init__(self):
        import asyncio

        import numpy as np

        from crestline import _core, _http1
        from crestline.measure.hdr import LAYOUT

        self.connector_mod = build_connector()
        self.loop = asyncio.new_event_loop()  # the Core's timers and timerfd: never run
        self.core = _core.Core(self.loop, "127.0.0.1", 9, [REQUEST], LAYOUT, connections=1,
                               max_inflight=1, timeout_s=5.0,
                               transport=self.connector_mod.PendingConnector)
        self.Protocol = _http1.Http1Protocol
        self.now = _core.monotonic_ns
        self.slot = (np.zeros(1, dtype=np.int64), None)

    def feed(self, parts: list[bytes]) -> bool:
        """One input; True when its request settled (counted once: the core counts a request
        only while it is outstanding, and inflight says none is)."""
        core = self.core
        given = [self.slot]
        now = self.now()
        core.start(now, now + 10**9, lambda: given.pop() if given else None)
        conn, sink = self.Protocol(core), Sink()
        conn.connection_made(sink)  # the core writes the queued request at once
        for part in parts:
            if sink.closing:
                break
            conn.data_received(part)
        if not sink.closing:
            conn.eof_received()
        conn.connection_lost(None)
        return core.inflight == 0

    def tally(self) -> tuple[Counter, dict]:
        """Outcomes since the last tally (taking the interval copies four histograms: once per
        batch, not per input), and the counters."""
        c = self.core.take_interval()[0]
        kinds = Counter({k: v for k, v in c["by_error"].items() if v})
        if c["ok"]:
            kinds["ok"] = c["ok"]
        return kinds, c

    def outcome(self, parts: list[bytes]) -> tuple[str, list]:
        """One input on its own: what it ended as (for the report of a failing batch)."""
        self.tally()
        settled = self.feed(parts)
        kinds, c = self.tally()
        if not settled or sum(kinds.values()) != 1 or c["connections"]:
            return "unsettled", c
        return next(iter(kinds)), c["messages"]


def decode(data: bytes) -> list[bytes]:
    """The input format (module docstring) -> the parts fed to data_received."""
    if not data:
        return []
    n = data[0] % 9
    head = 1 + 2 * n
    cuts = [int.from_bytes(data[1 + 2 * i:3 + 2 * i], "big") for i in range(n)]
    return split(data[head:], cuts)


def encode(stream: bytes, cuts: list[int]) -> bytes:
    return bytes([len(cuts)]) + b"".join(c.to_bytes(2, "big") for c in cuts) + stream


class Check:
    """Counts outcomes, samples RSS, and fails loudly on anything the issue rules out."""

    BATCH = 1000

    def __init__(self, runs: int, max_growth: float):
        self.runs, self.max_growth = runs, max_growth
        self.n, self.outcomes, self.t0 = 0, Counter(), time.monotonic()
        self.rss_start, self.rss_base, self.rss_max = rss_mb(), None, 0.0
        self.warm = max(100_000, runs // 10)
        self.batch: list[bytes] = []
        self.logged = -1

    def __call__(self, feeder: DirectFeeder, data: bytes) -> None:
        if not feeder.feed(decode(data)):
            raise AssertionError(f"input {data!r} left its request outstanding")
        self.n += 1
        self.batch.append(data)
        if len(self.batch) == self.BATCH:
            self.settle(feeder)
        if self.n % 100_000 == 0:
            self.sample()

    def settle(self, feeder: DirectFeeder) -> None:
        kinds, c = feeder.tally()
        if set(kinds) - set(OUTCOMES) or sum(kinds.values()) != len(self.batch) or \
                c["connections"]:
            for data in self.batch:  # find the input, to report it
                got, detail = feeder.outcome(decode(data))
                if got not in OUTCOMES:
                    raise AssertionError(f"input {data!r} ended as {got}: {detail}")
            raise AssertionError(f"a batch ended as {dict(kinds)} ({c['connections']} "
                                 f"connections open) for {len(self.batch)} inputs")
        self.outcomes += kinds
        self.batch = []

    def sample(self) -> None:
        if self.n == self.logged:
            return
        self.logged = self.n
        rss = rss_mb()
        self.rss_max = max(self.rss_max, rss)
        if self.rss_base is None and self.n >= self.warm:
            self.rss_base = rss
        growth = (rss / self.rss_base - 1) if self.rss_base else 0.0
        rate = self.n / (time.monotonic() - self.t0)
        log(f"{self.n:,} inputs, {rate:,.0f}/s, RSS {rss:.1f} MiB (start {self.rss_start:.1f}, "
            f"after warm-up {self.rss_base or 0:.1f}, growth {growth:+.1%}), {dict(self.outcomes)}")
        if growth > self.max_growth:
            raise AssertionError(f"RSS grew {growth:.1%} after warm-up (bound "
                                 f"{self.max_growth:.0%}): unbounded memory")


def run_random(check: Check, feeder: DirectFeeder, runs: int, seed: int, max_len: int) -> None:
    rng = random.Random(seed)
    for _ in range(runs):
        s = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randint(0, 4)):
            op, at = rng.randrange(4), rng.randrange(len(s) + 1)
            if op == 0:
                s[at:at] = rng.randbytes(rng.randint(1, 8))
            elif op == 1 and s:
                del s[at:at + rng.randint(1, 8)]
            elif op == 2 and at < len(s):
                s[at] = rng.randrange(256)
            else:
                s = s[:at]
        cuts = [rng.randrange(len(s) + 1) for _ in range(rng.randint(0, 8))]
        check(feeder, encode(bytes(s[:max_len]), cuts))


# llhttp's error reasons (collected from random runs): one branch each in the probe, so an
# input that reaches a new one is new coverage for libFuzzer.
REASONS = (
    "Data after `Connection: close`", "Empty Content-Length", "Expected HTTP/, RTSP/ or ICE/",
    "Expected LF after CR", "Expected LF after chunk data", "Expected LF after chunk size",
    "Expected LF after headers", "Expected dot", "Expected space after version",
    "Invalid HTTP version", "Invalid character in Content-Length",
    "Invalid character in chunk extensions", "Invalid character in chunk extensions name",
    "Invalid character in chunk extensions quoted value",
    "Invalid character in chunk extensions value", "Invalid character in chunk size",
    "Invalid header field char", "Invalid header token", "Invalid header value char",
    "Invalid major version", "Invalid minor version", "Missing expected CR after chunk data",
    "Missing expected CR after chunk extension name",
    "Missing expected CR after chunk extension value", "Missing expected CR after chunk size",
    "Missing expected CR after header value", "Missing expected CR after response line",
    "Missing expected LF after header value", "Pause on CONNECT/Upgrade",
    "Unexpected space after start line", "Unexpected whitespace after header value",
    "Invalid response status", "Invalid status code", "Content-Length overflow",
    "Duplicate Content-Length", "Transfer-Encoding can't be present with Content-Length",
    "Chunk size overflow", "Response overflow (too many digits)")
EVENTS = "sHhbcCm"  # status, header field, headers complete, body, chunk header/complete, message


class _Shadow:
    """httptools' callbacks as letters: the path an input takes through the compiled parser,
    which the probe turns into Python branches (the parser itself is not instrumented)."""

    def __init__(self):
        self.path = []

    def on_status(self, s):
        self.path.append("s")

    def on_header(self, n, v):
        self.path.append("H")

    def on_headers_complete(self):
        self.path.append("h")

    def on_body(self, b):
        self.path.append("b")

    def on_chunk_header(self):
        self.path.append("c")

    def on_chunk_complete(self):
        self.path.append("C")

    def on_message_complete(self):
        self.path.append("m")


def _make_probe():
    """def probe(path, reason): one `if` per event pair and per reason (generated)."""
    lines = ["def probe(path, reason):", "    for pair in zip(path, path[1:]):",
             "        pair = pair[0] + pair[1]"]
    lines += [f"        if pair == {a + b!r}: pass" for a in EVENTS for b in EVENTS]
    lines += [f"    if reason == {r!r}: return" for r in REASONS]
    ns: dict = {}
    exec("\n".join(lines), ns)
    return ns["probe"]


def run_atheris(check: Check, feeder: DirectFeeder, runs: int, seed: int, max_len: int) -> None:
    try:
        import atheris
    except ImportError:
        sys.exit("the atheris engine needs atheris: pip install crestline[fuzz] "
                 "(or --engine random)")
    import httptools

    corpus = OUT / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(SEEDS):
        (corpus / f"seed{i}").write_bytes(encode(s, [len(s) // 3, len(s) // 2]))
    probe = atheris.instrument_func(_make_probe())

    def one(data: bytes) -> None:
        check(feeder, data)
        shadow = _Shadow()
        parser = httptools.HttpResponseParser(shadow)
        reason = ""
        try:
            for part in decode(data):
                parser.feed_data(part)
        except Exception as exc:  # what the parser said is the feature, not a failure
            reason = str(exc)
        probe(shadow.path, reason)
        if check.n == runs:
            check.settle(feeder)
            check.sample()
            summary(check)

    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-seed={seed}", f"-max_len={max_len}",
                   "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1",
                   # crash, timeout and slow-unit files go beside the corpus, not into the cwd
                   f"-artifact_prefix={OUT}{os.sep}", str(corpus)],
                  one)
    atheris.Fuzz()


def summary(check: Check) -> None:
    wall = time.monotonic() - check.t0
    log(f"done: {check.n:,} inputs in {wall:.0f} s ({check.n / wall:,.0f}/s), no crash, no "
        f"unsettled input; outcomes {dict(check.outcomes)}; RSS start {check.rss_start:.1f} "
        f"MiB, after warm-up {check.rss_base or 0:.1f} MiB, peak {check.rss_max:.1f} MiB")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    p.add_argument("--runs", type=int, default=10_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-len", type=int, default=4096)
    p.add_argument("--max-rss-growth", type=float, default=0.10,
                   help="bound on RSS growth after the warm-up tenth (default 0.10)")
    a = p.parse_args(argv)
    feeder = DirectFeeder()
    check = Check(a.runs, a.max_rss_growth)
    log(f"{a.engine}: {a.runs:,} inputs through the real Core + Http1Conn")
    if a.engine == "atheris":
        run_atheris(check, feeder, a.runs, a.seed, a.max_len)
    else:
        run_random(check, feeder, a.runs, a.seed, a.max_len)
        check.settle(feeder)
        check.sample()
        summary(check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
