"""Import recorded traffic into `.cltrace`: from HAR 1.2 files (browsers, mitmproxy, many
proxies) and from JSON Lines, one request per line. Pure Python; the rules are in
`docs/trace-format.md`.

Both importers read the whole input, check it, and return the records sorted by time (stably,
so requests with equal times keep their order), with offsets from the earliest request. Every
problem raises ConfigError naming the line (JSON Lines) or entry (HAR) and the fix; nothing is
written until the whole input is good.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import decimal
import json
import math
import os
import re
from typing import NamedTuple
from urllib.parse import urlencode, urlsplit

from crestline.errors import ConfigError
from crestline.trace.format import TraceRecord, write_trace

# Headers the engine sets itself (Host, Content-Length) or that describe one hop of one
# connection, not the request: replaying them verbatim would be wrong.
DROPPED_HEADERS = frozenset({
    "host", "content-length", "connection", "transfer-encoding", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade"})
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_PATH_RE = re.compile(r"[\x00-\x20\x7f]")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")
_JSONL_KEYS = {"t", "method", "path", "headers", "body", "body_b64", "model", "extras"}
_ISO_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
                     r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)$")


class Imported(NamedTuple):
    """What an importer found: the records (sorted, offsets from the first), the base URL of
    the recorded server if the input says it, and notes for the trace header's `meta`."""

    records: list[TraceRecord]
    base_url: str | None
    meta: dict


# --------------------------------------------------------------------------------------------
# JSON Lines


