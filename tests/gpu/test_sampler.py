"""The sampler: the aligned poll grid, window aggregation, failures that never reach the caller,
and --gpu parsing. The pure parts are table-driven; the thread runs over the fake NVML."""

from __future__ import annotations

import time

import pytest

from crestline.errors import ConfigError
from crestline.telemetry.dcgm import DcgmSource
from crestline.telemetry.nvml import NvmlSource
from crestline.telemetry.options import make_sampler, parse_gpu_option
from crestline.telemetry.readings import WINDOW_KEYS, GpuReading, GpuUnavailable, decode_reasons
from crestline.telemetry.sampler import GpuSampler
from crestline.telemetry.window import (
    aggregate_window,
    guard_trouble,
    next_poll_ns,
    polls_per_interval,
)

MS = 1_000_000


@pytest.mark.parametrize("interval_ns, period_ns, n", [
    (1000 * MS, 100 * MS, 10), (1000 * MS, 300 * MS, 3), (1000 * MS, 130 * MS, 8),
    (50 * MS, 100 * MS, 1), (250 * MS, 100 * MS, 2),
])
def test_polls_per_interval_divides_the_interval(interval_ns, period_ns, n):
    assert polls_per_interval(interval_ns, period_ns) == n


@pytest.mark.parametrize("now, expected", [
    (0, 125), (124, 125), (125, 375), (374, 375), (900, 1125), (1999, 2125),
    (-300, -125),  # before the origin the grid goes on backwards
])
def test_next_poll_is_the_next_mid_point(now, expected):
    # origin 0, interval 1000, 4 polls each: mid-points of [0,250), [250,500), ...
    assert next_poll_ns(now, 0, 1000, 4) == expected


def test_grid_is_exact_when_the_period_does_not_divide_evenly():
    origin, interval = 7, 1_000_000_000  # 3 polls: at 1/6, 1/2 and 5/6 of each interval
    t, polls = origin, []
    for _ in range(6):
        t = next_poll_ns(t, origin, interval, 3)
        polls.append(t - origin)
    assert polls == [166_666_666, 500_000_000, 833_333_333,
                     1_166_666_666, 1_500_000_000, 1_833_333_333]


def reading(t_ms, **kw) -> GpuReading:
    return GpuReading(t_ns=t_ms * MS, **kw)


def test_aggregate_window_on_an_aligned_grid():
    # Window [1000, 2000) ms, polls at the mid-points of four 250 ms slots; the counter grows
    # at 200 W (200 mJ per ms) while the polled power says 999 W: the counter wins.
    before = reading(875, energy_mj=875 * 200.0, power_w=999.0)
    inside = [
        reading(1125, util_pct=50.0, mem_util_pct=10.0, mem_used_mib=100.0, mem_total_mib=800.0,
                power_w=999.0, energy_mj=1125 * 200.0, sm_clock_mhz=1000.0, temp_c=60.0,
                throttle=[]),
        reading(1375, util_pct=70.0, mem_util_pct=30.0, mem_used_mib=300.0, mem_total_mib=800.0,
                power_w=999.0, energy_mj=1375 * 200.0, sm_clock_mhz=2000.0, temp_c=70.0,
                throttle=["sw_power_cap"], xid=[79]),
        reading(1625, util_pct=90.0, mem_used_mib=200.0, energy_mj=1625 * 200.0,
                throttle=["hw_thermal", "sw_power_cap"]),
        reading(1875, util_pct=30.0, energy_mj=1875 * 200.0, temp_c=65.0),
    ]
    w = aggregate_window(inside, 1000 * MS, 2000 * MS, before)
    assert set(w) == set(WINDOW_KEYS)
    assert w["util_pct"] == 60.0 and w["util_max_pct"] == 90.0
    assert w["mem_util_pct"] == 20.0 and w["mem_used_mib"] == 300.0
    assert w["mem_total_mib"] == 800.0
    assert w["power_w"] == pytest.approx(200.0)
    assert w["energy_j"] == pytest.approx(200.0)  # 200 W over 1 s
    assert w["sm_clock_mhz"] == 1500.0 and w["temp_c"] == 70.0
    assert w["throttle"] == ["hw_thermal", "sw_power_cap"]
    assert w["xid"] == [79] and w["samples"] == 4
    assert w["gr_active"] is None and w["tensor_active"] is None


