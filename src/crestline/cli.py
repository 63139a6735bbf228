"""The `crestline` command: thin argparse over the Python API.

Exit codes (docs/cli.md): 0 success; 1 an SLO or capacity assertion not met (run --assert,
search --assert-capacity); 2 usage or configuration error (nothing was sent); 3 a failure
during the run (results written so far are kept); 130 interrupted by Ctrl-C (results kept).
"""

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

EXIT_OK, EXIT_NOT_MET, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

RUN_EXAMPLES = """\
examples:
  crestline run http://127.0.0.1:8000/ --rate 1000 --duration 30s
  crestline run http://127.0.0.1:8000/v2/models/m/infer --method POST \\
      -H 'Content-Type: application/json' --body @request.json \\
      --rate 10k --arrival poisson --seed 7 --duration 2m --out result.json
  crestline run http://127.0.0.1:8000/ --rate 50k --workers 2 --hdr-log run.hlog
  crestline run http://127.0.0.1:8000/ --rate 2k --duration 1m --gpu nvml \
      --slo p99=25ms --assert                    # exit 1 if p99 > 25 ms: a CI gate
  crestline run http://127.0.0.1:8000/ --trace prod.cltrace --arrival trace --speed 2

Latency is counted from each request's intended send time (no coordinated omission);
see docs/measurement.md for every number printed.
"""


class _Parser(argparse.ArgumentParser):
    """Every crestline parser: examples in the epilog keep their layout; usage errors exit 2
    with one line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"crestline: error: {message} (see --help)\n")


SEARCH_EXAMPLES = """\
examples:
  crestline search http://127.0.0.1:8000/ --slo p99=25ms
  crestline search http://127.0.0.1:8000/v2/models/m/infer --method POST \\
      -H 'Content-Type: application/json' --body @request.json \\
      --slo p99=25ms --slo p999=80ms --slo errors=0.1% --max-rate 20k --out search.json
  crestline search http://10.0.0.7:8000/v2/models/m/infer --method POST --body @req.json \
      --slo p99=25ms --slo 'gpu_util<=90%' --gpu dcgm=http://10.0.0.7:9400/metrics
  crestline search http://127.0.0.1:8000/ --slo p99=25ms --trace prod.cltrace \
      --arrival fitted --runlog search.runlog --assert-capacity 1.5k
  crestline report search.runlog --html search.html

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


REPORT_EXAMPLES = """\
examples:
  crestline report search.json
  crestline report run.runlog --html run.html
  crestline report run.runlog --hlog run.hlog      # for HdrHistogram's own tools
  crestline report search.runlog --json > search.json

Reports read files only: nothing is sent. A runlog cut short by a crash or Ctrl-C still gives
every interval it holds.
"""


COMPARE_EXAMPLES = """\
examples:
  crestline compare before.json after.json
  crestline compare baseline-search.json candidate-search.runlog --json

Two searches compare capacity, latency at the rates both measured (interpolated between
steps) and GPU efficiency at capacity; two runs compare rates, percentiles and errors.
"""


