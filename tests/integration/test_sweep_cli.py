"""`crestline sweep` end to end against a real loopback server whose curve is known.

The target is a FIFO queue with 4 workers and a constant service time: under Poisson arrivals
M/D/4. At 10 ms (the rows-and-crossing test) its ceiling is 400 rps: 100 and 250 rps meet
p90 <= 50 ms with room to spare, 400 rps (utilisation 1) builds a queue within seconds, so the
crossing lies between 250 and 400 rps. At 2 ms (the other tests) it serves up to 2 000 rps.
"""

import json
import signal
import subprocess

import msgpack
import pytest
from cli_process import CLI, crestline


def _md4(target):
    return target("--servers", "4", "--service-ms", "2", "--service-dist", "const",
                  max_seconds=300)


def test_sweep_md4_rows_crossing_and_reports(target, tmp_path):
    # M/D/4 at 10 ms (at most 400 rps) judged at p90 <= 50 ms: low rates, and 5 ms of client
    # lag tolerated, so a noisy host's wake-ups do not decide the rows below capacity.
    t = target("--servers", "4", "--service-ms", "10", "--service-dist", "const",
               max_seconds=300)
    out, runlog, html = tmp_path / "s.json", tmp_path / "s.runlog", tmp_path / "s.html"
    p = crestline("sweep", t.url, "--rates", "100,250,400", "--step-duration", "4s",
                  "--interval", "0.5s", "--warmup", "none", "--slo", "p90=50ms", "--seed", "1",
                  "--out", out, "--runlog", runlog, "--html", html, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["kind"] == "sweep" and r["interrupted"] is False
    assert r["arrival"] == "poisson"  # the sweep's default
    assert r["slo"] == {"p90": "50ms"} and r["step_s"] == 4 and r["settle_intervals"] == 1
    assert r["warmup_s"] == 0 and r["workers"] == 1
    rows = r["rows"]
    assert [row["rate_rps"] for row in rows] == [100, 250, 400]
    for row in rows[:2]:  # well below capacity: the server keeps up
        assert row["achieved_rps"] == pytest.approx(row["offered_rps"], rel=0.05)
        assert row["offered_rps"] == pytest.approx(row["rate_rps"], rel=0.15)
        assert row["errors"] == 0 and row["duration_s"] == pytest.approx(3.5, abs=0.05)
    p90 = [row["latency_ms"]["p90"] for row in rows]
    assert p90[2] > 3 * max(p90[:2]), p90  # a queue at utilisation 1
    assert rows[0]["latency_ms"]["p50"] <= rows[2]["latency_ms"]["p50"]
    assert [row["slo_met"] for row in rows] == [True, True, False], p90
    assert rows[2]["terms"][0]["name"] == "p90" and rows[2]["terms"][0]["met"] is False
    cross = r["crossing"]
    assert cross["interpolated"] is True and cross["term"] == "p90"
    # between the highest row below 400 on which the client kept its schedule (a noisy
    # host's late row is left out of the crossing) and 400
    assert rows[2]["client_ok"], rows[2]["client_problems"]
    below = max(row["rate_rps"] for row in rows[:2] if row["client_ok"])
    assert cross["between"] == [below, 400]
    assert below < cross["rate_rps"] < 400
    # the table and the crossing line
    assert "p99.9 ms" in p.stdout and "p90 crosses 50 ms at ~" in p.stdout
    assert f"(interpolated between {below:g} and 400 rps)" in p.stdout
    # every interval went to the runlog with its step and rate, steps 0..2 plus their drains
    with open(runlog, "rb") as f:
        recs = list(msgpack.Unpacker(f, raw=False))
    kinds = [rec["type"] for rec in recs]
    assert kinds[0] == "header" and kinds[-1] == "summary" and kinds.count("step") == 3
    ivs = [rec for rec in recs if rec["type"] == "interval"]
    assert {iv["step"] for iv in ivs} == {0, 1, 2}
    assert all(iv["rate_rps"] == rows[iv["step"]]["rate_rps"] for iv in ivs)
    assert sum(iv["drain"] for iv in ivs) == 3 and len(ivs) == len(r["intervals"])
    # crestline report gives the same rows from the runlog, with or without its summary
    p = crestline("report", runlog, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rows"] == rows
    cut = tmp_path / "cut.runlog"
    with open(cut, "wb") as f:
        for rec in recs[:-1]:
            f.write(msgpack.packb(rec, use_bin_type=True))
    p = crestline("report", cut, "--json")
    assert p.returncode == 0, p.stderr
    rebuilt = json.loads(p.stdout)
    assert rebuilt["rows"] == rows and rebuilt["crossing"] == cross
    assert rebuilt["interrupted"] is True and rebuilt["kind"] == "sweep"
    p = crestline("report", out)
    assert p.returncode == 0 and "p90 crosses 50 ms" in p.stdout
    # the HTML report: self-contained, the curve with the crossing marked as interpolated
    for path in (html, tmp_path / "again.html"):
        if path != html:
            p = crestline("report", cut, "--html", path)
            assert p.returncode == 0, p.stderr
        doc = path.read_text()
        assert 'id="fig-sweep-curve"' in doc and "interpolated" in doc
        assert "crestline sweep" in doc
        for needle in ("<script", "<link", "src=\"http", "@import"):
            assert needle not in doc


def test_sweep_ctrl_c_keeps_finished_rows(target, tmp_path):
    t = _md4(target)
    out = tmp_path / "s.json"
    proc = subprocess.Popen(
        CLI + ["sweep", t.url, "--rates", "200,300,400,500", "--step-duration", "1.5s",
               "--interval", "0.5s", "--warmup", "none", "--slo", "p99=10ms", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # the first row is in: stop during the second step
            if line.startswith("rate 200 rps:"):
                break
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    r = json.loads(out.read_text())
    assert r["interrupted"] is True
    assert 1 <= len(r["rows"]) < 4
    assert [row["rate_rps"] for row in r["rows"]] == [200, 300, 400][:len(r["rows"])]
    assert "[interrupted]" in stdout


def test_sweep_python_api_with_auto_warmup(target, tmp_path):
    from crestline.sweep import sweep

    # Three times slower for its first 1.5 s: the auto warm-up must hold the first rate past it.
    t = target("--servers", "4", "--service-ms", "2", "--service-dist", "const",
               "--warmup-s", "1.5", "--warmup-factor", "3", max_seconds=300)
    seen = []
    r = sweep(t.url, "300:600:300", step_s="1.5s", interval_s="0.25s", warmup="auto",
              max_warmup_s="10s", slo=["p99=50ms"], seed=3, on_row=seen.append,
              runlog=str(tmp_path / "api.runlog"))
    assert r["kind"] == "sweep" and r["arrival"] == "poisson"
    assert [row["rate_rps"] for row in r["rows"]] == [300, 600] and seen == r["rows"]
    assert 1.5 <= r["warmup_s"] < 10, r["warmup_s"]
    held = [iv for iv in r["intervals"] if iv.get("warmup")]
    assert held and all(iv["step"] is None and iv["rate_rps"] == 300 for iv in held)
    assert sum(iv["dur_s"] for iv in held) == pytest.approx(r["warmup_s"])
    # every row meets p99 <= 50 ms: the crossing is the top row the client kept on schedule
    kept = [row["rate_rps"] for row in r["rows"] if row["client_ok"]]
    if kept:
        assert r["crossing"]["interpolated"] is False and r["crossing"]["rate_rps"] == kept[-1]
    else:  # a host so busy the client was late on both rows
        assert r["crossing"] is None and "no row the client kept" in r["crossing_note"]


@pytest.mark.parametrize("args, says", [
    (["--rates", ""], "empty"),
    (["--rates", "300,200"], "strictly ascending"),
    (["--rates=-100,200"], "cannot read"),
    (["--rates", "1:1000:1"], "more than 200"),
    (["--rates", "100:50:10"], "below the start"),
    (["--rates", "100,200", "--step-duration", "1s", "--interval", "0.5s"], "3 intervals"),
    (["--rates", "100,200", "--step-duration", "3s", "--settle", "2"], "--settle"),
    (["--rates", "100,200", "--rate", "100"], "--rate is not a sweep option"),
    (["--rates", "100,200", "--slo", "p99=fast"], "p99"),
    (["--rates", "100,200", "--warmup", "0"], "--warmup"),
])
def test_sweep_bad_input_is_exit_2_with_nothing_sent(listener, args, says):
    url = f"http://127.0.0.1:{listener.port}/"
    p = crestline("sweep", url, *args, "--quiet", timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr)
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crestline: error:") and says in err[0], err
    assert listener.accepted() == 0


def test_sweep_without_rates_is_a_usage_error(listener):
    p = crestline("sweep", f"http://127.0.0.1:{listener.port}/")
    assert p.returncode == 2 and "--rates" in p.stderr
    assert listener.accepted() == 0
