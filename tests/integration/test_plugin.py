"""The pytest plugin as a team uses it: a test file of its own, run by pytest (pytester),
against a real loopback target with a known capacity."""

import json

pytest_plugins = ["pytester"]


def test_a_capacity_gate_passes_fails_and_attaches_the_report(pytester, target):
    t = target("--servers", "2", "--service-ms", "5", "--service-dist", "const",
               max_seconds=300)
    pytester.makepyfile(test_capacity=f'''
        import pytest

        URL = "{t.url}"
        pytestmark = pytest.mark.crestline(arrival="poisson", seed=1, interval_s=0.5,
                                           step_s=2, warmup="none", max_time_s=30,
                                           tolerance=0.2, connections=16)

        def test_holds_50_rps(crestline):
            # a capacity of at most 400 rps (2 servers x 5 ms): well over 50, quickly
            result = crestline.search(URL, slo="p90=20ms", start_rate_rps=50,
                                      max_rate_rps=50)
            assert result.capacity_rps >= 50

        def test_does_not_hold_5000_rps(crestline):
            result = crestline.search(URL, slo="p90=20ms", start_rate_rps=1000,
                                      max_rate_rps=5000, max_steps=2)
            assert (result.capacity_rps or 0) >= 5000

        @pytest.mark.crestline(max_time_s=10)
        def test_a_run_is_there_too(crestline):
            r = crestline.run(URL, rate_rps=100, duration_s=1.0, slo="p99=500ms")
            assert r.achieved_rps > 90 and r.slo_met
    ''')
    out = pytester.path / "results"
    res = pytester.runpytest("-rA", "-m", "crestline", f"--crestline-out={out}")
    res.assert_outcomes(passed=2, failed=1)
    text = res.stdout.str()
    # the failing gate's report carries the search summary, as `crestline search` prints it
    assert "crestline search 1" in text and "capacity" in text
    assert "test_does_not_hold_5000_rps" in text
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 3 and any(".run1." in f for f in files)
    run = json.loads(next(out.glob("*a_run_is_there_too*")).read_text())
    assert run["kind"] == "run" and run["spec"]["arrival"] == "poisson"  # the module's mark
    assert run["spec"]["interval_s"] == 0.5


def test_the_plugin_is_registered_through_its_entry_point(pytester):
    pytester.makepyfile(test_x='''
        def test_fixture_is_there(crestline):
            assert hasattr(crestline, "search") and hasattr(crestline, "run")
    ''')
    res = pytester.runpytest("--markers")  # no -p: found through the pytest11 entry point
    assert "@pytest.mark.crestline(**options)" in res.stdout.str()
    pytester.runpytest().assert_outcomes(passed=1)