def _add_run_options(p: argparse.ArgumentParser, search: bool = False) -> None:
    p.add_argument("url", help="http://, https://, grpc:// or grpcs:// URL of the target "
                   "(loopback or your own servers)")
    g = p.add_argument_group("traffic")
    if not search:
        g.add_argument("--rate", default=None,
                       help="requests per second, offered open-loop: 1000, 10k, 2.5k "
                       "(required unless --arrival trace)")
        g.add_argument("--duration", default=None,
                       help="how long to offer load: 30s, 2m (default 30s; with --arrival "
                       "trace, one pass over the trace)")
    # A capacity holds for the arrival process it was measured with; evenly spaced arrivals
    # understate queueing and so overstate capacity, so a search defaults to Poisson (as
    # MLPerf's server scenario does).
    default_arrival = "poisson" if search else "constant"
    g.add_argument("--arrival", default=default_arrival,
                   choices=("constant", "poisson", "trace", "fitted"),
                   help="arrival process: evenly spaced, Poisson, the recorded timestamps of "
                   "--trace, or fitted: the trace's bursty inter-arrival process at --rate "
                   f"(default {default_arrival})")
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
    g.add_argument("--method", default=None,
                   help="HTTP method (default GET; with --trace, each request's own)")
    g.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="request header, repeatable")
    _add_secret_options(g)
    g.add_argument("--body", default=None, metavar="STRING|@FILE",
                   help="request body: a string, or @path to send a file's bytes")
    _add_tls_options(p.add_argument_group("tls (https:// URLs)"))
    g = p.add_argument_group("http/2 and grpc")
    g.add_argument("--http2", action="store_true",
                   help="speak HTTP/2: prior knowledge (h2c) for http://, ALPN h2 for "
                   "https:// (pip install crestline[http2])")
    g.add_argument("--streams", type=int, default=1, metavar="N",
                   help="with --http2: concurrent streams per connection, at most what the "
                   "server allows (default 1)")
    g.add_argument("--model", default=None, metavar="NAME",
                   help="grpc://.../inference.GRPCInferenceService/ModelInfer with a KServe v2 "
                   "JSON --body: the model to call")
    g.add_argument("--proto", action="append", default=[], metavar="FILE.proto",
                   help="grpc://: encode a JSON --body as the URL method's request message, "
                   "from this .proto (repeatable; compiled with grpcio-tools)")
    g.add_argument("--proto-path", action="append", default=[], metavar="DIR",
                   help="with --proto: a directory its imports are relative to (repeatable)")
    g.add_argument("--descriptor-set", default=None, metavar="FILE",
                   help="grpc://: as --proto, from a FileDescriptorSet (protoc "
                   "--descriptor_set_out=FILE --include_imports)")
    g = p.add_argument_group("client")
    g.add_argument("--connections", type=int, default=64,
                   help="most keep-alive connections, opened on demand (default 64)")
    g.add_argument("--preopen", type=int, default=None, metavar="N",
                   help="connections to open (and TLS-handshake) before the first interval "
                   "(default: all --connections for https:// and grpcs://, where handshakes "
                   "would land in the schedule as client lag; 0 for plain ones)")
    g.add_argument("--max-inflight", type=int, default=10_000,
                   help="requests waiting or outstanding beyond this are shed (default 10000)")
    g.add_argument("--timeout", default="5s",
                   help="per-request timeout from the actual write (default 5s)")
    g.add_argument("--workers", type=int, default=1,
                   help="client processes, each with its share of the schedule and of the "
                   "connections; their interval histograms merge exactly (default 1)")
    g.add_argument("--cluster", default=None, metavar="ray|ray://HOST:PORT",
                   help="past one host: engine actors on Ray, started here (ray) or on a "
                   "running cluster (ray://head:10001); pip install crestline[ray]")
    g.add_argument("--actors", type=int, default=0, metavar="N",
                   help="with --cluster: engine actors (default 0: one per CPU of the cluster)")
    if not search:
        g = p.add_argument_group("verdict")
        g.add_argument("--slo", action="append", default=[], metavar="NAME=VALUE",
                       help="check the run against an objective, repeatable: p99=25ms, "
                       "errors=0.1%%, gpu_util<=90%%")
        g.add_argument("--assert", dest="assert_slo", action="store_true",
                       help="exit 1 if the run does not meet every --slo (for CI jobs)")
    if search:
        g = p.add_argument_group("search")
        g.add_argument("--slo", action="append", default=[], required=True,
                       metavar="NAME=VALUE",
                       help="an objective, repeatable: p99=25ms, p999=80ms, errors=0.1%%; "
                       "GPU bounds need --gpu: gpu_util<=90%%, gpu_mem<=70GiB, "
                       "gpu_power<=300W, gpu_temp<=85C")
        g.add_argument("--assert-capacity", default=None, metavar="RATE",
                       help="exit 1 unless the capacity found is at least RATE (e.g. 1.5k): "
                       "a capacity regression gate for CI")
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
    g = p.add_argument_group("gpu telemetry")
    g.add_argument("--gpu", default=None, metavar="nvml[:IDX,..]|dcgm=URL",
                   help="sample GPU utilisation, memory, power, clocks and temperature with the "
                   "load: nvml (local GPUs, all or by index) or dcgm=http://HOST:9400/metrics "
                   "(dcgm-exporter on the model server's host); no GPU is a warning, not an error")
    g.add_argument("--gpu-interval", default="100ms", metavar="DURATION",
                   help="GPU polling period, on its own thread (default 100ms)")
    g = p.add_argument_group("output")
    g.add_argument("--interval", default="1s", help="reporting interval (default 1s)")
    g.add_argument("--out", metavar="FILE.json", help="write the result as JSON")
    g.add_argument("--runlog", metavar="FILE",
                   help="msgpack record per interval, flushed as it goes")
    if not search:
        g.add_argument("--hdr-log", metavar="FILE",
                       help="HdrHistogram interval log (latency untagged; service, send_lag "
                       "tagged)")
    g.add_argument("--quiet", action="store_true", help="no live lines, no summary table")


def _add_secret_options(g) -> None:
    g.add_argument("--redact", action="append", default=[], metavar="REGEX",
                   help="also treat headers whose name matches REGEX (case-insensitive, "
                   "repeatable) as secrets; Authorization, Proxy-Authorization, Cookie, "
                   "Set-Cookie and X-Api-Key always are: their values are sent but written "
                   "as [redacted] in every output (docs/failure-modes.md#secrets)")
    g.add_argument("--show-secrets", action="store_true",
                   help="write secret header values as sent (the result says so)")


