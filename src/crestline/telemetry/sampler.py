"""The sampler thread: polls a GpuSource on the engine's interval grid and answers, once per
closed interval, the aggregate of the polls inside it (`window`).

Times are int nanoseconds on CLOCK_MONOTONIC (time.monotonic_ns(), the engine's clock). The
sampler polls on its own daemon thread, never on the event loop.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque

from crestline.errors import ConfigError
from crestline.telemetry.readings import GpuReading, GpuSource, GpuUnavailable, Warnings
from crestline.telemetry.window import aggregate_window, next_poll_ns, polls_per_interval

_HISTORY_S = 600.0
_HISTORY_POLLS = 100_000  # a second bound, for very short aligned intervals

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
