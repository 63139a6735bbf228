"""Multi-turn conversations in the core: first turns on the arrival process, each later turn
sent its think time after the previous turn's response ended, as seen by a loopback server
that timestamps what it receives."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from cli_process import crestline

from crestline.engine.llm_workload import Lengths, conversations, write_conversations
from crestline.trace.format import read_trace

SERVICE_S = 0.1
THINK_S = 0.3


class StampingServer:
    """HTTP/1.1 on 127.0.0.1:0 in a thread: answers every request after SERVICE_S and keeps
    (conversation, turn, received, answered) on the monotonic clock the client also uses."""

    def __init__(self):
        self.seen: list[tuple[str, int, float, float]] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _serve(self, ready):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._conn, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _conn(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = json.loads(await reader.readexactly(length))
                got = time.monotonic()
                msgs = body["messages"]
                await asyncio.sleep(SERVICE_S)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
                self.seen.append((msgs[0]["content"], (len(msgs) - 1) // 2, got,
                                  time.monotonic()))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def server():
    s = StampingServer()
    yield s
    s.stop()


def test_later_turns_follow_the_previous_turns_end_by_their_think_time(server, tmp_path):
    convs = conversations(40, 3, Lengths("fixed", 6), Lengths("fixed", 4), model="m",
                          stream=False, seed=5)
    trace = tmp_path / "conv.cltrace"
    assert write_conversations(str(trace), convs, THINK_S, "test") == 120
    recs = read_trace(str(trace)).records
    assert [(r.extras["turn"], r.extras["think_s"]) for r in recs[:3]] == [
        (0, 0.0), (1, THINK_S), (2, THINK_S)]
    out = tmp_path / "r.json"
    p = crestline("run", f"http://127.0.0.1:{server.port}/", "--trace", trace, "--arrival",
                  "constant", "--rate", "4", "--duration", "2s", "--seed", "1", "--quiet",
                  "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    d = json.loads(out.read_text())
    by_conv: dict = {}
    for conv, turn, got, answered in server.seen:
        by_conv.setdefault(conv, {})[turn] = (got, answered)
    # 4 conversations a second for 2 s start: 8 first turns on the constant schedule
    firsts = sorted(t[0][0] for t in by_conv.values() if 0 in t)
    assert len(firsts) == 8 and all(0 in t for t in by_conv.values())
    gaps = [b - a for a, b in zip(firsts, firsts[1:], strict=False)]
    # (the first waited for a new connection; generous bounds: a shared machine)
    assert all(abs(g - 0.25) < 0.06 for g in gaps[1:]), gaps
    # each later turn arrives THINK_S after the server answered the turn before it
    follow = [(t[k][0] - t[k - 1][1]) for t in by_conv.values() for k in (1, 2) if k in t]
    assert len(follow) >= 8, follow
    # never before the think time is up; late only by the client's own wake-up (generous)
    assert all(THINK_S - 0.005 < f < THINK_S + 0.1 for f in follow), follow
    # a later turn is sent only within the load window: a conversation starting at 0.25 s
    # has its third turn at ~1.05 s, one at 1.75 s has only its first
    start = firsts[0]
    for t in by_conv.values():
        for k in (1, 2):
            due = t[k - 1][1] + THINK_S if k - 1 in t else None
            if due is not None and due < start + 2.0 - 0.1:
                assert k in t, (k, t)
            if k in t:
                assert t[k][0] < start + 2.0 + 0.1
    # every turn sent is a request of the run, measured from its intended send time
    assert d["requests"]["scheduled"] == len(server.seen) == d["requests"]["ok"]
    assert d["latency_ms"]["p50"] == pytest.approx(1e3 * SERVICE_S, rel=0.2)


def test_a_conversation_trace_becomes_first_turns_and_successors(tmp_path):
    # two conversations written out of turn order, identical turn bodies across them, and a
    # lone request: each turn its own payload, only first turns on the schedule
    from crestline.engine.spec import RunSpec
    from crestline.engine.workload import Workload
    from crestline.trace.format import TraceRecord, TraceWriter

    path = tmp_path / "t.cltrace"
    rows = [("a", 1, 0.5), ("a", 0, 0.0), ("b", 0, 0.0), ("b", 1, 2.0), ("a", 2, 1.0),
            (None, None, None)]
    with TraceWriter(path, source="test") as w:
        for k, (conv, turn, think) in enumerate(rows):
            extras = {} if conv is None else {"conversation": conv, "turn": turn,
                                              "think_s": think}
            w.write(TraceRecord(k * 1_000_000, "POST", "/v1/chat/completions", [],
                                b'{"turn": %d}' % (turn or 0), extras))
    wl = Workload.for_spec(RunSpec("http://127.0.0.1:9000/", 10, 1, trace=str(path)).validated())
    assert len(wl.payloads) == 6 and wl.conversations == 3
    nxt, think = wl.core_turns()
    first = [wl.payloads[p].endswith(b'{"turn": 0}') for p in wl.record_payload]
    assert first == [True, True, True]  # a's turn 0, b's turn 0, the lone request
    # follow the chains: a 0 -> 1 (0.5 s) -> 2 (1.0 s); b 0 -> 1 (2.0 s); the lone one ends
    chains = []
    for p in wl.record_payload:
        chain, q = [], int(p)
        while nxt[q] >= 0:
            q = int(nxt[q])
            chain.append((wl.payloads[q][-11:], int(think[q])))
        chains.append(chain)
    assert chains == [[(b'{"turn": 1}', 500_000_000), (b'{"turn": 2}', 1_000_000_000)],
                      [(b'{"turn": 1}', 2_000_000_000)], []]


def test_synth_writes_conversations_and_refuses_bad_turns(tmp_path):
    import subprocess

    from cli_process import CLI

    out = tmp_path / "c.cltrace"
    p = subprocess.run([*CLI[:2], "crestline.engine.llm_workload", "synth", "--n", "5",
                        "--turns", "3", "--think-s", "1.5", "--prompt-tokens", "fixed:4",
                        "--output-tokens", "fixed:2", "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "wrote 5 conversations of 3 turns (15 chat requests)" in p.stdout
    recs = read_trace(str(out)).records
    third = json.loads(recs[2].body)["messages"]
    assert [m["role"] for m in third] == ["user", "assistant"] * 2 + ["user"]
    assert recs[2].extras == {"model": "crestline-demo-llm", "conversation": 0, "turn": 2,
                              "think_s": 1.5}
    p = subprocess.run([*CLI[:2], "crestline.engine.llm_workload", "synth", "--turns", "2",
                        "--api", "completions", "--out", str(tmp_path / "x.cltrace")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--api chat" in p.stderr
