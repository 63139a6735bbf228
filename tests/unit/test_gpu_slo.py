"""GPU bounds in the SLO, the GPU guard, and the GPU picture per step, on simulated servers
whose GPU figures are a known function of the offered rate."""

import pytest

from crestline.errors import ConfigError
from crestline.search.policy import SearchConfig, SearchPolicy, drive
from crestline.search.sim import SimEngine, SimServer, mmc_capacity_rps
from crestline.slo.parse import parse_slo
from crestline.telemetry.recorder import efficiency, summarize

SERVER = SimServer(servers=4, service_ms=2, service_dist="exp")
LATENCY_TRUTH = mmc_capacity_rps(99, 0.020, 500, 4)  # about 1750 rps at p99 <= 20 ms
SATURATION_RPS = 2000.0  # the simulated GPU is 100% busy here


class GpuSimEngine(SimEngine):
    """SimEngine plus one simulated GPU: utilisation proportional to the offered rate, power
    100 W idle + 2 W per % busy, and optional trouble from some rate on."""

    def __init__(self, *a, trouble_from_rps=None, trouble=None, **kw):
        super().__init__(*a, **kw)
        self.trouble_from_rps, self.trouble = trouble_from_rps, trouble or {}

    def interval(self, rate_rps):
        snap = super().interval(rate_rps)
        util = min(100.0, 100.0 * rate_rps / SATURATION_RPS)
        fig = {"util_pct": util, "util_max_pct": util, "mem_used_mib": 20_000.0,
               "mem_total_mib": 80_000.0, "power_w": 100.0 + 2 * util, "energy_j": None,
               "sm_clock_mhz": 1980.0, "temp_c": 60.0, "throttle": [], "xid": [],
               "samples": 10}
        if self.trouble_from_rps is not None and rate_rps >= self.trouble_from_rps:
            fig |= self.trouble
        snap.gpu = {"0": fig}
        return snap


def search(slo, engine, **kw):
    cfg = SearchConfig(slo=parse_slo(slo), start_rate_rps=200, warmup="none", **kw)
    return drive(SearchPolicy(cfg), engine)


def test_parse_gpu_bounds():
    slo = parse_slo(["p99=25ms", "gpu_util<=90%", "gpu_mem<=70GiB", "gpu_power=300W",
                     "gpu_temp<=85C", "p999<=80ms"])
    assert slo.to_dict() == {"p99": "25ms", "p999": "80ms", "gpu_util": "90%",
                             "gpu_mem": "71680MiB", "gpu_power": "300W", "gpu_temp": "85C"}
    assert parse_slo(["gpu_mem<=50%"]).gpu[0].unit == "%"


@pytest.mark.parametrize("bad,match", [
    ("gpu_util<=190%", r"\(0, 100\]"), ("gpu_power<=3C", "in W"), ("gpu_mem<=7", "GiB"),
    ("gpu_util<=", "gpu_util<=90%"), ("gpu_temp<=hot", "gpu_temp<=85C"),
    ("gpu_power<=0W", "positive"),
])
def test_bad_gpu_bounds(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse_slo([bad])


def test_gpu_bound_caps_capacity_below_the_latency_capacity():
    # gpu_util <= 50% binds at 1000 rps, well below the ~1750 rps the latency SLO allows.
    r = search(["p99=20ms", "gpu_util<=50%"], GpuSimEngine(SERVER, seed=0))
    cap = r["capacity_rps"]
    assert r["converged"], r["reason"]
    assert 0.96 * 1000 <= cap <= 1000, [(s["rate_rps"], s["verdict"]) for s in r["steps"]]
    failing = [s for s in r["steps"] if s["verdict"] == "fail"]
    assert failing and all("gpu_util" in s["why"] for s in failing)
    gpu = r["capacity_gpu"]
    assert gpu["util_pct"] == pytest.approx(100 * cap / SATURATION_RPS, rel=0.02)
    assert gpu["power_w"] == pytest.approx(100 + 2 * gpu["util_pct"], rel=1e-6)
    assert gpu["rps_per_w"] == pytest.approx(gpu["rps_per_gpu"] / gpu["power_w"], rel=1e-9)
    assert gpu["rps_per_gpu"] == pytest.approx(cap, rel=0.03)  # achieved ~ offered


def test_without_gpu_bounds_the_gpu_picture_is_reported_but_does_not_bind():
    r = search(["p99=20ms"], GpuSimEngine(SERVER, seed=0))
    assert abs(r["capacity_rps"] / LATENCY_TRUTH - 1) <= 0.03
    for s in r["steps"]:
        assert s["gpu"]["util_pct"] == pytest.approx(min(100, 100 * s["rate_rps"] / 2000),
                                                     rel=1e-9)


def test_thermal_throttling_fails_the_step_at_once():
    eng = GpuSimEngine(SERVER, seed=0, trouble_from_rps=1200,
                       trouble={"throttle": ["hw_thermal"]})
    r = search(["p99=20ms"], eng)
    assert 1100 <= r["capacity_rps"] < 1200
    stopped = [s for s in r["steps"] if s["rate_rps"] >= 1200]
    assert stopped and all(s["verdict"] == "fail" and "GPU guard" in s["why"]
                           and "thermal" in s["why"] for s in stopped)


def test_an_xid_error_ends_the_search():
    eng = GpuSimEngine(SERVER, seed=0, trouble_from_rps=700, trouble={"xid": [79]})
    r = search(["p99=20ms"], eng)
    assert not r["converged"]
    assert "XID 79" in r["reason"] and r["reason"].startswith("stopped")
    assert r["steps"][-1]["verdict"] == "fail"


def test_summaries_fold_intervals_and_devices():
    w1 = {"0": {"util_pct": 40.0, "power_w": 200.0, "mem_used_mib": 10.0, "temp_c": 50.0,
                "energy_j": 200.0, "throttle": ["sw_power_cap"], "xid": []},
          "1": {"util_pct": 60.0, "power_w": 300.0, "mem_used_mib": 30.0, "temp_c": 70.0,
                "energy_j": None, "throttle": [], "xid": []}}
    w2 = {"0": {"util_pct": 80.0, "power_w": 220.0, "mem_used_mib": 12.0, "temp_c": 55.0,
                "energy_j": 220.0, "throttle": [], "xid": [13]},
          "1": {"util_pct": None, "power_w": 320.0, "mem_used_mib": 20.0, "temp_c": 65.0,
                "energy_j": None, "throttle": [], "xid": []}}
    s = summarize([w1, None, w2])
    assert s["0"]["util_pct"] == 60.0 and s["1"]["util_pct"] == 60.0
    assert s["0"]["mem_used_mib"] == 12.0 and s["1"]["temp_c"] == 70.0
    assert s["0"]["energy_j"] == 420.0 and s["1"]["energy_j"] is None
    assert s["0"]["throttle"] == ["sw_power_cap"] and s["0"]["xid"] == [13]
    e = efficiency([w1, w2], achieved_rps=1000.0)
    assert e["gpus"] == 2 and e["power_w"] == pytest.approx(210 + 310)
    assert e["rps_per_gpu"] == 500 and e["rps_per_w"] == pytest.approx(1000 / 520)
    assert efficiency([None, None], 1000.0) is None
