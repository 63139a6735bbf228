"""client_ok: lateness, a short count for the arrival process, and a CPU-bound client, told
apart from a server that falls behind an open-loop client that kept its schedule."""

import numpy as np

from crestline.measure.cpu import client_cpu_summary, cpu_warnings
from crestline.measure.hdr import Hist
from crestline.measure.result import HIST_NAMES, IntervalSnapshot, RunResult


def _run(rate_rps, scheduled, completed, *, cpu_s, send_lag_ms=0.05, sched_lag_ms=0.05,
         arrival="constant", host_busy_s=None, workers=1, seconds=10):
    result = RunResult({"rate_rps": rate_rps, "arrival": arrival, "workers": workers}, 0.0,
                       host_cores=2)
    for k in range(seconds):
        s = IntervalSnapshot(k, k + 1.0, 1.0, scheduled=scheduled // seconds,
                             sent=scheduled // seconds, completed=completed // seconds,
                             ok=completed // seconds)
        n = s.scheduled
        s.hists = {name: Hist.empty() for name in HIST_NAMES}
        s.hists["send_lag"] = Hist.from_values(np.full(n, int(send_lag_ms * 1e6)))
        s.hists["schedule_lag"] = Hist.from_values(np.full(n, int(sched_lag_ms * 1e6)))
        s.cpu_s, s.host_busy_s = cpu_s, host_busy_s
        result.add(s)
    return result


def test_a_cpu_bound_client_behind_its_writes_is_not_ok():
    # The engine bench's 200k rps row: the scheduler woke on time, but requests waited in the
    # client to be written and completions fell 6% short, with the process busy all the time.
    r = _run(200_000, 2_000_000, 1_876_610, cpu_s=0.99, send_lag_ms=57.8)
    ok, why = r.client_check()
    assert not ok and "CPU-bound" in why[0] and "57.8 ms" in why[0]
    assert r.to_dict()["client_ok"] is False and r.to_dict()["client_cpu"]["saturated"]
    assert any("CPU-bound" in w for w in cpu_warnings(r.client_cpu()))


def test_a_server_falling_behind_an_idle_client_is_the_servers_shortfall():
    # Same shortfall and send lag (connections all busy at the server), client nearly idle.
    r = _run(2_000, 20_000, 18_000, cpu_s=0.10, send_lag_ms=40.0)
    assert r.client_check() == (True, [])


def test_a_poisson_run_that_issued_too_few_is_not_ok_beyond_its_noise():
    # 10 s at 1000 rps: 10,000 expected, sd 100; 9,800 is within noise, 9,000 is not.
    assert _run(1000, 9_800, 9_800, cpu_s=0.2, arrival="poisson").client_check()[0]
    ok, why = _run(1000, 9_000, 9_000, cpu_s=0.2, arrival="poisson").client_check()
    assert not ok and "issued 9000 of 10000" in why[0]


def test_the_summary_tells_a_competing_host_apart_from_a_saturated_client():
    r = _run(1000, 10_000, 10_000, cpu_s=0.3, host_busy_s=1.9)
    cpu = r.client_cpu()
    assert cpu["mean_cores"] == 0.3 and cpu["host_busy_cores"] == 1.9 and cpu["host_cores"] == 2
    assert cpu["competing"] and not cpu["saturated"]
    lines = cpu_warnings(cpu)
    assert len(lines) == 1 and "competes with the client" in lines[0]
    # two workers each 0.95 busy: saturated per process
    two = client_cpu_summary(_run(1000, 10_000, 10_000, cpu_s=1.9, workers=2).intervals, 2, 2)
    assert two["per_process"] == 0.95 and two["saturated"]


def test_a_late_scheduler_is_blamed_on_the_client_cpu_or_the_host_by_what_the_cpu_shows():
    # Same lateness (scheduler lag 3 ms at p99, over the 1 ms bound); only the client's CPU
    # differs: busy all the time, it is the client's; nearly idle, its host woke it late.
    ok, why = _run(2_000, 20_000, 20_000, cpu_s=0.95, sched_lag_ms=3.0).client_check()
    assert not ok and why[0].startswith("scheduler lag p99 3.000 ms > 1 ms: the client was "
                                        "CPU-bound (up to 0.95 cores)") and "--workers" in why[0]
    # late and behind its writes too: the one cause is said once
    ok, why = _run(2_000, 20_000, 18_000, cpu_s=0.95, sched_lag_ms=3.0,
                   send_lag_ms=40.0).client_check()
    assert not ok and len(why) == 1 and "CPU-bound" in why[0]
    ok, why = _run(2_000, 20_000, 20_000, cpu_s=0.15, sched_lag_ms=3.0).client_check()
    assert not ok and len(why) == 1
    assert "while the client used 0.15 cores: its host woke it late" in why[0]
    assert "--workers" not in why[0]
