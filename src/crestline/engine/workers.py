"""N engine processes on one host, each with its share of the schedule; snapshots merged.

Control and results travel over multiprocessing pipes as pickles, read by one blocking thread
per pipe (the event loop must not own the pipe's fd: registering it makes it non-blocking, and
multiprocessing's framing then breaks on partial reads and writes). Histograms pickle sparsely
(crestline.measure.hdr.Hist), so an interval costs a few KB per worker. Every worker cuts intervals
on the same grid from one shared CLOCK_MONOTONIC start time, so interval k of every worker
covers the same span and their counts add exactly.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import signal
import threading
from collections.abc import Callable

from crestline.engine.spec import RunSpec
from crestline.engine.workload import Workload
from crestline.errors import CrestlineError
from crestline.measure.result import IntervalSnapshot

_START_MARGIN_S = 0.2


def _worker_main(spec: RunSpec, worker: int, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    import uvloop

    try:
        uvloop.run(_worker_async(spec, worker, conn))
    except Exception as exc:  # reported to the parent, which owns the user's terminal
        conn.send(("error", f"worker {worker}: {exc!r}"))
    finally:
        conn.close()


async def _worker_async(spec: RunSpec, worker: int, conn) -> None:
    from crestline.engine.stage import Engine

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    start_box: list[int] = []
    started = asyncio.Event()

    def on_message(kind, value):
        if kind == "start":
            start_box.append(value)
        elif kind == "stop":
            stop.set()
        started.set()

    _pump_pipe(conn, loop, on_message)
    workload = Workload.for_spec(spec)
    engine = Engine(spec, worker, payloads=workload.payloads,
                    classes=workload.core_classes(), class_names=workload.class_names)
    conn.send(("ready", worker))
    await started.wait()
    if start_box and not stop.is_set():
        chunks = workload.chunks(spec.arrival, spec.rate_rps, spec.duration_s, spec.seed,
                                 worker, spec.workers, speed=spec.speed)
        await engine.run_stage(chunks, start_box[0], spec.duration_s,
                               lambda snap: conn.send(("snap", snap)), stop)
    engine.close()
    conn.send(("done", worker))


def _pump_pipe(conn, loop, on_message) -> None:
    """Deliver each (kind, value) from conn to on_message on the loop, from a daemon thread."""

    def pump():
        while True:
            try:
                kind, value = conn.recv()
            except (EOFError, OSError):
                kind, value = "eof", None
            try:
                loop.call_soon_threadsafe(on_message, kind, value)
            except RuntimeError:  # the loop is closed
                return
            if kind == "eof":
                return

    threading.Thread(target=pump, daemon=True).start()


def _merged(parts: list[IntervalSnapshot]) -> IntervalSnapshot:
    """The workers' parts of one interval added into the first (exact: counts add)."""
    for part in parts[1:]:
        parts[0].merge(part)
    return parts[0]


async def run_workers(spec: RunSpec, on_snapshot: Callable[[IntervalSnapshot], None],
                      stop: asyncio.Event,
                      on_start: Callable[[int], None] | None = None) -> bool:
    """Run spec on spec.workers processes; on_snapshot gets each merged interval in order.
    on_start(start_ns) learns the shared start (CLOCK_MONOTONIC) before any load.

    Returns True if stopped early.
    """
    from crestline.engine.stage import monotonic_ns

    ctx = mp.get_context("spawn")
    loop = asyncio.get_running_loop()
    n = spec.workers
    pipes, procs = [], []
    for w in range(n):
        parent_end, child_end = ctx.Pipe()
        p = ctx.Process(target=_worker_main, args=(spec, w, child_end), daemon=True)
        p.start()
        child_end.close()
        pipes.append(parent_end)
        procs.append(p)

    pending: dict[int, list[IntervalSnapshot]] = {}
    drains: list[IntervalSnapshot] = []
    ready, done, errors = set(), set(), []
    next_index = 0
    changed = asyncio.Event()

    def flush():
        nonlocal next_index
        while len(pending.get(next_index, ())) == n:
            on_snapshot(_merged(pending.pop(next_index)))
            next_index += 1

    def handler(w):
        def on_message(kind, value):
            if kind == "ready":
                ready.add(w)
            elif kind == "snap":
                if value.drain:  # workers stopped early may disagree on its index
                    drains.append(value)
                else:
                    pending.setdefault(value.index, []).append(value)
                    flush()
            elif kind in ("done", "eof"):
                done.add(w)
            elif kind == "error":
                errors.append(value)
                done.add(w)
            changed.set()
        return on_message

    for w in range(n):
        _pump_pipe(pipes[w], loop, handler(w))
    stopped = False
    try:
        while len(ready | done) < n:
            await changed.wait()
            changed.clear()
        if errors:
            raise CrestlineError("; ".join(errors))
        start_ns = monotonic_ns() + int(_START_MARGIN_S * 1e9)
        if on_start is not None:
            on_start(start_ns)
        for c in pipes:
            c.send(("start", start_ns))
        stop_task = asyncio.ensure_future(stop.wait())
        while len(done) < n:
            wait_changed = asyncio.ensure_future(changed.wait())
            finished, _ = await asyncio.wait({wait_changed, stop_task},
                                             return_when=asyncio.FIRST_COMPLETED)
            if stop_task in finished and not stopped:
                stopped = True
                for c in pipes:
                    try:
                        c.send(("stop", None))
                    except (BrokenPipeError, OSError):
                        pass
            wait_changed.cancel()
            changed.clear()
        stop_task.cancel()
        if errors:
            raise CrestlineError("; ".join(errors))
        # Intervals some worker never reached (a stop mid-interval) merge what arrived.
        for parts in [pending[i] for i in sorted(pending)] + ([drains] if drains else []):
            merged = _merged(parts)
            merged.index = next_index
            next_index += 1
            on_snapshot(merged)
        return stopped
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        for c in pipes:
            c.close()