def _add_tls_options(g) -> None:
    g.add_argument("--cacert", metavar="FILE", default=None,
                   help="verify the server against the CA certificates in this PEM file "
                   "instead of the system store")
    g.add_argument("--insecure", action="store_true",
                   help="do not verify the server's certificate (said in the summary and "
                   "the result)")
    g.add_argument("--cert", metavar="FILE", default=None,
                   help="client certificate (PEM) for servers that require one (mTLS)")
    g.add_argument("--key", metavar="FILE", default=None,
                   help="the --cert's private key (PEM), unless the --cert file holds it")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="crestline", description="Open-loop load and capacity planning for ML "
                "model servers, with latency counted from the intended send time.")
    p.add_argument("--version", action="version", version=f"crestline {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="on an unexpected failure, print the traceback (default: one line)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="offer open-loop load at a fixed rate and measure it",
                         description="Offer open-loop HTTP load at a fixed rate and measure "
                         "latency, service time and the client's own send lag.",
                         epilog=RUN_EXAMPLES)
    _add_run_options(run)
    search = sub.add_parser("search", help="find the highest rate that meets an SLO",
                            description="Search for the highest open-loop rate the target "
                            "sustains while meeting every --slo: bracket, then refine, with "
                            "warm-up detection, spike tolerance and early decisions.",
                            epilog=SEARCH_EXAMPLES)
    _add_run_options(search, search=True)
    _add_sweep_parser(sub)
    sub.add_parser("target", help="serve a loopback HTTP target with known delay and faults",
                   add_help=False)
    demo = sub.add_parser("demo", help="start the demo model server and find its capacity",
                          description="Starts the bundled demo model server (a numpy ranking "
                          "MLP over KServe v2 JSON, with a warm-up phase and a cost that grows "
                          "with the candidates per request), writes a trace of its realistic "
                          "payload mix, searches for the highest rate meeting p99 <= 50 ms "
                          "(warm-up detected and kept out), and writes an HTML report.",
                          epilog=DEMO_EXAMPLES)
    demo.add_argument("--quick", action="store_true",
                      help="shorter warm-up and steps: about a minute and a half")
    demo.add_argument("--run", action="store_true",
                      help="a plain open-loop run (--rate, --duration) instead of a search")
    demo.add_argument("--rate", default=None,
                      help="with --run: requests per second (default 200; with --llm 20)")
    demo.add_argument("--duration", default="10s", help="with --run: default 10s")
    demo.add_argument("--llm", action="store_true",
                      help="the demo LLM server instead (continuous batching, OpenAI chat "
                      "streams): a search on TTFT and ITL (docs/llm.md)")
    demo.add_argument("--slo", default=None,
                      help="the search's SLO, terms joined by commas (default p99=50ms; with "
                      f"--llm {LLM_DEMO_SLO}, with --quick {LLM_DEMO_QUICK_SLO})")
    demo.add_argument("--html", default="crestline-demo.html", metavar="OUT.html",
                      help="the HTML report (default crestline-demo.html; needs "
                      "crestline[html]); '' for none")
    demo.add_argument("--out", metavar="FILE.json", help="write the result as JSON")
    demo.add_argument("--runlog", metavar="FILE", help="msgpack record per interval")
    trace = sub.add_parser("trace", help="import and inspect recorded traffic (.cltrace)",
                           description="Recorded traffic: convert HAR or JSON Lines into a "
                           ".cltrace file, and describe the workload a trace holds.",
                           epilog=TRACE_EXAMPLES)
    trace.set_defaults(trace_parser=trace)
    tsub = trace.add_subparsers(dest="trace_command", metavar="ACTION", parser_class=_Parser)
    imp = tsub.add_parser("import", help="convert HAR or JSON Lines into a .cltrace",
                          description="Convert a HAR 1.2 file or JSON Lines (one request per "
                          "line) into a .cltrace trace.", epilog=TRACE_EXAMPLES)
    imp.add_argument("input", metavar="IN", help="a .har, .jsonl or .ndjson file")
    imp.add_argument("-o", "--out", required=True, metavar="OUT.cltrace",
                     help="the trace to write (replaced if it exists)")
    imp.add_argument("--format", choices=("har", "jsonl"), default=None,
                     help="input format (default: from the extension of IN)")
    _add_secret_options(imp)
    info = tsub.add_parser("info", help="describe the workload in a .cltrace",
                           description="Count, duration, mean rate, inter-arrival burstiness, "
                           "payload sizes and the mix by method, path and model.",
                           epilog=TRACE_EXAMPLES)
    info.add_argument("file", metavar="FILE", help="a .cltrace file")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    rec = sub.add_parser("record", help="record live traffic into a .cltrace (reverse proxy)",
                         description="A recording reverse proxy: forwards HTTP/1.1 traffic to "
                         "--upstream untouched and writes every request, with its arrival time, "
                         "into a .cltrace.", epilog=RECORD_EXAMPLES)
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
    _add_secret_options(rec)
    _add_tls_options(rec.add_argument_group("tls (an https:// --upstream)"))
    rep = sub.add_parser("report", help="rebuild reports from a result or runlog, no load sent",
                         description="Read a result (--out JSON) or a runlog (--runlog) and "
                         "print its summary; or write it again as JSON, as an HdrHistogram "
                         "interval log, or as one self-contained HTML file with plots.",
                         epilog=REPORT_EXAMPLES)
    rep.add_argument("file", metavar="FILE", help="a result .json or a runlog")
    rep.add_argument("--json", action="store_true", help="print the result as JSON")
    rep.add_argument("--hlog", metavar="OUT.hlog",
                     help="write the latency histograms as an HdrHistogram interval log "
                     "(needs a runlog)")
    rep.add_argument("--html", metavar="OUT.html",
                     help="write an HTML report with plots (needs crestline[html])")
    cmp_ = sub.add_parser("compare", help="two results side by side, with the change in percent",
                          description="Compare two results (run or search, JSON or runlog): "
                          "capacity, latency percentiles at matched rates, errors and GPU "
                          "efficiency, with B's change against A in percent.",
                          epilog=COMPARE_EXAMPLES)
    cmp_.add_argument("a", metavar="A", help="the baseline result (before)")
    cmp_.add_argument("b", metavar="B", help="the new result (after)")
    cmp_.add_argument("--json", action="store_true", help="print the comparison as JSON")
    sub.add_parser("demo-server", help="serve the demo model (a numpy ranking MLP, KServe v2)",
                   add_help=False)
    return p


