"""The Connector factory the engine hands the core for a run's URL (crestline._seam)."""

from __future__ import annotations

import functools

from crestline._http1 import Http1
from crestline.transport.tls import TlsOptions, client_context


def connector_for(scheme: str, host: str, tls: TlsOptions):
    """transport(loop, host, port, connect_timeout_s) -> Connector for the core, or None for
    the core's default (plain HTTP/1.1). https: one SSLContext shared by the connections;
    the URL's host is sent as SNI and checked against the certificate."""
    if scheme == "https":
        return functools.partial(Http1, ssl=client_context(tls), server_hostname=host)
    return None
