"""The sweep's pure half: the rate ladder, one row per rate pooled exactly, and the crossing."""

import numpy as np
import pytest

from crestline.errors import ConfigError
from crestline.measure.hdr import Hist
from crestline.measure.result import IntervalSnapshot
from crestline.report.live import sweep_table
from crestline.report.reader import kind_of, text
from crestline.search.sweep import (
    MAX_RATES,
    crossing,
    make_sweep_config,
    measured,
    parse_ladder,
    sweep_result,
    sweep_row,
)
from crestline.slo.parse import parse_slo

SPEC = {"url": "http://127.0.0.1:1/", "arrival": "poisson", "workers": 1,
        "max_schedule_lag_p99_ms": 1.0, "batch_window_s": 0.0, "min_issued_ratio": 0.99}


# -- the ladder ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text_, expected", [
    ("100:1000:300", (100, 400, 700, 1000)),
    ("100:950:300", (100, 400, 700)),
    ("1k:2k:250", (1000, 1250, 1500, 1750, 2000)),
    ("0.5k:0.7k:0.1k", (500, 600, 700)),
    ("500:500:10", (500,)),
    ("200,500,1k,2.5k/s", (200, 500, 1000, 2500)),
    (" 100 , 200 ", (100, 200)),
    ("750", (750,)),
])
def test_ladder_from_text(text_, expected):
    assert parse_ladder(text_) == pytest.approx(expected)


def test_ladder_range_is_computed_from_the_index():
    ladder = parse_ladder("100:1000:50")
    assert len(ladder) == 19 and ladder[0] == 100 and ladder[-1] == 1000
    assert ladder == tuple(100 + 50 * i for i in range(19))  # exact, no drift
    assert parse_ladder("0.1:0.3:0.1") == (0.1, 0.2, 0.3)


def test_ladder_from_a_sequence():
    assert parse_ladder([100, "1k", 2000.0]) == (100, 1000, 2000)


@pytest.mark.parametrize("bad, says", [
    ("", "empty"),
    ("   ", "empty"),
    ("100,", "empty item"),
    (",100", "empty item"),
    ("300,200", "strictly ascending"),
    ("100,100", "strictly ascending"),
    ("-100,200", "cannot read"),
    ("0,100", "positive"),
    ("abc", "cannot read"),
    ("100:200", "A:B:STEP"),
    ("100:200:10:5", "A:B:STEP"),
    ("100::10", "A:B:STEP"),
    ("1000:100:10", "below the start"),
    ("100:1000:0", "positive"),
    ("100:1000:-5", "cannot read"),
    ("1:1000:1", f"more than {MAX_RATES}"),
    (",".join(str(r) for r in range(1, MAX_RATES + 2)), f"more than {MAX_RATES}"),
    ([], "empty"),
])
def test_bad_ladders_are_config_errors(bad, says):
    with pytest.raises(ConfigError, match=says):
        parse_ladder(bad)


def test_two_hundred_rates_are_allowed():
    assert len(parse_ladder("10:2000:10")) == MAX_RATES


# -- the configuration ---------------------------------------------------------------------------
def test_config_parses_units_and_defaults():
    cfg = make_sweep_config("100:300:100", step_s="30s", interval_s="500ms", warmup="AUTO",
                            slo="p99=25ms")
    assert cfg.rates_rps == (100, 200, 300) and cfg.step_s == 30 and cfg.interval_s == 0.5
    assert cfg.warmup == "auto" and cfg.settle_intervals == 1
    assert cfg.slo.to_dict() == {"p99": "25ms"}
    assert make_sweep_config("100", warmup="30s").warmup == 30.0
    assert make_sweep_config("100", warmup="none", slo=None).slo is None
    d = cfg.to_dict()
    assert d["rates_rps"] == [100, 200, 300] and d["slo"] == {"p99": "25ms"}


