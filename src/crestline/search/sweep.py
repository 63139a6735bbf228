"""The latency-throughput sweep, pure: the rate ladder, one row per rate, and where the curve
crosses the SLO.

Pure like the policy: interval snapshots and numbers in, dicts out; no clock, no socket. The
driver (crestline.sweep) offers the ladder's rates on a real pool; reports rebuild the same
rows from a runlog with the same functions, so a result and its rebuild cannot drift apart.

A row's figures pool the step's measured intervals exactly (histogram counts add), leaving out
the first `settle_intervals` load intervals of the step and keeping its drain, as a run keeps
its drain. The crossing is interpolated, and says so: the one number in crestline that was not
measured at the rate it names (docs/measurement.md#the-sweep---out-json).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from crestline.errors import ConfigError
from crestline.measure.result import RunResult
from crestline.measure.stream import stream_of
from crestline.slo.bound import Pool
from crestline.slo.evaluate import evaluate
from crestline.slo.parse import Slo, parse_slo
from crestline.telemetry.recorder import efficiency
from crestline.units import parse_duration_s, parse_rate_rps

MAX_RATES = 200
MAX_WARMUP_S = 120.0
ROW_PERCENTILES = ("p50", "p90", "p99", "p999", "max")


# -- the ladder ----------------------------------------------------------------------------------
def parse_ladder(rates) -> tuple[float, ...]:
    """Rates (rps) from 'A:B:STEP' (A, A+STEP, ... up to B inclusive), from 'R1,R2,...', or
    from a sequence of numbers or strings. Units as for --rate: '1k', '2.5k/s'. The ladder
    must be non-empty, strictly ascending and hold at most MAX_RATES rates. Raises ConfigError
    naming the fix."""
    if isinstance(rates, str):
        text = rates.strip()
        if not text:
            raise ConfigError("--rates is empty: write A:B:STEP (100:1000:50) or a list "
                              "(100,200,400)")
        if ":" in text:
            ladder = _range(text)
        else:
            items = [r.strip() for r in text.split(",")]
            if any(not r for r in items):
                raise ConfigError(f"--rates {rates!r} has an empty item: write e.g. 100,200,400")
            ladder = [_rate(r) for r in items]
    else:
        ladder = [_rate(r) for r in rates]
    if not ladder:
        raise ConfigError("--rates is empty: give at least one rate, e.g. --rates 100,200,400")
    if len(ladder) > MAX_RATES:
        raise ConfigError(f"--rates holds {len(ladder)} rates, more than {MAX_RATES}: use a "
                          "coarser step or a shorter range")
    for lo, hi in itertools.pairwise(ladder):
        if not hi > lo:
            raise ConfigError(f"--rates must be strictly ascending: {_g(hi)} follows {_g(lo)}")
    return tuple(ladder)


def _rate(text) -> float:
    return parse_rate_rps(text.strip() if isinstance(text, str) else text, "--rates item")


def _range(text: str) -> list[float]:
    parts = text.split(":")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise ConfigError(f"cannot read --rates {text!r}: write A:B:STEP, e.g. 100:1000:50")
    first, last, step = (parse_rate_rps(p.strip(), f"--rates {name}")
                         for p, name in zip(parts, ("start", "end", "step"), strict=True))
    if last < first:
        raise ConfigError(f"--rates {text!r}: the end ({_g(last)}) is below the start "
                          f"({_g(first)})")
    count = math.floor((last - first) / step + 1e-9) + 1
    if count > MAX_RATES:
        raise ConfigError(f"--rates {text!r} holds {count} rates, more than {MAX_RATES}: use "
                          "a coarser step")
    # Computed from the index, never by adding steps: no drift, and B itself when it lands.
    return [round(first + i * step, 9) for i in range(count)]


def _g(rate: float) -> str:
    return f"{rate:,.6g}"


# -- the configuration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepConfig:
    """A whole sweep: the rates (rps, ascending), each step's length (s), the intervals of each
    step left out (settle), the warm-up ("auto", "none" or seconds held at the first rate,
    auto at most max_warmup_s), the interval (s) and the SLO (or None)."""

    rates_rps: tuple[float, ...]
    step_s: float = 60.0
    settle_intervals: int = 1
    warmup: str | float = "auto"
    max_warmup_s: float = MAX_WARMUP_S
    interval_s: float = 1.0
    slo: Slo | None = None

    def to_dict(self) -> dict:
        """The runlog header's `sweep` record (the SLO as written, as in results)."""
        return {"rates_rps": list(self.rates_rps), "step_s": self.step_s,
                "settle_intervals": self.settle_intervals, "warmup": self.warmup,
                "max_warmup_s": self.max_warmup_s, "interval_s": self.interval_s,
                "slo": self.slo.to_dict() if self.slo else None}


