"""GPU telemetry: one source interface (NVML locally, dcgm-exporter remotely) and a sampler
thread that polls it on the engine's interval grid.

Times are int nanoseconds on CLOCK_MONOTONIC (time.monotonic_ns(), the engine's clock). The
sampler polls on its own daemon thread, never on the event loop; the engine asks it, once per
closed interval, for the aggregate of the polls inside that interval (`window`). After
`align`, polls fall at the mid-points of equal sub-intervals, so an interval's last poll is
done half a poll period before the interval closes.

No NVML or HTTP module is imported here: the sources import their libraries when opened, and
a machine without them gets a warning, not an ImportError.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Protocol

from crestline.errors import ConfigError

# Clock-event (throttle) reason bits, as NVML's nvmlClocksEventReason* constants define them
# and as DCGM reports them in DCGM_FI_DEV_CLOCKS_EVENT_REASONS. The NVML source builds the
# same table from pynvml's constants; a test holds the two equal.
THROTTLE_BITS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal",
    0x040: "hw_thermal",
    0x080: "hw_power_brake",
    0x100: "display_clocks",
}
# Reasons that mean the GPU is slowing itself to survive, not that it is idle or capped by
# policy: a measurement taken under them is not the server's normal capacity.
THERMAL_REASONS = frozenset({"sw_thermal", "hw_thermal", "hw_slowdown"})

# Window fields by how polls fold into a window and windows into a run or step: levels are
# averaged, peaks take the maximum (crestline.telemetry.summarize folds them the same way).
LEVEL_KEYS = ("util_pct", "mem_util_pct", "power_w", "sm_clock_mhz", "gr_active", "sm_active",
              "tensor_active")
PEAK_KEYS = ("util_max_pct", "mem_used_mib", "mem_total_mib", "temp_c")
WINDOW_KEYS = ("util_pct", "util_max_pct", "mem_util_pct", "mem_used_mib", "mem_total_mib",
               "power_w", "energy_j", "sm_clock_mhz", "temp_c", "gr_active", "sm_active",
               "tensor_active", "throttle", "xid", "samples")

_HISTORY_S = 600.0
_HISTORY_POLLS = 100_000  # a second bound, for very short aligned intervals


class GpuUnavailable(Exception):
    """A whole telemetry source cannot work (no library, no driver, exporter unreachable,
    no such device). `reason` is one human line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class GpuReading:
    """One poll of one device. None: not supported, or failed this time.

    t_ns: time.monotonic_ns() when the device was read. util_pct, mem_util_pct: percent over
    the driver's last sample period. energy_mj: cumulative counter (mJ since driver load).
    throttle: names of active clock-event reasons. xid: XID errors seen since the previous
    poll. util_samples: the driver's high-rate utilisation samples since the previous poll,
    as (monotonic t_ns, percent). gr_active, sm_active, tensor_active: DCGM profiling ratios
    0..1.
    """

    t_ns: int
    util_pct: float | None = None
    mem_util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    power_w: float | None = None
    energy_mj: float | None = None
    sm_clock_mhz: float | None = None
    temp_c: float | None = None
    throttle: list[str] | None = None
    xid: list[int] = field(default_factory=list)
    util_samples: list[tuple[int, float]] = field(default_factory=list)
    gr_active: float | None = None
    sm_active: float | None = None
    tensor_active: float | None = None


