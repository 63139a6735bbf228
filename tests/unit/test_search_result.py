"""Search fields as data: the policy tags each interval (step, rate, warm-up), a step says
whether it was discarded, and one builder owns the shape of a search result."""

import pytest

from crestline.measure.runlog import RunlogContents
from crestline.report.reader import capacity_and_failure, discarded, rebuild_search, search_bracket
from crestline.search.policy import SearchConfig, SearchPolicy, Step, drive
from crestline.search.result import DISCARDED_WHY, search_result
from crestline.search.sim import SimEngine, SimServer
from crestline.slo.parse import parse_slo

# 4x slower for its first 30 s, steadily so: the warm-up re-check finds it only later.
SLOW_START = SimServer(servers=4, service_ms=2, service_dist="const", warmup_s=30,
                       warmup_factor=4)


class Recording(SimEngine):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.offered = []  # (rate offered, snapshot)

    def interval(self, rate_rps):
        snap = super().interval(rate_rps)
        self.offered.append((rate_rps, snap))
        return snap


def search(engine, **kw):
    cfg = SearchConfig(slo=parse_slo(["p99=10ms"]), start_rate_rps=300, **kw)
    policy = SearchPolicy(cfg)
    return policy, drive(policy, engine)


def test_the_policy_tags_rate_step_and_warmup():
    engine = Recording(SLOW_START, seed=0)
    policy, r = search(engine, warmup=15.0)
    assert all(snap.rate_rps == rate for rate, snap in engine.offered)
    hold = [snap for _, snap in engine.offered if snap.step is None]
    assert hold and all(s.warmup for s in hold)
    assert sum(s.dur_s for s in hold) == pytest.approx(r["warmup_s"])
    in_steps = [snap for _, snap in engine.offered if snap.step is not None]
    assert all(s.warmup is (policy.steps[s.step].discarded) for s in in_steps)
    d = in_steps[0].to_dict()
    assert (d["step"], d["rate_rps"], d["warmup"]) == (0, 300, in_steps[0].warmup)


def test_discarded_steps_say_so_as_data():
    engine = Recording(SLOW_START, seed=0)
    policy, r = search(engine, warmup="auto")
    gone = [s for s in r["steps"] if s["discarded"]]
    assert gone and all(s["why"].startswith(DISCARDED_WHY) for s in gone)
    assert all(not s["why"].startswith("discarded") for s in r["steps"] if not s["discarded"])
    # intervals of a discarded step were warm-up after all
    assert all(snap.warmup for st in policy.steps if st.discarded for snap in st.intervals)
    assert r["capacity_rps"] is not None
    cap_i = capacity_and_failure(r)[0]
    assert not r["steps"][cap_i]["discarded"] and r["steps"][cap_i]["rate_rps"] == r["capacity_rps"]


def test_reports_read_the_flag_and_fall_back_to_the_prose():
    assert discarded({"discarded": True, "why": "p99 3 ms vs 10 ms"})
    assert not discarded({"discarded": False, "why": "discarded: a clause of its own"})
    assert discarded({"why": DISCARDED_WHY + "p99 3 ms vs 10 ms"})  # a file from before the key
    assert not discarded({"why": "p99 3 ms vs 10 ms"})
    steps = [{"rate_rps": 200.0, "verdict": "pass", "discarded": False},
             {"rate_rps": 400.0, "verdict": "pass", "discarded": True, "why": ""},
             {"rate_rps": 300.0, "verdict": "fail", "discarded": False}]
    assert search_bracket(steps) == (200.0, 300.0)


def test_step_dict_has_the_discarded_key():
    step = Step(100.0, "bracket", discarded=True)
    d = step.to_dict()
    assert d["discarded"] is True and d["why"] == DISCARDED_WHY


def test_one_builder_owns_the_search_result_shape():
    policy, r = search(SimEngine(SimServer(servers=4, service_ms=2), seed=0), warmup="none")
    fields = dict(capacity_rps=None, converged=False, reason="", slo={}, bracket=[None, None],
                  warmup_s=None, warmup_note="", load_s=0.0, drain_s=None,
                  client_ceiling_rps=None, config={}, steps=[])
    assert list(r) == list(search_result(**fields))
    header = {"spec": {"url": "http://x/", "arrival": "poisson", "search": policy.cfg.to_dict()},
              "started_unix_s": 0.0}
    steps = [{"type": "step", "index": i, **s} for i, s in enumerate(r["steps"])]
    rebuilt = rebuild_search(RunlogContents(header, [], steps))
    assert set(r) <= set(rebuilt)
    assert r["converged"] and rebuilt["capacity_rps"] == r["capacity_rps"]
    # The rebuilt interval is the bracket's: the confirmed rate up to the failure above it.
    assert rebuilt["arrival"] == "poisson"
    assert rebuilt["capacity_ci_rps"] == [r["capacity_rps"], r["bracket"][1]]
    assert r["bracket"][1] > r["capacity_rps"]
    assert rebuilt["capacity_gpu"] is None and rebuilt["interrupted"] is True


def test_summary_gives_the_interval_and_the_arrival_and_reads_old_results():
    from crestline.report.live import search_summary

    r = {"capacity_rps": 1069.4, "capacity_ci_rps": [1050.2, 1087.0], "arrival": "poisson",
         "bracket": [1069.4, 1087.0], "slo": {"p99": "50ms"}, "converged": True,
         "reason": "bracket within 2%", "steps": [{}] * 12, "load_s": 83.0, "warmup_s": 0.0}
    lines = search_summary(r).splitlines()
    assert lines[1] == "capacity 1,069 rps (95% CI 1,050..1,087) at p99 <= 50ms, poisson arrivals"
    assert lines[2].startswith("converged: bracket within 2% (bracket 1,069 .. 1,087 rps); 12")
    old = {k: v for k, v in r.items() if k not in ("capacity_ci_rps", "arrival")}
    assert search_summary(old).splitlines()[1] == (
        "capacity 1,069 rps at p99 <= 50ms (bracket 1,069 .. 1,087 rps)")
    # a budget spent before any confirmation: no capacity, but say what passed
    cut = r | {"capacity_rps": None, "capacity_ci_rps": None, "converged": False,
               "reason": "step budget spent (--max-steps)"}
    assert search_summary(cut).splitlines()[1] == (
        "no confirmed capacity at p99 <= 50ms, poisson arrivals: step budget spent "
        "(--max-steps) (highest pass 1,069 rps, not confirmed)")


def test_the_result_says_its_arrival_and_an_interval_around_capacity():
    policy, r = search(SimEngine(SimServer(servers=4, service_ms=2), seed=0), warmup="none")
    assert r["arrival"] == "poisson" and r["config"]["arrival"] == "poisson"
    lo, hi = r["capacity_ci_rps"]
    assert lo <= r["capacity_rps"] <= hi <= r["bracket"][1]