def make_sweep_config(rates, *, step_s="60s", settle_intervals=1, warmup="auto",
                      max_warmup_s=MAX_WARMUP_S, interval_s="1s", slo=None) -> SweepConfig:
    """A validated SweepConfig. rates: a ladder as parse_ladder takes it; durations as numbers
    (s) or strings with units; slo: None, an Slo, 'p99=25ms' or a list of such terms.
    Raises ConfigError before anything is sent."""
    ladder = parse_ladder(rates)
    interval_s = parse_duration_s(interval_s, "--interval")
    step_s = parse_duration_s(step_s, "--step-duration")
    max_warmup_s = parse_duration_s(max_warmup_s, "the warm-up cap")
    if isinstance(warmup, str) and warmup.strip().lower() in ("auto", "none"):
        warmup = warmup.strip().lower()
    else:
        warmup = parse_duration_s(warmup, "--warmup")
    if step_s < 3 * interval_s - 1e-9:
        raise ConfigError(f"--step-duration {step_s:g} s must hold at least 3 intervals of "
                          f"{interval_s:g} s")
    if isinstance(settle_intervals, bool) or not isinstance(settle_intervals, int) \
            or settle_intervals < 0:
        raise ConfigError(f"--settle must be a whole number of intervals >= 0, got "
                          f"{settle_intervals!r}")
    intervals = math.ceil(step_s / interval_s - 1e-9)
    if intervals - settle_intervals < 2:
        raise ConfigError(f"--settle {settle_intervals} leaves fewer than 2 of the step's "
                          f"{intervals} intervals measured: lengthen --step-duration or lower "
                          "--settle")
    if slo is not None and not isinstance(slo, Slo):
        slo = parse_slo([slo] if isinstance(slo, str) else list(slo))
    return SweepConfig(ladder, step_s, settle_intervals, warmup, max_warmup_s, interval_s, slo)


def config_from_dict(d: dict) -> SweepConfig:
    """The SweepConfig a runlog header's `sweep` record stands for (no validation: a report
    reads what a sweep wrote)."""
    slo = d.get("slo")
    return SweepConfig(tuple(d.get("rates_rps") or ()), float(d.get("step_s") or 0.0),
                       int(d.get("settle_intervals", 1)), d.get("warmup", "auto"),
                       float(d.get("max_warmup_s") or MAX_WARMUP_S),
                       float(d.get("interval_s") or 1.0),
                       parse_slo([f"{k}={v}" for k, v in slo.items()]) if slo else None)


def warmup_note(held_s: float, rate_rps: float, capped: bool) -> str:
    """What the result says about an automatic warm-up that hit its cap ('' otherwise)."""
    if not capped:
        return ""
    return (f"no steady state found in the first {held_s:.0f} s at {_g(rate_rps)} rps: the "
            "sweep went on, and its first rows may still include the server's warm-up")


# -- one row per rate ----------------------------------------------------------------------------
def measured(snaps: list, settle_intervals: int) -> list:
    """The intervals of one step a row pools: its load intervals after the first
    settle_intervals, and its drain (what was in flight when the step ended)."""
    load = [s for s in snaps if not s.drain]
    return load[settle_intervals:] + [s for s in snaps if s.drain]


