"""GPU telemetry from the local driver through NVML, with NVIDIA's binding nvidia-ml-py
(module `pynvml`; never the deprecated `pynvml` PyPI package, whose import hook warns).

The binding is imported in `open`, so crestline runs without it. Device ids are NVML indices
("0", "1", ...), which follow PCI bus order and may differ from CUDA's order.

The high-rate utilisation buffer (nvmlDeviceGetSamples) stamps samples in microseconds on a
clock NVML does not name: the wall clock on some drivers, CLOCK_BOOTTIME on others (reported
by users of recent Linux drivers). The source reads the buffer once at open, takes the clock
whose "now" lies nearest the newest sample, and converts every later sample to monotonic ns
with that clock's offset, measured once.
"""

from __future__ import annotations

import ctypes
import time

from crestline.telemetry.readings import (
    THROTTLE_BITS,
    GpuReading,
    GpuUnavailable,
    Warnings,
    decode_reasons,
)

_MIB = 1 << 20
_INSTALL = "pip install nvidia-ml-py (a crestline dependency: reinstall crestline)"
# pynvml constant suffix (nvmlClocksEventReason<X>, formerly nvmlClocksThrottleReason<X>)
# -> the reason's name in readings.
_REASON_SUFFIXES = {
    "GpuIdle": "gpu_idle",
    "ApplicationsClocksSetting": "applications_clocks",
    "SwPowerCap": "sw_power_cap",
    "HwSlowdown": "hw_slowdown",
    "SyncBoost": "sync_boost",
    "SwThermalSlowdown": "sw_thermal",
    "HwThermalSlowdown": "hw_thermal",
    "HwPowerBrakeSlowdown": "hw_power_brake",
    "DisplayClockSetting": "display_clocks",
}
# Clocks NVML may stamp samples with, most likely first.
_SAMPLE_CLOCKS = tuple(getattr(time, name) for name in
                       ("CLOCK_REALTIME", "CLOCK_BOOTTIME", "CLOCK_MONOTONIC")
                       if hasattr(time, name))
_FUTURE_SLACK_US = 10_000_000  # a sample 10 s "ahead" of a clock was not stamped by it
# nvmlValueType_t -> the c_nvmlValue_t union member holding a sample.
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal",
                  6: "usVal"}
_MAX_EVENTS_PER_POLL = 64  # a storm of events must not stall the poll


def reason_bits(pynvml) -> dict[int, str]:
    """Clock-event reason bit -> name, from the binding's constants."""
    bits = {}
    for suffix, name in _REASON_SUFFIXES.items():
        bit = getattr(pynvml, "nvmlClocksEventReason" + suffix, None)
        if bit is None:
            bit = getattr(pynvml, "nvmlClocksThrottleReason" + suffix, None)
        if bit:
            bits[bit] = name
    return bits or dict(THROTTLE_BITS)


def _address(handle) -> int | None:
    return ctypes.cast(handle, ctypes.c_void_p).value


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _Device:
    def __init__(self, index: int, handle):
        self.id = str(index)
        self.handle = handle
        self.off: set[str] = set()  # metrics NVML said it does not support: not asked again
        self.last_sample_us = 0  # NVML's stamp (µs) of the newest high-rate sample taken
        self.event_reasons = True  # False: the driver only has the older ...ThrottleReasons