class Warnings(list):
    """Warning lines, each said once: a plain list[str] plus `once`."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: set = set()

    def once(self, message: str, key=None) -> bool:
        """Append message unless this key (default: the message) was seen; True if added."""
        key = message if key is None else key
        if key in self._keys:
            return False
        self._keys.add(key)
        self.append(message)
        return True


class GpuSource(Protocol):
    """Where readings come from. `warnings` collects per-metric problems, each once."""

    name: str
    warnings: list[str]

    def open(self) -> list[dict]:
        """Devices as [{"id", "name", "uuid", "mem_total_mib"}]. Raises GpuUnavailable."""

    def poll(self) -> dict[str, GpuReading]:
        """One reading per device id. A failed or unsupported metric is None (and one
        warning), never an exception; raises GpuUnavailable only if the source is lost."""

    def close(self) -> None: ...


def decode_reasons(mask: int, bits: dict[int, str] = THROTTLE_BITS) -> list[str]:
    """Names of the set bits of a clock-event reason mask; unknown bits as hex ("0x200")."""
    names = [name for bit, name in bits.items() if mask & bit]
    rest = mask & ~sum(bits)
    names += [hex(1 << i) for i in range(rest.bit_length()) if rest >> i & 1]
    return names


def polls_per_interval(interval_ns: int, period_ns: int) -> int:
    """How many equal poll slots an interval holds: the nearest whole number to
    interval/period, at least 1, so the poll period divides the interval exactly."""
    return max(1, round(interval_ns / period_ns))


def next_poll_ns(now_ns: int, origin_ns: int, interval_ns: int, per_interval: int) -> int:
    """The first poll time after now_ns on the grid origin + (k + 1/2) * interval/per_interval
    (k any integer), in exact integer nanoseconds."""
    twice = 2 * per_interval

    def at(k: int) -> int:
        return origin_ns + (2 * k + 1) * interval_ns // twice

    k = ((now_ns - origin_ns) * twice // interval_ns - 1) // 2
    while at(k) <= now_ns:
        k += 1
    while at(k - 1) > now_ns:
        k -= 1
    return at(k)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _present(readings: list[GpuReading], name: str) -> list[float]:
    return [v for r in readings if (v := getattr(r, name)) is not None]


def _samples_cover(times_ns: list[int], start_ns: int, seen_until_ns: int) -> bool:
    """Whether sorted high-rate sample times cover [start_ns, seen_until_ns) with no gap
    longer than a quarter of the window or twice their median spacing, whichever is longer.
    A driver may stop sampling an idle GPU: samples from the busy part of a window alone would
    overstate its utilisation, and the polled rate is the better figure then."""
    spacing = sorted(b - a for a, b in pairwise(times_ns))
    limit = max((seen_until_ns - start_ns) / 4, 2 * spacing[len(spacing) // 2] if spacing else 0)
    edges = [start_ns, *times_ns, seen_until_ns]
    return max(b - a for a, b in pairwise(edges)) <= limit


def aggregate_window(readings: list[GpuReading], start_ns: int, end_ns: int,
                     before: GpuReading | None = None) -> dict:
    """The window figures of one device from its readings with start_ns <= t_ns < end_ns.

    before: the device's last reading before start_ns, if recent; it anchors the energy
    counter so that consecutive windows' energy tiles the run. power_w comes from the energy
    counter's slope over the readings when the counter works (W = mJ/ms), else it is the mean
    of polled power; energy_j is that slope times the window's length (None without a
    counter). util_pct and util_max_pct come from the driver's high-rate samples falling in
    the window when they cover it (_samples_cover), else from the polled rate. Fields nothing
    reported are None.
    """
    high_rate = sorted(s for r in readings for s in r.util_samples if start_ns <= s[0] < end_ns)
    # Samples reach us only at polls: the window is seen up to its last poll.
    seen_until_ns = max([r.t_ns for r in readings] + [t for t, _ in high_rate[-1:]], default=0)
    if high_rate and _samples_cover([t for t, _ in high_rate], start_ns, seen_until_ns):
        util = [v for _, v in high_rate]
    else:
        util = _present(readings, "util_pct")
    polled = {k: _mean(_present(readings, k)) for k in LEVEL_KEYS if k != "util_pct"}
    polled |= {k: max(_present(readings, k), default=None) for k in PEAK_KEYS
               if k != "util_max_pct"}
    polled |= {"util_pct": _mean(util), "util_max_pct": max(util) if util else None,
               "energy_j": None, "throttle": None, "xid": [x for r in readings for x in r.xid],
               "samples": len(readings)}
    out = {k: polled[k] for k in WINDOW_KEYS}  # the documented field order
    counted = [r for r in ([before] if before else []) + readings if r.energy_mj is not None]
    if len(counted) >= 2:
        first, last = counted[0], counted[-1]
        span_ns = last.t_ns - first.t_ns
        # Only a counter that rose at every poll measures this window: one that went backwards
        # was reset (driver reload), and one that stood still is refreshed more slowly than we
        # poll (dcgm-exporter's -c, 30 s by default), which would read 0 W in most windows and
        # the stored-up energy in a few. Then the polled power stands.
        live = all(b.energy_mj > a.energy_mj for a, b in pairwise(counted))
        if span_ns > 0 and live:
            out["power_w"] = (last.energy_mj - first.energy_mj) * 1e6 / span_ns
            out["energy_j"] = out["power_w"] * (end_ns - start_ns) / 1e9
    reasons = [r.throttle for r in readings if r.throttle is not None]
    if reasons:
        out["throttle"] = sorted(set().union(*reasons))
    return out


def device_order(device_id: str) -> tuple:
    """Sort key for device ids: numeric ids in number order ("2" before "10"), others after."""
    return (0, int(device_id), "") if device_id.isdigit() else (1, 0, device_id)


def guard_trouble(window: dict | None) -> str | None:
    """One line naming every device in a window that throttled for heat or raised an XID
    ("GPU 0: thermal throttling (hw_thermal); GPU 1: XID 79"), or None if none did."""
    troubles = []
    for dev in sorted(window or {}, key=device_order):
        fig = window[dev] or {}
        hot = [r for r in fig.get("throttle") or () if r in THERMAL_REASONS]
        if hot:
            troubles.append(f"GPU {dev}: thermal throttling ({', '.join(hot)})")
        if fig.get("xid"):
            troubles.append(f"GPU {dev}: XID {', '.join(str(x) for x in fig['xid'])}")
    return "; ".join(troubles) or None


class GpuSampler:
    """Polls a GpuSource on a daemon thread and aggregates polls into windows.

    The thread holds the GIL only between library calls (ctypes and sockets release it): a
    poll of NVML costs the event loop tens of microseconds.

    Nothing here raises into the caller once constructed: a source that cannot open leaves
    `available` False and a warning; a source that fails mid-run adds a warning and, if lost,
    stops polling. History is bounded to the last `history_s` seconds of polls.
    """

    def __init__(self, source: GpuSource, period_s: float = 0.1,
                 history_s: float = _HISTORY_S):
        """period_s: seconds between polls (rounded on align so it divides the interval).
        Raises ConfigError for a period under 1 ms."""
        if not period_s >= 0.001:
            raise ConfigError(f"GPU poll period must be at least 1 ms, got {period_s!r} s")
        self.source = source
        self.period_ns = int(period_s * 1e9)
        self.history_ns = int(history_s * 1e9)
        self.available = False
        self.devices: list[dict] = []
        self.warnings = Warnings()
        self._lock = threading.Lock()
        # Each poll's earliest reading time (ascending) and its readings; the two deques drop
        # their oldest entries together.
        self._times: deque[int] = deque(maxlen=_HISTORY_POLLS)
        self._polls: deque[dict[str, GpuReading]] = deque(maxlen=_HISTORY_POLLS)
        self._grid: tuple[int, int, int] | None = None  # origin_ns, interval_ns, polls each
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._source_warnings_seen = 0
        # XIDs of polls before this time have been reported in some window (each XID reaches
        # exactly one poll: one outside every window, e.g. during a drain, goes to the next).
        self._xid_from_ns = 0

    @property
    def source_name(self) -> str:
        return self.source.name

    def start(self) -> bool:
        """Open the source and start the polling thread; False (and a warning) if the source
        cannot open. Never raises."""
        if self._thread is not None or self.available:
            return self.available
        try:
            self.devices = list(self.source.open())
        except GpuUnavailable as e:
            self.warnings.once(f"GPU telemetry off: {e.reason}")
            return False
        except Exception as e:  # a broken library must not stop the load run
            self.warnings.once(f"GPU telemetry off: {type(e).__name__}: {e}")
            return False
        self._take_source_warnings()
        self.available = True
        now = time.monotonic_ns()
        self._grid = (now, self.period_ns, 1)
        self._thread = threading.Thread(target=self._run, name="crestline-gpu", daemon=True)
        self._thread.start()
        return True

    def align(self, origin_ns: int, interval_ns: int) -> None:
        """From now on poll at origin_ns + (k + 1/2) * interval_ns / n, with n the whole
        number of polls per interval nearest interval/period. Times: CLOCK_MONOTONIC ns.
        Raises ValueError for a non-positive interval."""
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, got {interval_ns}")
        self._grid = (origin_ns, interval_ns, polls_per_interval(interval_ns, self.period_ns))
        self._wake.set()

    def window(self, start_ns: int, end_ns: int) -> dict[str, dict] | None:
        """{device id: figures (see WINDOW_KEYS and aggregate_window)} over the polls with
        start_ns <= t_ns < end_ns; None when telemetry is off. Safe from any thread."""
        if not self.available:
            return None
        with self._lock:
            lo = bisect.bisect_left(self._times, start_ns)
            hi = bisect.bisect_left(self._times, end_ns)
            # A poll's readings come slightly after its recorded time, and the energy counter
            # wants the last reading before the window: take a few polls before it too.
            polls = [self._polls[i] for i in range(max(0, lo - 4), hi)]
            between = [self._polls[i] for i in range(
                bisect.bisect_left(self._times, self._xid_from_ns), lo)]
            xid_from_ns = self._xid_from_ns
            self._xid_from_ns = max(self._xid_from_ns, end_ns)
        out = {}
        for dev in (d["id"] for d in self.devices):
            readings = [r for p in polls if (r := p.get(dev)) is not None]
            inside = [r for r in readings if start_ns <= r.t_ns < end_ns]
            earlier = [r for r in readings if r.t_ns < start_ns and r.energy_mj is not None]
            # An anchor older than one window would spread older energy over this window.
            before = earlier[-1] if earlier and earlier[-1].t_ns >= 2 * start_ns - end_ns \
                else None
            out[dev] = aggregate_window(inside, start_ns, end_ns, before)
            missed = [x for p in between if (r := p.get(dev)) is not None
                      and xid_from_ns <= r.t_ns < start_ns for x in r.xid]
            if missed:
                out[dev]["xid"] = missed + out[dev]["xid"]
        return out

    def unreported_xids(self) -> dict[str, list[int]]:
        """XIDs polled after the last window asked for (e.g. during the final drain)."""
        with self._lock:
            polls = [p for t, p in zip(self._times, self._polls, strict=True)
                     if t >= self._xid_from_ns]
        out: dict[str, list[int]] = {}
        for p in polls:
            for dev, r in p.items():
                if r.xid:
                    out.setdefault(dev, []).extend(r.xid)
        return out

    def stop(self) -> None:
        """Stop polling and close the source (on the polling thread). Never raises."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():
                self.warnings.once("GPU telemetry: the polling thread did not stop in 10 s")

    def _run(self) -> None:
        next_ns = time.monotonic_ns()  # one poll at once: it anchors the counters
        try:
            while not self._stopping:
                delay_ns = next_ns - time.monotonic_ns()
                if delay_ns > 0 and self._wake.wait(delay_ns / 1e9):
                    self._wake.clear()  # stop or a new grid: recompute the next slot
                    next_ns = self._next_ns()
                    continue
                if not self._poll_once():
                    break
                next_ns = self._next_ns()
        finally:
            try:
                self.source.close()
            except Exception as e:  # closing is best effort; the run's figures are kept
                self.warnings.once(f"GPU telemetry: closing {self.source_name} failed: {e}")

    def _next_ns(self) -> int:
        origin_ns, interval_ns, per_interval = self._grid
        return next_poll_ns(time.monotonic_ns(), origin_ns, interval_ns, per_interval)

    def _poll_once(self) -> bool:
        """One poll into history; False when the source is lost and polling should end."""
        try:
            readings = self.source.poll()
        except GpuUnavailable as e:
            self.warnings.once(f"GPU telemetry stopped: {e.reason}")
            return False
        except Exception as e:  # keep trying: one odd poll must not end the telemetry
            self.warnings.once(f"GPU telemetry: a poll failed ({type(e).__name__}: {e})",
                               key=("poll", type(e)))
            readings = {}
        finally:
            self._take_source_warnings()
        if readings:
            t_ns = min(r.t_ns for r in readings.values())
            with self._lock:
                # Polls come in time order from this one thread, so the deque stays sorted.
                self._times.append(t_ns)
                self._polls.append(readings)
                while self._times and self._times[0] < t_ns - self.history_ns:
                    self._times.popleft()
                    self._polls.popleft()
        return True

    def _take_source_warnings(self) -> None:
        fresh = list(getattr(self.source, "warnings", ()))[self._source_warnings_seen:]
        self._source_warnings_seen += len(fresh)
        for message in fresh:
            self.warnings.once(message)


