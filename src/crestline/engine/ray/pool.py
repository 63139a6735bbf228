"""RayPool: engine actors on a Ray cluster behind the pool protocol (engine/pool.py).

One actor per client core (or `--actors N`), placed by a placement group with the SPREAD
strategy so they land on as many nodes as there are. Per stage:

1. every actor's clock offset to the driver is measured (clock.py: round trips, the smallest
   RTT's reading), and a stage whose actors may disagree past the bound is marked invalid;
2. one shared start time in the driver's future is translated into each actor's clock, and
   each runs its share of the schedule (the arrival's member k of n split: interleaved slots
   for constant arrivals and traces, independent seeded Poisson streams at rate / n), cutting
   intervals on the same grid;
3. each interval every actor sends counters and V2-encoded histograms (wire.py); once every
   member's part of interval k is in, the driver merges them exactly and hands on one
   snapshot, with each member's figures and any member's faults (members.py) on it.

Faults never shrink the offered rate silently: a dead actor, one behind its schedule or one
that lost its target puts a line naming it on every interval from then on (the run's
client_ok is false, the search step invalid), and a pool that lost an actor refuses the next
stage with a CrestlineError. Ctrl-C (`stop`) stops every actor; finished intervals stay.
"""

from __future__ import annotations

import asyncio
import contextlib

from crestline.engine.arrivals import Arrival
from crestline.engine.pool import Stage
from crestline.engine.ray.actor import EngineActor
from crestline.engine.ray.clock import (
    CLOCK_SAMPLES,
    ClockOffset,
    clock_bound_ns,
    clock_faults,
    estimate_offset,
)
from crestline.engine.ray.members import behind_lag_ns, member_faults, member_figures
from crestline.engine.ray.wire import from_wire
from crestline.engine.spec import RunSpec
from crestline.engine.workload import Workload
from crestline.errors import ConfigError, CrestlineError
from crestline.measure.result import IntervalSnapshot