def cmd_report(a) -> int:
    from crestline.report.reader import load_with_runlog, text

    result, contents = load_with_runlog(a.file)
    if a.hlog:
        from crestline.report.reader import write_hlog

        write_hlog(a.file, a.hlog, contents)
        print(f"wrote {a.hlog}", file=sys.stderr)
    if a.html:
        from crestline.report.html import write_html

        write_html(result, a.html, runlog_contents=contents)
        print(f"wrote {a.html}", file=sys.stderr)
    if a.json:
        print(json.dumps(result, indent=2))
    elif not (a.hlog or a.html):
        print(text(result))
    return EXIT_OK


def cmd_compare(a) -> int:
    from crestline.report.compare import compare, format_comparison
    from crestline.report.reader import load

    c = compare(load(a.a), load(a.b))
    print(json.dumps(c, indent=2) if a.json else format_comparison(c, a.a, a.b))
    return EXIT_OK


def _spec_from_args(a, rate_rps=None, duration_s=None):
    from crestline.engine.spec import RunSpec, parse_header, read_body
    from crestline.units import parse_duration_s, parse_rate_rps

    speed = getattr(a, "speed", 1.0)
    # Options that would be silently ignored are refused: the user meant something by them.
    if speed != 1.0 and a.arrival != "trace":
        raise ConfigError(f"--speed {speed:g} applies only with --arrival trace (it scales the "
                          "recorded timestamps); drop it or add --arrival trace")
    if a.method is not None and a.trace:
        raise ConfigError(f"--method {a.method} does not apply with --trace: every recorded "
                          "request keeps its own method; drop --method")
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
        timeout_s=parse_duration_s(a.timeout, "--timeout"), method=a.method or "GET",
        headers=[parse_header(h) for h in a.header],
        body=read_body(a.body) if a.body is not None else b"", workers=a.workers,
        cluster=a.cluster, actors=a.actors,
        interval_s=parse_duration_s(a.interval, "--interval"), precise=a.precise,
        cacert=a.cacert, insecure=a.insecure, cert=a.cert, key=a.key,
        http2=a.http2, streams=a.streams, preopen=a.preopen, model=a.model, proto=a.proto,
        proto_path=a.proto_path, descriptor_set=a.descriptor_set,
        batch_window_s=_window_s(a.batch_window), redact=a.redact, show_secrets=a.show_secrets,
    ).validated()


def _trace_pass(path: str, speed: float) -> tuple[float, float]:
    """(seconds, requests per second) of one pass over a trace at `speed`."""
    import os

    from crestline.trace.format import read_trace

    if not os.path.isfile(path):
        raise ConfigError(f"--trace file {path!r} not found")
    if not speed > 0:
        raise ConfigError(f"--speed must be positive, got {speed!r}")
    from crestline.engine.arrivals import pass_duration_s

    offsets = read_trace(path).offsets_ns
    if len(offsets) == 0:
        raise ConfigError(f"--trace {path!r} holds no requests")
    seconds = pass_duration_s(offsets, speed)
    if seconds <= 0:
        raise ConfigError(f"--trace {path!r}: its {len(offsets)} request(s) share one timestamp, "
                          "so --arrival trace has no timing to replay; use --arrival poisson "
                          "--rate RATE (the recorded requests, at that rate)")
    return seconds, len(offsets) / seconds