class NvmlSource:
    """Local GPUs through NVML. indices: NVML device indices to read (None: all)."""

    name = "nvml"

    def __init__(self, indices: list[int] | None = None):
        self.indices = None if indices is None else list(indices)
        self.warnings = Warnings()
        self._nvml = None
        self._devices: list[_Device] = []
        self._by_address: dict[int, _Device] = {}
        self._events = None
        self._bits: dict[int, str] = dict(THROTTLE_BITS)
        self._clock_offsets_ns: list[int] = []
        self._sample_offset_ns: int | None = None  # NVML sample stamp (ns) minus monotonic

    def open(self) -> list[dict]:
        """Initialise NVML and find the devices: [{"id", "name", "uuid", "mem_total_mib"}].
        Raises GpuUnavailable (binding missing, library missing, driver not loaded, no such
        index)."""
        try:
            import pynvml
        except ImportError as e:
            raise GpuUnavailable(f"nvidia-ml-py is not installed: {_INSTALL}") from e
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound as e:
            raise GpuUnavailable("NVML library not found (libnvidia-ml.so.1); install the "
                                 "NVIDIA driver or drop --gpu") from e
        except pynvml.NVMLError as e:
            raise GpuUnavailable(f"NVML init failed: {e}; check the driver with nvidia-smi "
                                 "or drop --gpu") from e
        self._nvml = pynvml
        self._bits = reason_bits(pynvml)
        self._clock_offsets_ns = [clock_offset_ns(c) for c in _SAMPLE_CLOCKS]
        try:
            devices = self._find_devices()
            for d in self._devices:
                # The buffer holds samples from before the run: read past them, and learn
                # the clock they are stamped with.
                self._util_samples(d)
        except GpuUnavailable:
            self.close()
            raise
        except pynvml.NVMLError as e:
            self.close()
            raise GpuUnavailable(f"NVML: listing GPUs failed: {e}") from e
        self._register_xid_events()
        return devices

    def _find_devices(self) -> list[dict]:
        nv = self._nvml
        self._devices, self._by_address = [], {}
        count = nv.nvmlDeviceGetCount()
        indices = list(range(count)) if self.indices is None else self.indices
        if count == 0:
            raise GpuUnavailable("NVML sees no GPU")
        missing = [i for i in indices if i >= count]
        if missing:
            raise GpuUnavailable(f"no GPU {missing[0]}: NVML sees {count} "
                                 f"(indices 0 to {count - 1})")
        found = []
        for index in indices:
            d = _Device(index, nv.nvmlDeviceGetHandleByIndex(index))
            self._devices.append(d)
            self._by_address[_address(d.handle)] = d
            name = self._ask(d, "name", nv.nvmlDeviceGetName, d.handle)
            uuid = self._ask(d, "uuid", nv.nvmlDeviceGetUUID, d.handle)
            mem = self._ask(d, "memory", nv.nvmlDeviceGetMemoryInfo, d.handle)
            found.append({"id": d.id, "name": _text(name) if name is not None else None,
                          "uuid": _text(uuid) if uuid is not None else None,
                          "mem_total_mib": mem.total / _MIB if mem is not None else None})
        return found

    def _register_xid_events(self) -> None:
        nv = self._nvml
        try:
            self._events = nv.nvmlEventSetCreate()
        except nv.NVMLError as e:
            self.warnings.once(f"NVML XID events unavailable ({e}); XID errors are not reported")
            return
        failed = []
        for d in self._devices:
            try:
                nv.nvmlDeviceRegisterEvents(d.handle, nv.nvmlEventTypeXidCriticalError,
                                            self._events)
            except nv.NVMLError as e:
                failed.append(f"GPU {d.id}: {e}")
        if failed:
            self.warnings.once(f"NVML XID events unavailable ({'; '.join(failed)}); XID "
                               "errors are not reported there")
        if len(failed) == len(self._devices):
            self._free_events()

    def poll(self) -> dict[str, GpuReading]:
        """One reading per device. Raises GpuUnavailable if a GPU is lost."""
        nv = self._nvml
        out = {}
        for d in self._devices:
            r = GpuReading(t_ns=time.monotonic_ns())
            util = self._ask(d, "utilisation", nv.nvmlDeviceGetUtilizationRates, d.handle)
            if util is not None:
                r.util_pct, r.mem_util_pct = float(util.gpu), float(util.memory)
            mem = self._ask(d, "memory", nv.nvmlDeviceGetMemoryInfo, d.handle)
            if mem is not None:
                r.mem_used_mib, r.mem_total_mib = mem.used / _MIB, mem.total / _MIB
            power_mw = self._ask(d, "power", nv.nvmlDeviceGetPowerUsage, d.handle)
            r.power_w = power_mw / 1000 if power_mw is not None else None
            energy_mj = self._ask(d, "energy", nv.nvmlDeviceGetTotalEnergyConsumption, d.handle)
            r.energy_mj = float(energy_mj) if energy_mj is not None else None
            clock = self._ask(d, "sm clock", nv.nvmlDeviceGetClockInfo, d.handle,
                              nv.NVML_CLOCK_SM)
            r.sm_clock_mhz = float(clock) if clock is not None else None
            temp = self._ask(d, "temperature", nv.nvmlDeviceGetTemperature, d.handle,
                             nv.NVML_TEMPERATURE_GPU)
            r.temp_c = float(temp) if temp is not None else None
            mask = self._reasons(d)
            r.throttle = decode_reasons(mask, self._bits) if mask is not None else None
            r.util_samples = self._util_samples(d)
            out[d.id] = r
        for dev_id, xids in self._xids().items():
            out[dev_id].xid = xids
        return out

    def _ask(self, d: _Device, metric: str, fn, *args, then: str = "reported as null"):
        """fn(*args), or None when it fails (one warning per device and metric, ending with
        `then`). A metric NVML does not support is not asked again on that device. Raises
        GpuUnavailable for a lost GPU."""
        if metric in d.off:
            return None
        nv = self._nvml
        try:
            return fn(*args)
        except nv.NVMLError_GpuIsLost as e:
            raise GpuUnavailable(f"GPU {d.id} is lost ({e}); see dmesg for XID errors") from e
        except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound) as e:
            d.off.add(metric)
            self.warnings.once(f"GPU {d.id}: {metric} not available from NVML ({e}); {then}")
        except nv.NVMLError as e:
            self.warnings.once(f"GPU {d.id}: NVML {metric} failed ({e}); {then} where it "
                               "fails", key=(d.id, metric))
        return None

    def _reasons(self, d: _Device) -> int | None:
        nv = self._nvml
        call = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if d.event_reasons and call is not None:
            try:
                return call(d.handle)
            except nv.NVMLError_GpuIsLost as e:
                raise GpuUnavailable(f"GPU {d.id} is lost ({e})") from e
            except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound):
                pass  # drivers before 535 only know the older name: ask that from now on
            except nv.NVMLError as e:
                self.warnings.once(f"GPU {d.id}: NVML clock event reasons failed ({e}); null "
                                   "where it fails", key=(d.id, "clock event reasons"))
                return None
        d.event_reasons = False
        return self._ask(d, "clock event reasons", nv.nvmlDeviceGetCurrentClocksThrottleReasons,
                         d.handle)

    def _util_samples(self, d: _Device) -> list[tuple[int, float]]:
        """High-rate samples newer than the last seen, as (monotonic ns, percent)."""
        nv = self._nvml

        def newer():
            try:
                return nv.nvmlDeviceGetSamples(d.handle, nv.NVML_GPU_UTILIZATION_SAMPLES,
                                               d.last_sample_us)
            except nv.NVMLError_NotFound:  # the driver's answer when nothing is new
                return None, []

        got = self._ask(d, "utilisation samples", newer, then="util_pct uses the polled rate")
        if not got or not got[1]:
            return []
        value_type, samples = got
        fresh = sorted(((s.timeStamp, s.sampleValue) for s in samples
                        if s.timeStamp > d.last_sample_us), key=lambda pair: pair[0])
        if not fresh:
            return []
        d.last_sample_us = fresh[-1][0]
        if self._sample_offset_ns is None:
            self._sample_offset_ns = sample_offset_ns(
                fresh[-1][0], self._clock_offsets_ns, time.monotonic_ns())
            if self._sample_offset_ns is None:
                d.off.add("utilisation samples")
                self.warnings.once(f"GPU {d.id}: NVML utilisation samples are stamped on no "
                                   "clock crestline knows; util_pct uses the polled rate")
                return []
        member = _VALUE_MEMBERS.get(value_type, "uiVal")
        return [(ts_us * 1000 - self._sample_offset_ns, float(getattr(value, member)))
                for ts_us, value in fresh]

    def _xids(self) -> dict[str, list[int]]:
        """XIDs delivered since the previous poll, by device id; never waits."""
        nv = self._nvml
        out: dict[str, list[int]] = {}
        if self._events is None:
            return out
        for _ in range(_MAX_EVENTS_PER_POLL):
            try:
                data = nv.nvmlEventSetWait_v2(self._events, 0)
            except nv.NVMLError_Timeout:
                break
            except nv.NVMLError as e:
                self.warnings.once(f"NVML XID events failed ({e}); XIDs may be missed",
                                   key="xid wait")
                break
            d = self._by_address.get(_address(data.device))
            if d is not None and data.eventType & nv.nvmlEventTypeXidCriticalError:
                out.setdefault(d.id, []).append(int(data.eventData))
        return out

    def _free_events(self) -> None:
        if self._events is not None:
            try:
                self._nvml.nvmlEventSetFree(self._events)
            except self._nvml.NVMLError:
                pass  # freeing at close: nothing to save
            self._events = None

    def close(self) -> None:
        """Free the event set and shut NVML down. Never raises."""
        if self._nvml is None:
            return
        self._free_events()
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass  # shutting down: nothing to save
        self._nvml = None


