"""The `crestline` command: thin argparse over the Python API. Exit codes: 0 success,
1 another crestline error, 2 usage or configuration error (nothing was sent), 130 interrupted
by Ctrl-C (results kept)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys

from crestline import __version__
from crestline.errors import ConfigError, CrestlineError

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130

RUN_EXAMPLES = """\
examples:
  crestline run http://127.0.0.1:8000/ --rate 1000 --duration 30s
  crestline run http://127.0.0.1:8000/v2/models/m/infer --method POST \\
      -H 'Content-Type: application/json' --body @request.json \\
      --rate 10k --arrival poisson --seed 7 --duration 2m --out result.json
  crestline run http://127.0.0.1:8000/ --rate 50k --workers 2 --hdr-log run.hlog

Latency is counted from each request's intended send time (no coordinated omission);
see docs/measurement.md for every number printed.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"crestline: error: {message} (see --help)\n")


SEARCH_EXAMPLES = """\
examples:
  crestline search http://127.0.0.1:8000/ --slo p99=25ms
  crestline search http://127.0.0.1:8000/v2/models/m/infer --method POST \\
      -H 'Content-Type: application/json' --body @request.json \\
      --slo p99=25ms --slo p999=80ms --slo errors=0.1% --max-rate 20k --out search.json

Finds the highest rate whose steps pass every SLO while staying sustainable (completions keep
up, no growing backlog), after the server's warm-up; see docs/search.md.
"""


TRACE_EXAMPLES = """\
examples:
  crestline trace import capture.har -o prod.cltrace
  crestline trace import requests.jsonl -o prod.cltrace
  crestline trace import export.json --format har -o prod.cltrace
  crestline trace info prod.cltrace
  crestline trace info prod.cltrace --json > prod-info.json

JSON Lines: one request per line, e.g.
  {"t": 12.5, "method": "POST", "path": "/v2/models/m/infer",
   "headers": {"content-type": "application/json"}, "body": "{...}"}
t is seconds (any origin); body is text, or body_b64 base64; method defaults to GET.
The format and the import rules: docs/trace-format.md.
"""


RECORD_EXAMPLES = """\
examples:
  crestline record --listen 127.0.0.1:9000 --upstream http://127.0.0.1:8000 -o prod.cltrace
  crestline record --listen 0.0.0.0:9000 --upstream http://model:8000 -o prod.cltrace \\
      --duration 10m --max-requests 100k
  crestline trace info prod.cltrace

Point clients at --listen: every request is forwarded to --upstream as sent (Host included)
and the response relayed back as received. Ctrl-C (or SIGTERM) stops recording and closes the
trace properly. --listen with port 0 picks a free port and prints "listening on HOST:PORT".
Details: docs/trace-format.md#recording-crestline-record.
"""