def _window_s(text: str) -> float:
    from crestline.units import parse_duration_s

    if text.strip() in ("0", "0s", "0ms", "0us"):
        return 0.0
    return parse_duration_s(text, "--batch-window")


def _under_sigint(make):
    """Run make(stop) on a fresh uvloop; the first Ctrl-C (or SIGTERM, as from a CI runner or
    `kill`) sets stop, so the finished intervals and the result are written; a second one
    stops now."""
    import uvloop

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal():
            stop.set()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await make(stop)

    return uvloop.run(main())


def _emit(a, data: dict, summary, streamed: dict | None = None) -> None:
    """--out JSON, then (unless --quiet) the summary text from summary(data). streamed:
    top-level keys written from an iterable, one item at a time (outputs.write_json)."""
    if a.out:
        from crestline.outputs import write_json

        write_json(a.out, data, streamed or {})
    if not a.quiet:
        print(summary(data))


def _gpu_period_s(a) -> float:
    from crestline.units import parse_duration_s

    period_s = parse_duration_s(a.gpu_interval, "--gpu-interval")
    if not 0.01 <= period_s <= 10:
        raise ConfigError(f"--gpu-interval {a.gpu_interval!r} must lie between 10ms and 10s")
    return period_s


def cmd_run(a) -> int:
    from crestline.api import run_async
    from crestline.report.live import LiveLines, summary_table
    from crestline.slo.parse import parse_slo

    spec = _spec_from_args(a)
    slo = parse_slo(a.slo) if a.slo else None
    if a.assert_slo and slo is None:
        raise ConfigError("--assert needs at least one --slo, e.g. --slo p99=25ms")
    gpu_period_s = _gpu_period_s(a)
    live = None if a.quiet else LiveLines(sys.stderr, gpu=bool(a.gpu))
    result = _under_sigint(lambda stop: run_async(
        spec=spec, on_interval=live.interval if live else None, runlog=a.runlog,
        hdr_log=a.hdr_log, stop=stop, gpu=a.gpu, gpu_period_s=gpu_period_s, slo=slo,
        on_warning=live.warning if live else None))
    _emit(a, result.to_dict(intervals=False), summary_table,
          streamed={"intervals": result.interval_dicts()})
    if result.interrupted:
        return EXIT_INTERRUPTED
    if a.assert_slo and not result.slo_check["met"]:
        return EXIT_NOT_MET
    return EXIT_OK


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
    from crestline.report.live import VERDICT_COLOURS, LiveLines, search_step_line, search_summary
    from crestline.units import parse_rate_rps

    config = _search_config(a)
    spec = _spec_from_args(a, rate_rps=config.start_rate_rps, duration_s=1.0)
    floor_rps = (parse_rate_rps(a.assert_capacity, "--assert-capacity")
                 if a.assert_capacity else None)
    gpu_period_s = _gpu_period_s(a)
    live = None if a.quiet else LiveLines(sys.stderr, gpu=bool(a.gpu), search=True)

    def on_step(step: dict, policy) -> None:
        if live:
            done = sum(1 for s in policy.steps if s.verdict is not None)
            text = search_step_line(done, step, policy)
            colour = VERDICT_COLOURS.get(step["verdict"])
            live.line(live.colour(text, f"1;{colour}") if colour else text)

    if live:
        live.line(f"searching {a.url} for the highest rate with {config.slo.describe()}")
    result = _under_sigint(lambda stop: search_async(
        spec, config, on_step=on_step, on_interval=live.interval if live else None,
        runlog=a.runlog, stop=stop, gpu=a.gpu, gpu_period_s=gpu_period_s,
        on_warning=live.warning if live else None))
    _emit(a, result, search_summary)
    if result.get("interrupted"):
        return EXIT_INTERRUPTED
    if floor_rps is not None and (result["capacity_rps"] or 0) < floor_rps:
        print(f"crestline: capacity {result['capacity_rps'] or 0:,.0f} rps is below "
              f"--assert-capacity {floor_rps:,.0f} rps", file=sys.stderr)
        return EXIT_NOT_MET
    return EXIT_OK


SWEEP_EXAMPLES = """\
examples:
  crestline sweep http://127.0.0.1:8000/ --rates 100:1000:50 --step-duration 60s \\
      --slo p99=25ms --out sweep.json --html sweep.html
  crestline sweep http://127.0.0.1:8000/ --rates 200,500,1k,2k,5k --step-duration 30s \\
      --seed 7 --runlog sweep.runlog
  crestline report sweep.runlog --html sweep.html

One fixed-rate open-loop step per rate, lowest first, on the same warm connections, after a
warm-up kept out; a row of percentiles, achieved rate and errors per rate, and with --slo
where the curve crosses it (interpolated between the two rows around it, and marked so).
"""

