"""One engine actor: an Engine on its own uvloop thread inside a Ray actor process.

Ray runs an async actor's methods on an asyncio loop of its own; the load runs on a separate
uvloop loop in a thread, so Ray's RPC handling never sits between two slots of the schedule
and the engine keeps the loop the rest of crestline runs on. Methods hand work across with
`run_coroutine_threadsafe`; the engine hands its items (encoded snapshots, a stage's end)
back with `call_soon_threadsafe`, and the driver long-polls them with `next_items`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading

from crestline.engine.ray.wire import to_wire

_READY_S = 60.0


class EngineActor:
    """Member `member` of `members`: its share of the connections, the in-flight bound and
    every stage's schedule (spec.workers is the member count). Decorated with ray.remote by
    the pool, so this module imports without Ray."""

    def __init__(self, spec, workload, arrival, member: int):
        try:  # the driver decides when to stop; Ctrl-C at its terminal is its alone
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass
        self.spec, self.workload, self.arrival, self.member = spec, workload, arrival, member
        # Ray starts workers at niceness 15: on a busy host the scheduler would then wake late
        # for every slot. Back to 0 where allowed (root, CAP_SYS_NICE); the engine's thread,
        # started below, inherits it (Linux niceness is per thread).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        self._items: asyncio.Queue | None = None
        self._ray_loop: asyncio.AbstractEventLoop | None = None
        import uvloop

        self.loop = uvloop.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="crestline-engine",
                         daemon=True).start()
        self.engine = self._on_engine(self._make_engine()).result(_READY_S)

    def _on_engine(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _make_engine(self):
        from crestline.engine.stage import Engine

        w = self.workload
        self._stop, self._end = asyncio.Event(), asyncio.Event()
        engine = Engine(self.spec, self.member, payloads=w.payloads,
                        classes=w.core_classes(), class_names=w.class_names,
                        turns=w.core_turns())
        await engine.preopen()
        return engine

    # -- called by the driver ------------------------------------------------------------
    def info(self) -> dict:
        return {"member": self.member, "host": socket.gethostname(), "pid": os.getpid(),
                "nice": os.getpriority(os.PRIO_PROCESS, 0)}

    def now_ns(self) -> int:
        """This host's CLOCK_MONOTONIC, for the driver's offset round trips."""
        from crestline.engine.stage import monotonic_ns

        return monotonic_ns()

    async def start_stage(self, stage, start_ns: int) -> None:
        """Begin `stage` at start_ns of this actor's own clock; returns at once."""
        self._ray_loop = asyncio.get_running_loop()
        self._items = asyncio.Queue()
        self._on_engine(self._run(stage, start_ns))

    async def next_items(self) -> list:
        """Wait for the next items and return every one ready: ("snap", wire), ("done",
        stopped) or ("error", text)."""
        first = await self._items.get()
        items = [first]
        while not self._items.empty():
            items.append(self._items.get_nowait())
        return items

    def intended_ns(self, stage) -> tuple[list[int], list[int] | None]:
        """This member's share of `stage`, computed exactly as a run computes it: (offsets from
        the start in ns, payload indices or None). For checking how the schedule splits."""
        offsets, payloads = [], []
        for offs, idx in self._chunks(stage):
            offsets += offs.tolist()
            payloads = None if idx is None else payloads + idx.tolist()
        return offsets, payloads

    def end(self) -> None:
        """End the stage now, without a partial interval (the search moved on)."""
        self.loop.call_soon_threadsafe(self._end.set)

    def stop(self) -> None:
        """Stop the stage (Ctrl-C at the driver): the drain follows, at most 1 s."""
        self.loop.call_soon_threadsafe(self._stop.set)

    async def wait_idle(self, max_s: float) -> float:
        return await asyncio.wrap_future(self._on_engine(self.engine.wait_idle(max_s)))

    async def close(self) -> None:
        async def shut():
            self.engine.close()

        await asyncio.wrap_future(self._on_engine(shut()))
        self.loop.call_soon_threadsafe(self.loop.stop)

    # -- on the engine's loop ------------------------------------------------------------
    def _emit(self, item) -> None:
        self._ray_loop.call_soon_threadsafe(self._items.put_nowait, item)

    def _chunks(self, stage):
        return self.workload.chunks(self.arrival, stage.rate_rps, stage.duration_s, stage.seed,
                                    self.member, self.spec.workers, loop=stage.loop)

    async def _run(self, stage, start_ns: int) -> None:
        self._stop.clear()
        self._end.clear()
        try:
            stopped = await self.engine.run_stage(
                self._chunks(stage), start_ns, stage.duration_s,
                lambda s: self._emit(("snap", to_wire(s))), self._stop,
                first_index=stage.first_index, drain=stage.drain, end=self._end)
            self._emit(("done", stopped))
        except Exception as exc:  # reported to the driver, which names this actor
            self._emit(("error", repr(exc)))
