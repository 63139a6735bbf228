"""A pytest plugin: gate CI on capacity.

    def test_ranker_holds_1000_rps(crestline):
        assert crestline.search(URL, slo="p99=25ms", max_rate_rps=2000).capacity_rps >= 1000

Installed with crestline (entry point `pytest11`), so any test can take the `crestline`
fixture. Its `search` and `run` are the blocking ones of the Python API (crestline.capacity,
crestline.api); each result's summary, as the CLI prints it, is attached to the test's report
(shown for a failing test, and for passing ones with `-rP`), and with `--crestline-out DIR`
the result JSON is written there, named for the test. `@pytest.mark.crestline(**options)`
marks a capacity test (select with `-m crestline`, leave out with `-m "not crestline"`) and
gives defaults for the fixture's calls in it, e.g. `arrival="poisson", max_time_s=120`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported when used: every pytest session loads this plugin
    from crestline.embed.results import SearchResult


@dataclass(frozen=True)
class RunOutcome:
    """What the fixture's run() returns: the run's headline figures, and `raw`, its --out
    JSON."""

    achieved_rps: float
    latency_ms: dict
    errors: int
    client_ok: bool
    slo_met: bool | None
    raw: dict

    def to_dict(self) -> dict:
        return dict(self.raw)


class CrestlineFixture:
    """The `crestline` fixture: search() and run() with the marker's defaults, each result
    attached to the test's report."""

    def __init__(self, node, defaults: dict[str, Any], out_dir: str | None):
        self._node, self._defaults, self._out_dir = node, defaults, out_dir
        self.results: list[dict] = []

    def search(self, url: str, slo, **options: Any) -> SearchResult:
        """crestline.capacity.search(url, slo, **options) (options after the marker's):
        the highest rate meeting slo. Raises ConfigError before any load for bad input."""
        from crestline.capacity import search
        from crestline.embed.results import SearchResult

        result = search(url, slo, **{**self._defaults, **options})
        self._attach(result)
        return SearchResult.from_dict(result)

    def run(self, url: str, **options: Any) -> RunOutcome:
        """crestline.run(url, **options) (options after the marker's, those a run takes):
        one open-loop run."""
        import inspect

        from crestline.api import run, run_async
        from crestline.engine.spec import RunSpec

        takes = set(RunSpec.__dataclass_fields__) | set(inspect.signature(run_async).parameters)
        defaults = {k: v for k, v in self._defaults.items() if k in takes}
        d = run(url, **{**defaults, **options}).to_dict()
        self._attach(d)
        return RunOutcome(d["achieved_rps"], d["latency_ms"], d["requests"]["errors"],
                          d["client_ok"], d["slo_met"], d)

    def _attach(self, result: dict) -> None:
        from crestline.report.reader import text

        self.results.append(result)
        n = len(self.results)
        self._node.add_report_section("call", f"crestline {result['kind']} {n}", text(result))
        if self._out_dir:
            os.makedirs(self._out_dir, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self._node.nodeid).strip("_")
            path = os.path.join(self._out_dir, f"{name}.{result['kind']}{n}.json")
            with open(path, "w") as f:
                json.dump(result, f, indent=1)


def pytest_addoption(parser) -> None:
    group = parser.getgroup("crestline")
    group.addoption("--crestline-out", metavar="DIR", default=None,
                    help="write every crestline result the tests produce to DIR as JSON")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "crestline(**options): a capacity test; options are defaults for the "
        "crestline fixture's search() and run() (e.g. arrival='poisson', max_time_s=120)")


@pytest.fixture
def crestline(request) -> CrestlineFixture:
    """Run load and searches from a test; see crestline.pytest_plugin."""
    defaults: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers("crestline"))):
        defaults.update(mark.kwargs)  # the closest mark (the test's own) wins
    return CrestlineFixture(request.node, defaults, request.config.getoption("crestline_out"))
