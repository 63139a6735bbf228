"""--out JSON streamed one interval at a time is the file json.dump writes, byte for byte."""

import json

import numpy as np

from crestline.measure.hdr import Hist
from crestline.measure.result import HIST_NAMES, KEEP_INTERVAL_HISTS, IntervalSnapshot, RunResult
from crestline.outputs import write_json


def _result(n: int) -> RunResult:
    rng = np.random.default_rng(3)
    r = RunResult(spec={"rate_rps": 100.0, "arrival": "poisson", "url": "http://é/\"x\"\n"},
                  started_unix_s=1.5)
    for i in range(n):
        values = rng.lognormal(np.log(3e6), 0.4, 100).astype(np.int64)
        r.add(IntervalSnapshot(i, i + 1.0, 1.0, scheduled=100, sent=100, completed=100, ok=100,
                               hists={name: Hist.from_values(values) for name in HIST_NAMES}))
    return r


def test_streamed_intervals_write_what_json_dump_writes(tmp_path):
    for n in (0, 3, KEEP_INTERVAL_HISTS + 40):
        r = _result(n)
        whole = tmp_path / f"whole{n}.json"
        with open(whole, "w") as f:
            json.dump(r.to_dict(), f, indent=2)
            f.write("\n")
        streamed = tmp_path / f"streamed{n}.json"
        write_json(streamed, r.to_dict(intervals=False), {"intervals": r.interval_dicts()})
        assert streamed.read_bytes() == whole.read_bytes()
        assert len(json.loads(streamed.read_text())["intervals"]) == n


def test_a_dict_with_nothing_streamed_is_plain_json(tmp_path):
    path = tmp_path / "x.json"
    for data in ({}, {"a": [], "b": {}, "c": [1, {"d": "e\nf"}]}):
        write_json(path, data, {})
        assert path.read_text() == json.dumps(data, indent=2) + "\n"
