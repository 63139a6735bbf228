"""The runlog on a real file: intervals, their search fields and warm-up flag, round trip."""

from crestline.measure.hdr import Hist
from crestline.measure.result import HIST_NAMES, IntervalSnapshot
from crestline.measure.runlog import RunlogWriter, read_runlog


def _snap(index, warmup=None, step=None):
    snap = IntervalSnapshot(index, index + 1.0, 1.0, scheduled=10, sent=10, completed=10, ok=10)
    snap.hists = {n: Hist.empty() for n in HIST_NAMES}
    snap.warmup, snap.step, snap.rate_rps = warmup, step, 100.0
    return snap


def test_search_fields_and_the_warmup_flag_survive_the_runlog(tmp_path):
    path = tmp_path / "s.runlog"
    log = RunlogWriter(str(path), {"url": "http://127.0.0.1:1/"}, 0.0)
    for snap in (_snap(0, warmup=True), _snap(1, step=0), _snap(2, warmup=False, step=0)):
        log.interval(snap)
    log.close({"kind": "search"})
    header, snaps, summary = read_runlog(str(path))
    assert [s.warmup for s in snaps] == [True, None, False]
    assert [s.step for s in snaps] == [None, 0, 0] and {s.rate_rps for s in snaps} == {100.0}
    assert [s.scheduled for s in snaps] == [10, 10, 10] and summary == {"kind": "search"}
