"""(Copied from the anchors bench.) Baseline load client: aiohttp ClientSession on uvloop.
rate mode (open loop):  pyclient.py URL --rate 10000 --duration 10 --conns 50
max mode (closed loop): pyclient.py URL --rate 0 --duration 10 --conns 50
Rate-mode latency is measured from each request's INTENDED send time (no coordinated omission)."""
import argparse
import asyncio
import json
import time

import aiohttp
import uvloop


def pct(xs, p):
    return round(xs[min(len(xs) - 1, int(len(xs) * p / 100))] * 1e3, 3) if xs else None

async def main(a):
    lat, errs = [], 0
    conn = aiohttp.TCPConnector(limit=a.conns, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one(t_intended):
            nonlocal errs
            try:
                async with s.get(a.url) as r:
                    await r.read()
                    lat.append(time.perf_counter() - t_intended)
            except Exception:
                errs += 1
        t0 = time.perf_counter(); end = t0 + a.duration
        if a.rate > 0:
            sent, tasks = 0, set()
            while (now := time.perf_counter()) < end:
                # requests whose intended time t0 + i/rate is <= now (request 0 is due at t0)
                due = min(int((now - t0) * a.rate) + 1, int(a.duration * a.rate))
                for i in range(sent, due):
                    t = asyncio.ensure_future(one(t0 + i / a.rate)); tasks.add(t); t.add_done_callback(tasks.discard)
                sent = max(sent, due)
                await asyncio.sleep(0.001)
            if tasks: await asyncio.wait(tasks, timeout=5)
        else:
            async def worker():
                while time.perf_counter() < end:
                    await one(time.perf_counter())
            await asyncio.gather(*(worker() for _ in range(a.conns)))
        el = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({"tool": "pyclient", "mode": "rate" if a.rate else "max", "requests": len(lat), "errors": errs,
                      "elapsed_s": round(el, 3), "rps": round(len(lat) / el, 1), "p50_ms": pct(lat, 50),
                      "p99_ms": pct(lat, 99), "p999_ms": pct(lat, 99.9), "max_ms": pct(lat, 100)}))

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url"); ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--duration", type=float, default=10); ap.add_argument("--conns", type=int, default=50)
    uvloop.install(); asyncio.run(main(ap.parse_args()))