def import_jsonl(path: str | os.PathLike) -> Imported:
    """Requests from a JSON Lines file, one object per line:
    `{"t": 12.5, "method": "POST", "path": "/v2/models/m/infer", "headers": {...},
    "body": "..."}`. `t` is seconds (any origin), `body` text or `body_b64` base64; `method`
    defaults to GET; `headers` (an object, or a list of [name, value] pairs) and the body are
    optional; `model` and `extras` go to the record's extras. Blank lines are skipped; other
    keys are ignored and listed in meta. Raises ConfigError naming the line."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw_lines = f.read().split(b"\n")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    rows: list[tuple[float, TraceRecord]] = []
    ignored: set[str] = set()
    for lineno, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            continue

        def bad(what: str, lineno: int = lineno) -> ConfigError:
            return ConfigError(f"{path}, line {lineno}: {what}")

        try:
            # Decimal: epoch-sized times keep every digit (a float has ~0.2 µs resolution there)
            obj = json.loads(raw.decode("utf-8"), parse_float=decimal.Decimal)
        except UnicodeDecodeError:
            raise bad("not UTF-8 text") from None
        except ValueError as exc:
            raise bad(f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be "
                      f"one JSON object") from None
        if not isinstance(obj, dict):
            raise bad(f"a JSON {type(obj).__name__} where an object like "
                      f'{{"t": 0.5, "path": "/"}} is needed')
        t = obj.get("t")
        if t is None:
            raise bad('no "t": give each request\'s time in seconds, e.g. "t": 12.5')
        if (isinstance(t, bool) or not isinstance(t, (int, float, decimal.Decimal))
                or not math.isfinite(t)):
            raise bad(f'"t" must be a number of seconds, got {_plain(t)!r}')
        method = obj.get("method", "GET")
        if not isinstance(method, str) or not _TOKEN_RE.match(method):
            raise bad(f'"method" must be an HTTP method such as "POST", got {method!r}')
        path_ = obj.get("path")
        if not isinstance(path_, str):
            raise bad(f'"path" must be a string such as "/v2/models/m/infer", got {path_!r}')
        _check_path(path_, bad)
        headers = _headers_from_json(obj.get("headers"), bad)
        if "body" in obj and "body_b64" in obj:
            raise bad('both "body" and "body_b64": give one (text, or base64 for binary)')
        body = b""
        if obj.get("body") is not None:
            if not isinstance(obj["body"], str):
                raise bad('"body" must be a string (JSON-encode an object into it, or use '
                          '"body_b64" for binary)')
            body = obj["body"].encode("utf-8")
        elif obj.get("body_b64") is not None:
            b64 = obj["body_b64"]
            if not isinstance(b64, str):
                raise bad('"body_b64" must be a base64 string')
            try:
                body = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise bad('"body_b64" is not valid base64') from None
        extras = obj.get("extras")
        if extras is not None and not isinstance(extras, dict):
            raise bad('"extras" must be an object')
        extras = _plain(dict(extras or {}))
        if obj.get("model") is not None:
            if not isinstance(obj["model"], str):
                raise bad('"model" must be a string')
            extras["model"] = obj["model"]
        ignored.update(k for k in obj if k not in _JSONL_KEYS)
        rec = TraceRecord(0, method, path_, headers, body, extras or None)
        rows.append((decimal.Decimal(t), rec))
    if not rows:
        raise ConfigError(f"{path}: no requests (the file is empty); write one JSON object "
                          f'per line, e.g. {{"t": 0.0, "path": "/"}}')
    meta = {"ignored_keys": sorted(ignored)} if ignored else {}
    return Imported(_sorted_with_offsets(rows, seconds=True), None, meta)


def _plain(x):
    """JSON values parsed with Decimal floats, back to floats (msgpack has no Decimal)."""
    if isinstance(x, decimal.Decimal):
        return float(x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def _headers_from_json(h, bad) -> list[tuple[str, str]]:
    if h is None:
        return []
    if isinstance(h, dict):
        items = list(h.items())
    elif isinstance(h, list) and all(isinstance(p, list) and len(p) == 2 for p in h):
        items = [tuple(p) for p in h]
    else:
        raise bad('"headers" must be an object {"name": "value"} or a list of [name, value]')
    out = []
    for name, value in items:
        if not isinstance(name, str) or not _TOKEN_RE.match(name):
            raise bad(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str) or _BAD_VALUE_RE.search(value):
            raise bad(f"header {name!r}: the value must be a string without line breaks")
        if name.lower() not in DROPPED_HEADERS:
            out.append((name, value))
    return out


def _check_path(path: str, bad) -> None:
    if not (path.startswith("/") or path == "*"):
        raise bad(f'"path" must start with "/" (the path and query only, no scheme or host), '
                  f"got {path!r}")
    if _BAD_PATH_RE.search(path):
        raise bad(f"path {path!r} holds spaces or control characters: percent-encode them")


def _sorted_with_offsets(rows: list[tuple[decimal.Decimal | int, TraceRecord]],
                         seconds: bool) -> list[TraceRecord]:
    """Sort by time (stable: equal times keep the input order) and set offsets from the
    earliest. `seconds`: times are Decimal seconds, rounded to the ns (else int ns)."""
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    for t, rec in rows:
        rec.offset_ns = (int(((t - t0) * 1_000_000_000).to_integral_value(decimal.ROUND_HALF_EVEN))
                         if seconds else int(t - t0))
    return [rec for _, rec in rows]


# --------------------------------------------------------------------------------------------
# HAR


def parse_iso8601_ns(text: str) -> int:
    """Nanoseconds since the Unix epoch from an ISO 8601 time with a timezone, exactly (no float
    rounding): `2024-05-01T12:00:00.123456789Z`, `...+02:00`. Raises ValueError."""
    m = _ISO_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not an ISO 8601 time with a timezone")
    y, mo, d, hh, mm, ss, frac, tz = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mm), int(ss), 0, 0, 0))
    ns = int((frac or "0")[:9].ljust(9, "0"))
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        secs -= sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    return secs * 1_000_000_000 + ns


def import_har(path: str | os.PathLike) -> Imported:
    """Requests from a HAR 1.2 file (`log.entries[]`): `startedDateTime` gives the offsets,
    `request.method`, `request.url` (path and query kept; the base URL is the origin of the
    earliest entry), `request.headers` (pseudo-headers and hop-by-hop headers dropped), and
    `request.postData` (`text`, honouring `encoding: "base64"`, or `params` urlencoded).
    Entries for other origins are kept with extras {"origin": ...} and counted in meta;
    non-HTTP entries (data:, ws:, ...) are skipped and counted. Raises ConfigError naming the
    entry."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a HAR file (not valid JSON: {exc}); export HAR 1.2 "
                          f"from the browser or proxy, or use --format jsonl") from None
    log = doc.get("log") if isinstance(doc, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: not a HAR file (no log.entries list)")
    rows: list[tuple[int, TraceRecord, str]] = []
    skipped = 0
    for i, e in enumerate(entries):

        def bad(what: str, i: int = i) -> ConfigError:
            return ConfigError(f"{path}, entry {i} (log.entries[{i}]): {what}")

        if not isinstance(e, dict) or not isinstance(e.get("request"), dict):
            raise bad("no request object")
        req = e["request"]
        try:
            t_ns = parse_iso8601_ns(str(e.get("startedDateTime", "")))
        except ValueError:
            raise bad(f"startedDateTime {e.get('startedDateTime')!r} is not an ISO 8601 time "
                      f"with a timezone, e.g. 2024-05-01T12:00:00.123Z") from None
        url = req.get("url")
        if not isinstance(url, str):
            raise bad("request.url is missing")
        try:
            u = urlsplit(url)
            port = u.port
        except ValueError as exc:
            raise bad(f"request.url {url!r} cannot be read: {exc}") from None
        if u.scheme not in ("http", "https"):
            skipped += 1
            continue
        if not u.hostname:
            raise bad(f"request.url {url!r} has no host")
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        origin = f"{u.scheme}://{host}:{port or (443 if u.scheme == 'https' else 80)}"
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        _check_path(target, bad)
        method = req.get("method")
        if not isinstance(method, str) or not _TOKEN_RE.match(method):
            raise bad(f"request.method {method!r} is not an HTTP method")
        headers = []
        for h in req.get("headers") or []:
            if not isinstance(h, dict) or not isinstance(h.get("name"), str) or not isinstance(
                    h.get("value"), str):
                raise bad("request.headers must be a list of {name, value} strings")
            name, value = h["name"], h["value"]
            if name.startswith(":") or name.lower() in DROPPED_HEADERS:
                continue
            if not _TOKEN_RE.match(name) or _BAD_VALUE_RE.search(value):
                raise bad(f"header {name!r} has an invalid name or a line break in its value")
            headers.append((name, value))
        body = b""
        post = req.get("postData")
        if isinstance(post, dict):
            body = _har_body(post, bad)
            mime = post.get("mimeType")
            if (body and isinstance(mime, str) and mime
                    and not any(n.lower() == "content-type" for n, _ in headers)):
                headers.append(("content-type", mime))
        rows.append((t_ns, TraceRecord(0, method, target, headers, body, None), origin))
    if not rows:
        raise ConfigError(f"{path}: no HTTP requests in log.entries"
                          + (f" ({skipped} non-HTTP entries skipped)" if skipped else ""))
    rows.sort(key=lambda r: r[0])
    base_url = rows[0][2]
    other: dict[str, int] = {}
    for _, rec, origin in rows:
        if origin != base_url:
            rec.extras = {"origin": origin}
            other[origin] = other.get(origin, 0) + 1
    meta: dict = {}
    if other:
        meta["other_origins"] = other
    if skipped:
        meta["skipped_non_http"] = skipped
    if isinstance(log.get("creator"), dict):
        meta["har_creator"] = str(log["creator"].get("name", ""))
    return Imported(_sorted_with_offsets([(t, rec) for t, rec, _ in rows], seconds=False),
                    base_url, meta)


def _har_body(post: dict, bad) -> bytes:
    text = post.get("text")
    if isinstance(text, str) and text:
        if post.get("encoding") == "base64":
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise bad("postData.text is marked base64 but is not valid base64") from None
        return text.encode("utf-8")
    params = post.get("params")
    if params:
        if str(post.get("mimeType", "")).lower().startswith("multipart/"):
            raise bad("postData has multipart params but no text: export the HAR with "
                      "request bodies (content) included")
        try:
            return urlencode([(p["name"], p.get("value", "")) for p in params]).encode()
        except (TypeError, KeyError):
            raise bad("postData.params must be a list of {name, value}") from None
    return b""


# --------------------------------------------------------------------------------------------


_FORMATS = {".har": "har", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def load(in_path: str | os.PathLike, fmt: str | None = None) -> tuple[Imported, str]:
    """(what the importer found, the format used). The format comes from `fmt` ("har" or
    "jsonl") or the extension (.har, .jsonl, .ndjson). Raises ConfigError."""
    in_path = os.fspath(in_path)
    if fmt is None:
        fmt = _FORMATS.get(os.path.splitext(in_path)[1].lower())
        if fmt is None:
            raise ConfigError(f"cannot tell the format of {in_path} from its extension: name "
                              f"it .har, .jsonl or .ndjson, or pass --format har|jsonl")
    if fmt == "har":
        return import_har(in_path), fmt
    if fmt == "jsonl":
        return import_jsonl(in_path), fmt
    raise ConfigError(f"unknown import format {fmt!r}: har or jsonl")


def convert(in_path: str | os.PathLike, out_path: str | os.PathLike,
            fmt: str | None = None) -> int:
    """Import `in_path` and write it to `out_path` as a `.cltrace` (written to a temporary file
    beside it, then renamed, so a failure never leaves half a trace). Returns the record count.
    Raises ConfigError for bad input, TraceError if the trace cannot be written."""
    imported, fmt = load(in_path, fmt)
    write_imported(imported, out_path, source=f"{fmt}:{os.path.basename(os.fspath(in_path))}")
    return len(imported.records)


def write_imported(imported: Imported, out_path: str | os.PathLike, *, source: str) -> None:
    out_path = os.fspath(out_path)
    tmp = f"{out_path}.tmp{os.getpid()}"
    try:
        write_trace(tmp, imported.records, source=source, base_url=imported.base_url,
                    meta=imported.meta)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
