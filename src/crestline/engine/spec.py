"""What a run is asked to do, validated before any load is sent, and its pre-rendered requests."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import resource
from dataclasses import asdict, dataclass, field
from urllib.parse import quote, urlsplit

from crestline import __version__
from crestline.engine.arrivals import ARRIVALS
from crestline.errors import ConfigError
from crestline.redact import Redaction
from crestline.transport.grpc_body import GrpcTarget, check_grpc_path
from crestline.transport.proto_json import ProtoSchema, check_schema_scheme, load_schema
from crestline.transport.tls import TLS_SCHEMES, TlsOptions, check_tls_options
from crestline.units import parse_duration_s, parse_rate_rps

# HEAD is left out: its response carries a Content-Length but no body, which the response
# parser cannot be told about, so every HEAD would end as a timeout.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# The documented ranges of every numeric option (docs/cli.md, "Ranges"). Past them a value is a
# typo (1e12 rps, a 1 ns interval) or would fail deep in the core (a C int, a malloc).
MAX_RATE_RPS = 10_000_000
MAX_DURATION_S = 7 * 24 * 3600.0
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.01, 3600.0
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.001, 3600.0  # the histograms hold up to 1 h
MAX_CONNECTIONS = 100_000
MAX_INFLIGHT = 10_000_000  # 12 bytes of queue each: 120 MB at the bound
MAX_WORKERS = 64
MAX_SPEED = 1000.0
MAX_SEED = 2**63 - 1
MAX_STREAMS = 10_000
MAX_ACTORS = 1024
# Descriptors a process needs besides its connections: stdio, the event loop, pipes, the trace.
_FD_RESERVE = 64
# The schemes crestline speaks, and the port each implies.
# call://NAME: a registered async function in place of a server (crestline.transport.callable).
DEFAULT_PORTS = {"http": 80, "https": 443, "call": 0}
# gRPC over HTTP/2 (crestline.transport.grpc_body): no default port, the URL gives it.
GRPC_SCHEMES = ("grpc", "grpcs")
# RFC 9110 token characters: what a header name may be made of.
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# A header value: visible ASCII, space and tab (obs-text is refused: no charset is defined).
_VALUE_RE = re.compile(r"^[\t\x20-\x7e]*$")


@dataclass
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent on the request line
    host_header: str


@dataclass
class RunSpec:
    """One open-loop run. Units are in the names; see docs/measurement.md for each number."""

    url: str
    rate_rps: float
    duration_s: float
    arrival: str = "constant"
    seed: int | None = None
    connections: int = 64
    max_inflight: int = 10_000
    timeout_s: float = 5.0
    method: str = "GET"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    workers: int = 1
    interval_s: float = 1.0
    precise: bool = False
    # Recorded traffic: requests (and, with arrival "trace", their timing) from a .cltrace,
    # the timing scaled by `speed`.
    trace: str | None = None
    speed: float = 1.0
    # At most one scheduler wake per window: fewer wake-ups (client CPU) for up to this much
    # send lag, which latency still counts. 0: wake for every slot.
    batch_window_s: float = 0.0
    # client_ok bounds: scheduler lag p99 and issued-vs-offered ratio (docs/measurement.md).
    max_schedule_lag_p99_ms: float = 1.0
    min_issued_ratio: float = 0.99
    # Past one host (crestline.engine.ray): "ray" starts a local Ray for the run,
    # "ray://HOST:PORT" joins a cluster; `actors` engine actors (0: one per CPU of the cluster).
    # Once the pool opens, `workers` holds the number of actors (each its share of the load).
    cluster: str | None = None
    actors: int = 0
    # https:// only (crestline.transport.tls): a CA file instead of the system store, no
    # verification at all (said in every output), a client certificate and key for mTLS.
    cacert: str | None = None
    insecure: bool = False
    cert: str | None = None
    key: str | None = None
    # HTTP/2 (crestline._h2): prior knowledge for http://, ALPN h2 for https://; `streams`
    # concurrent streams per connection (at most what the server's SETTINGS allow).
    http2: bool = False
    streams: int = 1
    # Connections opened (and TLS-handshaken) before the first interval; None: every one
    # for a TLS target, none otherwise (plain connects are cheap, and open on demand).
    preopen: int | None = None
    # grpc:// and grpcs:// (HTTP/2 implied): the ModelInfer model, when the body is the
    # KServe v2 JSON request (crestline.transport.grpc_body).
    model: str | None = None
    # grpc:// and grpcs://, any method: a JSON body encoded as the method's input type, from
    # .proto files (compiled with grpcio-tools; proto_path: their include directories) or a
    # FileDescriptorSet (crestline.transport.proto_json).
    proto: list[str] = field(default_factory=list)
    proto_path: list[str] = field(default_factory=list)
    descriptor_set: str | None = None
    # What those load into, set by validated() and sent with the spec to every worker, so
    # the schema is compiled and each message encoded once, before load.
    proto_schema: ProtoSchema | None = field(default=None, init=False, repr=False,
                                             compare=False)
    # Secret header values (crestline.redact): sent, but masked in every output unless
    # show_secrets. redact: extra regular expressions over header names.
    redact: list[str] = field(default_factory=list)
    show_secrets: bool = False
    # Goodput's per-request bounds on token streams (ttft, tpot, e2e ns; 0: none), set from
    # the SLO by the session (crestline.slo.stream.per_request_ns); None: no goodput bound.
    good_stream_ns: tuple[int, int, int] | None = None

    def validated(self) -> RunSpec:
        """Check every field; return self. Raises ConfigError naming the problem and the fix."""
        check_tls_options(self.tls, parse_url(self.url).scheme)
        if self.target.scheme == "call":
            from crestline.transport.callable import check_call_spec, lookup

            lookup(self.target.host)
            check_call_spec(self.workers, self.cluster)
        check_schema_scheme(self.proto, self.proto_path, self.descriptor_set, self.url,
                            self.target.scheme in GRPC_SCHEMES)
        if self.target.scheme in GRPC_SCHEMES:
            self._check_grpc()
        elif self.model is not None:
            raise ConfigError(f"--model {self.model!r} applies to grpc:// URLs (ModelInfer "
                              "from a KServe v2 JSON body): drop it")
        self._check_http2()
        self.rate_rps = parse_rate_rps(self.rate_rps, "--rate")
        self.duration_s = parse_duration_s(self.duration_s, "--duration")
        self.interval_s = parse_duration_s(self.interval_s, "--interval")
        self.timeout_s = parse_duration_s(self.timeout_s, "--timeout")
        if self.batch_window_s:
            self.batch_window_s = parse_duration_s(self.batch_window_s, "--batch-window")
            if self.batch_window_s > 0.1:
                raise ConfigError(
                    f"--batch-window {self.batch_window_s:g}s is too coarse: use at most 100ms")
        if self.precise and self.batch_window_s:
            raise ConfigError("--precise and --batch-window pull opposite ways: choose one")
        if self.arrival not in ARRIVALS:
            raise ConfigError(f"unknown --arrival {self.arrival!r}: use one of "
                              f"{', '.join(ARRIVALS)}")
        if ARRIVALS[self.arrival].replays_trace and not self.trace:
            raise ConfigError(f"--arrival {self.arrival} needs --trace FILE.cltrace")
        if self.trace:
            if not os.path.isfile(self.trace):
                raise ConfigError(f"--trace file {self.trace!r} not found")
            if self.body:
                raise ConfigError("--body does not apply with --trace: the trace holds the bodies")
            if not self.speed > 0:
                raise ConfigError(f"--speed must be positive, got {self.speed!r}")
        self._check_ranges()
        self._check_cluster()
        for name in ("connections", "max_inflight", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 1, "
                                  f"got {value!r}")
        if self.preopen is not None and not (isinstance(self.preopen, int)
                                             and 0 <= self.preopen <= self.connections):
            raise ConfigError(f"--preopen {self.preopen!r} is out of range (0 to --connections, "
                              f"{self.connections}): e.g. --preopen {min(self.connections, 16)}")
        if self.max_inflight < self.connections:
            raise ConfigError(
                f"--max-inflight ({self.max_inflight}) is below --connections "
                f"({self.connections}): raise it, or lower --connections")
        self.method = self.method.upper()
        if self.method == "HEAD":
            raise ConfigError("--method HEAD is not supported: use GET")
        if self.method not in METHODS:
            raise ConfigError(f"unknown --method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.workers > 1 and self.connections < self.workers:
            raise ConfigError(
                f"--connections ({self.connections}) is split across --workers ({self.workers}): "
                "give each worker at least one")
        for k, v in self.headers:
            check_header(k, v)
        _ = self.redaction  # a bad --redact pattern is refused here, before any load
        self._check_open_files()
        return self

    def _check_cluster(self) -> None:
        """--cluster and --actors, before any load."""
        if self.cluster is None:
            if self.actors:
                raise ConfigError(f"--actors {self.actors!r} needs --cluster ray (or "
                                  "ray://HOST:10001): without a cluster use --workers")
            return
        if self.cluster != "ray" and not (isinstance(self.cluster, str)
                                          and self.cluster.startswith("ray://")
                                          and len(self.cluster) > len("ray://")):
            raise ConfigError(f"--cluster {self.cluster!r} is not a Ray address: use ray (a "
                              "local Ray for the run) or ray://HOST:10001 (a running cluster)")
        if not isinstance(self.actors, int) or not 0 <= self.actors <= MAX_ACTORS:
            raise ConfigError(f"--actors {self.actors!r} is out of range (0 to {MAX_ACTORS}; "
                              "0: one per CPU of the cluster): e.g. --actors 4")
        if self.workers > 1 and self.workers != self.actors:
            raise ConfigError(f"--workers {self.workers} does not apply with --cluster: the "
                              "cluster's actors are the client processes; use --actors N")
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError(f"--cluster {self.cluster} needs Ray: pip install crestline[ray]")

    def _check_ranges(self) -> None:
        def refuse(option, value, rule, fix):
            raise ConfigError(f"{option} {value!r} is out of range ({rule}): {fix}")

        if self.rate_rps > MAX_RATE_RPS:
            refuse("--rate", self.rate_rps, f"at most {MAX_RATE_RPS:,} rps from one host",
                   "a typo? for more, run on several hosts")
        if self.duration_s > MAX_DURATION_S:
            refuse("--duration", self.duration_s, "at most 7 days", "split the run")
        if not MIN_INTERVAL_S <= self.interval_s <= MAX_INTERVAL_S:
            refuse("--interval", self.interval_s, "10ms to 1h", "e.g. --interval 1s")
        if not MIN_TIMEOUT_S <= self.timeout_s <= MAX_TIMEOUT_S:
            refuse("--timeout", self.timeout_s, "1ms to 1h", "e.g. --timeout 5s")
        for option, value, top in (("--connections", self.connections, MAX_CONNECTIONS),
                                   ("--max-inflight", self.max_inflight, MAX_INFLIGHT),
                                   ("--workers", self.workers, MAX_WORKERS)):
            if isinstance(value, int) and value > top:
                refuse(option, value, f"1 to {top:,}", f"lower {option}")
        if self.seed is not None and not (isinstance(self.seed, int) and
                                          0 <= self.seed <= MAX_SEED):
            refuse("--seed", self.seed, "a whole number from 0 to 2**63-1", "e.g. --seed 7")
        if not 0 < self.speed <= MAX_SPEED:
            refuse("--speed", self.speed, f"above 0, at most {MAX_SPEED:g}", "e.g. --speed 2")

    def _check_grpc(self) -> None:
        """A gRPC URL: HTTP/2, POST, and (without a trace) its method path and the message,
        built here once so a bad body is refused before load. A trace's records name their
        own methods (crestline.engine.workload renders them; each becomes its call there)."""
        self.http2 = True
        self.method = "POST"
        self.proto_schema = load_schema(self.proto, self.proto_path, self.descriptor_set,
                                        reuse=self.proto_schema)
        if not self.trace:
            check_grpc_path(self.target.path, self.url)
            self.grpc_target().call_for(self.request_bytes())

    def grpc_target(self) -> GrpcTarget | None:
        """Where a gRPC run's calls go (None for HTTP URLs)."""
        t = self.target
        return (GrpcTarget(t.host_header, self.model, mixed=bool(self.trace),
                           schema=self.proto_schema)
                if t.scheme in GRPC_SCHEMES else None)

    def _check_http2(self) -> None:
        """--http2 and --streams, before any load."""
        if not isinstance(self.streams, int) or not 1 <= self.streams <= MAX_STREAMS:
            raise ConfigError(f"--streams {self.streams!r} is out of range (1 to "
                              f"{MAX_STREAMS:,} per connection): e.g. --streams 100")
        if self.streams > 1 and not self.http2:
            raise ConfigError(f"--streams {self.streams} applies to HTTP/2 only (HTTP/1.1 "
                              "carries one request per connection): add --http2, or drop it")
        if self.http2:
            import importlib.util

            if importlib.util.find_spec("hpack") is None:
                raise ConfigError("HTTP/2 (--http2, grpc://) needs the hpack package: "
                                  "pip install crestline[http2]")

    def _check_open_files(self) -> None:
        """Every connection is a descriptor: past the open-file limit they would fail as
        'connect' errors that look like the server's fault."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        per_process = -(-self.connections // max(self.workers, self.actors or 1))
        if soft != resource.RLIM_INFINITY and per_process + _FD_RESERVE > soft:
            raise ConfigError(
                f"--connections {self.connections} needs {per_process + _FD_RESERVE} open files "
                f"per client process, but the limit is {soft} (ulimit -n): raise it "
                f"(ulimit -n {per_process + _FD_RESERVE}), lower --connections, or add --workers")

    @property
    def target(self) -> Target:
        return parse_url(self.url)

    @property
    def tls(self) -> TlsOptions:
        return TlsOptions(self.cacert, self.insecure, self.cert, self.key)

    @property
    def redaction(self) -> Redaction:
        return Redaction(tuple(self.redact), self.show_secrets)

    def request_bytes(self) -> bytes:
        """The whole request, rendered once: request line, headers, body."""
        t = self.target
        return render_request(self.method, t.path, t.host_header, self.headers, self.body)

    def share(self, worker: int) -> tuple[int, int]:
        """(connections, max_inflight) of one worker: the totals split as evenly as possible."""
        conns = _split(self.connections, self.workers, worker)
        inflight = _split(self.max_inflight, self.workers, worker)
        return conns, max(inflight, conns)

    def preopen_share(self, worker: int) -> int:
        """Connections one worker opens before its first interval (see `preopen`)."""
        conns, _ = self.share(worker)
        if self.preopen is None:
            return conns if self.target.scheme in TLS_SCHEMES else 0
        return min(conns, _split(self.preopen, self.workers, worker))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["body_bytes"] = len(self.body)
        del d["body"], d["proto_schema"]
        d["headers"] = self.redaction.headers(self.headers)
        d["redact"] = list(self.redact)
        return d


def _split(total: int, n: int, worker: int) -> int:
    """One worker's share of total across n workers, as even as whole numbers allow."""
    return total // n + (1 if worker < total % n else 0)


