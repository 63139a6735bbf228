"""Parsing of durations and rates as users write them: `30s`, `2m`, `500ms`, `10k`, `2.5k/s`."""

from __future__ import annotations

import math
import re

from crestline.errors import ConfigError

_DURATION_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                     "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|us|µs|ms|s|m|h)?\s*$")
_RATE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmM]?)\s*(?:/s|rps)?\s*$")


def parse_duration_s(text: str | float | int, what: str = "duration") -> float:
    """Seconds from '30s', '2m', '500ms', '1h', '1.5' (seconds). Raises ConfigError."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _DURATION_RE.match(str(text))
        if not m:
            raise ConfigError(
                f"cannot read {what} {text!r}: write a number with a unit, e.g. 30s, 2m, 500ms")
        value = float(m.group(1)) * _DURATION_UNITS_S[m.group(2) or "s"]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be positive, got {text!r}")
    return value


def parse_rate_rps(text: str | float | int, what: str = "rate") -> float:
    """Requests per second from '1000', '10k', '2.5k/s', '1M'. Raises ConfigError."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _RATE_RE.match(str(text))
        if not m:
            raise ConfigError(
                f"cannot read {what} {text!r}: write requests per second, e.g. 1000, 10k, 2.5k")
        value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be a positive number of requests per second, got {text!r}")
    return value


def format_duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