# run's options that a sweep sets itself (--rates, --step-duration) or does not have.
_NOT_FOR_SWEEP = {"rate": "--rate", "duration": "--duration", "speed": "--speed",
                  "assert_slo": "--assert", "hdr_log": "--hdr-log"}


def _add_sweep_parser(sub) -> None:
    """`crestline sweep`: run's traffic, request, client, GPU and output options, the ladder
    and the step instead of --rate and --duration, Poisson arrivals by default."""
    p = sub.add_parser("sweep", help="latency vs offered rate: one fixed-rate step per rate",
                       description="Offer a ladder of fixed open-loop rates, one step each, "
                       "lowest first, after a warm-up kept out, and tabulate latency "
                       "percentiles, achieved rate and errors per rate; with --slo, where the "
                       "latency-throughput curve crosses it.", epilog=SWEEP_EXAMPLES)
    _add_run_options(p)
    for action in p._actions:
        if action.dest in _NOT_FOR_SWEEP:
            action.help = argparse.SUPPRESS
        elif action.dest == "arrival":
            action.default = "poisson"
            action.help = ("arrival process of every step: Poisson, evenly spaced, or from "
                           "--trace (default poisson for sweep: evenly spaced arrivals "
                           "understate queueing)")
        elif action.dest == "slo":
            action.help = ("an objective, repeatable (p99=25ms, errors=0.1%%, "
                           "gpu_util<=90%%): each row says whether it held, and the result "
                           "where the curve crosses it")
    g = p.add_argument_group("sweep")
    g.add_argument("--rates", required=True, metavar="A:B:STEP|R1,R2,...",
                   help="the ladder, ascending: 100:1000:50 (100, 150, ... 1000) or a list "
                   "such as 200,500,1k,2k; at most 200 rates")
    g.add_argument("--step-duration", default="60s",
                   help="how long each rate is offered (default 60s; at least 3 intervals)")
    g.add_argument("--warmup", default="auto", metavar="auto|none|DURATION",
                   help="auto: hold the first rate until median latency is steady (MSER, at "
                   "most 120 s); none; or a fixed hold such as 30s (default auto)")
    g.add_argument("--settle", type=int, default=1, metavar="N",
                   help="intervals at the start of each step left out of its row (default 1)")
    output = next(g for g in p._action_groups if g.title == "output")
    output.add_argument(
        "--html", metavar="OUT.html", default=None,
        help="write the HTML report: percentiles vs offered rate with the SLO and the "
        "crossing (needs crestline[html])")


def cmd_sweep(a) -> int:
    from crestline.report.live import LiveLines, sweep_table
    from crestline.search.sweep import make_sweep_config
    from crestline.sweep import sweep_async

    for dest, flag in _NOT_FOR_SWEEP.items():
        if getattr(a, dest, None) not in (None, False, 1.0, []):
            raise ConfigError(f"{flag} is not a sweep option: a sweep sets each step's rate "
                              "and length from --rates and --step-duration")
    config = make_sweep_config(a.rates, step_s=a.step_duration, settle_intervals=a.settle,
                               warmup=a.warmup, interval_s=a.interval, slo=a.slo or None)
    spec = _spec_from_args(a, rate_rps=config.rates_rps[0], duration_s=1.0)
    if a.html:  # a long sweep must not end without the report it was asked for
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from crestline.report.html import NEED_MPL

            raise ConfigError(NEED_MPL) from None
    gpu_period_s = _gpu_period_s(a)
    live = None if a.quiet else LiveLines(sys.stderr, gpu=bool(a.gpu), search=True)

    def on_row(row: dict) -> None:
        if live:
            met = {True: "met", False: "NOT met", None: ""}[row["slo_met"]]
            lat = row["latency_ms"]
            live.line(f"rate {row['rate_rps']:,.0f} rps: achieved {row['achieved_rps']:,.0f} "
                      f"rps, p50 {lat['p50']:.3g} ms, p99 {lat['p99']:.3g} ms, errors "
                      f"{100 * row['error_rate']:.3g}% {met}".rstrip())

    if live:
        n = len(config.rates_rps)
        live.line(f"sweeping {a.url}: {n} rate(s), {config.rates_rps[0]:,.6g} to "
                  f"{config.rates_rps[-1]:,.6g} rps, {config.step_s:g} s each")
    result = _under_sigint(lambda stop: sweep_async(
        spec, config.rates_rps, step_s=config.step_s, settle_intervals=config.settle_intervals,
        warmup=config.warmup, slo=config.slo, on_interval=live.interval if live else None,
        on_row=on_row, runlog=a.runlog, stop=stop, gpu=a.gpu, gpu_period_s=gpu_period_s,
        on_warning=live.warning if live else None))
    _emit(a, result, sweep_table)
    if a.html:
        from crestline.report.html import write_html

        write_html(result, a.html)
        if not a.quiet:
            print(f"wrote {a.html}", file=sys.stderr)
    return EXIT_INTERRUPTED if result.get("interrupted") else EXIT_OK


