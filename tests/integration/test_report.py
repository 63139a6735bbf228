"""crestline.report.reader and crestline.report.html on real files from real runs (see the
`report_files` fixture in conftest.py): JSON and runlog agree, a runlog cut anywhere still
loads with every complete interval, --hlog is readable by HdrHistogram's own reader, bad files
are ConfigErrors, and the HTML report is one self-contained, deterministic file."""

from __future__ import annotations

import json
import re
import sys

import msgpack
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from crestline.errors import ConfigError
from crestline.measure.hdr import HIGHEST_NS, LOWEST_NS, SIGNIFICANT_DIGITS
from crestline.report import reader as report


def _records(path) -> list[tuple[str, int]]:
    """(type, offset just past the record) for every record of a runlog."""
    u = msgpack.Unpacker(raw=False)
    u.feed(path.read_bytes())
    return [(rec["type"], u.tell()) for rec in u]


def test_json_and_runlog_give_the_same_result(report_files):
    run_json, run_log = report.load(report_files.run_json), report.load(report_files.run_runlog)
    assert run_json["kind"] == run_log["kind"] == "run"
    for key in ("latency_ms", "service_ms", "send_lag_ms", "requests", "offered_rps",
                "achieved_rps"):
        assert run_json[key] == run_log[key], key
    s_json = report.load(report_files.search_json)
    s_log = report.load(str(report_files.search_runlog))  # str and Path both work
    assert s_json["kind"] == s_log["kind"] == "search"
    assert s_json["capacity_rps"] == s_log["capacity_rps"]
    assert [s["latency_ms"] for s in s_json["steps"]] == [s["latency_ms"] for s in s_log["steps"]]


def test_run_runlog_cut_anywhere_keeps_every_complete_interval(report_files, tmp_path):
    data = report_files.run_runlog.read_bytes()
    records = _records(report_files.run_runlog)
    assert [t for t, _ in records][0] == "header" and records[-1][0] == "summary"
    ends = [end for t, end in records if t == "interval"]
    header_end, summary_end = records[0][1], records[-1][1]
    full = json.loads(report_files.run_json.read_text())
    cuts = {header_end, header_end + 5, summary_end - 1, records[-2][1]}
    for end in ends:
        cuts |= {end, end - 1, end - 40}
    for cut in sorted(cuts):
        path = tmp_path / f"cut{cut}.runlog"
        path.write_bytes(data[:cut])
        r = report.load(path)
        complete = sum(1 for end in ends if end <= cut)
        assert r["interrupted"] is True, cut
        assert len(r["intervals"]) == complete, cut
        assert any("runlog ends before the run finished" in w for w in r["warnings"])
        assert "latency ms" in report.text(r)
        if complete == len(ends):
            # Every interval is there: the rebuilt totals are the run's, exactly.
            for key in ("latency_ms", "service_ms", "send_lag_ms", "schedule_lag_ms",
                        "latency_distribution_ms"):
                assert r[key] == full[key], key
            assert r["requests"] == full["requests"]


def test_search_runlog_cut_short_is_rebuilt(report_files, tmp_path):
    data = report_files.search_runlog.read_bytes()
    records = _records(report_files.search_runlog)
    full = json.loads(report_files.search_json.read_text())
    before_summary = records[-2][1]
    path = tmp_path / "cut.runlog"
    path.write_bytes(data[:before_summary + 3])
    r = report.load(path)
    assert r["kind"] == "search" and r["interrupted"] and not r["converged"]
    assert r["reason"] == "runlog ends before the search finished"
    # cut short, the capacity is the highest confirmed rate, as for any unconverged search
    confirmed = [s["rate_rps"] for s in full["steps"] if s["phase"] == "confirm"
                 and s["verdict"] == "pass" and not s["discarded"]]
    assert r["capacity_rps"] == (max(confirmed) if confirmed else None)
    assert len(r["steps"]) == len(full["steps"])
    assert r["slo"] == full["slo"]
    assert len(r["intervals"]) == sum(1 for t, _ in records if t == "interval")
    assert "NOT converged: runlog ends before the search finished" in report.text(r)
    if all(s.get("distribution_ms") for s in full["steps"]):
        # Rebuilt from the step-tagged intervals without the settle interval: the same spectrum.
        assert [s.get("distribution_ms") for s in r["steps"]] == \
            [s["distribution_ms"] for s in full["steps"]]
    # Cut after the second step record: two steps, and the bracket they imply.
    second_step = [end for t, end in records if t == "step"][1]
    path.write_bytes(data[:second_step])
    r = report.load(path)
    assert len(r["steps"]) == 2
    assert r["bracket"] == list(report.search_bracket(full["steps"][:2]))


