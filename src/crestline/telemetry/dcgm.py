"""GPU telemetry scraped from NVIDIA's dcgm-exporter (Prometheus text over plain HTTP), for a
model server on another machine.

dcgm-exporter refreshes its values every `-c` milliseconds (30 000 by default): run it with
`-c 100` or so, or every poll inside an interval sees the same stale values. Parsing is
prometheus_client's, imported in `open`. Device ids are the exporter's `gpu` label.
"""

from __future__ import annotations

import http.client
import math
import re
import time
import urllib.error
import urllib.request

from crestline.telemetry.readings import (
    GpuReading,
    GpuUnavailable,
    Warnings,
    decode_reasons,
    device_order,
)

_INSTALL = "pip install prometheus_client (a crestline dependency: reinstall crestline)"
_MAX_BYTES = 16 << 20  # a scrape of a 16-GPU node is ~100 kB; anything larger is not one

# DCGM field -> GpuReading attribute, read as is (units: %, MiB, W, mJ, MHz, °C, ratio).
_FIELDS = {
    "DCGM_FI_DEV_GPU_UTIL": "util_pct",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "mem_util_pct",
    "DCGM_FI_DEV_FB_USED": "mem_used_mib",
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "energy_mj",
    "DCGM_FI_DEV_SM_CLOCK": "sm_clock_mhz",
    "DCGM_FI_DEV_GPU_TEMP": "temp_c",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gr_active",
    "DCGM_FI_PROF_SM_ACTIVE": "sm_active",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor_active",
}
_FB_FREE = "DCGM_FI_DEV_FB_FREE"
_FB_RESERVED = "DCGM_FI_DEV_FB_RESERVED"
_REASONS = ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS")
_XID = "DCGM_FI_DEV_XID_ERRORS"
_ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
# Profiling fields are opt-in in dcgm-exporter: their absence is normal, not worth a warning.
_OPTIONAL = {"DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_ACTIVE",
             "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"}

# DCGM writes "blank" (not supported, not found, no permission) as sentinels at the top of
# each type's range: DCGM_INT32_BLANK 0x7ffffff0, DCGM_INT64_BLANK 0x7ffffffffffffff0,
# DCGM_FP64_BLANK 140737488355328.0. Only the energy counter is a 64-bit field that can
# legitimately exceed the 32-bit sentinel.
_INT32_BLANK = 0x7FFFFFF0
_INT64_BLANK = 0x7FFFFFFFFFFFFFF0

_SCRAPE_ERRORS = (OSError, urllib.error.URLError, http.client.HTTPException, ValueError)

# prometheus_client's parser is pure Python and holds the GIL: a full 8-GPU page (~50 kB,
# ten labels a sample) takes ~15 ms, which the event loop would wait for at every poll. Polls
# hand it only the fields read here, each sample's labels cut to `gpu` (~1.5 ms; the labels
# naming the devices are read once, by `open`). Line order is kept: TYPE lines must precede
# their samples for counters to be recognised.
_WANTED = "|".join(sorted({*_FIELDS, _FB_FREE, _FB_RESERVED, *_REASONS, _XID}))
_SLIM_RE = re.compile(r'^(?:(# (?:HELP|TYPE) (?:' + _WANTED + r') .*)|(' + _WANTED +
                      r')(?:_total)?\{[^}\n]*?\bgpu="([^"\n]*)"[^}\n]*\}([^\n]*))$', re.M)


def _slim(text: str) -> str:
    """The wanted fields of a scrape, each sample's labels cut to gpu="N"."""
    out = []
    for m in _SLIM_RE.finditer(text):
        if m.group(1) is not None:
            out.append(m.group(1))
        else:
            out.append(f'{m.group(2)}{{gpu="{m.group(3)}"}}{m.group(4)}')
    out.append("")
    return "\n".join(out)


def _value(field: str, value) -> float | None:
    if value is None or math.isnan(value):
        return None
    if value >= (_INT64_BLANK if field == _ENERGY else _INT32_BLANK):
        return None
    return float(value)