DEMO_EXAMPLES = """\
examples:
  crestline demo                       # 2-5 min: a search, then crestline-demo.html
  crestline demo --quick               # about a minute and a half
  crestline demo --run --rate 300      # a plain run against the demo model
  crestline demo --llm --quick         # the demo LLM server: capacity on TTFT and ITL
  crestline demo-server --port 8000    # the demo model alone, to point your own runs at

The demo model server: crestline demo-server --help. The search: docs/search.md.
"""


# TTFT is one sample a request: --quick's short steps hold enough of them for a p90, not a p99
LLM_DEMO_SLO = "ttft_p99=200ms,itl_p99=60ms"
LLM_DEMO_QUICK_SLO = "ttft_p90=100ms,itl_p99=60ms"


def _start_demo_server(*flags: str, module: str = "crestline.servers.demo"
                       ) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", "--max-seconds", "1800",
         *flags], stdout=subprocess.PIPE, text=True,
        start_new_session=True)  # Ctrl-C stops the search, which then stops the server
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise CrestlineError(f"the demo model server did not start: {line!r}")
    except BaseException:  # Ctrl-C included: it runs in its own session, nothing else stops it
        server.kill()
        server.wait()
        raise
    return server, line.removeprefix("listening on ")


def cmd_demo(a) -> int:
    import tempfile

    from crestline.servers.demo_requests import write_demo_trace

    server = None
    default_slo = (LLM_DEMO_QUICK_SLO if a.quick else LLM_DEMO_SLO) if a.llm else "p99=50ms"
    slo = [t.strip() for t in (a.slo or default_slo).split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="crestline-demo-") as workdir:
        try:
            if a.llm:
                server, url, trace, search = _llm_demo(workdir, a.quick)
            else:
                # --quick: a shorter server warm-up, which the search still has to find.
                server, hostport = _start_demo_server("--warmup-s", "5" if a.quick else "10")
                url = f"http://{hostport}/v2/models/ranker/infer"
                trace = os.path.join(workdir, "ranker.cltrace")
                write_demo_trace(trace, count=400, seed=1)
                print(f"demo model server at {url}: a ranking MLP scoring 10..400 candidates "
                      "per request (KServe v2 JSON), 2 model threads, slow for its first "
                      "seconds", file=sys.stderr)
                search = ["--start-rate", "300" if a.quick else "150",
                          "--max-rate", "5k", "--step-duration", "3s" if a.quick else "5s",
                          "--tolerance", "5%" if a.quick else "2%", "--warmup", "auto",
                          # --quick keeps its promise on a busy machine too: the best rate
                          # confirmed by then. A p99 needs ~5,000 samples, ~10 s a look at
                          # these rates: 70 s holds the bracket and two confirmations, one
                          # that fails and the fall-back below it.
                          "--max-time", "70s" if a.quick else "10m"]
            out = a.out or os.path.join(workdir, "result.json")
            common = ["--trace", trace, "--arrival", "poisson", "--seed", "1", "--out", out]
            if a.runlog:
                common += ["--runlog", a.runlog]
            if a.run:
                rc = cmd_run(build_parser().parse_args(
                    ["run", url, "--rate", a.rate or ("20" if a.llm else "200"),
                     "--duration", a.duration] + common))
            else:
                rc = cmd_search(build_parser().parse_args(
                    ["search", url] + [f"--slo={t}" for t in slo] + search + common))
            if a.html:
                with open(out) as f:
                    result = json.load(f)
                try:
                    from crestline.report.html import write_html

                    write_html(result, a.html)
                    print(f"report: {os.path.abspath(a.html)}", file=sys.stderr)
                except ConfigError as exc:  # no matplotlib: the search itself still stands
                    print(f"no HTML report: {exc}", file=sys.stderr)
            return rc
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)


