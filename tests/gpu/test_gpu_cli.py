"""GPU telemetry through the whole tool: `crestline run` and `search` with --gpu, against a
real loopback target, the real NVML binding loading the fake libnvidia-ml.so.1 (found through
LD_LIBRARY_PATH, as a real driver's library would be) and a loopback dcgm-exporter."""

import json
import os
import re

import pytest
from cli_process import crestline


@pytest.fixture
def nvml_env(fake_nvml_path):
    """What a process whose NVML is the fake adds to its environment: no FAKE_NVML_* faults
    (an empty value is unset to the fake), whatever this process has."""
    env = {k: "" for k in os.environ if k.startswith("FAKE_NVML_")}
    env["LD_LIBRARY_PATH"] = os.path.dirname(fake_nvml_path)
    return env


def test_run_with_nvml_has_gpu_figures_per_interval(target, tmp_path, nvml_env):
    t = target("--delay-ms", "1")
    out = tmp_path / "r.json"
    p = crestline("run", t.url, "--rate", "200", "--duration", "3s", "--gpu", "nvml",
                  "--gpu-interval", "50ms", "--out", out, env=nvml_env)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert [dev["id"] for dev in d["gpu"]["devices"]] == ["0", "1"]
    assert d["gpu"]["source"] == "nvml" and d["gpu"]["warnings"] == []
    load = [iv for iv in d["intervals"] if not iv["drain"]]
    assert len(load) == 3
    for iv in load:
        g0, g1 = iv["gpu"]["0"], iv["gpu"]["1"]
        # the driver's high-rate buffer (95% / 20%), not the polled rate (87% / 12%)
        assert g0["util_pct"] == pytest.approx(95) and g1["util_pct"] == pytest.approx(20)
        # power from the energy counter, which the fake advances at 250 W and 40 W
        assert g0["power_w"] == pytest.approx(250, rel=0.05)
        assert g1["power_w"] == pytest.approx(40, rel=0.05)
        assert g0["mem_used_mib"] == 40960 and g0["mem_total_mib"] == 81920
        assert g0["temp_c"] == 64 and g0["sm_clock_mhz"] == 1980
        assert 15 <= g0["samples"] <= 25  # 20 polls of 50 ms per 1 s interval
    assert d["intervals"][-1]["drain"] and d["intervals"][-1]["gpu"] is None
    summary = d["gpu"]["summary"]["0"]
    assert summary["power_w"] == pytest.approx(250, rel=0.05)
    assert summary["energy_j"] == pytest.approx(250 * 3, rel=0.1)
    # live lines carry the GPUs: mean utilisation of both, total power
    # (95% + 20%) / 2 and 250 W + 40 W, give or take a poll's timing
    assert "gpu" in p.stderr and re.search(r" 5[78]% 2(8[5-9]|9[0-5])W", p.stderr), p.stderr
    assert "gpu 0" in p.stdout and "95% busy" in p.stdout


def test_run_without_a_driver_warns_and_goes_on(target, tmp_path):
    t = target("--delay-ms", "1")
    out = tmp_path / "r.json"
    env = {"LD_LIBRARY_PATH": str(tmp_path)}  # nothing there: no libnvidia-ml.so.1
    p = crestline("run", t.url, "--rate", "100", "--duration", "1s", "--gpu", "nvml",
                  "--out", out, env=env)
    if "NVML library not found" not in p.stderr:
        pytest.skip("this machine has a real NVIDIA driver")
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["requests"]["ok"] == 100
    assert all(iv["gpu"] is None for iv in d["intervals"])
    assert any("NVML library not found" in w for w in d["warnings"])
    assert d["gpu"]["devices"] == [] and d["gpu"]["summary"] == {}


def test_run_with_dcgm_exporter(target, tmp_path, dcgm_exporter):
    t = target("--delay-ms", "1")
    exporter = dcgm_exporter()
    out = tmp_path / "r.json"
    p = crestline("run", t.url, "--rate", "100", "--duration", "2s", "--gpu",
                  f"dcgm={exporter.url}", "--out", out)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["gpu"]["source"] == "dcgm" and exporter.scrapes >= 15
    g = d["intervals"][0]["gpu"]
    assert g["0"]["util_pct"] == 73 and g["1"]["util_pct"] == 12
    assert g["0"]["mem_used_mib"] == 40960 and g["0"]["tensor_active"] == pytest.approx(0.41)


def test_run_with_an_unreachable_exporter_warns_and_goes_on(target, tmp_path, closed_port):
    t = target("--delay-ms", "1")
    out = tmp_path / "r.json"
    p = crestline("run", t.url, "--rate", "100", "--duration", "1s", "--gpu",
                  f"dcgm=http://127.0.0.1:{closed_port}", "--out", out)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["requests"]["ok"] == 100 and d["intervals"][0]["gpu"] is None
    assert any(f"127.0.0.1:{closed_port}" in w for w in d["warnings"]), d["warnings"]