def test_text_prints_the_summaries(report_files):
    run = report.text(report.load(report_files.run_json))
    assert "latency ms" in run and "requests" in run
    s = report.load(report_files.search_json)
    out = report.text(s)
    assert "rate rps" in out and "p99 ms" in out
    assert len([ln for ln in out.splitlines() if re.match(r"\s+\d+ (bracket|refine|retest|"
                                                          r"confirm)", ln)]) == len(s["steps"])
    assert ("capacity " in out) or ("no rate met" in out)


def _hlog_histograms(path):
    reader = HistogramLogReader(str(path), HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS))
    out = []
    while (h := reader.get_next_interval_histogram()) is not None:
        out.append(h)
    return out


def test_hlog_from_runlog_is_readable_by_hdrh(report_files, tmp_path):
    out = tmp_path / "run.hlog"
    n = report.write_hlog(report_files.run_runlog, out)
    full = json.loads(report_files.run_json.read_text())
    assert n == len(full["intervals"])
    hists = _hlog_histograms(out)
    assert len(hists) == 3 * n  # latency, service, send_lag per interval
    assert sum(h.get_total_count() for h in hists) == 3 * full["requests"]["completed"]
    assert out.read_text().startswith("#[Histogram log format version 1.3]")
    # A search: its stages restart t_s, so the log lays them end to end, never backwards.
    out = tmp_path / "search.hlog"
    n = report.write_hlog(report_files.search_runlog, out)
    assert len(_hlog_histograms(out)) == 3 * n
    starts = [float(ln.split(",")[0]) for ln in out.read_text().splitlines()
              if ln[:1].isdigit()]
    assert starts == sorted(starts) and len(starts) == n


def test_hlog_needs_the_runlog(report_files, tmp_path):
    with pytest.raises(ConfigError, match="--hlog needs the --runlog file"):
        report.write_hlog(report_files.run_json, tmp_path / "x.hlog")


def _bad_files(tmp_path, report_files):
    runlog = report_files.run_runlog.read_bytes()
    other_format = msgpack.packb({"type": "header", "format": "something-else", "version": 1})
    files = {
        "missing": (tmp_path / "nope.json", "file not found"),
        "directory": (tmp_path, "is a directory"),
        "empty": (tmp_path / "empty", b"", "empty file"),
        "garbage": (tmp_path / "garbage", bytes(range(256)) * 4,
                    "not a JSON result or a crestline runlog"),
        "array": (tmp_path / "array.json", b"[1, 2, 3]",
                  "not a JSON result or a crestline runlog"),
        "cut json": (tmp_path / "cut.json", b'{"kind": "run", "url": "ht', "not a valid JSON"),
        "unknown kind": (tmp_path / "k.json", b'{"kind": "bench", "steps": []}', "unknown kind"),
        "no kind": (tmp_path / "n.json", b'{"hello": 1}', "unknown kind"),
        "cut header": (tmp_path / "h.runlog", runlog[:20], "truncated runlog header"),
        "other format": (tmp_path / "o.runlog", other_format, "not a crestline runlog"),
    }
    out = {}
    for name, entry in files.items():
        if len(entry) == 3:
            entry[0].write_bytes(entry[1])
            entry = (entry[0], entry[2])
        out[name] = entry
    return out


def test_bad_files_are_config_errors(report_files, tmp_path):
    for name, (path, message) in _bad_files(tmp_path, report_files).items():
        with pytest.raises(ConfigError) as err:
            report.load(path)
        text = str(err.value)
        assert message in text, (name, text)
        assert "\n" not in text and str(path) in text, (name, text)


# -- HTML ----------------------------------------------------------------------------------------
def test_html_is_self_contained_and_deterministic(report_files, tmp_path):
    pytest.importorskip("matplotlib")
    from crestline.report.html import write_html

    for src in (report_files.run_json, report_files.run_runlog, report_files.search_json,
                report_files.search_runlog):
        result, contents = report.load_with_runlog(src)
        a, b = tmp_path / "a.html", tmp_path / "b.html"
        write_html(result, a, runlog_contents=contents)
        write_html(result, b, runlog_contents=contents)
        doc = a.read_text()
        assert doc == b.read_text(), f"{src}: two writes differ"
        assert doc.startswith("<!doctype html>")
        # Nothing is fetched: no scripts, stylesheets links, or http(s) sources.
        assert "<script" not in doc and "<link" not in doc and "@import" not in doc
        assert not re.search(r'(?:src|href)\s*=\s*"(?!#|data:)', doc)
        assert not re.search(r"url\((?!#)", doc)
        assert doc.count("<figure") >= 3 and doc.count("<figcaption>") == doc.count("<figure")
        assert result["url"] in doc


def test_html_without_matplotlib_names_the_extra(report_files, tmp_path, monkeypatch):
    from crestline.report.html import write_html

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"pip install 'crestline\[html\]'"):
        write_html(report.load(report_files.run_json), tmp_path / "x.html")