def _llm_demo(workdir: str, quick: bool) -> tuple[subprocess.Popen, str, str, list[str]]:
    """`crestline demo --llm`: the demo LLM server with its demo costs, the demo chat mix as a
    trace, and the search's options (server, url, trace, options)."""
    from crestline.engine.llm_workload import write_demo_workload
    from crestline.servers.llm_batch import DEMO_COST, demo_flags

    server, hostport = _start_demo_server(*demo_flags(), module="crestline.servers.llm")
    url = f"http://{hostport}/"
    trace = os.path.join(workdir, "chat.cltrace")
    prompt, output = write_demo_workload(trace, n=400, seed=1)
    cap = DEMO_COST.capacity_rps(round(prompt), round(output))
    print(f"demo LLM server at {url}: continuous batching of up to {DEMO_COST.max_batch} "
          f"sequences, {DEMO_COST.step_ms:g} ms a decode step + {DEMO_COST.step_ms_per_seq:g} "
          f"ms per sequence, streamed chat completions; prompts ~{prompt:.0f} words, "
          f"~{output:.0f} output tokens: its own model serves at most {cap:.0f} rps",
          file=sys.stderr)
    # TTFT reaches the SLO's bound below the throughput limit: start at half of it.
    search = ["--start-rate", f"{cap / 2:.0f}", "--max-rate", f"{3 * cap:.0f}",
              # --quick: a coarse bracket, each step long enough for a TTFT p90
              "--step-duration", "3s" if quick else "5s", "--interval", "0.5s" if quick
              else "1s", "--tolerance", "15%" if quick else "3%", "--warmup", "none",
              "--timeout", "30s", "--max-time", "45s" if quick else "5m"]
    return server, url, trace, search


def cmd_trace(a) -> int:
    from crestline.redact import Redaction
    from crestline.trace.format import TraceError

    try:
        if a.trace_command == "import":
            from crestline.trace.importers import load, write_imported

            imported, fmt = load(a.input, a.format)
            redaction = Redaction(tuple(a.redact), a.show_secrets)
            for rec in imported.records:  # a HAR carries the session's cookies and tokens
                rec.headers = [tuple(h) for h in redaction.headers(rec.headers)]
            write_imported(imported, a.out, source=f"{fmt}:{os.path.basename(a.input)}")
            recs = imported.records
            print(f"wrote {len(recs):,} requests over {recs[-1].offset_ns / 1e9:.3f} s "
                  f"to {a.out}")
            for origin, n in (imported.meta.get("other_origins") or {}).items():
                print(f"note: {n:,} requests went to {origin}, not {imported.base_url}; kept, "
                      f"with extras.origin", file=sys.stderr)
            return EXIT_OK
        if a.trace_command == "info":
            from crestline.trace.format import read_trace
            from crestline.trace.info import describe, format_info

            d = describe(read_trace(a.file))
            print(json.dumps(d, indent=2) if a.json else format_info(d, a.file))
            return EXIT_OK
    except TraceError as exc:  # a damaged or foreign file: the user's to fix, like bad config
        print(f"crestline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    a.trace_parser.print_help(sys.stderr)
    return EXIT_USAGE


def cmd_record(a) -> int:
    import urllib.parse

    from crestline.redact import Redaction
    from crestline.trace.record import RecordConfig, parse_listen, parse_upstream, run_record
    from crestline.transport.tls import TlsOptions, check_tls_options, client_context
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
    up_origin = f"[{up_host}]" if ":" in up_host else up_host  # an IPv6 literal, bracketed
    scheme = urllib.parse.urlsplit(a.upstream.strip()).scheme
    tls = TlsOptions(a.cacert, a.insecure, a.cert, a.key)
    check_tls_options(tls, scheme)
    cfg = RecordConfig(host, port, f"{scheme}://{up_origin}:{up_port}/", up_host, up_port,
                       a.out, max_requests=max_requests, duration_s=duration_s,
                       max_body_bytes=a.max_body_bytes,
                       redaction=Redaction(tuple(a.redact), a.show_secrets),
                       upstream_ssl=client_context(tls) if scheme == "https" else None)
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
        from crestline.servers import target

        return target.main(argv[1:])
    if argv[:1] == ["demo-server"]:
        from crestline.servers import demo

        return demo.main(argv[1:])
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        _check_output_options(a)
        if a.command == "run":
            return cmd_run(a)
        if a.command == "search":
            return cmd_search(a)
        if a.command == "sweep":
            return cmd_sweep(a)
        if a.command == "demo":
            return cmd_demo(a)
        if a.command == "trace":
            return cmd_trace(a)
        if a.command == "record":
            return cmd_record(a)
        if a.command == "report":
            return cmd_report(a)
        if a.command == "compare":
            return cmd_compare(a)
        parser.print_help()
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"crestline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CrestlineError as exc:
        print(f"crestline: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("crestline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a defect or the environment: one line, a traceback on request
        if a.debug:
            raise
        print(f"crestline: error: {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_FAILED


# Options that name a file a command writes, for every command that has them.
_OUTPUT_OPTIONS = ("out", "runlog", "hdr_log", "html")


def _check_output_options(a) -> None:
    """Every output path is checked before anything runs (ConfigError names the option)."""
    from crestline.outputs import check_outputs

    if a.command == "trace":  # its -o names the .cltrace it writes; the importer checks it
        return
    # An empty name is "none" (demo --html ''), not a file.
    check_outputs(**{name: getattr(a, name, None) or None for name in _OUTPUT_OPTIONS})


if __name__ == "__main__":
    sys.exit(main())