def render_request(method: str, path: str, host_header: str, headers, body: bytes) -> bytes:
    """One HTTP/1.1 request as bytes: Host, User-Agent and Accept unless given, then the given
    headers (Content-Length is always computed here), then the body."""
    names = {k.lower() for k, _ in headers}
    lines = [f"{method} {path} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {host_header}")
    if "user-agent" not in names:
        lines.append(f"User-Agent: crestline/{__version__}")
    if "accept" not in names:
        lines.append("Accept: */*")
    lines += [f"{k}: {v}" for k, v in headers if k.lower() != "content-length"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    try:
        return head.encode("ascii") + body
    except UnicodeEncodeError:
        # Paths are percent-encoded before this, so what is left is a header (a recorded one:
        # given ones are checked by check_header).
        bad = next(line for line in lines if not line.isascii())
        raise ConfigError(f"header {bad.split(':', 1)[0]!r} holds non-ASCII text, which HTTP/1.1 "
                          "gives no charset for: percent-encode or base64 it") from None


def check_header(name: str, value: str) -> None:
    """A header crestline will send: a token name and a visible-ASCII value. Raises
    ConfigError naming the header (never its value: it may be a secret)."""
    if not name or not _TOKEN_RE.match(name):
        raise ConfigError(f"bad header name {name!r}: letters, digits and !#$%&'*+-.^_`|~ only; "
                          "write -H 'Name: value'")
    if not _VALUE_RE.match(value):
        raise ConfigError(f"header {name!r}: its value holds control or non-ASCII characters; "
                          "send visible ASCII (percent-encode or base64 the rest)")


def encode_path(path: str) -> str:
    """A request target as sent: non-ASCII characters percent-encoded as UTF-8 (as browsers do
    with an IRI); what is already ASCII, percent-escapes included, is left as it is."""
    return path if path.isascii() else quote(path, safe="".join(map(chr, range(0x21, 0x7f))))


def parse_url(url: str) -> Target:
    """Split an http:// or https:// URL into what the client needs. Raises ConfigError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed URL {url!r}: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS and parts.scheme not in GRPC_SCHEMES:
        raise ConfigError(f"malformed URL {url!r}: it must start with http://, https://, "
                          "grpc:// or grpcs://, e.g. http://127.0.0.1:8000/")
    if parts.scheme in GRPC_SCHEMES and port is None:
        raise ConfigError(f"{url!r}: a gRPC URL needs its port, e.g. grpc://127.0.0.1:8001/"
                          "inference.GRPCInferenceService/ModelInfer")
    if not parts.hostname:
        raise ConfigError(f"malformed URL {url!r}: no host, e.g. http://127.0.0.1:8000/")
    if parts.username is not None or parts.password is not None:
        # Never echo it: the password would land in the terminal's scrollback.
        shown = url.replace(parts.netloc, "***@" + parts.netloc.rsplit("@", 1)[-1])
        raise ConfigError(f"{shown}: credentials in the URL (user:password@) are not sent; "
                          "give them as a header, e.g. -H 'Authorization: Basic BASE64'")
    if port == 0:
        raise ConfigError(f"malformed URL {url!r}: port 0 is not a port; give the server's, "
                          "e.g. http://127.0.0.1:8000/")
    default_port = DEFAULT_PORTS.get(parts.scheme, 0)
    port = port or default_port
    path = encode_path(parts.path or "/")
    if parts.query:
        path += "?" + encode_path(parts.query)
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ConfigError(f"malformed URL {url!r}: the host name is not a valid "
                              "internationalised name") from None
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    host_header = f"[{host}]" if is_v6 else host
    if port != default_port:
        host_header += f":{port}"
    return Target(parts.scheme, host, port, path, host_header)


def read_body(arg: str) -> bytes:
    """--body STRING, or --body @FILE for a file's bytes. Raises ConfigError."""
    if arg.startswith("@"):
        path = arg[1:]
        if not os.path.isfile(path):
            raise ConfigError(f"--body file {path!r} not found: give an existing file after @")
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ConfigError(f"--body file {path!r} cannot be read ({exc.strerror}): check "
                              "its permissions") from None
    return arg.encode("utf-8")


def parse_header(arg: str) -> tuple[str, str]:
    name, sep, value = arg.partition(":")
    if not sep or not name.strip():
        # Echo only the first word: the rest may be a credential typed without its colon.
        words = arg.split(None, 1)
        shown = words[0] + (" ..." if len(words) > 1 else "") if words and sep == "" else "..."
        raise ConfigError(f"bad header {shown!r}: write -H 'Name: value'")
    return name.strip(), value.strip()


async def preflight(target: Target, timeout_s: float = 3.0) -> None:
    """Open and close one TCP connection to the target. Raises ConfigError when it fails."""
    if target.scheme == "call":
        return  # a function in this process: nothing to reach
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), timeout_s)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or "timed out"
        raise ConfigError(
            f"cannot connect to {target.host}:{target.port} ({reason}): "
            "is the server running and the URL right?") from None
