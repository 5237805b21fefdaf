"""Storage faults against `opencomms serve`: rounds of a full disk and of a write lock held by another process,
counting node process exits, answers other than 201/503, phantom calls and the slowest request meanwhile.

    .venv/bin/python bench/store_faults.py [--rounds 3] [--lock-seconds 2] [--requests 40]

The disk-full rounds put the store on a 3 MiB tmpfs (needs root; skipped otherwise) and fill it up; each round
frees the space again and requires the node to create calls afterwards. Prints one result line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from opencomms.testing import GraphClient, RecordingBot
from opencomms.testing.harness import app_target

CLI = [sys.executable, "-m", "opencomms.cli.main"]
ENV = {
    "OPENCOMMS_LOG_FORMAT": "text",
    "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1",  # the bot runs on this host
    "OPENCOMMS_SIP__PORT": "0",
    "OPENCOMMS_STORAGE__FAULT_RETRY": "0.2",
}


def _cli(store: str, *args: str) -> Any:
    out = subprocess.run([*CLI, *args, "--store", store, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """`opencomms serve` as a child process, restarted (and counted) if it exits."""

    def __init__(self, store: str, work: Path, env: dict[str, str]) -> None:
        self.store, self.work, self.env = store, work, env
        self.port = _port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.exits = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready = self.work / f"ready-{time.monotonic_ns()}"
        log = open(self.work / "node.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--store", self.store, "--port", str(self.port), "--ready-file", str(ready)],
            stdout=log,
            stderr=log,
            env={**os.environ, **ENV, **self.env},
        )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("node did not start: see " + str(self.work / "node.log"))
            time.sleep(0.05)

    def check(self) -> None:
        """Count an exit and restart."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exits += 1
            self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextlib.contextmanager
def tmpfs(path: Path) -> Iterator[bool]:
    path.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(path)], capture_output=True)
    try:
        yield ok.returncode == 0
    finally:
        if ok.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    size = 1 << 16
    try:
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
    finally:
        os.close(fd)
    return filler


def stored_calls(db: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM docs WHERE kind='call'").fetchone()[0])
    finally:
        conn.close()


class Tally:
    def __init__(self) -> None:
        self.ok = self.refused = self.other = self.phantoms = 0
        self.slowest = 0.0
        self.slowest_read = 0.0


async def _setup(store: str, base: str) -> tuple[dict[str, tuple[str, str]], list[RecordingBot]]:
    _cli(store, "tenant", "create", "--name", "Bench", "--domain", "bench.example")
    apps, bots = {}, []
    for name in ("alice", "bob"):
        bot = await RecordingBot(app_id="", jwks_url=f"{base}/common/discovery/v2.0/keys").start(f"/{name}")
        row = _cli(
            store, "app", "create", "--tenant", "bench.example", "--name", name,
            "--permission", "Calls.Initiate.All", "--callback-url", bot.url,
        )[0]  # fmt: skip
        apps[name] = (row["client_id"], row["client_secret"])
        bots.append(bot)
    return apps, bots


async def _create(client: GraphClient, url: str, target: str, tally: Tally) -> None:
    start = time.monotonic()
    status, _ = await client.create_call(url, [app_target(target)])
    tally.slowest = max(tally.slowest, time.monotonic() - start)
    if status == 201:
        tally.ok += 1
    elif status == 503:
        tally.refused += 1
    else:
        tally.other += 1


async def _health(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/healthz") as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def disk_full(args: argparse.Namespace, work: Path, tally: Tally) -> tuple[int, bool]:
    with tmpfs(work / "fs") as mounted:
        if not mounted:
            return 0, False
        db = str(work / "fs" / "node.db")
        store = f"sqlite:///{db}"
        node = Node(store, work, {"OPENCOMMS_MEDIA__RECORDINGS_DIR": str(work / "fs" / "rec")})
        apps, bots = await _setup(store, node.base)
        node.start()
        try:
            async with GraphClient(node.base, "bench.example", *apps["alice"]) as alice:
                for _ in range(args.rounds):
                    filler = fill(work / "fs")
                    for _ in range(args.requests):
                        await _create(alice, bots[0].url, apps["bob"][0], tally)
                    await asyncio.sleep(0.5)
                    node.check()
                    if (await _health(node.base))["calls"] != stored_calls(db):
                        tally.phantoms += 1
                    filler.unlink()
                    await asyncio.sleep(0.5)
                    await _create(alice, bots[0].url, apps["bob"][0], tally)  # recovered
                    node.check()
                    # end the calls so that the next round starts from the same size
                    for call_id in [n.call_id for n in bots[0].notifications if n.state == "establishing"]:
                        await alice.request("DELETE", f"/communications/calls/{call_id}")
                    bots[0].notifications.clear()
        finally:
            node.stop()
            for bot in bots:
                await bot.stop()
        return node.exits, True


async def held_lock(args: argparse.Namespace, work: Path, tally: Tally) -> int:
    db = str(work / "lock.db")
    store = f"sqlite:///{db}"
    node = Node(store, work, {})
    apps, bots = await _setup(store, node.base)
    node.start()
    try:
        async with GraphClient(node.base, "bench.example", *apps["alice"]) as alice:
            for _ in range(args.rounds):
                holder = subprocess.Popen(  # noqa: ASYNC220 - the lock holder is another process
                    [
                        sys.executable,
                        "-c",
                        f"import sqlite3,time; d=sqlite3.connect({db!r}, isolation_level=None); "
                        f"d.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep({args.lock_seconds})",
                    ],
                    stdout=subprocess.PIPE,
                )
                assert holder.stdout is not None
                holder.stdout.readline()
                while holder.poll() is None:
                    start = time.monotonic()
                    await _health(node.base)
                    tally.slowest_read = max(tally.slowest_read, time.monotonic() - start)
                    await _create(alice, bots[0].url, apps["bob"][0], tally)
                    await asyncio.sleep(0.05)
                node.check()
                await _create(alice, bots[0].url, apps["bob"][0], tally)
                if (await _health(node.base))["calls"] != stored_calls(db):
                    tally.phantoms += 1
    finally:
        node.stop()
        for bot in bots:
            await bot.stop()
    return node.exits


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each fault")
    parser.add_argument("--requests", type=int, default=40, help="creates per disk-full round")
    parser.add_argument("--lock-seconds", type=float, default=2.0, help="how long the other process holds the lock")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        full, lock = Tally(), Tally()
        full_exits, mounted = await disk_full(args, work, full)
        lock_exits = await held_lock(args, work, lock)
    disk = (
        f"{args.rounds} disk-full rounds ({full.ok} created, {full.refused} answered 503, {full.other} other)"
        if mounted
        else "disk-full rounds skipped (mounting a tmpfs needs root)"
    )
    print(
        f"store faults: {disk}; {args.rounds} write-lock rounds of {args.lock_seconds:g} s "
        f"({lock.ok} created, {lock.refused} answered 503, {lock.other} other; slowest /healthz "
        f"{lock.slowest_read * 1000:.0f} ms, create {lock.slowest * 1000:.0f} ms): "
        f"{full_exits + lock_exits} process exits, "
        f"{full.phantoms + lock.phantoms} rounds with phantom calls"
    )


if __name__ == "__main__":
    asyncio.run(main())
