"""SIGKILL a dispatcher process mid-delivery; a second process on the same SQLite file finishes the job."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

CHILD = Path(__file__).with_name("notify_kill_child.py")
KEYS, PER_KEY = 10, 20


class SlowReceiver:
    """Records (delivery id, key, index) at arrival, answers 202 after a delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrivals: list[tuple[str, str, int]] = []
        self.changed = asyncio.Condition()
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/cb", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        async with self.changed:
            self.arrivals.append((request.headers["opencomms-delivery-id"], doc["key"], doc["i"]))
            self.changed.notify_all()
        await asyncio.sleep(self.delay)
        return web.Response(status=202)

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)


@pytest.fixture
async def receiver() -> AsyncIterator[SlowReceiver]:
    r = SlowReceiver(delay=0.03)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def spawn(*args: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), *args, stdout=asyncio.subprocess.PIPE, env=env
    )


async def read_until_ready(proc: asyncio.subprocess.Process) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(5):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                raise AssertionError(f"child exited early: {lines[-3:]}")
            line = raw.decode().strip()
            if line == "READY":
                return lines
            lines.append(line)


async def test_sigkill_mid_delivery_then_resume(receiver: SlowReceiver, tmp_path: Path) -> None:
    db = str(tmp_path / "outbox.db")
    procs: list[asyncio.subprocess.Process] = []
    try:
        first = await spawn(db, receiver.base, "submit", str(KEYS), str(PER_KEY))
        procs.append(first)
        submitted = [json.loads(line) for line in await read_until_ready(first)]
        assert len(submitted) == KEYS * PER_KEY
        await receiver.wait_for(lambda: len(receiver.arrivals) >= 40, within=5)
        first.kill()  # SIGKILL, mid-delivery: up to 10 requests are in flight right now
        await first.wait()
        seen_before_kill = len(receiver.arrivals)
        assert seen_before_kill < KEYS * PER_KEY

        second = await spawn(db, receiver.base, "resume")
        procs.append(second)
        await read_until_ready(second)
        wanted = {e["id"] for e in submitted}
        await receiver.wait_for(lambda: wanted <= {a[0] for a in receiver.arrivals}, within=8)
        assert second.stdout is not None
        async with asyncio.timeout(5):
            assert (await second.stdout.readline()).decode().strip() == "IDLE"
            assert await second.wait() == 0
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()

    # At-least-once: dedup by delivery id gives exactly the submitted set,
    # and first arrivals are in order per key.
    ids_of = {(e["key"], e["i"]): e["id"] for e in submitted}
    first_seen: dict[str, tuple[str, int]] = {}
    for delivery_id, key, i in receiver.arrivals:
        assert ids_of[(key, i)] == delivery_id
        first_seen.setdefault(delivery_id, (key, i))
    assert set(first_seen) == set(ids_of.values())
    for k in range(KEYS):
        order = [i for key, i in first_seen.values() if key == f"call-{k}"]
        assert order == list(range(PER_KEY))
    duplicates = len(receiver.arrivals) - len(first_seen)
    assert duplicates <= KEYS  # only the heads in flight at the kill may arrive twice