def test_aggregate_prefers_high_rate_samples_inside_the_window():
    inside = [
        # the first poll also carries samples from before the window: not counted
        reading(1250, util_pct=50.0, util_samples=[(900 * MS, 0.0), (1100 * MS, 80.0)]),
        reading(1750, util_pct=50.0, util_samples=[(1300 * MS, 100.0), (1500 * MS, 90.0),
                                                   (1700 * MS, 90.0)]),
    ]
    w = aggregate_window(inside, 1000 * MS, 2000 * MS)
    assert w["util_pct"] == 90.0 and w["util_max_pct"] == 100.0


def test_aggregate_ignores_samples_that_stop_part_way():
    # The driver sampled the busy first third, then nothing: the polled rate is truer.
    inside = [
        reading(1250, util_pct=60.0, util_samples=[(1050 * MS, 100.0), (1150 * MS, 100.0),
                                                   (1250 * MS, 100.0)]),
        reading(1750, util_pct=20.0),
    ]
    w = aggregate_window(inside, 1000 * MS, 2000 * MS)
    assert w["util_pct"] == 40.0 and w["util_max_pct"] == 60.0


def test_aggregate_without_a_working_counter_uses_power_samples():
    no_counter = [reading(1125, power_w=100.0), reading(1375, power_w=300.0)]
    w = aggregate_window(no_counter, 1000 * MS, 2000 * MS)
    assert w["power_w"] == 200.0 and w["energy_j"] is None
    reset = [reading(1125, power_w=100.0, energy_mj=5e6), reading(1375, power_w=300.0,
                                                                  energy_mj=10.0)]
    w = aggregate_window(reset, 1000 * MS, 2000 * MS)
    assert w["power_w"] == 200.0 and w["energy_j"] is None


def test_aggregate_with_a_counter_that_stood_still_uses_power_samples():
    # dcgm-exporter refreshes every 30 s by default: within a window the counter may not move
    # at all, or jump once with energy stored up over many windows.
    still = [reading(1125, power_w=250.0, energy_mj=9e6), reading(1375, power_w=250.0,
                                                                  energy_mj=9e6)]
    w = aggregate_window(still, 1000 * MS, 2000 * MS)
    assert w["power_w"] == 250.0 and w["energy_j"] is None
    jump = [reading(1125, power_w=250.0, energy_mj=9e6), reading(1375, power_w=250.0,
                                                                 energy_mj=9e6),
            reading(1625, power_w=250.0, energy_mj=9e6 + 7.5e6)]
    assert aggregate_window(jump, 1000 * MS, 2000 * MS)["power_w"] == 250.0


def test_aggregate_of_nothing_is_all_null():
    w = aggregate_window([], 0, 1000 * MS)
    assert w["samples"] == 0 and w["xid"] == []
    assert all(w[k] is None for k in WINDOW_KEYS if k not in ("samples", "xid"))


def test_decode_reasons_keeps_unknown_bits():
    assert decode_reasons(0) == []
    assert decode_reasons(0x1 | 0x80 | 0x400) == ["gpu_idle", "hw_power_brake", "0x400"]


@pytest.mark.parametrize("window, expected", [
    (None, None),
    ({}, None),
    ({"0": {"throttle": ["gpu_idle", "sw_power_cap"], "xid": []}}, None),
    ({"0": {"throttle": None, "xid": []}}, None),
    ({"0": {"throttle": ["hw_slowdown", "hw_thermal"], "xid": []}},
     "GPU 0: thermal throttling (hw_slowdown, hw_thermal)"),
    ({"10": {"throttle": [], "xid": [48]}, "2": {"throttle": [], "xid": [79, 79]}},
     "GPU 2: XID 79, 79; GPU 10: XID 48"),
])
def test_guard_trouble(window, expected):
    assert guard_trouble(window) == expected


def wait_until(t_ns: int) -> None:
    time.sleep(max(0, t_ns - time.monotonic_ns()) / 1e9)


def test_aligned_windows_over_the_fake_nvml(fake_nvml, samplers):
    s = samplers(NvmlSource(), period_s=0.05)
    assert s.start() and s.available and s.source_name == "nvml"
    assert [d["id"] for d in s.devices] == ["0", "1"]
    interval = 200 * MS
    origin = time.monotonic_ns() + 20 * MS
    s.align(origin, interval)
    # Ask exactly when the engine closes interval 1: its last poll (at 175 ms) is done.
    wait_until(origin + 2 * interval)
    w = s.window(origin + interval, origin + 2 * interval)
    h100, l4 = w["0"], w["1"]
    assert set(h100) == set(WINDOW_KEYS)
    assert 3 <= h100["samples"] <= 5  # 4 on time; a late poll on a busy machine shifts one
    assert h100["util_pct"] == 95.0 and h100["util_max_pct"] == 95.0  # the high-rate buffer
    assert l4["util_pct"] == 20.0
    assert h100["power_w"] == pytest.approx(250.0, rel=0.03)  # from the energy counter
    assert h100["energy_j"] == pytest.approx(50.0, rel=0.03)  # 250 W for 0.2 s
    assert l4["power_w"] == pytest.approx(40.0, rel=0.03)
    assert (h100["mem_used_mib"], h100["mem_total_mib"]) == (40960.0, 81920.0)
    assert (h100["sm_clock_mhz"], h100["temp_c"], h100["mem_util_pct"]) == (1980.0, 64.0, 41.0)
    assert h100["throttle"] == [] and h100["xid"] == []
    assert guard_trouble(w) is None
    assert s.warnings == []