def sweep_row(rate_rps: float, snaps: list, spec: dict, settle_intervals: int,
              slo: Slo | None) -> dict:
    """One row of the sweep from its step's IntervalSnapshots (in order, drain last).

    spec: the run settings (RunSpec.to_dict()); the client check is the one a run makes
    (crestline.measure.result.RunResult.client_check) over the measured intervals at rate_rps.
    Percentiles in ms, rates in rps, duration_s the measured load window (s)."""
    kept = measured(snaps, settle_intervals)
    res = RunResult(dict(spec) | {"rate_rps": rate_rps}, 0.0)
    for s in kept:
        res.add(s)
    res.load_s = sum(s.dur_s for s in kept if not s.drain)  # settle intervals left out
    ok, problems = res.client_check()
    lat = res.hists["latency"].summary_ms()
    svc = res.hists["service"].summary_ms()
    errors = sum(res.by_error.values())
    scheduled = res.counters["scheduled"]
    row = {
        "rate_rps": rate_rps,
        "offered_rps": res.offered_rps,
        "achieved_rps": res.achieved_rps,
        "duration_s": res.load_s,
        "latency_ms": {k: lat[k] for k in ROW_PERCENTILES},
        "service_ms": {k: svc[k] for k in ROW_PERCENTILES},
        "send_lag_ms": {"p99": res.hists["send_lag"].values_at((99.0,))[0] / 1e6},
        "requests": scheduled,
        "completed": res.counters["completed"],
        "shed": res.counters["shed"],
        "errors": errors,
        "error_rate": errors / scheduled if scheduled else 0.0,
        "by_error": dict(res.by_error),
        "client_ok": ok,
        "client_problems": problems,
        "slo_met": None,
        "terms": [],
        "distribution_ms": res.hists["latency"].distribution_ms(),
        # token streams: TTFT/ITL/TPOT/e2e, tokens/s and goodput at this rate
        **stream_of(kept, res.load_s),
    }
    if slo is not None:
        names = tuple(dict.fromkeys(("latency",) + tuple(b.hist_name for b in
                                                         slo.tail_bounds())))
        terms = evaluate(slo, Pool.of_intervals(kept, hist_names=names))
        row["terms"] = [{"name": t.name, "value": t.value, "bound": t.bound, "unit": t.unit,
                         "met": t.met} for t in terms]
        # An unmeasured term is not met, as in a run's check: a row must not pass on nothing.
        row["slo_met"] = all(t.met is True for t in terms)
    windows = [s.gpu for s in kept]
    if any(windows):
        row["gpu"] = efficiency(windows, row["achieved_rps"])
    return row


# -- the crossing --------------------------------------------------------------------------------
def crossing(rows: list[dict], slo_given: bool) -> tuple[dict | None, str]:
    """(crossing, note): where the curve leaves the SLO.

    Rows on which the client fell behind its schedule (`client_ok` false) measured the
    client, not the server: they are left out, and the note names them. Below the first row
    that misses the SLO, every row must meet it: the crossing lies between the highest such
    row and the next one (a curve that dips back under the bound higher up does not move it
    up). It is linearly interpolated on the first term that row misses
    (latency in ms, errors in %, a GPU figure in its unit): `interpolated: true`. Every row
    meets the SLO: the top rate, `interpolated: false`. The first row misses it, or no SLO:
    None, and the note says why."""
    if not slo_given:
        return None, "no --slo: no crossing"
    if not rows:
        return None, "no finished rows: no crossing"
    late = [r["rate_rps"] for r in rows if r.get("client_ok") is False]
    rows = [r for r in rows if r.get("client_ok") is not False]
    cross, note = _crossing(rows)
    if late:
        note += ("; left out (the client fell behind its schedule there): "
                 + ", ".join(f"{_g(r)} rps" for r in late))
        if cross is not None:
            cross["note"] = note
    return cross, note


