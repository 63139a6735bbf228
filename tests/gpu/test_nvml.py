"""NvmlSource through the real nvidia-ml-py binding, over the fake libnvidia-ml.so.1."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from crestline.telemetry.nvml import NvmlSource, reason_bits, sample_offset_ns
from crestline.telemetry.readings import THROTTLE_BITS, GpuUnavailable

H100_UUID = "GPU-11111111-2222-3333-4444-000000000000"


@contextlib.contextmanager
def opened(indices=None) -> Iterator[NvmlSource]:
    src = NvmlSource(indices)
    src.open()
    try:
        yield src
    finally:
        src.close()


def test_devices_and_known_values(fake_nvml):
    src = NvmlSource()
    devices = src.open()
    try:
        assert devices == [
            {"id": "0", "name": "NVIDIA H100 80GB HBM3", "uuid": H100_UUID,
             "mem_total_mib": 81920.0},
            {"id": "1", "name": "NVIDIA L4", "uuid": "GPU-11111111-2222-3333-4444-000000000001",
             "mem_total_mib": 23034.0},
        ]
        r = src.poll()
        h100, l4 = r["0"], r["1"]
        assert (h100.util_pct, h100.mem_util_pct) == (87.0, 41.0)
        assert (h100.mem_used_mib, h100.mem_total_mib) == (40960.0, 81920.0)
        assert h100.power_w == 250.0
        assert (h100.sm_clock_mhz, h100.temp_c) == (1980.0, 64.0)
        assert h100.throttle == [] and h100.xid == []
        assert (l4.util_pct, l4.power_w, l4.temp_c) == (12.0, 40.0, 48.0)
        assert h100.gr_active is None  # a DCGM-only field
        assert src.warnings == []
    finally:
        src.close()


def test_energy_counter_grows_at_the_device_power(fake_nvml):
    with opened() as src:
        a = src.poll()["0"]
        time.sleep(0.2)  # long next to a poll's own time: t_ns is read before the counter
        b = src.poll()["0"]
        power_w = (b.energy_mj - a.energy_mj) * 1e6 / (b.t_ns - a.t_ns)
        assert power_w == pytest.approx(250.0, rel=0.05)  # the counter ticks per ms


def test_selected_indices_and_a_missing_index(fake_nvml):
    src = NvmlSource([1])
    try:
        assert [d["id"] for d in src.open()] == ["1"]
        assert list(src.poll()) == ["1"]
    finally:
        src.close()
    with pytest.raises(GpuUnavailable, match="no GPU 5: NVML sees 2"):
        NvmlSource([0, 5]).open()


def test_unsupported_metrics_are_null_with_one_warning_each(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_UNSUPPORTED", "power,temp")
    with opened() as src:
        for _ in range(3):
            r = src.poll()
            assert r["0"].power_w is None and r["0"].temp_c is None
            assert r["0"].util_pct == 87.0 and r["0"].energy_mj is not None
        # one line per device and metric, however many polls
        assert len(src.warnings) == 4
        assert any(w.startswith("GPU 0: power not available from NVML (Not Supported)")
                   for w in src.warnings)


def test_init_failure_names_the_nvml_error(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_FAIL", "9")
    with pytest.raises(GpuUnavailable, match="NVML init failed: Driver Not Loaded"):
        NvmlSource().open()


def test_binding_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # what an absent module looks like
    with pytest.raises(GpuUnavailable) as e:
        NvmlSource().open()
    assert e.value.reason == ("nvidia-ml-py is not installed: pip install nvidia-ml-py "
                              "(a crestline dependency: reinstall crestline)")


def test_library_not_found_in_a_clean_process():
    # Its own process: this one may have the fake loaded, and dlopen matches it by soname.
    code = ("from crestline.telemetry.sampler import GpuSampler\n"
            "from crestline.telemetry.nvml import NvmlSource\n"
            "s = GpuSampler(NvmlSource())\n"
            "print(s.start()); print(s.warnings); print(s.window(0, 2**62)); s.stop()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    if out[0] == "True":
        pytest.skip("this machine has a real NVIDIA driver")
    assert out[1:] == ["['GPU telemetry off: NVML library not found (libnvidia-ml.so.1); "
                       "install the NVIDIA driver or drop --gpu']", "None"]


def test_throttle_reasons_decoded(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_THROTTLE", "0x44")
    with opened() as src:
        r = src.poll()
        assert r["0"].throttle == ["sw_power_cap", "hw_thermal"]
        assert r["1"].throttle == []


def test_older_driver_falls_back_to_throttle_reasons(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_THROTTLE", "0x1")
    monkeypatch.setenv("FAKE_NVML_UNSUPPORTED", "event_reasons")
    with opened() as src:
        assert src.poll()["0"].throttle == ["gpu_idle"]
        assert src.poll()["0"].throttle == ["gpu_idle"]
        assert src.warnings == []
    monkeypatch.setenv("FAKE_NVML_UNSUPPORTED", "throttle")
    with opened() as src:
        assert src.poll()["0"].throttle is None
        assert len(src.warnings) == 2  # once per device


def test_reason_table_matches_the_binding(fake_nvml):
    assert reason_bits(fake_nvml) == THROTTLE_BITS


def test_xid_event_reported_once_on_its_device(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_XID", "79")
    with opened() as src:
        first = src.poll()
        assert first["1"].xid == [79] and first["0"].xid == []
        assert src.poll()["1"].xid == []


def test_xid_registration_unsupported_gives_one_warning(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_XID", "79")
    monkeypatch.setenv("FAKE_NVML_UNSUPPORTED", "events")
    with opened() as src:
        assert src.poll()["1"].xid == []
        assert len(src.warnings) == 1 and "XID events unavailable" in src.warnings[0]


@pytest.mark.parametrize("clock", ["wall", "boot"])
def test_high_rate_samples_on_the_monotonic_clock(fake_nvml, monkeypatch, clock):
    monkeypatch.setenv("FAKE_NVML_SAMPLE_CLOCK", clock)  # drivers stamp on either
    t_open = time.monotonic_ns()
    with opened() as src:
        time.sleep(0.12)  # the fake's buffer takes one sample per 20 ms
        first = src.poll()["0"]
        t_polled = time.monotonic_ns()
        samples = first.util_samples
        assert len(samples) >= 3 and {v for _, v in samples} == {95.0}
        # Converted to monotonic ns, and none from before opening (the buffer held 100): the
        # first new one is the 20 ms boundary after the open, the newest is stamped before the
        # poll returned (a busy machine may push it past the reading's own t_ns).
        assert all(t_open - 20_000_000 < t <= t_polled for t, _ in samples), (
            t_open, [t for t, _ in samples], first.t_ns, t_polled)
        time.sleep(0.05)
        later = src.poll()["0"].util_samples
        assert later and later[0][0] > samples[-1][0]  # only samples not seen before
        assert src.warnings == []


def test_sample_clock_is_the_one_nearest_the_newest_stamp():
    now_mono_ns = 5_000 * 10**9  # 5000 s since boot
    wall, boot, mono = 1_700_000_000 * 10**9, 2 * 10**9, 0  # offsets from CLOCK_MONOTONIC
    offsets = [wall, boot, mono]

    def stamp_us(offset, ago_s):
        return (now_mono_ns + offset) // 1000 - ago_s * 10**6

    assert sample_offset_ns(stamp_us(wall, 0), offsets, now_mono_ns) == wall
    assert sample_offset_ns(stamp_us(boot, 0), offsets, now_mono_ns) == boot
    assert sample_offset_ns(stamp_us(mono, 0), offsets, now_mono_ns) == mono
    # an idle GPU's newest sample may be an hour old: still the wall clock
    assert sample_offset_ns(stamp_us(wall, 3600), offsets, now_mono_ns) == wall
    # far in the future of every clock: unknown
    assert sample_offset_ns(stamp_us(wall, -10**6), offsets, now_mono_ns) is None


def test_no_new_samples_is_not_a_failure(fake_nvml):
    with opened() as src:
        src.poll()
        src.poll()  # within 20 ms: the driver answers NOT_FOUND
        assert src.warnings == []


def test_lost_gpu_raises_unavailable(fake_nvml, monkeypatch):
    with opened() as src:
        monkeypatch.setenv("FAKE_NVML_LOST", "1")
        with pytest.raises(GpuUnavailable, match="GPU 0 is lost"):
            src.poll()
