"""What a run is asked to do, validated before any load is sent, and its pre-rendered requests."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from crestline import __version__
from crestline.engine.arrivals import ARRIVALS
from crestline.errors import ConfigError
from crestline.units import parse_duration_s, parse_rate_rps

# HEAD is left out: its response carries a Content-Length but no body, which the response
# parser cannot be told about, so every HEAD would end as a timeout.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


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

    def validated(self) -> RunSpec:
        """Check every field; return self. Raises ConfigError naming the problem and the fix."""
        parse_url(self.url)
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
        for name in ("connections", "max_inflight", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 1, "
                                  f"got {value!r}")
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
            if not k or any(c in k for c in " :\r\n") or any(c in v for c in "\r\n"):
                raise ConfigError(f"bad header {k!r}: write -H 'Name: value'")
        return self

    @property
    def target(self) -> Target:
        return parse_url(self.url)

    def request_bytes(self) -> bytes:
        """The whole request, rendered once: request line, headers, body."""
        t = self.target
        return render_request(self.method, t.path, t.host_header, self.headers, self.body)

    def share(self, worker: int) -> tuple[int, int]:
        """(connections, max_inflight) of one worker: the totals split as evenly as possible."""
        n = self.workers
        conns = self.connections // n + (1 if worker < self.connections % n else 0)
        inflight = self.max_inflight // n + (1 if worker < self.max_inflight % n else 0)
        return conns, max(inflight, conns)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["body_bytes"] = len(self.body)
        del d["body"]
        d["headers"] = [list(h) for h in self.headers]
        return d


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
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_url(url: str) -> Target:
    """Split an http:// URL into what the client needs. Raises ConfigError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed URL {url!r}: {exc}") from None
    if parts.scheme == "https":
        raise ConfigError(f"{url!r}: https is not supported yet; use an http:// URL")
    if parts.scheme != "http":
        raise ConfigError(
            f"malformed URL {url!r}: it must start with http://, e.g. http://127.0.0.1:8000/")
    if not parts.hostname:
        raise ConfigError(f"malformed URL {url!r}: no host, e.g. http://127.0.0.1:8000/")
    port = port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    host_header = f"[{host}]" if is_v6 else host
    if port != 80:
        host_header += f":{port}"
    return Target("http", host, port, path, host_header)


def read_body(arg: str) -> bytes:
    """--body STRING, or --body @FILE for a file's bytes. Raises ConfigError."""
    if arg.startswith("@"):
        path = arg[1:]
        if not os.path.isfile(path):
            raise ConfigError(f"--body file {path!r} not found: give an existing file after @")
        with open(path, "rb") as f:
            return f.read()
    return arg.encode("utf-8")


def parse_header(arg: str) -> tuple[str, str]:
    name, sep, value = arg.partition(":")
    if not sep or not name.strip():
        raise ConfigError(f"bad header {arg!r}: write -H 'Name: value'")
    return name.strip(), value.strip()


async def preflight(target: Target, timeout_s: float = 3.0) -> None:
    """Open and close one TCP connection to the target. Raises ConfigError when it fails."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), timeout_s)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or "timed out"
        raise ConfigError(
            f"cannot connect to {target.host}:{target.port} ({reason}): "
            "is the server running and the URL right?") from None