# From "go" to the first slot: every actor's start message must arrive (a Ray call is about a
# millisecond on one host, a few across a LAN) and its engine must finish the collection it
# runs before a stage (~0.1 s in a Ray worker process, whose imports leave many objects).
_START_MARGIN_S = 0.5
_PLACE_S = 60.0  # for the placement group to be granted
_CLOSE_S = 10.0
# A local Ray's object store: snapshots are a few KB, the workload is put once.
_OBJECT_STORE_BYTES = 100 * 1024 * 1024


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class RayPool:
    """Engine actors on a Ray cluster. Use `await RayPool.open(spec, workload, arrival)`."""

    def __init__(self, spec: RunSpec, actors, names, infos, placement, owns_ray: bool):
        self.spec, self.workers = spec, len(actors)
        self.actors, self.names, self.infos = actors, names, infos
        self._placement, self._owns_ray = placement, owns_ray
        self.lost: dict[int, str] = {}  # member -> why, for the rest of the session
        self.clocks: list[ClockOffset | None] = [None] * len(actors)
        self._closed = False

    # -- opening --------------------------------------------------------------------------
    @classmethod
    async def open(cls, spec: RunSpec, workload: Workload, arrival: Arrival) -> RayPool:
        """Connect to (or start) Ray, place the actors and wait until each has its engine.
        Sets spec.workers (and spec.actors) to the number of actors. Raises ConfigError if
        the cluster cannot hold them, CrestlineError if an actor fails to start."""
        import ray

        owns = not ray.is_initialized()
        if owns:
            await asyncio.to_thread(_init_ray, spec)
        actors, placement = [], None
        try:
            n = spec.actors or int(ray.cluster_resources().get("CPU", 0))
            if n < 1:
                raise ConfigError(f"--cluster {spec.cluster}: the cluster has no CPU to run "
                                  "an actor on; add a node or give --actors N")
            if spec.connections < n:
                raise ConfigError(f"--connections ({spec.connections}) is split across "
                                  f"{n} actors: give each at least one")
            placement = await _place(n, spec)
            spec.workers = spec.actors = n
            actors = _start_actors(spec, workload, arrival, placement)
            infos = []
            for k, a in enumerate(actors):
                try:
                    infos.append(await a.info.remote())
                except Exception as exc:
                    raise CrestlineError(f"actor {k} did not start: {_short(exc)}") from exc
            names = [f"actor {k} on {i['host']} (pid {i['pid']})" for k, i in enumerate(infos)]
            return cls(spec, actors, names, infos, placement, owns)
        except BaseException:
            await _release(actors, placement, owns)
            raise

    # -- clocks ---------------------------------------------------------------------------
    async def _clock(self, k: int) -> ClockOffset:
        from crestline.engine.stage import monotonic_ns

        samples = []
        for _ in range(CLOCK_SAMPLES):
            t0 = monotonic_ns()
            reading = await self.actors[k].now_ns.remote()
            samples.append((t0, reading, monotonic_ns()))
        return estimate_offset(samples)

    async def measure_clocks(self, on_lost) -> None:
        """Every live actor's offset, measured now (one after another: concurrent round trips
        would queue behind each other and widen every bound); on_lost(k, why) for the dead."""
        for k in self._alive():
            try:
                self.clocks[k] = await self._clock(k)
            except Exception as exc:
                on_lost(k, f"{self.names[k]} died: {_short(exc)}")

    def _alive(self) -> list[int]:
        return [k for k in range(self.workers) if k not in self.lost]

    # -- a stage --------------------------------------------------------------------------
    async def run_stage(self, stage: Stage, on_snapshot, stop=None, on_start=None) -> bool:
        from crestline.engine.stage import monotonic_ns

        if self.lost:
            raise CrestlineError(
                "the Ray pool lost " + "; ".join(self.lost.values()) + ": it can no longer "
                "offer the full rate (nothing is shrunk silently); run again")
        run = _StageRun(self, stage, on_snapshot)
        await self.measure_clocks(run.lose)
        live = sorted(run.members)
        run.faults += clock_faults([self.clocks[k] for k in live], [self.names[k] for k in live],
                                   clock_bound_ns(self.spec.interval_s))
        start_ns = monotonic_ns() + int(max(stage.start_margin_s, _START_MARGIN_S) * 1e9)
        if on_start is not None:
            on_start(start_ns)
        for k in self._alive():
            try:
                await self.actors[k].start_stage.remote(stage, self.clocks[k].to_actor_ns(start_ns))
            except Exception as exc:
                run.lose(k, f"{self.names[k]} died: {_short(exc)}")
        if not run.members:
            raise CrestlineError("the Ray pool lost every actor: " + "; ".join(run.faults))
        run.start_ns = start_ns
        return await run.collect(stop)

    def tell(self, members, method: str) -> None:
        """Fire and forget one call to each member (end, stop)."""
        for k in members:
            getattr(self.actors[k], method).remote()

    async def wait_idle(self, max_s: float) -> float:
        waited = await asyncio.gather(*(self.actors[k].wait_idle.remote(max_s)
                                        for k in self._alive()))
        return max(waited, default=0.0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await _release(self.actors, self._placement, self._owns_ray, self._alive())


class _StageRun:
    """One stage's collection: each member's items in, merged intervals out in order."""

    def __init__(self, pool: RayPool, stage: Stage, on_snapshot):
        self.pool, self.stage, self.on_snapshot = pool, stage, on_snapshot
        self.members = set(pool._alive())  # whose parts each interval waits for
        self.faults: list[str] = []  # the stage's: on every interval merged from then on
        self.pending: dict[int, dict[int, IntervalSnapshot]] = {}
        self.drains: dict[int, IntervalSnapshot] = {}
        self.next_index = stage.first_index
        self.ended = self.stopped = False
        self.start_ns = 0
        spec = pool.spec
        self.interval_ns = int(spec.interval_s * 1e9)
        self.behind_ns = behind_lag_ns(spec.interval_s)
        # An interval not in from every member this long after its end: that member is
        # behind (or unreachable) and is left out of the rest of the stage.
        self.grace_ns = max(1_000_000_000, 2 * self.interval_ns)

    def lose(self, k: int, why: str) -> None:
        self.pool.lost[k] = why
        self.drop(k, why + "; its share of the load is missing")

    def drop(self, k: int, fault: str) -> None:
        self.members.discard(k)
        if fault not in self.faults:
            self.faults.append(fault)

    async def collect(self, stop: asyncio.Event | None) -> bool:
        from crestline.engine.stage import monotonic_ns

        pool = self.pool
        polls = {k: asyncio.ensure_future(self._poll(k)) for k in self.members}
        stop_task = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            while polls:
                waits = set(polls.values())
                if stop_task is not None and not self.stopped:
                    waits.add(stop_task)
                timeout_s = max(0.0, (self._due_ns() - monotonic_ns()) / 1e9)
                await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
                if stop_task is not None and stop_task.done() and not self.stopped:
                    self.stopped = True
                    pool.tell(polls, "stop")
                for k, fut in list(polls.items()):
                    if fut.done():
                        del polls[k]
                        if self._take(k, fut) and k not in pool.lost:
                            polls[k] = asyncio.ensure_future(self._poll(k))
                self._check_overdue(monotonic_ns())
                self._merge_ready()
        finally:
            for fut in polls.values():
                fut.cancel()
            if stop_task is not None:
                stop_task.cancel()
        self._flush()
        return self.stopped

    async def _poll(self, k: int):
        return await self.pool.actors[k].next_items.remote()

    def _take(self, k: int, fut) -> bool:
        """Fold member k's items in; False once its stage is over."""
        try:
            items = fut.result()
        except Exception as exc:  # the actor died (or Ray lost it)
            self.lose(k, f"{self.pool.names[k]} died: {_short(exc)}")
            return False
        clock = self.pool.clocks[k]
        for kind, value in items:
            if kind == "snap":
                snap = from_wire(value)
                # onto the driver's clock, where the GPU windows and the search's clock live
                snap.mono_start_ns = clock.to_driver_ns(snap.mono_start_ns)
                snap.mono_end_ns = clock.to_driver_ns(snap.mono_end_ns)
                if snap.drain:
                    self.drains[k] = snap
                elif not self.ended and k in self.members:
                    self.pending.setdefault(snap.index, {})[k] = snap
            elif kind == "done":
                return False
            elif kind == "error":
                self.lose(k, f"{self.pool.names[k]} failed: {value}")
                return False
        return True

    def _due_ns(self) -> int:
        """When the next interval must be in from every member."""
        k = self.next_index - self.stage.first_index + 1
        end_ns = self.start_ns + int(self.stage.duration_s * 1e9)
        return min(self.start_ns + k * self.interval_ns, end_ns) + self.grace_ns

    def _check_overdue(self, now_ns: int) -> None:
        if self.ended or self.stopped or now_ns < self._due_ns():
            return
        parts = self.pending.get(self.next_index, {})
        late = [k for k in self.members if k not in parts]
        if not parts and not late:
            return
        for k in late:
            self.drop(k, f"{self.pool.names[k]} fell behind: interval {self.next_index} not "
                      f"in {self.grace_ns / 1e9:g} s after its end")
        self.pool.tell(late, "stop")

    def _merge_ready(self) -> None:
        while not self.ended:
            parts = self.pending.get(self.next_index)
            if not parts or not self.members <= set(parts):
                return
            del self.pending[self.next_index]
            self.next_index += 1
            if self.on_snapshot(self._merged(parts)):
                self.ended = True
                self.pending.clear()
                self.pool.tell(self.members, "end")

    def _merged(self, parts: dict[int, IntervalSnapshot]) -> IntervalSnapshot:
        pool = self.pool
        named = {pool.names[k]: parts[k] for k in sorted(parts)}
        figures = [member_figures(pool.names[k], parts[k], pool.clocks[k].to_dict())
                   for k in sorted(parts)]
        faults = self.faults + member_faults(named, self.behind_ns)
        first, *rest = [parts[k] for k in sorted(parts)]
        for p in rest:
            first.merge(p)
        first.faults, first.members = list(dict.fromkeys(faults)), figures
        return first

    def _flush(self) -> None:
        """What is left once every member is done: intervals some member never reached (a
        stop mid-interval, a member lost) merge what arrived, then the drain."""
        if not self.ended:
            for index in sorted(self.pending):
                snap = self._merged(self.pending[index])
                snap.index = self.next_index
                self.next_index += 1
                self.on_snapshot(snap)
        if self.drains:
            snap = self._merged(self.drains)  # members stopped early may disagree on its index
            snap.index = self.next_index
            self.on_snapshot(snap)


def _init_ray(spec: RunSpec) -> None:
    import ray

    if spec.cluster == "ray":
        from crestline.measure.cpu import host_cores

        ray.init(num_cpus=max(host_cores(), spec.actors), include_dashboard=False,
                 object_store_memory=_OBJECT_STORE_BYTES, log_to_driver=False)
    else:
        ray.init(address=spec.cluster, log_to_driver=False)


async def _place(n: int, spec: RunSpec):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 1}] * n, strategy="SPREAD")
    try:
        await asyncio.wait_for(pg.ready(), _PLACE_S)
    except asyncio.TimeoutError:
        remove_placement_group(pg)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        raise ConfigError(f"--actors {n}: the cluster ({spec.cluster}) has {cpus} CPUs and could "
                          f"not place {n} one-CPU actors in {_PLACE_S:g} s; lower --actors "
                          "or add nodes") from None
    return pg


def _start_actors(spec: RunSpec, workload: Workload, arrival: Arrival, placement) -> list:
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    remote = ray.remote(num_cpus=1, max_restarts=0)(EngineActor)
    shared = ray.put(workload)  # once, not once per actor
    return [remote.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement, placement_group_bundle_index=k)).remote(spec, shared, arrival, k)
        for k in range(spec.workers)]


async def _release(actors, placement, owns_ray: bool, alive=None) -> None:
    import ray
    from ray.util.placement_group import remove_placement_group

    alive = range(len(actors)) if alive is None else alive
    with contextlib.suppress(Exception, asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(actors[k].close.remote() for k in alive),
                                              return_exceptions=True), _CLOSE_S)
    for a in actors:
        with contextlib.suppress(Exception):
            ray.kill(a)
    if placement is not None:
        with contextlib.suppress(Exception):
            remove_placement_group(placement)
    if owns_ray:
        await asyncio.to_thread(ray.shutdown)
