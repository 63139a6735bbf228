"""`crestline search` end to end against a real loopback server with known capacity.

The target runs a FIFO queue with 4 workers and a constant 10 ms service time; under Poisson
arrivals that is M/D/4. Its capacity at p90 <= 50 ms comes from a long simulation of that queue
run beside the search (crestline.search.sim, about 370 rps); the search must land within 5% of
it through the real engine and CLI. A 10 ms service keeps the rate low, so the client's own CPU
and a noisy host's wake-ups (tolerated up to 10% of the bound, 5 ms) stay small next to the
queueing the verdicts are about.
"""

import json
import subprocess

import msgpack
import pytest
from cli_process import CLI

from crestline.search.sim import SimServer, sim_capacity_rps


@pytest.fixture(scope="module")
def truth_rps() -> float:
    return sim_capacity_rps(SimServer(servers=4, service_ms=10.0, service_dist="const"),
                            90.0, 0.050, requests=500_000)


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.long)])
def test_search_finds_md4_capacity_within_5pct(target, tmp_path, workers, truth_rps):
    # Two client processes share each step's schedule and merge their histograms exactly: the
    # verdicts, and so the capacity, must be those of one.
    t = target("--servers", "4", "--service-ms", "10", "--service-dist", "const",
               max_seconds=600)
    out, runlog = tmp_path / "s.json", tmp_path / "s.runlog"
    p = subprocess.run(
        CLI + ["search", t.url, "--slo", "p90=50ms", "--arrival", "poisson", "--seed", "1",
               "--start-rate", "100", "--step-duration", "3s", "--warmup", "none",
               "--tolerance", "4%", "--connections", "64", "--max-time", "4m", "--out", str(out),
               "--runlog", str(runlog), "--assert-capacity", "100k", "--workers", str(workers)],
        capture_output=True, text=True, timeout=600)
    # the search ran to the end; only the capacity gate failed
    assert p.returncode == 1, p.stderr[-2000:]
    assert "below --assert-capacity 100,000 rps" in p.stderr
    r = json.loads(out.read_text())
    for key in ("capacity_rps", "converged", "reason", "slo", "bracket", "warmup_s", "steps"):
        assert key in r
    for step in r["steps"]:
        assert step["verdict"] in ("pass", "fail", "unsure", "invalid")
        for key in ("rate_rps", "achieved_rps", "latency_ms", "error_rate", "duration_s", "why"):
            assert key in step
        assert set(step["latency_ms"]) >= {"p50", "p99", "p999"}
        pcts = [pct for pct, _ in step["distribution_ms"]]
        values = [ms for _, ms in step["distribution_ms"]]
        assert pcts[0] == 0 and pcts[-1] == 100 and values == sorted(values)
    assert r["kind"] == "search" and r["capacity_gpu"] is None
    assert r["workers"] == workers and r["spec"]["workers"] == workers
    # every interval, labelled with its step and rate
    assert len(r["intervals"]) > 20
    labelled = [iv for iv in r["intervals"] if iv["step"] is not None]
    assert {iv["step"] for iv in labelled} == set(range(len(r["steps"])))
    for iv in labelled:
        assert iv["rate_rps"] == r["steps"][iv["step"]]["rate_rps"]
    # one clock for the whole search: increasing, and ahead of load time by the drains
    elapsed = [iv["elapsed_s"] for iv in r["intervals"]]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] >= sum(iv["dur_s"] for iv in r["intervals"]) + 0.5 * r["drain_s"]
    assert r["slo"] == {"p90": "50ms"}
    cap = r["capacity_rps"]
    assert abs(cap / truth_rps - 1) <= 0.05, (cap, [(s["rate_rps"], s["verdict"], s["why"])
                                                   for s in r["steps"]])
    assert r["converged"], r["reason"]
    # live progress: a line per step and the bracket, then the summary
    assert p.stderr.count("\nstep ") + p.stderr.startswith("step ") >= len(r["steps"]) - 1
    assert "bracket [" in p.stderr and "capacity" in p.stdout
    with open(runlog, "rb") as f:
        kinds = [rec["type"] for rec in msgpack.Unpacker(f, raw=False)]
    assert kinds[0] == "header" and kinds[-1] == "summary"
    assert kinds.count("step") == len(r["steps"]) and kinds.count("interval") > 20
    # the same search compared with itself: no change anywhere
    p = subprocess.run(CLI + ["compare", str(out), str(runlog), "--json"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["rows"]
    assert rows[0]["metric"] == "capacity" and rows[0]["change_pct"] == 0
    assert any(row["metric"].startswith("p99 at") for row in rows)
    assert all(row["change_pct"] in (0, None) for row in rows)


def test_search_bad_input_is_exit_2(listener):
    url = f"http://127.0.0.1:{listener.port}/"
    for args, expect in ((["--slo", "p99"], "NAME=VALUE"),
                         (["--slo", "p99=10ms", "--workers", "0"], "--workers"),
                         (["--slo", "p99=10ms", "--tolerance", "lots"], "--tolerance"),
                         (["--slo", "p99=10ms", "--start-rate", "5k", "--max-rate", "1k"],
                          "--start-rate")):
        p = subprocess.run(CLI + ["search", url] + args, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 2, (args, p.stderr)
        assert expect in p.stderr and "Traceback" not in p.stderr
    assert listener.accepted() == 0
