"""Search: the capacity search as an object one steps, on an open Session's warm pool.

The driver is the one `crestline search` uses (crestline.capacity.SearchDriver, the pure
SearchPolicy behind it), so a stepped search takes exactly the steps a whole one takes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crestline.embed.results import SearchResult, StepResult


class Search:
    """Made by Session.search(slo, **limits). `await step()` runs until the next step is
    judged and returns it (None once the search is done); `await run()` runs to the end."""

    def __init__(self, session: Any, slo, limits: dict[str, Any]):
        # session: the crestline.embed.Session that made it (not imported: it imports this)
        from crestline.capacity import SearchDriver, make_config, session_config
        from crestline.search.policy import SearchPolicy

        spec = session.spec
        limits = dict(limits)
        limits.setdefault("interval_s", spec.interval_s)
        if limits["interval_s"] != spec.interval_s:
            from crestline.errors import ConfigError

            raise ConfigError(f"interval_s {limits['interval_s']:g} differs from the "
                              f"session's ({spec.interval_s:g} s): open the Session with it")
        config = session_config(spec, make_config(slo, **limits))
        self._session = session
        self._stop = asyncio.Event()
        self._driver = SearchDriver(session._ls, SearchPolicy(config), None, None, None)
        self._started_unix_s = time.time()
        self._taken = 0  # judged steps handed out
        self._done = False
        self._claimed = False

    @property
    def done(self) -> bool:
        return self._done

    async def step(self) -> StepResult | None:
        """Run the search until its next step is judged; that step, or None when done."""
        judged = self._judged()
        if len(judged) > self._taken:
            return self._hand_out(judged)
        if self._done:
            return None
        if not self._claimed:
            self._session._claim()
            self._claimed = True
        try:
            while len(self._judged()) <= self._taken:
                if not await self._driver.advance(self._stop):
                    self._finish()
                    break
        except BaseException:
            self._finish()
            raise
        judged = self._judged()
        return self._hand_out(judged) if len(judged) > self._taken else None

    async def run(self) -> SearchResult:
        """Step to the end; the result."""
        while await self.step() is not None:
            pass
        return self.result

    def stop(self) -> None:
        """End the search at the next chance (the running stage stops, drains at most 1 s);
        the result then says interrupted and keeps every judged step."""
        self._stop.set()

    @property
    def result(self) -> SearchResult:
        """The outcome so far (unconverged, 'not finished', while steps remain)."""
        return SearchResult.from_dict(self._driver.result(self._started_unix_s))

    def _judged(self) -> list[dict]:
        return [s.to_dict() for s in self._driver.policy.steps if s.verdict is not None]

    def _hand_out(self, judged: list[dict]) -> StepResult:
        step = StepResult.from_dict(self._taken, judged[self._taken])
        self._taken += 1
        return step

    def _finish(self) -> None:
        self._done = True
        if self._claimed:
            self._session._release()
            self._claimed = False