def _crossing(rows: list[dict]) -> tuple[dict | None, str]:
    if not rows:
        return None, "no row the client kept on schedule: no crossing"
    k = 0
    while k < len(rows) and rows[k]["slo_met"] is True:
        k += 1
    if k == len(rows):
        top = rows[-1]["rate_rps"]
        note = (f"every rate met the SLO, up to {_g(top)} rps: the crossing lies above the "
                "ladder")
        return {"rate_rps": top, "interpolated": False, "between": [top, None], "term": None,
                "note": note}, note
    hi = rows[k]
    missed = next(t for t in hi["terms"] if t["met"] is not True)
    if k == 0:
        return None, (f"the first rate, {_g(hi['rate_rps'])} rps, already misses the SLO "
                      f"({_term_text(missed)}): the crossing lies below the ladder")
    lo = rows[k - 1]
    before = next((t for t in lo["terms"] if t["name"] == missed["name"]), None)
    r_lo, r_hi = lo["rate_rps"], hi["rate_rps"]
    v_lo = before["value"] if before else None
    v_hi, bound = missed["value"], missed["bound"]
    where = f"between {_g(r_lo)} and {_g(r_hi)} rps"
    if v_lo is None or v_hi is None or not v_hi > v_lo:
        note = (f"{missed['name']} misses {_bound_text(missed)} at {_g(r_hi)} rps "
                f"({_term_text(missed)}) but cannot be interpolated from {_g(r_lo)} rps: "
                f"the crossing lies {where}")
        return {"rate_rps": r_lo, "interpolated": False, "between": [r_lo, r_hi],
                "term": missed["name"], "note": note}, note
    frac = min(max((bound - v_lo) / (v_hi - v_lo), 0.0), 1.0)
    rate = r_lo + frac * (r_hi - r_lo)
    note = (f"{missed['name']} crosses {_bound_text(missed)} at ~{rate:,.0f} rps "
            f"(interpolated {where})")
    return {"rate_rps": rate, "interpolated": True, "between": [r_lo, r_hi],
            "term": missed["name"], "note": note}, note


def _bound_text(term: dict) -> str:
    sep = " " if term["unit"] == "ms" else ""
    return f"{term['bound']:g}{sep}{term['unit']}"


def _term_text(term: dict) -> str:
    if term["value"] is None:
        return f"{term['name']} not measured"
    sep = " " if term["unit"] == "ms" else ""
    return f"{term['name']} {term['value']:.3g}{sep}{term['unit']} > {_bound_text(term)}"


# -- the result ----------------------------------------------------------------------------------
def sweep_result(*, config: SweepConfig, rows: list[dict], url: str | None,
                 version: str | None, started_unix_s: float | None, interrupted: bool,
                 spec: dict, workers: int | None, warmup_s: float | None, warmup_note: str,
                 load_s: float, intervals: list[dict], warnings: list[str]) -> dict:
    """The `--out` JSON of a sweep (docs/measurement.md#the-sweep---out-json), for the driver
    and for a report rebuilding a runlog cut short."""
    cross, note = crossing(rows, config.slo is not None)
    return {
        "kind": "sweep",
        "url": url,
        "crestline": version,
        "started_unix_s": started_unix_s,
        "interrupted": interrupted,
        "spec": spec,
        "workers": workers,
        "arrival": spec.get("arrival"),
        "rates_rps": list(config.rates_rps),
        "step_s": config.step_s,
        "settle_intervals": config.settle_intervals,
        "warmup": config.warmup,
        "warmup_s": warmup_s,
        "warmup_note": warmup_note,
        "slo": config.slo.to_dict() if config.slo else None,
        "rows": rows,
        "crossing": cross,
        "crossing_note": note,
        "load_s": load_s,
        "warnings": list(warnings),
        "intervals": intervals,
    }