def test_poll_times_sit_on_the_mid_points(fake_nvml, samplers):
    s = samplers(NvmlSource([0]), period_s=0.04)
    assert s.start()
    origin = time.monotonic_ns()
    s.align(origin, 200 * MS)  # 5 polls: 20, 60, 100, 140, 180 ms into each interval
    wait_until(origin + 400 * MS)
    times = [t - origin for t in s._times if t >= origin]
    offsets_ms = sorted(((t % (40 * MS)) / MS) for t in times)
    assert len(times) >= 8
    assert offsets_ms[len(offsets_ms) // 2] == pytest.approx(20.0, abs=5.0)  # median: on time


def test_no_high_rate_samples_uses_the_polled_rate(fake_nvml, monkeypatch, samplers):
    monkeypatch.setenv("FAKE_NVML_UNSUPPORTED", "samples")
    s = samplers(NvmlSource(), period_s=0.02)
    assert s.start()
    t0 = time.monotonic_ns()
    time.sleep(0.1)
    w = s.window(t0, time.monotonic_ns())
    assert w["0"]["util_pct"] == 87.0 and w["1"]["util_pct"] == 12.0
    assert sum("utilisation samples not available" in m for m in s.warnings) == 2


def test_unsupported_metrics_are_null_in_the_window(fake_nvml, monkeypatch, samplers):
    monkeypatch.setenv("FAKE_NVML_UNSUPPORTED", "power,temp,energy")
    s = samplers(NvmlSource([0]), period_s=0.02)
    assert s.start()
    t0 = time.monotonic_ns()
    time.sleep(0.1)
    w = s.window(t0, time.monotonic_ns())["0"]
    assert w["power_w"] is None and w["energy_j"] is None and w["temp_c"] is None
    assert w["util_pct"] == 95.0 and w["samples"] >= 2
    assert len(s.warnings) == 3  # each metric once, however many polls


def test_init_failure_leaves_telemetry_off(fake_nvml, monkeypatch, samplers):
    monkeypatch.setenv("FAKE_NVML_FAIL", "9")
    s = samplers(NvmlSource())
    assert s.start() is False
    assert s.available is False and s._thread is None
    assert s.warnings == ["GPU telemetry off: NVML init failed: Driver Not Loaded; check the "
                          "driver with nvidia-smi or drop --gpu"]
    assert s.window(0, 2**62) is None
    s.align(0, 1000 * MS)  # harmless when off
    s.stop()


def test_thermal_throttle_and_xid_reach_the_window_and_the_guard(fake_nvml, monkeypatch,
                                                                  samplers):
    monkeypatch.setenv("FAKE_NVML_THROTTLE", "0x40")
    monkeypatch.setenv("FAKE_NVML_XID", "79")
    t0 = time.monotonic_ns()
    s = samplers(NvmlSource(), period_s=0.02)
    assert s.start()
    time.sleep(0.08)
    w = s.window(t0, time.monotonic_ns())
    assert w["0"]["throttle"] == ["hw_thermal"] and w["0"]["xid"] == []
    assert w["1"]["throttle"] == [] and w["1"]["xid"] == [79]
    assert guard_trouble(w) == "GPU 0: thermal throttling (hw_thermal); GPU 1: XID 79"


def test_an_xid_polled_between_windows_goes_to_the_next_window(fake_nvml, monkeypatch,
                                                                 samplers):
    # The fake delivers its XID at the sampler's first poll, before the first window: that
    # poll belongs to no window (a search's drain is such a gap too), yet the XID must not be
    # lost, or the guard would never see it.
    monkeypatch.setenv("FAKE_NVML_XID", "79")
    s = samplers(NvmlSource(), period_s=0.02)
    assert s.start()
    time.sleep(0.1)
    t0 = time.monotonic_ns()
    time.sleep(0.06)
    first = s.window(t0, time.monotonic_ns())
    assert first["1"]["xid"] == [79]
    assert s.window(t0, time.monotonic_ns())["1"]["xid"] == []  # reported once
    assert s.unreported_xids() == {}


class ScriptedSource:
    """A GpuSource that fails as told: poll raises `errors` in turn, then gives readings."""

    name = "scripted"

    def __init__(self, errors=()):
        self.warnings: list[str] = []
        self.errors = list(errors)
        self.polls = 0
        self.closed = False

    def open(self):
        return [{"id": "0", "name": "scripted", "uuid": None, "mem_total_mib": None}]

    def poll(self):
        self.polls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"0": GpuReading(t_ns=time.monotonic_ns(), util_pct=50.0)}

    def close(self):
        self.closed = True