def dcgm_url(text: str) -> str:
    """The scrape URL from what follows `dcgm=`: http:// only; an empty path becomes
    /metrics. Raises ConfigError naming the fix."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"--gpu dcgm={text}: give dcgm-exporter's plain-HTTP address, e.g. "
                          "dcgm=http://HOST:9400/metrics (only http:// is supported)")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(f"--gpu dcgm={text}: bad port; e.g. dcgm=http://HOST:9400") from None
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urllib.parse.urlunsplit(parts)


def parse_gpu_option(text: str) -> GpuSource:
    """A source from --gpu text: `nvml` (every GPU), `nvml:0,2` (those NVML indices) or
    `dcgm=http://HOST:9400/metrics` (a dcgm-exporter). Opens nothing. Raises ConfigError."""
    spec = (text or "").strip()
    if spec == "nvml" or spec.startswith("nvml:"):
        from crestline.gpu_nvml import NvmlSource

        if spec == "nvml":
            return NvmlSource()
        parts = [p.strip() for p in spec.removeprefix("nvml:").split(",")]
        if not all(p.isdigit() for p in parts):
            raise ConfigError(f"--gpu {text}: NVML device indices are whole numbers separated "
                              "by commas, e.g. nvml:0,2")
        indices = [int(p) for p in parts]
        if len(set(indices)) != len(indices):
            raise ConfigError(f"--gpu {text}: a device index is repeated; e.g. nvml:0,2")
        return NvmlSource(indices)
    if spec.startswith("dcgm="):
        from crestline.gpu_dcgm import DcgmSource

        return DcgmSource(dcgm_url(spec.removeprefix("dcgm=")))
    raise ConfigError(f"--gpu {text!r}: use nvml (every GPU), nvml:0,2 (those GPUs) or "
                      "dcgm=http://HOST:9400/metrics (a dcgm-exporter)")


def make_sampler(text: str, period_s: float = 0.1) -> GpuSampler:
    """An unstarted sampler over the source --gpu text names. Raises ConfigError."""
    return GpuSampler(parse_gpu_option(text), period_s)
