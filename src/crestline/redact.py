"""Which header values are secrets, and how they look in anything crestline writes.

The one rule: a header is secret when its name is one of SECRET_HEADERS or matches a --redact
pattern (searched anywhere in the name, case-insensitive). A secret's value is sent as given
but written everywhere else (results, runlogs, recorded traces, reports, messages) as MASK,
unless --show-secrets. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from crestline.errors import ConfigError

# Credentials by definition (RFC 9110 and 6265) or by near-universal use (API gateways).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie",
                            "x-api-key"})
# Written in place of a secret value. Also how a recorded trace marks a value it does not hold:
# a replay never sends it (crestline.engine.workload).
MASK = "[redacted]"


@dataclass(frozen=True)
class Redaction:
    """patterns: --redact regular expressions over header names; show: --show-secrets."""

    patterns: tuple[str, ...] = ()
    show: bool = False

    def __post_init__(self):
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ConfigError(f"--redact {p!r} is not a regular expression ({exc}): give "
                                  "a pattern over header names, e.g. --redact 'token$'") from None

    def is_secret(self, name: str) -> bool:
        low = name.lower()
        return low in SECRET_HEADERS or any(re.search(p, name, re.IGNORECASE)
                                            for p in self.patterns)

    def headers(self, pairs: Iterable) -> list[list[str]]:
        """(name, value) pairs as written: secret values masked (all shown under --show)."""
        return [[n, v if self.show or not self.is_secret(n) else MASK] for n, v in pairs]

    def names(self, pairs: Iterable) -> list[str]:
        """The secret header names among pairs (whatever --show says)."""
        return sorted({n for n, _ in pairs if self.is_secret(n)}, key=str.lower)

    def text(self, message: str, pairs: Iterable) -> str:
        """message with every secret value of pairs replaced by MASK (for errors and logs)."""
        if self.show:
            return message
        for n, v in pairs:
            if v and self.is_secret(n):
                message = message.replace(v, MASK)
        return message


def shown_warning(names: list[str]) -> str:
    """The line a result carries when --show-secrets wrote secret values."""
    return (f"--show-secrets: the values of {', '.join(names)} are written in these outputs "
            "as sent; keep the files private")
