"""crestline as an engine inside other harnesses: a stable, typed Python API.

    from crestline.embed import Session

    async with await Session.open("http://127.0.0.1:8000/", connections=32) as s:
        stage = s.stage(rate_rps=500, duration_s=10)
        async for interval in stage:          # one Interval per interval, as it closes
            print(interval.achieved_rps, interval.latency_ms.p99)
        print(stage.result.to_dict())         # StageResult: pooled exactly over the stage
        search = s.search(slo="p99=25ms", max_rate_rps=5000)
        while (step := await search.step()) is not None:
            print(step.rate_rps, step.verdict)
        print(search.result.capacity_rps)

Everything returned is a plain dataclass with `to_dict()`; see docs/python-api.md.
"""

from crestline.embed.results import (
    Interval,
    Percentiles,
    SearchResult,
    StageResult,
    StepResult,
)
from crestline.embed.search import Search
from crestline.embed.session import Session, StageRun

__all__ = ["Interval", "Percentiles", "Search", "SearchResult", "Session", "StageResult",
           "StageRun", "StepResult"]