@pytest.mark.parametrize("kwargs, says", [
    ({"step_s": "2s", "interval_s": "1s"}, "at least 3 intervals"),
    ({"step_s": "1s", "interval_s": "0.5s"}, "at least 3 intervals"),
    ({"step_s": "3s", "settle_intervals": 2}, "leaves fewer than 2"),
    ({"settle_intervals": -1}, "whole number"),
    ({"settle_intervals": 1.5}, "whole number"),
    ({"warmup": "0"}, "positive"),
    ({"warmup": "soon"}, "cannot read --warmup"),
    ({"slo": ["p99=fast"]}, "p99"),
])
def test_bad_config_is_a_config_error(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        make_sweep_config("100,200", **kwargs)


def test_three_intervals_is_the_shortest_step():
    assert make_sweep_config("100", step_s="1.5s", interval_s="0.5s").step_s == 1.5
    assert make_sweep_config("100", step_s="3s", settle_intervals=1).settle_intervals == 1


# -- rows ----------------------------------------------------------------------------------------
_VALUES: dict[int, np.ndarray] = {}  # by interval index: the latest _snap made with it


def _snap(index, values_ms, *, dur_s=1.0, drain=False, errors=0, shed=0, lag_ms=0.05,
          scheduled=None):
    v = np.asarray(values_ms, dtype=np.float64)
    ns = (v * 1e6).astype(np.int64)
    s = IntervalSnapshot(index, float(index + 1), dur_s, drain=drain)
    s.scheduled = (len(v) + errors + shed) if scheduled is None else scheduled
    s.sent = s.completed = len(v)
    s.ok = len(v)
    s.shed = shed
    s.by_error["timeout"] = errors
    s.hists = {"latency": Hist.from_values(ns), "service": Hist.from_values(ns // 2),
               "send_lag": Hist.from_values(np.full(len(v), int(lag_ms * 1e6))),
               "schedule_lag": Hist.from_values(np.full(len(v), 10_000))}
    _VALUES[index] = ns  # what went in, for the test's own histogram of them
    return s


def _step(seed=0, rate=500, n_load=4, dur_s=1.0):
    rng = np.random.default_rng(seed)
    snaps = [_snap(i, rng.exponential(2.0 + i, size=int(rate * dur_s)) + 0.1, dur_s=dur_s,
                   errors=i % 2) for i in range(n_load)]
    snaps.append(_snap(n_load, rng.exponential(3.0, size=7) + 0.1, dur_s=0.004, drain=True,
                       scheduled=0))
    return snaps


def test_row_pools_the_measured_intervals_exactly():
    snaps = _step()
    settle = 1
    kept = measured(snaps, settle)
    assert kept == snaps[1:]  # the settle interval out, the drain in
    row = sweep_row(500.0, snaps, SPEC, settle, parse_slo(["p99=25ms", "errors=1%"]))
    pooled = Hist.empty()
    for s in kept:
        pooled.add(s.hists["latency"])
    # the same as one histogram of every measured value at once
    values = np.concatenate([_values(s) for s in kept])
    direct = Hist.from_values(values)
    assert np.array_equal(pooled.counts, direct.counts)
    expect = direct.summary_ms()
    assert row["latency_ms"] == {k: expect[k] for k in ("p50", "p90", "p99", "p999", "max")}
    svc = Hist.empty()
    for s in kept:
        svc.add(s.hists["service"])
    assert row["service_ms"]["p99"] == svc.summary_ms()["p99"]
    load = [s for s in kept if not s.drain]
    assert row["duration_s"] == pytest.approx(3.0)
    assert row["requests"] == sum(s.scheduled for s in kept)
    assert row["offered_rps"] == pytest.approx(sum(s.scheduled for s in load) / 3.0)
    assert row["achieved_rps"] == pytest.approx(sum(s.completed for s in load) / 3.0)
    assert row["errors"] == sum(s.errors for s in kept) == 2
    assert row["error_rate"] == pytest.approx(2 / row["requests"])
    assert row["by_error"]["timeout"] == 2
    assert [t["name"] for t in row["terms"]] == ["p99", "errors"]
    p99 = row["terms"][0]
    assert p99["value"] == pytest.approx(row["latency_ms"]["p99"]) and p99["unit"] == "ms"
    assert p99["bound"] == 25 and p99["met"] is True
    assert row["slo_met"] is True
    assert row["client_ok"] is True and row["client_problems"] == []
    assert row["distribution_ms"] == direct.distribution_ms()


def _values(snap):
    return _VALUES[snap.index]


def test_row_without_slo_and_a_late_client():
    snaps = _step()
    for s in snaps:
        s.hists["schedule_lag"] = Hist.from_values(np.full(max(s.completed, 1), 5_000_000))
    row = sweep_row(500.0, snaps, SPEC, 1, None)
    assert row["slo_met"] is None and row["terms"] == []
    # the run's own client check: scheduler lag p99 5 ms > 1 ms
    assert row["client_ok"] is False and "scheduler lag" in row["client_problems"][0]


def test_row_misses_on_errors():
    snaps = _step()
    row = sweep_row(500.0, snaps, SPEC, 1, parse_slo(["p99=1s", "errors=0%"]))
    assert row["slo_met"] is False
    assert [t["met"] for t in row["terms"]] == [True, False]
    assert row["terms"][1]["unit"] == "%"


# -- the crossing --------------------------------------------------------------------------------
def _row(rate, p99, bound=25.0, err_pct=0.0, err_bound=None, client_ok=True):
    terms = [{"name": "p99", "value": p99, "bound": bound, "unit": "ms", "met": p99 <= bound}]
    if err_bound is not None:
        terms.append({"name": "errors", "value": err_pct, "bound": err_bound, "unit": "%",
                      "met": err_pct <= err_bound})
    return {"rate_rps": float(rate), "slo_met": all(t["met"] for t in terms), "terms": terms,
            "client_ok": client_ok}


def test_crossing_interpolated_between_rows():
    rows = [_row(600, 8), _row(700, 20), _row(720, 30), _row(800, 90)]
    cross, note = crossing(rows, True)
    assert cross["interpolated"] is True and cross["term"] == "p99"
    assert cross["between"] == [700, 720]
    assert cross["rate_rps"] == pytest.approx(710)
    assert note == cross["note"]
    assert note == "p99 crosses 25 ms at ~710 rps (interpolated between 700 and 720 rps)"


def test_crossing_when_every_row_meets_the_slo():
    cross, note = crossing([_row(100, 3), _row(200, 4), _row(300, 6)], True)
    assert cross == {"rate_rps": 300.0, "interpolated": False, "between": [300.0, None],
                     "term": None, "note": note}
    assert "every rate met" in note


def test_no_crossing_when_the_first_row_fails():
    cross, note = crossing([_row(100, 30), _row(200, 40)], True)
    assert cross is None
    assert "already misses" in note and "below the ladder" in note


def test_a_non_monotone_curve_crosses_below_the_first_failing_row():
    # meets at 100, misses at 200, meets again at 300 (noise, a GC pause), misses at 400
    rows = [_row(100, 10), _row(200, 40), _row(300, 20), _row(400, 60)]
    cross, _ = crossing(rows, True)
    assert cross["between"] == [100, 200]
    assert 100 < cross["rate_rps"] < 200
    assert cross["rate_rps"] == pytest.approx(100 + (25 - 10) / (40 - 10) * 100)


def test_crossing_interpolates_on_the_first_failing_term():
    # p99 holds at both rows; the error rate is what fails at 2000
    rows = [_row(1000, 5, err_pct=0.0, err_bound=0.1), _row(2000, 9, err_pct=0.4,
                                                             err_bound=0.1)]
    cross, note = crossing(rows, True)
    assert cross["term"] == "errors" and cross["interpolated"] is True
    assert cross["rate_rps"] == pytest.approx(1000 + 0.1 / 0.4 * 1000)
    assert "errors crosses 0.1%" in note


def test_crossing_that_cannot_be_interpolated():
    rows = [_row(100, 10), {"rate_rps": 200.0, "slo_met": False, "client_ok": True,
                            "terms": [{"name": "p99", "value": None, "bound": 25.0,
                                       "unit": "ms", "met": None}]}]
    cross, note = crossing(rows, True)
    assert cross["interpolated"] is False and cross["rate_rps"] == 100
    assert cross["between"] == [100, 200] and "cannot be interpolated" in note


def test_rows_where_the_client_fell_behind_are_left_out_of_the_crossing():
    # 200 rps missed the bound while the client ran late: that measured the client. The
    # crossing lies between the rows it kept on schedule (bench/RESULTS.md: mlserver's sweep
    # put its crossing at 89 rps on such a row, below three rows that met the SLO).
    rows = [_row(100, 10), _row(200, 40, client_ok=False), _row(300, 20), _row(400, 40)]
    cross, note = crossing(rows, True)
    assert cross["between"] == [300, 400] and cross["rate_rps"] == pytest.approx(325)
    assert note.endswith("; left out (the client fell behind its schedule there): 200 rps")
    assert cross["note"] == note
    # every row met up to a late one: the crossing lies above the last row kept
    cross, note = crossing([_row(100, 10), _row(200, 40, client_ok=False)], True)
    assert cross["between"] == [100, None] and not cross["interpolated"]
    assert "left out" in note and "200 rps" in note
    cross, note = crossing([_row(100, 40, client_ok=False)], True)
    assert cross is None and note.startswith("no row the client kept on schedule")


def test_crossing_needs_an_slo():
    assert crossing([_row(100, 10)], False) == (None, "no --slo: no crossing")
    assert crossing([], True)[0] is None


# -- the result and its text ---------------------------------------------------------------------
def test_result_shape_and_terminal_table():
    cfg = make_sweep_config("400,1200,2000", step_s="3s", interval_s="0.5s", warmup="none",
                            slo="p99=10ms")
    rows = [sweep_row(r, _step(i, rate=int(r)), SPEC, 1, cfg.slo)
            for i, r in enumerate(cfg.rates_rps)]
    result = sweep_result(config=cfg, rows=rows, url=SPEC["url"], version="0.1.0",
                          started_unix_s=1.0, interrupted=False, spec=SPEC, workers=1,
                          warmup_s=0.0, warmup_note="", load_s=9.0, intervals=[],
                          warnings=[])
    for key in ("kind", "url", "crestline", "started_unix_s", "interrupted", "spec", "workers",
                "arrival", "step_s", "settle_intervals", "warmup_s", "warmup_note", "slo",
                "rows", "crossing", "load_s", "intervals"):
        assert key in result, key
    assert result["kind"] == "sweep" and result["arrival"] == "poisson"
    assert result["slo"] == {"p99": "10ms"}
    for row in rows:
        for key in ("rate_rps", "offered_rps", "achieved_rps", "duration_s", "latency_ms",
                    "service_ms", "send_lag_ms", "requests", "errors", "error_rate",
                    "by_error", "client_ok", "slo_met", "terms"):
            assert key in row, key
        assert set(row["latency_ms"]) == set(row["service_ms"]) == {"p50", "p90", "p99",
                                                                    "p999", "max"}
    assert kind_of({k: v for k, v in result.items() if k != "kind"}) == "sweep"
    table = sweep_table(result)
    assert table == text(result)
    lines = table.splitlines()
    assert "p99.9 ms" in lines[2] and "met" in lines[2]
    assert len([ln for ln in lines if ln.strip().startswith(("400", "1,200", "2,000"))]) == 3
    assert result["crossing_note"] in table

