"""Throughput/latency of the notification dispatcher alone (component figure; run by `make bench`).

    .venv/bin/python bench/notify_dispatch.py [--rate 1000] [--seconds 10]
        [--calls 200] [--store sqlite|memory] [--uvloop] [--burst 20000]

The bot side runs in a separate process (aiohttp.web, answers 202), stamps arrival minus the submit time
carried in the body, and prints percentiles. The dispatcher process reports its own CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

from opencomms.notify import Dispatcher
from opencomms.store import MemoryStore, SqliteStore, Store

RECEIVER = r"""
import asyncio, json, sys, time
from aiohttp import web
lat = []
async def cb(request):
    body = await request.read()
    lat.append(time.time() - json.loads(body)["ts"])
    return web.Response(status=202)
async def stats(request):
    xs = sorted(lat); lat.clear()
    pick = lambda q: round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 2) if xs else None
    return web.json_response({"n": len(xs), "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99),
                              "max_ms": round(xs[-1] * 1000, 2) if xs else None})
async def main():
    app = web.Application(); app.router.add_post("/cb", cb); app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0); await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
if len(sys.argv) > 1 and sys.argv[1] == "uvloop":
    import uvloop; uvloop.install()
asyncio.run(main())
"""


async def fetch_stats(base: str) -> dict[str, object]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(base + "/stats") as r:
        return dict(await r.json())


async def run(args: argparse.Namespace, base: str, store: Store) -> None:
    url = base + "/cb"
    async with Dispatcher(store, sign=lambda a, t: "tok", max_in_flight=256) as d:
        # warm-up: open connections
        for i in range(200):
            d.submit(order_key=f"w{i}", app_id="a", tenant_id="t", url=url, body=b'{"ts": %f}' % time.time())
        await d.wait_idle()
        await fetch_stats(base)

        # 1) paced load
        loop = asyncio.get_running_loop()
        per_tick, tick = max(1, args.rate // 100), 0.01
        total = args.rate * args.seconds
        sent = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        start = loop.time()
        while sent < total:
            for _ in range(per_tick):
                body = json.dumps({"ts": time.time(), "pad": "x" * 600}).encode()
                d.submit(order_key=f"call-{sent % args.calls}", app_id="a", tenant_id="t", url=url, body=body)
                sent += 1
            await asyncio.sleep(max(0.0, start + (sent // per_tick) * tick - loop.time()))
        await d.wait_idle()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        lat = await fetch_stats(base)
        print(
            f"paced: {sent} notifications in {wall:.2f} s = {sent / wall:.0f}/s over {args.calls} calls; "
            f"dispatcher CPU {cpu:.2f} s ({100 * cpu / wall:.0f}% of a core, "
            f"{1e6 * cpu / sent:.0f} us/notif); "
            f"latency submit->bot {lat}"
        )

        # 2) burst: how fast does a backlog drain?
        n = args.burst
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            body = json.dumps({"ts": time.time(), "pad": "x" * 600}).encode()
            d.submit(order_key=f"call-{i % args.calls}", app_id="a", tenant_id="t", url=url, body=body)
        await d.wait_idle()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        lat = await fetch_stats(base)
        print(
            f"burst: {n} in {wall:.2f} s = {n / wall:.0f}/s; dispatcher CPU {cpu:.2f} s "
            f"({1e6 * cpu / n:.0f} us/notif); latency {lat}"
        )
        print("stats", d.stats)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--burst", type=int, default=20000)
    p.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args()
    mode = "uvloop" if args.uvloop else "asyncio"
    recv = subprocess.Popen([sys.executable, "-c", RECEIVER, mode], stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout is not None
        base = f"http://127.0.0.1:{recv.stdout.readline().strip()}"
        with tempfile.TemporaryDirectory() as tmp:
            store: Store = SqliteStore(os.path.join(tmp, "o.db")) if args.store == "sqlite" else MemoryStore()
            try:
                if args.uvloop:
                    import uvloop

                    uvloop.run(run(args, base, store))
                else:
                    asyncio.run(run(args, base, store))
            finally:
                store.close()
    finally:
        recv.kill()
        recv.wait()


if __name__ == "__main__":
    main()