def clock_offset_ns(clock: int) -> int:
    """clock minus CLOCK_MONOTONIC in ns, from the tightest of a few brackets (the error is
    about one clock read)."""
    best = None
    for _ in range(5):
        m0 = time.monotonic_ns()
        c = time.clock_gettime_ns(clock)
        m1 = time.monotonic_ns()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, c - (m0 + m1) // 2)
    return best[1]


def sample_offset_ns(newest_us: int, offsets_ns: list[int], now_mono_ns: int) -> int | None:
    """Of the candidate clocks (their offsets from CLOCK_MONOTONIC, ns), the offset of the one
    whose current time lies nearest NVML's newest sample stamp (µs) without the sample being
    from its future; None if every clock puts it in the future. The wall clock is decades
    ahead of the boot-based ones, so even an hours-old newest sample, as an idle GPU's buffer
    may hold, picks the right family; CLOCK_BOOTTIME and CLOCK_MONOTONIC differ only by time
    spent suspended."""
    best = None
    for offset in offsets_ns:
        ahead_us = newest_us - (now_mono_ns + offset) // 1000
        if ahead_us > _FUTURE_SLACK_US:
            continue
        if best is None or abs(ahead_us) < best[0]:
            best = (abs(ahead_us), offset)
    return best[1] if best else None