SEARCH = ["--slo", "p90=50ms", "--arrival", "poisson", "--seed", "1", "--start-rate", "300",
          "--step-duration", "3s", "--warmup", "none", "--max-steps", "3", "--max-rate", "600"]


def test_search_reports_the_gpu_picture_and_applies_gpu_bounds(target, tmp_path, nvml_env):
    t = target("--servers", "4", "--service-ms", "2", "--service-dist", "exp", max_seconds=300)
    out = tmp_path / "s.json"
    # --max-rate 300 (the start): a pass there and its confirmation end the search
    p = crestline("search", t.url, *SEARCH, "--max-rate", "300", "--gpu", "nvml:0",
                  "--slo", "gpu_util<=99%", "--out", out, env=nvml_env, timeout=200)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["slo"]["gpu_util"] == "99%"
    for step in r["steps"]:
        g = step["gpu"]
        assert g["gpus"] == 1 and g["util_pct"] == pytest.approx(95)
        assert g["power_w"] == pytest.approx(250, rel=0.05)
        assert g["rps_per_w"] == pytest.approx(step["achieved_rps"] / g["power_w"])
        if step["verdict"] == "pass":
            assert "gpu_util 95% vs 99%" in step["why"]
    cap = r["capacity_gpu"]
    assert cap is not None and cap["rps_per_gpu"] == pytest.approx(
        [s for s in r["steps"] if s["rate_rps"] == r["capacity_rps"]][-1]["achieved_rps"])
    assert "at capacity: 1 GPU(s) 95% busy" in p.stdout
    # a tighter bound than the GPU ever meets: every step fails on it
    p = crestline("search", t.url, *SEARCH, "--max-steps", "2", "--gpu", "nvml:0",
                  "--slo", "gpu_util<=90%", "--out", out, env=nvml_env, timeout=200)
    assert p.returncode in (0, 1), p.stderr  # ran (not refused), so --out is this search's
    r = json.loads(out.read_text())
    assert r["capacity_rps"] is None
    judged = [s for s in r["steps"] if s["verdict"] != "invalid"]  # a busy machine's client
    assert judged and all(s["verdict"] == "fail" and "gpu_util 95% vs 90%" in s["why"]
                          for s in judged)


def test_search_guard_thermal_throttling_and_xid(target, tmp_path, nvml_env):
    t = target("--servers", "4", "--service-ms", "2", "--service-dist", "exp", max_seconds=300)
    out = tmp_path / "s.json"
    hw_thermal = 0x40  # nvmlClocksEventReasonHwThermalSlowdown
    p = crestline("search", t.url, *SEARCH, "--gpu", "nvml", "--out", out,
                  env=nvml_env | {"FAKE_NVML_THROTTLE": str(hw_thermal)}, timeout=200)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["steps"] and all(s["verdict"] == "fail" for s in r["steps"])
    why = r["steps"][0]["why"]
    assert "stopped by the GPU guard: GPU 0: thermal throttling (hw_thermal)" in why
    assert r["steps"][0]["measured_s"] < 3  # stopped at once, not after the step's length
    p = crestline("search", t.url, *SEARCH, "--gpu", "nvml", "--out", out,
                  env=nvml_env | {"FAKE_NVML_XID": "79"}, timeout=200)
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert not r["converged"] and len(r["steps"]) == 1
    assert r["reason"].startswith("stopped: stopped by the GPU guard: GPU 1: XID 79")


def test_gpu_bounds_never_pass_unmeasured(target, tmp_path, nvml_env):
    t = target("--delay-ms", "1")
    no_driver = nvml_env | {"FAKE_NVML_FAIL": "9"}  # NVML_ERROR_DRIVER_NOT_LOADED
    p = crestline("search", t.url, "--slo", "gpu_util<=90%", "--gpu", "nvml", env=no_driver)
    assert p.returncode == 2, p.stderr
    assert "only GPU bounds and GPU telemetry is off" in p.stderr
    p = crestline("run", t.url, "--rate", "50", "--duration", "1s", "--gpu", "nvml",
                  "--slo", "gpu_util<=90%", "--slo", "p99=1s", "--assert", env=no_driver)
    assert p.returncode == 1, p.stderr
    assert "gpu_util: no GPU figures, so not met" in p.stdout


def test_workers_share_the_sampling_grid(target, tmp_path, nvml_env):
    t = target("--delay-ms", "1")
    out = tmp_path / "r.json"
    p = crestline("run", t.url, "--rate", "200", "--duration", "3s", "--workers", "2",
                  "--gpu", "nvml", "--out", out, "--quiet", env=nvml_env)
    assert p.returncode == 0, p.stderr
    load = [iv for iv in json.loads(out.read_text())["intervals"] if not iv["drain"]]
    # 100 ms polls at the mid-points of the parent's grid: ten per 1 s interval (a poll a
    # busy machine delays past a boundary counts in the next)
    samples = [iv["gpu"]["0"]["samples"] for iv in load]
    assert len(samples) == 3 and all(9 <= n <= 11 for n in samples), samples
