"""Benchmark: one application creating calls at full speed against one `opencomms serve` node (issue 14 item 6).

The node runs as its own process on its embedded SQLite store, with its quotas (`--per-minute`, `--concurrent`)
and a long answer timeout, so that every accepted call stays ringing and holds its legs. `--workers` concurrent
clients POST /communications/calls from one application to a second bot (whose webhook acknowledges and never
answers) for `--seconds`. Reports the creates accepted (201) and refused (403 quotaLimitReached, 429 with
Retry-After, anything else), the node's peak RSS, and the store's growth (file size and call documents), which stay
bounded at the quota however long the flood lasts. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def webhook() -> tuple[web.AppRunner, str]:
    async def ack(_request: web.Request) -> web.Response:
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/{name}", ack)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def flood(args: argparse.Namespace, base: str, tenant: str, apps: dict[str, tuple[str, str]], pid: int) -> Any:
    runner, hook = await webhook()
    outcomes: Counter[str] = Counter()
    retry_after: list[int] = []
    peak_rss = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        client_id, secret = apps["flood"]
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": f"{base}/.default",
        }
        async with http.post(f"{base}/{tenant}/oauth2/v2.0/token", data=form) as resp:
            token = (await resp.json())["access_token"]
        body = json.dumps(
            {
                "@odata.type": "#microsoft.graph.call",
                "callbackUri": f"{hook}/flood",
                "targets": [
                    {
                        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                        "identity": {"application": {"id": apps["sink"][0]}},
                    }
                ],
                "requestedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            }
        ).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        deadline = time.monotonic() + args.seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                async with http.post(f"{base}/v1.0/communications/calls", data=body, headers=headers) as resp:
                    if resp.status == 201:
                        outcomes["accepted"] += 1
                    elif resp.status in (403, 429):
                        code = (await resp.json())["error"]["code"]
                        outcomes[f"{resp.status} {code}"] += 1
                        if resp.status == 429:
                            retry_after.append(int(resp.headers["Retry-After"]))
                    else:
                        outcomes[f"other {resp.status}"] += 1
                    await resp.read()

        async def sample() -> None:
            nonlocal peak_rss
            while time.monotonic() < deadline + 0.5:
                peak_rss = max(peak_rss, rss_kib(pid)["VmRSS"])
                await asyncio.sleep(0.2)

        started = time.monotonic()
        await asyncio.gather(sample(), *(worker() for _ in range(args.workers)))
        elapsed = time.monotonic() - started
        async with http.get(f"{base}/healthz") as resp:
            health = await resp.json()
    await runner.cleanup()
    return outcomes, retry_after, peak_rss, elapsed, health


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="flood duration")
    parser.add_argument("--workers", type=int, default=16, help="concurrent create requests")
    parser.add_argument("--per-minute", type=int, default=600, help="quotas.calls_per_minute_per_app")
    parser.add_argument("--concurrent", type=int, default=1000, help="quotas.concurrent_calls_per_app")
    args = parser.parse_args()

    from opencomms.directory import Directory
    from opencomms.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="opencomms-flood-"))
    db = tmp / "node.db"
    store_url = f"sqlite:///{db}"
    store = open_store(store_url)
    directory = Directory(store)
    tenant = directory.create_tenant("Flood", "flood.example")
    apps: dict[str, tuple[str, str]] = {}
    for name in ("flood", "sink"):
        app, secret = directory.create_app(
            tenant.id, name, permissions=["Calls.Initiate.All"], callback_url="http://127.0.0.1:9/unused"
        )
        apps[name] = (app.id, secret)
    store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = tmp / "ready"
    env = {
        **os.environ,
        "OPENCOMMS_LOG_LEVEL": "warning",
        "OPENCOMMS_SIP__ENABLED": "false",
        "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1",  # the bot's webhook runs on this host
        "OPENCOMMS_CALLS__ANSWER_TIMEOUT": "3600",  # accepted calls keep ringing: they hold their legs
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_APP": str(args.per_minute),
        "OPENCOMMS_QUOTAS__CONCURRENT_CALLS_PER_APP": str(args.concurrent),
    }
    node_log = (tmp / "node.log").open("wb")
    cmd = [sys.executable, "-m", "opencomms.cli.main", "serve", "--store", store_url, "--port", str(port)]
    node = subprocess.Popen([*cmd, "--ready-file", str(ready)], env=env, stderr=node_log)
    try:
        while not ready.exists():
            if node.poll() is not None:
                raise SystemExit((tmp / "node.log").read_text())
            time.sleep(0.05)
        base = ready.read_text()
        # the sink's webhook must exist before the flood starts: point both apps at this process's server
        rss_start = rss_kib(node.pid)["VmRSS"]
        size_start = store_bytes(db)
        db_start = db.stat().st_size
        outcomes, retry_after, peak_rss, elapsed, health = asyncio.run(
            _with_hooks(args, base, tenant.id, apps, node.pid, store_url)
        )
        size_end = store_bytes(db)
        db_end = db.stat().st_size
        store = open_store(store_url)
        docs = Counter(doc.get("app_id") for _, doc in store.scan("call"))
        store.close()
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(10)
        node_log.close()
    total = sum(outcomes.values())
    print(
        json.dumps(
            {
                "bench": "app_flood",
                "seconds": round(elapsed, 1),
                "quota_per_minute": args.per_minute,
                "quota_concurrent": args.concurrent,
                "creates": total,
                "creates_per_s": round(total / elapsed),
                "outcomes": dict(outcomes),
                "retry_after_s": [min(retry_after), max(retry_after)] if retry_after else None,
                "live_calls": health["calls"],
                "call_docs_flood_app": docs.get(apps["flood"][0], 0),
                "node_rss_mib": {"start": round(rss_start / 1024, 1), "peak": round(peak_rss / 1024, 1)},
                "store_growth_mib": {
                    "db": round((db_end - db_start) / 2**20, 2),
                    "db_and_wal": round((size_end - size_start) / 2**20, 2),
                },
            }
        )
    )


async def _with_hooks(
    args: argparse.Namespace, base: str, tenant: str, apps: dict[str, tuple[str, str]], pid: int, store_url: str
) -> Any:
    """Register this process's webhook as the sink's calling webhook (read by the node from the shared store)."""
    from dataclasses import replace

    from opencomms.directory import Directory
    from opencomms.store import open_store

    runner, hook = await webhook()
    store = open_store(store_url)
    directory = Directory(store)
    directory.update_app(replace(directory.require_app(apps["sink"][0]), callback_url=f"{hook}/sink"))
    store.close()
    try:
        return await flood(args, base, tenant, apps, pid)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
