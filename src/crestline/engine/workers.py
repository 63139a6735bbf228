"""A pool of engine processes on one host, each with its share of every stage; snapshots merged.

The processes start once and stay: stage after stage runs on their warm connections, as on
one engine, so a search drives them as it drives a LocalPool. Control and results travel over
multiprocessing pipes as pickles, read by one blocking thread per pipe (the event loop must not
own the pipe's fd: registering it makes it non-blocking, and multiprocessing's framing then
breaks on partial reads and writes). Histograms pickle sparsely (crestline.measure.hdr.Hist),
so an interval costs a few KB per worker. Every worker cuts intervals on the same grid from one
shared CLOCK_MONOTONIC start time, so interval k of every worker covers the same span and their
counts add exactly.

Ending a stage early (the search moving on) is one "end" message after the merged interval
that decided it: the workers stop scheduling on receipt, a millisecond or so after the
boundary, and what they sent meanwhile counts in the next stage's first interval, which the
search leaves out of every verdict (`settle_intervals`).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import signal
import threading

from crestline.engine.arrivals import Arrival
from crestline.engine.pool import Stage
from crestline.engine.spec import RunSpec
from crestline.errors import CrestlineError
from crestline.measure.result import IntervalSnapshot

# From "go" to the first slot: the start message must reach every worker first.
_START_MARGIN_S = 0.05
_JOIN_S = 5.0


def _worker_main(spec: RunSpec, arrival: Arrival, worker: int, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    import uvloop

    try:
        uvloop.run(_worker_async(spec, arrival, worker, conn))
    except Exception as exc:  # reported to the parent, which owns the user's terminal
        try:
            conn.send(("error", f"worker {worker}: {exc!r}"))
        except OSError:
            pass
    finally:
        conn.close()


async def _worker_async(spec: RunSpec, arrival: Arrival, worker: int, conn) -> None:
    from crestline.engine.stage import Engine
    from crestline.engine.workload import Workload

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    stop, end = asyncio.Event(), asyncio.Event()

    def on_message(kind, value):
        # stop and end must reach a stage that is running; the commands wait their turn.
        if kind in ("stop", "eof"):
            stop.set()
        if kind == "end":
            end.set()
        elif kind != "stop":
            inbox.put_nowait((kind, value))

    _pump_pipe(conn, loop, on_message)
    workload = Workload.for_spec(spec)
    engine = Engine(spec, worker, payloads=workload.payloads,
                    classes=workload.core_classes(), class_names=workload.class_names,
                    turns=workload.core_turns())
    await engine.preopen()
    conn.send(("ready", None))
    try:
        while True:
            kind, value = await inbox.get()
            if kind == "stage":
                stage, start_ns = value
                end.clear()
                chunks = workload.chunks(arrival, stage.rate_rps, stage.duration_s, stage.seed,
                                         worker, spec.workers, loop=stage.loop)
                stopped = await engine.run_stage(
                    chunks, start_ns, stage.duration_s, lambda snap: conn.send(("snap", snap)),
                    stop, first_index=stage.first_index, drain=stage.drain, end=end)
                conn.send(("stage_done", stopped))
            elif kind == "idle":
                conn.send(("idle_done", await engine.wait_idle(value)))
            elif kind in ("close", "eof"):
                break
    finally:
        engine.close()


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


class WorkerPool:
    """spec.workers engine processes (spawned), each with its share of the connections, the
    in-flight bound and every stage's schedule. Use `await WorkerPool.open(spec, arrival)`."""

    def __init__(self, spec: RunSpec, procs, pipes):
        self.spec, self.workers = spec, spec.workers
        self._procs, self._pipes = procs, pipes
        self._inbox: list[asyncio.Queue] = [asyncio.Queue() for _ in pipes]
        self._changed = asyncio.Event()
        self._closed = False

    @classmethod
    async def open(cls, spec: RunSpec, arrival: Arrival) -> WorkerPool:
        """Start the processes and wait until each has its engine. Raises CrestlineError
        naming the worker that failed."""
        ctx = mp.get_context("spawn")
        procs, pipes = [], []
        for w in range(spec.workers):
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(spec, arrival, w, child_end), daemon=True)
            p.start()
            child_end.close()
            procs.append(p)
            pipes.append(parent_end)
        pool = cls(spec, procs, pipes)
        loop = asyncio.get_running_loop()
        for w, pipe in enumerate(pipes):
            _pump_pipe(pipe, loop, pool._deliver(w))
        try:
            for w in range(pool.workers):
                await pool._expect(w, "ready")
        except BaseException:
            await pool.close()
            raise
        return pool

    def _deliver(self, w: int):
        def on_message(kind, value):
            self._inbox[w].put_nowait((kind, value))
            self._changed.set()
        return on_message

    async def _expect(self, w: int, want: str):
        kind, value = await self._inbox[w].get()
        if kind == "error":
            raise CrestlineError(value)
        if kind == "eof":
            raise CrestlineError(f"worker {w} exited unexpectedly")
        if kind != want:
            raise CrestlineError(f"worker {w}: expected {want}, got {kind}")
        return value

    def _send_all(self, kind: str, value=None) -> None:
        for c in self._pipes:
            try:
                c.send((kind, value))
            except (BrokenPipeError, OSError):
                pass

    async def run_stage(self, stage: Stage, on_snapshot, stop=None, on_start=None) -> bool:
        from crestline.engine.stage import monotonic_ns

        n = self.workers
        start_ns = monotonic_ns() + int(max(stage.start_margin_s, _START_MARGIN_S) * 1e9)
        if on_start is not None:
            on_start(start_ns)
        self._send_all("stage", (stage, start_ns))
        pending: dict[int, list[IntervalSnapshot]] = {}
        drains: list[IntervalSnapshot] = []
        done: set[int] = set()
        errors: list[str] = []
        next_index, ended, stopped = stage.first_index, False, False
        stop_task = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            while len(done) < n:
                for w in range(n):
                    while not self._inbox[w].empty():
                        kind, value = self._inbox[w].get_nowait()
                        if kind == "snap":
                            if value.drain:  # workers stopped early may disagree on its index
                                drains.append(value)
                            elif not ended:
                                pending.setdefault(value.index, []).append(value)
                        elif kind == "stage_done":
                            done.add(w)
                        elif kind in ("error", "eof"):
                            errors.append(value or f"worker {w} exited unexpectedly")
                            done.add(w)
                while not ended and len(pending.get(next_index, ())) == n:
                    if on_snapshot(_merged(pending.pop(next_index))):
                        ended = True
                        pending.clear()
                        self._send_all("end")
                    next_index += 1
                if errors and not stopped:
                    stopped = True
                    self._send_all("stop")
                if len(done) >= n:
                    break
                self._changed.clear()
                waits = {asyncio.ensure_future(self._changed.wait())}
                if stop_task is not None and not stopped:
                    waits.add(stop_task)
                finished, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for t in waits - {stop_task}:
                    t.cancel()
                if stop_task is not None and stop_task in finished and not stopped:
                    stopped = True
                    self._send_all("stop")
        finally:
            if stop_task is not None:
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

    async def wait_idle(self, max_s: float) -> float:
        self._send_all("idle", max_s)
        waited = [await self._expect(w, "idle_done") for w in range(self.workers)]
        return max(waited)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send_all("close")

        def join():
            for p in self._procs:
                p.join(timeout=_JOIN_S)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=_JOIN_S)

        await asyncio.to_thread(join)
        for c in self._pipes:
            c.close()