def _add_run_options(p: argparse.ArgumentParser, search: bool = False) -> None:
    p.add_argument("url", help="http:// URL of the target (loopback or your own servers)")
    g = p.add_argument_group("traffic")
    if not search:
        g.add_argument("--rate", default=None,
                       help="requests per second, offered open-loop: 1000, 10k, 2.5k "
                       "(required unless --arrival trace)")
        g.add_argument("--duration", default=None,
                       help="how long to offer load: 30s, 2m (default 30s; with --arrival "
                       "trace, one pass over the trace)")
    g.add_argument("--arrival", default="constant",
                   choices=("constant", "poisson", "trace", "fitted"),
                   help="arrival process: evenly spaced, Poisson, the recorded timestamps of "
                   "--trace, or fitted: the trace's bursty inter-arrival process at --rate "
                   "(default constant)")
    g.add_argument("--trace", metavar="FILE.cltrace", default=None,
                   help="recorded requests (crestline trace import): with --arrival trace, "
                   "replayed on their own timing; otherwise drawn at random for every slot, "
                   "keeping the recorded mix at any rate")
    if not search:
        g.add_argument("--speed", type=float, default=1.0,
                       help="with --arrival trace: time scale, 2 = twice as fast (default 1)")
    g.add_argument("--seed", type=int, default=None, help="seed for the Poisson process")
    g.add_argument("--precise", action="store_true",
                   help="spin the last ~200 µs before each send: lower send lag, a full core")
    g.add_argument("--batch-window", default="0", metavar="DURATION",
                   help="wake the scheduler at most once per window (e.g. 1ms): much less client "
                   "CPU at high rates, up to that much send lag, which latency counts (default 0)")
    g = p.add_argument_group("requests")
    g.add_argument("--method", default="GET", help="HTTP method (default GET)")
    g.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="request header, repeatable")
    g.add_argument("--body", default=None, metavar="STRING|@FILE",
                   help="request body: a string, or @path to send a file's bytes")
    g = p.add_argument_group("client")
    g.add_argument("--connections", type=int, default=64,
                   help="most keep-alive connections, opened on demand (default 64)")
    g.add_argument("--max-inflight", type=int, default=10_000,
                   help="requests waiting or outstanding beyond this are shed (default 10000)")
    g.add_argument("--timeout", default="5s",
                   help="per-request timeout from the actual write (default 5s)")
    g.add_argument("--workers", type=int, default=1,
                   help="client processes, each with its share of the schedule (default 1)"
                   + ("; search: 1 in this version" if search else ""))
    if search:
        g = p.add_argument_group("search")
        g.add_argument("--slo", action="append", default=[], required=True,
                       metavar="NAME=VALUE",
                       help="an objective, repeatable: p99=25ms, p999=80ms, errors=0.1%%")
        g.add_argument("--start-rate", default="100", help="first rate probed (default 100)")
        g.add_argument("--max-rate", default="1M", help="never probe above (default 1M)")
        g.add_argument("--step-duration", default="10s",
                       help="measured time a step needs for a verdict (default 10s); steps "
                       "still undecided extend to 3x, and up to 9x at low rates while they "
                       "lack the samples for the percentile")
        g.add_argument("--tolerance", default="2%",
                       help="stop when the bracket [pass, fail] is this narrow (default 2%%)")
        g.add_argument("--max-steps", type=int, default=20, help="step budget (default 20)")
        g.add_argument("--max-time", default="15m",
                       help="load-time budget, warm-up and drains included (default 15m)")
        g.add_argument("--warmup", default="auto", metavar="auto|none|DURATION",
                       help="auto: hold the first rate until latency is steady (MSER); none; "
                       "or a fixed hold such as 30s (default auto)")
    g = p.add_argument_group("output")
    g.add_argument("--interval", default="1s", help="reporting interval (default 1s)")
    g.add_argument("--out", metavar="FILE.json", help="write the result as JSON")
    g.add_argument("--runlog", metavar="FILE", help="msgpack record per interval, flushed as it goes")
    if not search:
        g.add_argument("--hdr-log", metavar="FILE",
                       help="HdrHistogram interval log (latency untagged; service, send_lag tagged)")
    g.add_argument("--quiet", action="store_true", help="no live lines, no summary table")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="crestline", description="Open-loop load and capacity planning for ML "
                "model servers, with latency counted from the intended send time.")
    p.add_argument("--version", action="version", version=f"crestline {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="offer open-loop load at a fixed rate and measure it",
                         description="Offer open-loop HTTP load at a fixed rate and measure "
                         "latency, service time and the client's own send lag.",
                         epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(run)
    search = sub.add_parser("search", help="find the highest rate that meets an SLO",
                            description="Search for the highest open-loop rate the target "
                            "sustains while meeting every --slo: bracket, then refine, with "
                            "warm-up detection, spike tolerance and early decisions.",
                            epilog=SEARCH_EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(search, search=True)
    sub.add_parser("target", help="serve a loopback HTTP target with known delay and faults",
                   add_help=False)
    demo = sub.add_parser("demo", help="start a local target and search its capacity, end to end",
                          description="Starts crestline's loopback target as a FIFO queue with "
                          "4 workers (2 ms mean service, exponential: an M/M/4 server whose "
                          "true capacity at p99 <= 20 ms is 1750 rps) and runs a capacity "
                          "search against it, printing each step and the answer. With --run, "
                          "offers a fixed rate instead.")
    demo.add_argument("--quick", action="store_true", help="shorter steps: about a minute")
    demo.add_argument("--run", action="store_true",
                      help="a plain open-loop run (--rate, --duration) instead of a search")
    demo.add_argument("--rate", default="1000", help="with --run: requests per second")
    demo.add_argument("--duration", default="5s", help="with --run: default 5s")
    demo.add_argument("--out", metavar="FILE.json", help="write the result as JSON")
    trace = sub.add_parser("trace", help="import and inspect recorded traffic (.cltrace)",
                           description="Recorded traffic: convert HAR or JSON Lines into a "
                           ".cltrace file, and describe the workload a trace holds.",
                           epilog=TRACE_EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    trace.set_defaults(trace_parser=trace)
    tsub = trace.add_subparsers(dest="trace_command", metavar="ACTION", parser_class=_Parser)
    imp = tsub.add_parser("import", help="convert HAR or JSON Lines into a .cltrace",
                          description="Convert a HAR 1.2 file or JSON Lines (one request per "
                          "line) into a .cltrace trace.", epilog=TRACE_EXAMPLES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("input", metavar="IN", help="a .har, .jsonl or .ndjson file")
    imp.add_argument("-o", "--out", required=True, metavar="OUT.cltrace",
                     help="the trace to write (replaced if it exists)")
    imp.add_argument("--format", choices=("har", "jsonl"), default=None,
                     help="input format (default: from the extension of IN)")
    info = tsub.add_parser("info", help="describe the workload in a .cltrace",
                           description="Count, duration, mean rate, inter-arrival burstiness, "
                           "payload sizes and the mix by method, path and model.",
                           epilog=TRACE_EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("file", metavar="FILE", help="a .cltrace file")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    rec = sub.add_parser("record", help="record live traffic into a .cltrace (reverse proxy)",
                         description="A recording reverse proxy: forwards HTTP/1.1 traffic to "
                         "--upstream untouched and writes every request, with its arrival time, "
                         "into a .cltrace.", epilog=RECORD_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_argument("--listen", required=True, metavar="HOST:PORT",
                     help="where clients connect (port 0: a free port, printed)")
    rec.add_argument("--upstream", required=True, metavar="URL",
                     help="http://HOST[:PORT] of the real server")
    rec.add_argument("-o", "--out", required=True, metavar="FILE.cltrace",
                     help="the trace to write (replaced if it exists)")
    rec.add_argument("--max-requests", default=None, metavar="N",
                     help="stop after N requests (1000, 100k)")
    rec.add_argument("--duration", default=None, help="stop after this long: 30s, 10m")
    rec.add_argument("--max-body-bytes", type=int, default=16 << 20, metavar="B",
                     help="bodies larger than this are forwarded but not recorded "
                     "(default 16 MiB)")
    return p


def _spec_from_args(a, rate_rps=None, duration_s=None):
    from crestline.spec import RunSpec, parse_header, read_body
    from crestline.units import parse_duration_s, parse_rate_rps

    speed = getattr(a, "speed", 1.0)
    if a.arrival == "trace" and (rate_rps is None or duration_s is None) and a.trace:
        # The trace sets the rate and (unless --duration) the length: one pass.
        trace_s, trace_rps = _trace_pass(a.trace, speed)
        rate_rps = rate_rps if rate_rps is not None else trace_rps
        if duration_s is None and a.duration is None:
            duration_s = trace_s
    if a.arrival in ("trace", "fitted") and not a.trace:
        raise ConfigError(f"--arrival {a.arrival} needs --trace FILE.cltrace")
    if rate_rps is None and a.rate is None:
        raise ConfigError("give --rate (requests per second), or --arrival trace with --trace")
    return RunSpec(
        url=a.url,
        rate_rps=rate_rps if rate_rps is not None else parse_rate_rps(a.rate, "--rate"),
        duration_s=duration_s if duration_s is not None else parse_duration_s(
            a.duration or "30s", "--duration"),
        arrival=a.arrival, seed=a.seed, trace=a.trace, speed=speed,
        connections=a.connections, max_inflight=a.max_inflight,
        timeout_s=parse_duration_s(a.timeout, "--timeout"), method=a.method,
        headers=[parse_header(h) for h in a.header],
        body=read_body(a.body) if a.body is not None else b"", workers=a.workers,
        interval_s=parse_duration_s(a.interval, "--interval"), precise=a.precise,
        batch_window_s=_window_s(a.batch_window),
    ).validated()


def _trace_pass(path: str, speed: float) -> tuple[float, float]:
    """(seconds, requests per second) of one pass over a trace at `speed`."""
    import os

    from crestline.trace import read_trace

    if not os.path.isfile(path):
        raise ConfigError(f"--trace file {path!r} not found")
    if not speed > 0:
        raise ConfigError(f"--speed must be positive, got {speed!r}")
    from crestline.workload import pass_duration_s

    offsets = read_trace(path).offsets_ns
    if len(offsets) == 0:
        raise ConfigError(f"--trace {path!r} holds no requests")
    seconds = pass_duration_s(offsets, speed)
    return seconds, len(offsets) / seconds


def _window_s(text: str) -> float:
    from crestline.units import parse_duration_s

    return 0.0 if text.strip() in ("0", "0s", "0ms", "0us") else parse_duration_s(text, "--batch-window")


def _under_sigint(make):
    """Run make(stop) on a fresh uvloop; the first Ctrl-C sets stop, a second one stops now."""
    import uvloop

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_sigint():
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        return await make(stop)

    return uvloop.run(main())


def _emit(a, data: dict, summary) -> None:
    """--out JSON, then (unless --quiet) the summary text from summary(data)."""
    if a.out:
        with open(a.out, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    if not a.quiet:
        print(summary(data))


def cmd_run(a) -> int:
    from crestline.api import run_async
    from crestline.live import LiveLines, summary_table

    spec = _spec_from_args(a)
    live = None if a.quiet else LiveLines(sys.stderr)
    result = _under_sigint(lambda stop: run_async(
        spec=spec, on_interval=live.interval if live else None, runlog=a.runlog,
        hdr_log=a.hdr_log, stop=stop))
    _emit(a, result.to_dict(), summary_table)
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK


def _search_config(a):
    from crestline.capacity import make_config
    from crestline.errors import ConfigError
    from crestline.units import parse_duration_s, parse_rate_rps

    tol = a.tolerance.strip()
    try:
        tolerance = float(tol[:-1]) / 100 if tol.endswith("%") else float(tol)
    except ValueError:
        raise ConfigError(f"cannot read --tolerance {a.tolerance!r}: write e.g. 2%") from None
    warmup = a.warmup.strip().lower()
    if warmup not in ("auto", "none"):
        warmup = parse_duration_s(warmup, "--warmup")
    step_s = parse_duration_s(a.step_duration, "--step-duration")
    return make_config(
        a.slo, start_rate_rps=parse_rate_rps(a.start_rate, "--start-rate"),
        max_rate_rps=parse_rate_rps(a.max_rate, "--max-rate"), step_s=step_s,
        max_step_s=3 * step_s, tolerance=tolerance, max_steps=a.max_steps,
        max_time_s=parse_duration_s(a.max_time, "--max-time"), warmup=warmup,
        interval_s=parse_duration_s(a.interval, "--interval"))


def cmd_search(a) -> int:
    from crestline.capacity import search_async
    from crestline.live import search_step_line, search_summary

    config = _search_config(a)
    spec = _spec_from_args(a, rate_rps=config.start_rate_rps, duration_s=1.0)

    def on_step(step: dict, policy) -> None:
        if not a.quiet:
            done = sum(1 for s in policy.steps if s.verdict is not None)
            print(search_step_line(done, step, policy),
                  file=sys.stderr, flush=True)

    if not a.quiet:
        print(f"searching {a.url} for the highest rate with {config.slo.describe()}",
              file=sys.stderr, flush=True)
    result = _under_sigint(lambda stop: search_async(spec, config, on_step=on_step,
                                                     runlog=a.runlog, stop=stop))
    _emit(a, result, search_summary)
    return EXIT_INTERRUPTED if result.get("interrupted") else EXIT_OK


def cmd_demo(a) -> int:
    target = subprocess.Popen(
        [sys.executable, "-m", "crestline.target", "--port", "0", "--servers", "4",
         "--service-ms", "2", "--service-dist", "exp", "--max-seconds", "1800"],
        stdout=subprocess.PIPE, text=True,
        start_new_session=True)  # Ctrl-C stops the run, which then stops the target
    try:
        line = target.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise CrestlineError(f"the demo target did not start: {line!r}")
        url = f"http://{line.removeprefix('listening on ')}/"
        print(f"demo target at {url}: 4 workers, 2 ms mean service (M/M/4; true capacity "
              "1750 rps at p99 <= 20 ms under Poisson arrivals)", file=sys.stderr)
        out = ["--out", a.out] if a.out else []
        if a.run:
            return cmd_run(build_parser().parse_args(
                ["run", url, "--rate", a.rate, "--duration", a.duration] + out))
        return cmd_search(build_parser().parse_args(
            ["search", url, "--slo", "p99=20ms", "--arrival", "poisson", "--seed", "1",
             "--start-rate", "200", "--warmup", "none",
             "--step-duration", "3s" if a.quick else "5s"] + out))
    finally:
        target.terminate()
        target.wait(timeout=10)


def cmd_trace(a) -> int:
    from crestline.trace import TraceError

    try:
        if a.trace_command == "import":
            from crestline.trace_import import load, write_imported

            imported, fmt = load(a.input, a.format)
            write_imported(imported, a.out, source=f"{fmt}:{os.path.basename(a.input)}")
            recs = imported.records
            print(f"wrote {len(recs):,} requests over {recs[-1].offset_ns / 1e9:.3f} s "
                  f"to {a.out}")
            for origin, n in (imported.meta.get("other_origins") or {}).items():
                print(f"note: {n:,} requests went to {origin}, not {imported.base_url}; kept, "
                      f"with extras.origin", file=sys.stderr)
            return EXIT_OK
        if a.trace_command == "info":
            from crestline.trace import read_trace
            from crestline.trace_info import describe, format_info

            d = describe(read_trace(a.file))
            print(json.dumps(d, indent=2) if a.json else format_info(d, a.file))
            return EXIT_OK
    except TraceError as exc:  # a damaged or foreign file: the user's to fix, like bad config
        print(f"crestline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    a.trace_parser.print_help(sys.stderr)
    return EXIT_USAGE


def cmd_record(a) -> int:
    from crestline.record import RecordConfig, parse_listen, parse_upstream, run_record
    from crestline.units import parse_duration_s

    host, port = parse_listen(a.listen)
    up_host, up_port = parse_upstream(a.upstream)
    max_requests = None
    if a.max_requests is not None:
        text = a.max_requests.strip().lower()
        scale = {"k": 1000, "m": 1000000}.get(text[-1:], 1)
        digits = text[:-1] if scale > 1 else text
        if not digits.isdigit() or int(digits) * scale < 1:
            raise ConfigError(f"cannot read --max-requests {a.max_requests!r}: write a "
                              f"positive whole number, e.g. 1000 or 100k")
        max_requests = int(digits) * scale
    duration_s = parse_duration_s(a.duration, "--duration") if a.duration else None
    if a.max_body_bytes < 0:
        raise ConfigError("--max-body-bytes must be >= 0")
    cfg = RecordConfig(host, port, f"http://{up_host}:{up_port}/", up_host, up_port, a.out,
                       max_requests=max_requests, duration_s=duration_s,
                       max_body_bytes=a.max_body_bytes)
    r = run_record(cfg)
    print(f"recorded {r['recorded']:,} requests over {r['duration_s']:.3f} s to {a.out}",
          flush=True)
    if r["skipped_large"]:
        print(f"note: {r['skipped_large']:,} requests with bodies over --max-body-bytes were "
              f"forwarded but not recorded", file=sys.stderr)
    if r["unanswered"]:
        print(f"note: {r['unanswered']:,} recorded requests got no upstream response "
              f"(extras.error says why)", file=sys.stderr)
    return EXIT_INTERRUPTED if r["interrupted"] else EXIT_OK


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["target"]:
        from crestline import target

        return target.main(argv[1:])
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        if a.command == "run":
            return cmd_run(a)
        if a.command == "search":
            return cmd_search(a)
        if a.command == "demo":
            return cmd_demo(a)
        if a.command == "trace":
            return cmd_trace(a)
        if a.command == "record":
            return cmd_record(a)
        parser.print_help()
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"crestline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CrestlineError as exc:
        print(f"crestline: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crestline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