def test_odd_poll_errors_are_warned_once_and_polling_goes_on(samplers):
    src = ScriptedSource([RuntimeError("odd"), RuntimeError("odd again"), OSError("x")])
    s = samplers(src, period_s=0.01)
    assert s.start()
    time.sleep(0.1)
    assert src.polls > 4 and s._thread.is_alive()
    assert s.warnings == ["GPU telemetry: a poll failed (RuntimeError: odd)",
                          "GPU telemetry: a poll failed (OSError: x)"]
    assert s.window(0, 2**62)["0"]["util_pct"] == 50.0


def test_a_lost_source_stops_polling_quietly(samplers):
    src = ScriptedSource([GpuUnavailable("GPU 0 is lost (GPU is lost)")])
    s = samplers(src, period_s=0.01)
    assert s.start()
    s._thread.join(timeout=2)
    assert not s._thread.is_alive() and src.closed and src.polls == 1
    assert s.warnings == ["GPU telemetry stopped: GPU 0 is lost (GPU is lost)"]
    assert s.window(0, 2**62) == {"0": aggregate_window([], 0, 2**62)}
    s.stop()


def test_history_is_bounded(samplers):
    s = samplers(ScriptedSource(), period_s=0.01, history_s=0.05)
    assert s.start()
    time.sleep(0.2)
    assert 3 <= len(s._polls) <= 8
    assert len(s._times) == len(s._polls)


def test_stop_closes_the_source_and_keeps_the_figures(samplers):
    src = ScriptedSource()
    s = samplers(src, period_s=0.01)
    assert s.start()
    time.sleep(0.05)
    s.stop()
    assert src.closed and not s._thread.is_alive()
    assert s.window(0, 2**62)["0"]["samples"] >= 2


@pytest.mark.parametrize("text, indices", [("nvml", None), ("nvml:1", [1]),
                                           (" nvml:0, 2 ", [0, 2])])
def test_parse_nvml(text, indices):
    src = parse_gpu_option(text)
    assert isinstance(src, NvmlSource) and src.indices == indices


@pytest.mark.parametrize("text, url", [
    ("dcgm=http://gpu-node:9400/metrics", "http://gpu-node:9400/metrics"),
    ("dcgm=http://gpu-node:9400", "http://gpu-node:9400/metrics"),
    ("dcgm=http://10.0.0.7:9400/", "http://10.0.0.7:9400/metrics"),
    ("dcgm=http://gpu-node:9400/custom", "http://gpu-node:9400/custom"),
])
def test_parse_dcgm(text, url):
    src = parse_gpu_option(text)
    assert isinstance(src, DcgmSource) and src.url == url


@pytest.mark.parametrize("text, fix", [
    ("", "use nvml (every GPU), nvml:0,2"),
    ("cuda", "use nvml (every GPU), nvml:0,2"),
    ("nvml:", "whole numbers separated by commas, e.g. nvml:0,2"),
    ("nvml:a", "whole numbers separated by commas"),
    ("nvml:-1", "whole numbers separated by commas"),
    ("nvml:0,0", "repeated"),
    ("dcgm=https://gpu-node:9400/metrics", "only http:// is supported"),
    ("dcgm=gpu-node:9400", "dcgm=http://HOST:9400/metrics"),
    ("dcgm=http://:9400", "dcgm=http://HOST:9400/metrics"),
    ("dcgm=http://gpu-node:port", "bad port"),
    ("dcgm:http://gpu-node:9400", "dcgm=http://HOST:9400/metrics"),
])
def test_parse_errors_name_the_fix(text, fix):
    with pytest.raises(ConfigError, match=fix.replace("(", r"\(").replace(")", r"\)")):
        parse_gpu_option(text)


def test_make_sampler_is_unstarted():
    s = make_sampler("nvml:0", 0.25)
    assert isinstance(s, GpuSampler) and s.source_name == "nvml"
    assert s.available is False and s.window(0, 1) is None and s.period_ns == 250 * MS
    with pytest.raises(ConfigError):
        make_sampler("nvml", 0)
