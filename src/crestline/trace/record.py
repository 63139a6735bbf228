"""`crestline record`: a recording reverse proxy. Forwards HTTP/1.1 traffic to an upstream
untouched and writes every request into a `.cltrace` as it completes. Pure Python (asyncio,
uvloop when available, httptools); never imports the compiled core.

- Each client connection gets its own upstream connection, opened when the client first sends
  bytes and re-opened if the upstream closes it between requests. Client bytes are forwarded
  as received (the `Host` header stays as the client sent it), and upstream bytes are relayed
  back as received: the proxy never re-renders a message.
- Both directions are parsed on the side (httptools) only to see where messages start and end:
  a request's offset is when its first byte arrived (monotonic ns, relative to the first
  request), its record is written once its response has been relayed, with
  `extras = {"status": upstream status, "latency_ms": time from the request's last byte to
  the response's last byte}`. Records go out in arrival order through a small reorder buffer.
- Memory is bounded: reading pauses while the other side's write buffer is full, bodies larger
  than `max_body_bytes` are forwarded but not recorded (counted as skipped), and the reorder
  buffer writes a request that waits too long for its response without a status.
- If the upstream refuses the connection or drops it before answering, the client gets a
  `502` with a one-line body and its connection is closed.
- LLM traffic: a streamed (`text/event-stream`) response is relayed as its bytes arrive, so
  the client sees every token when the server sends it; its record says `"stream": true`.
  Where a response (streamed or not) carries an OpenAI `usage`, the record keeps its
  `prompt_tokens` and `completion_tokens`: what `llm_workload --prompt-tokens trace:FILE`
  fits lengths to.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
import time
import urllib.parse
from dataclasses import dataclass, field

import httptools

from crestline.errors import ConfigError
from crestline.redact import MASK, Redaction
from crestline.trace.format import TraceRecord, TraceWriter

DEFAULT_MAX_BODY_BYTES = 16 << 20
_DROP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})
_MAX_WAITING = 4096          # finished records held for an earlier, unanswered request
_STOP_GRACE_S = 2.0          # how long a stop waits for responses still in flight
_FLUSH_EVERY_S = 1.0
# An OpenAI usage count in a response body (JSON or an SSE event): found on the side, never
# parsed as a whole, so a stream's bytes are relayed as they come.
_USAGE = re.compile(rb'"(prompt_tokens|completion_tokens)"\s*:\s*(\d+)')
_USAGE_TAIL = 64   # bytes kept across reads, so a count split between two reads is found


def _bad_gateway(reason: str) -> bytes:
    body = f"crestline record: upstream {reason}\n".encode()
    return (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


@dataclass
class _Req:
    seq: int | None            # None: beyond --max-requests, forwarded but not tracked
    arrival_ns: int
    url: bytearray = field(default_factory=bytearray)
    method: str = ""
    headers: list = field(default_factory=list)
    body: list = field(default_factory=list)
    body_len: int = 0
    too_big: bool = False
    complete_ns: int | None = None   # request fully received (and handed to the upstream)
    status: int | None = None
    latency_ms: float | None = None
    answered: bool = False
    error: str | None = None
    final: bool = False
    response_extras: dict = field(default_factory=dict)  # stream, prompt/completion tokens


class Recorder:
    """Assigns sequence numbers and offsets, and writes finished requests in arrival order."""

    def __init__(self, writer: TraceWriter, max_requests: int | None,
                 max_body_bytes: int, stop: asyncio.Event, redaction: Redaction | None = None):
        self.writer = writer
        self.redaction = redaction or Redaction()
        self.max_requests = max_requests
        self.max_body_bytes = max_body_bytes
        self.stop = stop
        self.t0_ns: int | None = None
        self.next_seq = 0
        self.next_write = 0
        self.open: dict[int, _Req] = {}        # seq -> request not yet written
        self.ready: set[int] = set()           # seqs finalized, waiting for an earlier one
        self.recorded = 0
        self.skipped_large = 0
        self.skipped_incomplete = 0
        self.unanswered = 0

    def arrive(self, now_ns: int) -> _Req:
        if self.max_requests is not None and self.next_seq >= self.max_requests:
            return _Req(None, now_ns)
        if self.t0_ns is None:
            self.t0_ns = now_ns
        req = _Req(self.next_seq, now_ns)
        self.open[req.seq] = req
        self.next_seq += 1
        return req

    def finish(self, req: _Req) -> None:
        """Finalize a request (answered, failed, or abandoned); idempotent."""
        if req.seq is None or req.final:
            return
        req.final = True
        self.ready.add(req.seq)
        self._drain()
        if len(self.ready) > _MAX_WAITING and self.next_write in self.open:
            head = self.open[self.next_write]   # waiting too long for its response
            head.error = head.error or "no response yet when the record was written"
            self.finish(head)

    def _drain(self) -> None:
        while self.next_write in self.ready:
            self.ready.discard(self.next_write)
            req = self.open.pop(self.next_write)
            self.next_write += 1
            self._write(req)
        if (self.max_requests is not None and self.next_write >= self.max_requests):
            self.stop.set()

    def _write(self, req: _Req) -> None:
        if req.too_big:
            self.skipped_large += 1
            return
        if req.complete_ns is None or not req.method:
            self.skipped_incomplete += 1
            return
        extras: dict = {}
        if req.status is not None:
            extras["status"] = req.status
        if req.latency_ms is not None:
            extras["latency_ms"] = round(req.latency_ms, 3)
        extras.update(req.response_extras)
        if req.error:
            extras["error"] = req.error
            self.unanswered += 1
        # Secret values are written as redact.MASK: a replay leaves such headers out (-H
        # gives them), so a trace can be shared without the credentials it was recorded with.
        headers = [(n, v) for n, v in self.redaction.headers(req.headers)
                   if n.lower() not in _DROP_HEADERS]
        self.writer.write(TraceRecord(req.arrival_ns - self.t0_ns, req.method,
                                      _path(bytes(req.url)), headers, b"".join(req.body),
                                      extras))
        self.recorded += 1

    def abandon_all(self, reason: str) -> None:
        for req in sorted(self.open.values(), key=lambda r: r.seq):
            if not req.final:
                req.error = req.error or reason
                self.finish(req)


def _path(url: bytes) -> str:
    text = url.decode("latin-1")
    if text.startswith(("http://", "https://")):   # absolute-form: keep path and query
        parts = urllib.parse.urlsplit(text)
        text = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return text


class _Upstream(asyncio.Protocol):
    def __init__(self, client: _Client):
        self.client = client
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.in_message = False
        self.status: int | None = None
        self.head_buf = b""    # HEAD responses: headers only, found by hand
        self.extras: dict = {}   # the response's stream flag and usage counts
        self.tail = b""

    def connection_made(self, transport):
        self.transport = transport

    # parser callbacks
    def on_message_begin(self):
        self.in_message = True
        self.extras, self.tail = {}, b""

    def on_header(self, name, value):
        if name.lower() == b"content-type" and value.lower().startswith(b"text/event-stream"):
            self.extras["stream"] = True

    def on_headers_complete(self):
        self.status = self.parser.get_status_code()

    def on_body(self, body):
        buf = self.tail + body
        for m in _USAGE.finditer(buf):
            self.extras[m.group(1).decode()] = int(m.group(2))
        self.tail = buf[-_USAGE_TAIL:]

    def on_message_complete(self):
        self.in_message = False
        status = self.status
        if status is not None and 100 <= status < 200 and status != 101:
            return   # informational (100 Continue): the real response follows
        self.client.answered(status, self.extras)

    def data_received(self, data):
        c = self.client
        if c.transport is not None:
            c.transport.write(data)
        if c.tunnel:
            return
        try:
            while data:
                head = c.queue[0] if c.queue else None
                if head is not None and head.method == "HEAD" and not self.in_message:
                    buf = self.head_buf + data
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        self.head_buf = buf[-65536:]
                        return
                    self.head_buf = b""
                    try:
                        status = int(buf.split(b" ", 2)[1])
                    except (IndexError, ValueError):
                        status = None
                    data = buf[end + 4:]
                    if status is None or not 100 <= status < 200:
                        c.answered(status)
                    self.parser = httptools.HttpResponseParser(self)
                    continue
                self.parser.feed_data(data)
                return
        except httptools.HttpParserUpgrade:
            c.answered(self.status)
            c.tunnel = True
        except httptools.HttpParserError:
            c.tunnel = True   # not HTTP we can follow: keep relaying, stop recording

    def pause_writing(self):
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self):
        if self.client.transport is not None:
            self.client.transport.resume_reading()

    def connection_lost(self, exc):
        self.transport = None
        c = self.client
        if self.in_message and self.status is not None:   # a body delimited by the close
            self.in_message = False
            c.answered(self.status)
        c.upstream_lost(self)


class _Client(asyncio.Protocol):
    def __init__(self, proxy: Proxy):
        self.proxy = proxy
        self.rec = proxy.recorder
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: list[_Req] = []     # requests (begun) awaiting their response, in order
        self.current: _Req | None = None
        self.upstream: _Upstream | None = None
        self.connecting: list[bytes] | None = None
        self.tunnel = False
        self.now_ns = 0

    def connection_made(self, transport):
        self.transport = transport
        self.proxy.clients.add(self)

    # request parser callbacks
    def on_message_begin(self):
        req = self.rec.arrive(self.now_ns)
        self.current = req
        self.queue.append(req)

    def on_url(self, url):
        self.current.url += url

    def on_header(self, name, value):
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self):
        self.current.method = self.parser.get_method().decode("latin-1")

    def on_body(self, body):
        req = self.current
        if req.too_big or req.seq is None:
            return
        req.body_len += len(body)
        if req.body_len > self.rec.max_body_bytes:
            req.too_big = True
            req.body.clear()
        else:
            req.body.append(bytes(body))

    def on_message_complete(self):
        req = self.current
        req.complete_ns = time.monotonic_ns()
        self.current = None
        if req.answered:      # the upstream answered before the body was in
            self.rec.finish(req)

    def data_received(self, data):
        self.now_ns = time.monotonic_ns()
        if not self.tunnel:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                self.tunnel = True   # the upgraded stream is relayed, not recorded
            except httptools.HttpParserError:
                self.tunnel = True
        self._forward(data)

    def _forward(self, data: bytes) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)
        elif self.connecting is not None:
            self.connecting.append(data)
        else:
            self.connecting = [data]
            self.transport.pause_reading()
            self.proxy.spawn(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.proxy.upstream_addr
        try:
            ssl_ctx = self.proxy.upstream_ssl
            _, up = await loop.create_connection(
                lambda: _Upstream(self), host, port, ssl=ssl_ctx,
                server_hostname=host if ssl_ctx is not None else None)
        except OSError as exc:  # ssl.SSLError too: a refused certificate
            self.connecting = None
            self._fail(f"connection failed: {exc.strerror or exc}")
            return
        if self.transport is None:    # the client left meanwhile
            up.transport.close()
            return
        self.upstream = up
        pending, self.connecting = self.connecting, None
        for chunk in pending:
            up.transport.write(chunk)
        self.transport.resume_reading()

    def answered(self, status: int | None, extras: dict | None = None) -> None:
        if not self.queue:
            return
        req = self.queue.pop(0)
        req.status = status
        req.response_extras = dict(extras or {})
        req.answered = True
        if req.complete_ns is not None:
            req.latency_ms = (time.monotonic_ns() - req.complete_ns) / 1e6
            self.rec.finish(req)

    def upstream_lost(self, up: _Upstream) -> None:
        if self.upstream is up:
            self.upstream = None
        if self.queue and not self.tunnel:
            self._fail("closed the connection before answering")
        elif self.tunnel and self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        """The upstream cannot answer: 502 to the client if no response bytes went out."""
        up_started = self.upstream is not None and self.upstream.in_message
        if self.transport is not None and not up_started:
            self.transport.write(_bad_gateway(reason))
        for req in self.queue:
            req.error = f"upstream {reason}"
            if req.complete_ns is not None:
                req.status = 502
            self.rec.finish(req)
        self.queue.clear()
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self):
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self):
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def connection_lost(self, exc):
        self.transport = None
        self.proxy.clients.discard(self)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()
        for req in self.queue:   # begun but never answered (or never fully received)
            req.error = req.error or "the client closed the connection before the response"
            self.rec.finish(req)
        self.queue.clear()


class Proxy:
    def __init__(self, recorder: Recorder, upstream_addr: tuple[str, int],
                 upstream_ssl=None):
        self.recorder = recorder
        self.upstream_addr = upstream_addr
        self.upstream_ssl = upstream_ssl  # an ssl.SSLContext for an https:// upstream
        self.clients: set[_Client] = set()
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


# --------------------------------------------------------------------------------------------
# Options and the run


@dataclass
class RecordConfig:
    listen_host: str
    listen_port: int
    upstream_url: str
    upstream_host: str
    upstream_port: int
    out: str
    max_requests: int | None = None
    duration_s: float | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    redaction: Redaction = field(default_factory=Redaction)
    # an https:// upstream: the client context (verification, --cacert, --cert) to reach it
    upstream_ssl: object = None


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"cannot read --listen {text!r}: write HOST:PORT, e.g. "
                          f"127.0.0.1:8080 (port 0 picks a free one)")
    return host, int(port)


def parse_upstream(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"--upstream {url!r} must be an http:// or https:// URL")
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ConfigError(f"cannot read --upstream {url!r}: write http[s]://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"--upstream {url!r}: give only the origin (http://HOST:PORT): "
                          f"paths are forwarded as the client sends them")
    return host, port


def check_upstream(host: str, port: int, timeout_s: float = 5.0) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        origin = f"[{host}]" if ":" in host else host
        raise ConfigError(f"upstream http://{origin}:{port}/ is not reachable: "
                          f"{exc.strerror or exc}") from None


async def record_async(cfg: RecordConfig, stop: asyncio.Event | None = None,
                       on_listening=None) -> dict:
    """Run the proxy until --max-requests, --duration or `stop`; returns a summary dict."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    meta = {"recorder": "crestline record", "upstream": cfg.upstream_url,
            "host_header": "as sent by the client",
            "max_body_bytes": cfg.max_body_bytes,
            "bodies_over_max": "forwarded, not recorded (trailer: skipped_large)",
            "secrets": ("recorded as sent (--show-secrets)" if cfg.redaction.show else
                        f"values written as {MASK} (crestline.redact)")}
    writer = TraceWriter(cfg.out, source="crestline record", base_url=cfg.upstream_url,
                         meta=meta)
    recorder = Recorder(writer, cfg.max_requests, cfg.max_body_bytes, stop, cfg.redaction)
    proxy = Proxy(recorder, (cfg.upstream_host, cfg.upstream_port), cfg.upstream_ssl)
    try:
        server = await loop.create_server(lambda: _Client(proxy), cfg.listen_host,
                                          cfg.listen_port, backlog=1024)
    except OSError as exc:
        writer.abort()
        import os
        os.unlink(cfg.out)
        raise ConfigError(f"cannot listen on {cfg.listen_host}:{cfg.listen_port}: "
                          f"{exc.strerror or exc}") from None
    host, port = server.sockets[0].getsockname()[:2]
    if on_listening is not None:
        on_listening(host, port)
    interrupted = False

    async def flusher():
        while True:
            await asyncio.sleep(_FLUSH_EVERY_S)
            writer.flush()

    flush_task = loop.create_task(flusher())
    try:
        waiter = loop.create_task(stop.wait())
        await asyncio.wait([waiter], timeout=cfg.duration_s)
        interrupted = getattr(stop, "interrupted", False)
        waiter.cancel()
        server.close()
        # Responses still in flight get a short grace, then the rest are written unanswered.
        deadline = loop.time() + _STOP_GRACE_S
        while recorder.open and any(r.complete_ns is not None for r in recorder.open.values()
                                    if not r.final) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        recorder.abandon_all("no response before the recorder stopped")
        for c in list(proxy.clients):
            if c.transport is not None:
                c.transport.close()
        if recorder.open:   # seqs never finalized cannot remain; write what is left
            recorder.abandon_all("no response before the recorder stopped")
    except BaseException:
        writer.abort()
        raise
    finally:
        flush_task.cancel()
    writer.close(extra={"skipped_large": recorder.skipped_large,
                        "skipped_incomplete": recorder.skipped_incomplete})
    return {"recorded": recorder.recorded, "skipped_large": recorder.skipped_large,
            "skipped_incomplete": recorder.skipped_incomplete,
            "unanswered": recorder.unanswered,
            "duration_s": writer._last_offset_ns / 1e9, "listen": f"{host}:{port}",
            "interrupted": interrupted}


def run_record(cfg: RecordConfig) -> dict:
    """Blocking: the proxy on uvloop (asyncio if uvloop is missing); SIGINT and SIGTERM stop
    it with a valid file."""
    check_upstream(cfg.upstream_host, cfg.upstream_port)

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal():
            stop.interrupted = True
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)

        def on_listening(host, port):
            print(f"listening on {host}:{port}", flush=True)
            print(f"recording on {host}:{port} -> {cfg.upstream_url}", file=sys.stderr,
                  flush=True)

        return await record_async(cfg, stop, on_listening)

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
