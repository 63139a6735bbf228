"""TLS client settings for https:// targets: one ssl.SSLContext per engine, checked before load.

Verification is on by default against the system's trust store; --cacert replaces the store
with one file (a private CA), --insecure turns verification off (and every output says so),
--cert/--key present a client certificate to servers that require one (mTLS gateways).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from crestline.errors import ConfigError

TLS_SCHEMES = ("https", "grpcs")


@dataclass(frozen=True)
class TlsOptions:
    cacert: str | None = None
    insecure: bool = False
    cert: str | None = None
    key: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.cacert or self.insecure or self.cert or self.key)


def check_tls_options(opts: TlsOptions, scheme: str) -> None:
    """Refuse TLS options that cannot apply or files that cannot be read, before any load.
    Raises ConfigError naming the option and the fix."""
    tls = scheme in TLS_SCHEMES
    if not tls and opts.given:
        option = ("--cacert" if opts.cacert else "--insecure" if opts.insecure else
                  "--cert" if opts.cert else "--key")
        raise ConfigError(f"{option} applies only to https:// (and grpcs://) URLs: drop it, or "
                          "use https://")
    if opts.insecure and opts.cacert:
        raise ConfigError("--insecure turns certificate checks off, so --cacert would be "
                          "ignored: choose one")
    if opts.key and not opts.cert:
        raise ConfigError("--key needs --cert (the client certificate it belongs to)")
    for option, path in (("--cacert", opts.cacert), ("--cert", opts.cert), ("--key", opts.key)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{option} file {path!r} not found: give a PEM file's path")
    if tls:
        client_context(opts)  # a file that is not PEM, or a key that does not fit, fails here


def client_context(opts: TlsOptions, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """The client context for a run: verification (unless insecure), SNI and hostname check
    (by the connector's server_hostname), ALPN offering `alpn`. Raises ConfigError."""
    try:
        ctx = ssl.create_default_context(cafile=opts.cacert)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--cacert {opts.cacert!r} holds no usable CA certificate "
                          f"({_reason(exc)}): give a PEM file of CA certificates") from None
    if opts.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.cert:
        try:
            ctx.load_cert_chain(opts.cert, opts.key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"--cert {opts.cert!r}" + (f" / --key {opts.key!r}" if opts.key
                              else "") + f" cannot be loaded ({_reason(exc)}): give a PEM "
                              "certificate and its private key (--key, unless the --cert "
                              "file holds both)") from None
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
