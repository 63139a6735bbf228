"""The transport the engine hands the core for a run's URL (crestline._seam): the Connector
factory, how many core Conns one connection carries, and how the run's rendered HTTP/1.1
requests become what that transport writes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from crestline._http1 import Http1
from crestline.transport.grpc_body import GrpcTarget
from crestline.transport.tls import TlsOptions, client_context


@dataclass
class Plan:
    # transport(loop, host, port, connect_timeout_s) -> Connector; None: the core's default
    # (plain HTTP/1.1)
    factory: Callable | None
    # Conns per connection: the core's connection bound is connections x this
    streams: int
    # a rendered request (crestline.engine.spec.render_request's bytes) -> the wire payload
    render: Callable[[bytes], bytes]


def _same(payload: bytes) -> bytes:
    return payload


def plan_for(scheme: str, host: str, tls: TlsOptions, *, http2: bool = False,
             streams: int = 1, grpc: GrpcTarget | None = None) -> Plan:
    """The Plan for a URL's scheme and host. https: one SSLContext shared by the connections,
    the URL's host sent as SNI and checked against the certificate; ALPN offers h2 with
    http2, else http/1.1. http2: every request rendered once as HTTP/2 frames. grpc (for
    grpc:// and grpcs://): every request rendered once as the gRPC call it stands for, over
    HTTP/2 with gRPC outcomes."""
    if grpc is not None:
        return _grpc_plan(scheme, host, tls, streams, grpc)
    if scheme == "call":
        from crestline.transport.callable import body_of, factory

        return Plan(factory(host), 1, body_of)
    ssl_ctx = None
    if scheme == "https":
        ssl_ctx = client_context(tls, alpn=("h2",) if http2 else ("http/1.1",))
    if http2:
        from crestline._h2connector import H2
        from crestline.transport.h2frames import from_http1

        return Plan(functools.partial(H2, ssl=ssl_ctx, server_hostname=host, streams=streams),
                    streams, functools.partial(from_http1, scheme=scheme))
    if ssl_ctx is not None:
        return Plan(functools.partial(Http1, ssl=ssl_ctx, server_hostname=host), 1, _same)
    return Plan(None, 1, _same)


def _grpc_plan(scheme: str, host: str, tls: TlsOptions, streams: int,
               target: GrpcTarget) -> Plan:
    from crestline._h2connector import H2
    from crestline.transport.h2frames import grpc_frames

    secure = scheme == "grpcs"
    ssl_ctx = client_context(tls, alpn=("h2",)) if secure else None

    def render(request: bytes) -> bytes:
        call = target.call_for(request)
        return grpc_frames(call.path, call.authority, "https" if secure else "http",
                           call.message, list(call.headers))

    return Plan(functools.partial(H2, ssl=ssl_ctx, server_hostname=host, streams=streams,
                                  grpc=True), streams, render)