class DcgmSource:
    """GPUs as a dcgm-exporter reports them at url (e.g. http://host:9400/metrics).
    timeout_s: seconds per scrape."""

    name = "dcgm"

    def __init__(self, url: str, timeout_s: float = 2.0):
        self.url = url
        self.timeout_s = timeout_s
        self.warnings = Warnings()
        self._parse = None
        self._ids: list[str] = []
        self._mem_total_mib: dict[str, float | None] = {}
        self._last_xid: dict[str, float | None] = {}
        # The exporter sits next to the GPUs: never go through an HTTP proxy to reach it.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def open(self) -> list[dict]:
        """Scrape once and list the GPUs: [{"id", "name", "uuid", "mem_total_mib"}].
        Raises GpuUnavailable (prometheus_client missing, exporter unreachable, not
        Prometheus text, no GPU in it)."""
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError as e:
            raise GpuUnavailable(f"prometheus_client is not installed: {_INSTALL}") from e
        self._parse = text_string_to_metric_families
        try:
            gpus = self._scrape(labels=True)
        except ValueError as e:
            raise GpuUnavailable(f"dcgm-exporter at {self.url} sent something that is not "
                                 f"Prometheus text ({e})") from e
        except _SCRAPE_ERRORS as e:
            raise GpuUnavailable(f"dcgm-exporter at {self.url} unreachable: "
                                 f"{_reason(e)}") from e
        if not gpus:
            raise GpuUnavailable(f"dcgm-exporter at {self.url} reports no GPU (no DCGM_FI_* "
                                 "sample with a gpu label): is this its /metrics address?")
        self._ids = sorted(gpus, key=device_order)
        self._warn_missing_fields(gpus)
        devices = []
        for gpu in self._ids:
            labels, values = gpus[gpu]
            self._mem_total_mib[gpu] = _mem_total_mib(values)
            self._last_xid[gpu] = values.get(_XID)
            devices.append({"id": gpu, "name": labels.get("modelName"),
                            "uuid": labels.get("UUID"),
                            "mem_total_mib": self._mem_total_mib[gpu]})
        return devices

    def _warn_missing_fields(self, gpus: dict) -> None:
        exported = {f for _, values in gpus.values() for f in values}
        wanted = [f for f in (*_FIELDS, _FB_FREE, _XID) if f not in _OPTIONAL]
        missing = [f for f in wanted if f not in exported]
        if not any(f in exported for f in _REASONS):
            missing.append(_REASONS[0])
        if missing:
            self.warnings.once(f"dcgm-exporter at {self.url} does not export "
                               f"{', '.join(missing)}: those figures are null (add them to "
                               "its counters CSV)")

    def poll(self) -> dict[str, GpuReading]:
        """One reading per GPU seen at open. A failed scrape gives {} (the window's fields
        are then null) and one warning; never raises."""
        t_ns = time.monotonic_ns()
        try:
            gpus = self._scrape()
        except _SCRAPE_ERRORS as e:
            self.warnings.once(f"dcgm-exporter at {self.url}: a scrape failed ({_reason(e)}); "
                               "GPU figures are null while it fails", key="scrape")
            return {}
        out = {}
        for gpu in self._ids:
            if gpu not in gpus:
                continue
            _, values = gpus[gpu]
            r = GpuReading(t_ns=t_ns)
            for field, attr in _FIELDS.items():
                setattr(r, attr, values.get(field))
            r.mem_total_mib = _mem_total_mib(values) or self._mem_total_mib.get(gpu)
            mask = next((values[f] for f in _REASONS if values.get(f) is not None), None)
            r.throttle = decode_reasons(int(mask)) if mask is not None else None
            # The field holds the last XID seen since the exporter started: a new one shows
            # as a change of value.
            xid = values.get(_XID)
            if xid is not None and xid != self._last_xid.get(gpu):
                if xid:
                    r.xid = [int(xid)]
                self._last_xid[gpu] = xid
            out[gpu] = r
        return out

    def _scrape(self, labels: bool = False) -> dict[str, tuple[dict, dict]]:
        """{gpu label: (labels of its first sample, {DCGM field: value or None})}; with
        labels=False only the `gpu` label is kept (a poll: much less to parse). Raises
        OSError/URLError/HTTPException when unreachable, ValueError for text that does not
        parse."""
        try:
            resp = self._opener.open(self.url, timeout=self.timeout_s)
        except urllib.error.HTTPError as e:
            e.close()  # it holds the error response's socket
            raise
        with resp:
            text = resp.read(_MAX_BYTES).decode("utf-8", errors="replace")
        if not labels:
            text = _slim(text)
        gpus: dict[str, tuple[dict, dict]] = {}
        for family in self._parse(text):
            # Match on the family: for a counter the parser appends _total to sample names.
            if not family.name.startswith("DCGM_FI_"):
                continue
            for sample in family.samples:
                gpu = sample.labels.get("gpu")
                if gpu is None:
                    continue
                values = gpus.setdefault(gpu, (sample.labels, {}))[1]
                # MIG and per-pod series repeat a device's fields: its first value stands.
                values.setdefault(family.name, _value(family.name, sample.value))
        return gpus

    def close(self) -> None:
        """Nothing to release: every scrape is its own request."""


def _mem_total_mib(values: dict) -> float | None:
    used, free = values.get("DCGM_FI_DEV_FB_USED"), values.get(_FB_FREE)
    if used is None or free is None:
        return None
    return used + free + (values.get(_FB_RESERVED) or 0.0)


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__
