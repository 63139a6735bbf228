"""DcgmSource against a real loopback HTTP server speaking dcgm-exporter's text, parsed by the
real prometheus_client."""

from __future__ import annotations

import sys
import time

import pytest

from crestline.telemetry.dcgm import DcgmSource
from crestline.telemetry.readings import GpuUnavailable
from crestline.telemetry.sampler import GpuSampler
from crestline.telemetry.window import guard_trouble

INT64_BLANK = 9223372036854775794  # dcgm-exporter's text for an unsupported int64 field


def opened(exporter) -> DcgmSource:
    src = DcgmSource(exporter.url)
    src.open()
    return src


def test_devices_and_known_values(dcgm_exporter):
    exporter = dcgm_exporter()
    src = DcgmSource(exporter.url)
    assert src.open() == [
        {"id": "0", "name": "NVIDIA H100 80GB HBM3",
         "uuid": "GPU-5d1ab2e8-8a3e-1f2d-9c4b-000000000000", "mem_total_mib": 81520.0},
        {"id": "1", "name": "NVIDIA L4",
         "uuid": "GPU-5d1ab2e8-8a3e-1f2d-9c4b-000000000001", "mem_total_mib": 23034.0},
    ]
    h100 = src.poll()["0"]
    assert (h100.util_pct, h100.mem_util_pct) == (73.0, 35.0)
    assert (h100.mem_used_mib, h100.mem_total_mib) == (40960.0, 81520.0)
    assert (h100.power_w, h100.sm_clock_mhz, h100.temp_c) == (250.5, 1980.0, 64.0)
    # a counter: the parser names its sample ..._total; the family keeps the DCGM name
    assert h100.energy_mj == 1_000_000.0
    assert (h100.gr_active, h100.sm_active, h100.tensor_active) == (0.82, 0.75, 0.41)
    assert h100.throttle == [] and h100.xid == [] and h100.util_samples == []
    assert src.warnings == []


def test_blank_sentinels_and_missing_fields_are_null(dcgm_exporter):
    exporter = dcgm_exporter(DCGM_FI_DEV_GPU_TEMP=(64, INT64_BLANK),
                             drop=("DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                                   "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"))
    src = opened(exporter)
    r = src.poll()
    assert r["0"].temp_c == 64.0 and r["1"].temp_c is None
    assert r["0"].power_w is None and r["0"].tensor_active is None
    # power is a default counter: one warning; profiling fields are opt-in: none
    assert src.warnings == [f"dcgm-exporter at {exporter.url} does not export "
                            "DCGM_FI_DEV_POWER_USAGE: those figures are null (add them to "
                            "its counters CSV)"]


@pytest.mark.parametrize("field", ["DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
                                   "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"])
def test_throttle_bitmask_under_either_name(dcgm_exporter, field):
    exporter = dcgm_exporter(reasons=(0x40 | 0x4, 0x1), reasons_field=field)
    r = opened(exporter).poll()
    assert r["0"].throttle == ["sw_power_cap", "hw_thermal"]
    assert r["1"].throttle == ["gpu_idle"]


def test_xid_reported_when_the_last_xid_changes(dcgm_exporter):
    exporter = dcgm_exporter(xid=(0, 13))  # GPU 1 had an XID before the run: not ours
    src = opened(exporter)
    assert src.poll()["1"].xid == []
    exporter.set(xid=(0, 79))
    assert src.poll()["1"].xid == [79]
    assert src.poll()["1"].xid == []  # the same value again is not a new error
    assert src.poll()["0"].xid == []


def test_unreachable_at_open_is_a_warning_not_a_crash(closed_port, prometheus_client):
    url = f"http://127.0.0.1:{closed_port}/metrics"
    s = GpuSampler(DcgmSource(url))
    assert s.start() is False
    assert s.available is False
    assert len(s.warnings) == 1
    assert s.warnings[0].startswith(f"GPU telemetry off: dcgm-exporter at {url} unreachable: ")
    assert "refused" in s.warnings[0]
    assert s.window(0, 2**62) is None
    s.stop()


def test_not_an_exporter(dcgm_exporter):
    html = dcgm_exporter("<html><body>Grafana</body></html>\n")
    with pytest.raises(GpuUnavailable, match="not Prometheus text"):
        DcgmSource(html.url).open()
    other = dcgm_exporter("# TYPE node_load1 gauge\nnode_load1 0.5\n")
    with pytest.raises(GpuUnavailable, match="reports no GPU"):
        DcgmSource(other.url).open()
    missing = dcgm_exporter()
    missing.status = 404
    with pytest.raises(GpuUnavailable, match="unreachable: HTTP 404"):
        DcgmSource(missing.url).open()


def test_prometheus_client_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client.parser", None)
    with pytest.raises(GpuUnavailable) as e:
        DcgmSource("http://127.0.0.1:9/metrics").open()
    assert e.value.reason == ("prometheus_client is not installed: pip install prometheus_client "
                              "(a crestline dependency: reinstall crestline)")


def test_scrape_failure_mid_run_gives_nulls_and_one_warning(dcgm_exporter):
    exporter = dcgm_exporter()
    src = opened(exporter)
    assert src.poll()
    exporter.stop()
    assert src.poll() == {}
    assert src.poll() == {}
    assert len(src.warnings) == 1
    assert src.warnings[0].startswith(f"dcgm-exporter at {exporter.url}: a scrape failed")


def test_sampler_over_an_exporter_that_stops(dcgm_exporter, samplers):
    exporter = dcgm_exporter(reasons=(0x40, 0))
    s = samplers(DcgmSource(exporter.url), period_s=0.02)
    assert s.start()
    t0 = time.monotonic_ns()
    time.sleep(0.15)
    exporter.set(reasons=(0x40, 0), xid=(0, 79))
    time.sleep(0.1)
    t1 = time.monotonic_ns()
    exporter.stop()
    t_stopped = time.monotonic_ns()  # a scrape stamped after this cannot be answered
    time.sleep(0.15)
    t2 = time.monotonic_ns()

    up = s.window(t0, t1)
    assert up["0"]["samples"] >= 3
    assert up["0"]["util_pct"] == 73.0 and up["0"]["tensor_active"] == pytest.approx(0.41)
    assert up["0"]["throttle"] == ["hw_thermal"] and up["1"]["xid"] == [79]
    assert guard_trouble(up) == "GPU 0: thermal throttling (hw_thermal); GPU 1: XID 79"

    down = s.window(max(t1 + 30_000_000, t_stopped), t2)  # after the last answered scrape
    assert down["0"]["samples"] == 0 and down["0"]["util_pct"] is None
    assert any("a scrape failed" in w for w in s.warnings)
    assert s._thread.is_alive()  # it keeps trying
