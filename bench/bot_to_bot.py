"""Benchmark: bot-to-bot call cycles against one `opencomms serve` node on its embedded SQLite store.

A cycle: A creates a call to B -> B gets the incoming notification and answers -> both legs see established
-> A DELETEs -> both see terminated. The node runs as its own process; both bots (real aiohttp webhook servers
that validate every callback JWT) and their REST clients run in this process.

Phase 1 paces cycles at --rate for --seconds and reports latencies; phase 2 runs --workers cycles back to
back and reports the sustained cycle rate. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from sip_calls import _cpu_seconds, free_port, wait_ready  # bench/sip_calls.py (this folder is on sys.path)

EXPECTED = {
    "alice": ["establishing", "established", "terminating", "terminated"],
    "bob": ["incoming", "establishing", "established", "terminated"],
}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class Cycle:
    a_id: str = ""
    b_id: str = ""
    sent: dict[str, float] = field(default_factory=dict)
    seen: dict[str, list[tuple[str, float]]] = field(default_factory=lambda: {"alice": [], "bob": []})
    done: asyncio.Event = field(default_factory=asyncio.Event)
    b_ringing: asyncio.Event = field(default_factory=asyncio.Event)
    a_established: asyncio.Event = field(default_factory=asyncio.Event)


class Bench:
    def __init__(
        self,
        base: str,
        tenant: str,
        apps: dict[str, tuple[str, str]],
        store_url: str,
        bases: dict[str, str] | None = None,
    ) -> None:
        self.store_url = store_url
        self.base = base
        self.bases = bases or {}
        """A node per bot (its tokens and REST requests), for a cluster; default: `base` for both."""
        self.tenant = tenant
        self.apps = apps
        self.tokens: dict[str, str] = {}
        self.by_call: dict[str, Cycle] = {}
        self.rest_ms: list[float] = []
        self.delivery_ms: list[float] = []
        self.delivery_ids: set[str] = set()
        self.duplicates = 0
        self.bad_tokens = 0
        self.jwk: dict[str, Any] = {}
        self.valid_tokens: set[str] = set()
        self.session: aiohttp.ClientSession | None = None
        self.urls: dict[str, str] = {}
        self.pending_b: dict[str, list[tuple[str, float]]] = {}
        self.early_incoming: dict[str, str] = {}

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for name in ("alice", "bob"):
            app = web.Application()
            app.router.add_post(f"/{name}", self._handler(name))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.urls[name] = f"http://127.0.0.1:{port}/{name}"
        # register the webhooks (the running node reads the same SQLite store)
        from dataclasses import replace

        from opencomms.directory import Directory
        from opencomms.store import open_store

        store = open_store(self.store_url)
        directory = Directory(store)
        for name, (client_id, _) in self.apps.items():
            directory.update_app(replace(directory.require_app(client_id), callback_url=self.urls[name]))
        store.close()
        for name, (client_id, secret) in self.apps.items():
            base = self.bases.get(name, self.base)
            form = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": f"{base}/.default",
            }
            async with self.session.post(f"{base}/{self.tenant}/oauth2/v2.0/token", data=form) as resp:
                self.tokens[name] = (await resp.json())["access_token"]
        async with self.session.get(f"{self.base}/common/discovery/v2.0/keys") as resp:
            for key in (await resp.json())["keys"]:
                self.jwk[key["kid"]] = jwt.PyJWK(key).key

    def _check(self, auth: str, name: str) -> bool:
        token = auth.removeprefix("Bearer ")
        if token in self.valid_tokens:
            return True
        try:
            key = self.jwk[jwt.get_unverified_header(token)["kid"]]
            jwt.decode(
                token, key, algorithms=["RS256"], audience=self.apps[name][0], issuer="https://api.botframework.com"
            )
        except (jwt.InvalidTokenError, KeyError):
            return False
        self.valid_tokens.add(token)
        return True

    def _handler(self, name: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            now = time.perf_counter()
            if not self._check(request.headers.get("Authorization", ""), name):
                self.bad_tokens += 1
                return web.Response(status=401)
            delivery = request.headers.get("opencomms-delivery-id", "")
            if delivery in self.delivery_ids:
                self.duplicates += 1
                return web.Response(status=202)
            self.delivery_ids.add(delivery)
            body = await request.json()
            for item in body["value"]:
                call_id = item["resourceUrl"].split("/")[3]
                state = item["resourceData"].get("state")
                if name == "bob" and item["changeType"] == "created":
                    pid = item["resourceData"]["source"]["participantId"]
                    cycle = self.by_call.get(pid)
                    if cycle is None:  # the notification overtook the 201 response
                        self.early_incoming[pid] = call_id
                    else:
                        self._ringing(cycle, call_id)
                cycle = self.by_call.get(call_id)
                if cycle is None:  # arrived before the 201 was processed
                    self.pending_b.setdefault(call_id, []).append((state, now))
                    continue
                self._seen(cycle, name, state, now)
            return web.Response(status=202)

        return handle

    def _ringing(self, cycle: Cycle, b_id: str) -> None:
        cycle.b_id = b_id
        self.by_call[b_id] = cycle
        cycle.b_ringing.set()

    def _seen(self, cycle: Cycle, name: str, state: str, now: float) -> None:
        cycle.seen[name].append((state, now))
        if name == "alice" and state == "established":
            cycle.a_established.set()
        if len(cycle.seen["alice"]) == 4 and len(cycle.seen["bob"]) == 4:
            cycle.done.set()

    async def rest(self, name: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.session is not None
        t0 = time.perf_counter()
        async with self.session.request(
            method,
            f"{self.bases.get(name, self.base)}/v1.0{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[name]}"},
        ) as resp:
            data = await resp.json() if resp.status == 201 else None
            status = resp.status
        self.rest_ms.append((time.perf_counter() - t0) * 1000)
        return status, data

    async def cycle(self, timeout: float = 10.0) -> bool:
        cycle = Cycle()
        cycle.sent["create"] = time.perf_counter()
        status, call = await self.rest(
            "alice",
            "POST",
            "/communications/calls",
            {
                "callbackUri": self.urls["alice"],
                "targets": [{"identity": {"application": {"id": self.apps["bob"][0]}}}],
                "requestedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            },
        )
        if status != 201:
            return False
        cycle.a_id = call["id"]
        self.by_call[cycle.a_id] = cycle
        self.by_call[call["myParticipantId"]] = cycle
        for state, t in self.pending_b.pop(cycle.a_id, []):
            self._seen(cycle, "alice", state, t)
        if call["myParticipantId"] in self.early_incoming:
            self._ringing(cycle, self.early_incoming.pop(call["myParticipantId"]))
        try:
            await asyncio.wait_for(cycle.b_ringing.wait(), timeout)
            for state, t in self.pending_b.pop(cycle.b_id, []):
                self._seen(cycle, "bob", state, t)
            cycle.sent["answer"] = time.perf_counter()
            status, _ = await self.rest(
                "bob",
                "POST",
                f"/communications/calls/{cycle.b_id}/answer",
                {
                    "callbackUri": self.urls["bob"],
                    "acceptedModalities": ["audio"],
                    "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
                },
            )
            if status != 202:
                print("answer failed", status, file=sys.stderr)
                return False
            await asyncio.wait_for(cycle.a_established.wait(), timeout)
            cycle.sent["delete"] = time.perf_counter()
            status, _ = await self.rest("alice", "DELETE", f"/communications/calls/{cycle.a_id}")
            await asyncio.wait_for(cycle.done.wait(), timeout)
        except TimeoutError:
            return False
        cause = {
            "incoming": "create",
            "establishing": "answer",
            "established": "answer",
            "terminating": "delete",
            "terminated": "delete",
        }
        for name in ("alice", "bob"):
            states = [s for s, _ in cycle.seen[name]]
            if states != EXPECTED[name]:
                return False
            for state, t in cycle.seen[name]:
                key = "create" if (name == "alice" and state == "establishing") else cause[state]
                self.delivery_ms.append((t - cycle.sent[key]) * 1000)
        for key in (cycle.a_id, cycle.b_id, call["myParticipantId"]):
            self.by_call.pop(key, None)
        return True


async def run(
    args: argparse.Namespace,
    base: str,
    tenant: str,
    apps: dict[str, tuple[str, str]],
    store_url: str,
    bases: dict[str, str] | None = None,
) -> dict[str, Any]:
    bench = Bench(base, tenant, apps, store_url, bases)
    await bench.start()
    # phase 1: paced
    ok = failed = 0
    tasks: set[asyncio.Task[bool]] = set()
    start = time.perf_counter()
    n = int(args.rate * args.seconds)
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
        tasks.add(asyncio.create_task(bench.cycle()))
    results = await asyncio.gather(*tasks)
    ok, failed = sum(results), len(results) - sum(results)
    paced_elapsed = time.perf_counter() - start
    paced = {
        "cycles": ok,
        "failed": failed,
        "offered_rate": args.rate,
        "elapsed_s": round(paced_elapsed, 2),
        "rest_p50_ms": round(pct(bench.rest_ms, 0.5), 2),
        "rest_p99_ms": round(pct(bench.rest_ms, 0.99), 2),
        "delivery_p50_ms": round(pct(bench.delivery_ms, 0.5), 2),
        "delivery_p99_ms": round(pct(bench.delivery_ms, 0.99), 2),
        "notifications": len(bench.delivery_ids),
        "expected_notifications": 8 * n,
        "duplicates": bench.duplicates,
        "bad_tokens": bench.bad_tokens,
    }
    # phase 2: closed loop, as fast as it goes
    bench.rest_ms.clear()
    bench.delivery_ms.clear()
    stop = time.perf_counter() + args.seconds
    done = [0, 0]

    async def worker() -> None:
        while time.perf_counter() < stop:
            if await bench.cycle():
                done[0] += 1
            else:
                done[1] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.workers)))
    elapsed = time.perf_counter() - t0
    assert bench.session is not None
    await bench.session.close()
    return {
        "paced": paced,
        "max": {
            "cycles_per_s": round(done[0] / elapsed, 1),
            "cycles": done[0],
            "failed": done[1],
            "workers": args.workers,
            "rest_p99_ms": round(pct(bench.rest_ms, 0.99), 2),
            "delivery_p99_ms": round(pct(bench.delivery_ms, 0.99), 2),
            "duplicates": bench.duplicates,
        },
    }


def provision(store_url: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """A tenant with the two bots ("alice", "bob": app id and secret) in the store at `store_url`."""
    from opencomms.directory import Directory
    from opencomms.store import open_store

    store = open_store(store_url)
    directory = Directory(store)
    tenant = directory.create_tenant("Bench", "bench.example")
    apps: dict[str, tuple[str, str]] = {}
    for name in ("alice", "bob"):
        app, secret = directory.create_app(tenant.id, name, permissions=["Calls.Initiate.All"])
        apps[name] = (app.id, secret)
    store.close()
    return tenant.id, apps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="paced cycles per second (phase 1)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--workers", type=int, default=48, help="concurrent cycles in phase 2")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="opencomms-bench-"))
    store_url = f"sqlite:///{tmp / 'node.db'}"
    tenant_id, apps = provision(store_url)
    port = free_port()
    ready = tmp / "ready"
    env = {
        **os.environ,
        "OPENCOMMS_LOG_LEVEL": "warning",
        "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1,::1",
        # one app creating calls as fast as it can is what this measures: lift the per-minute create quotas
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_APP": "0",
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_TENANT": "0",
    }
    node_log = (tmp / "node.log").open("wb")
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opencomms.cli.main",
            "serve",
            "--store",
            store_url,
            "--port",
            str(port),
            "--ready-file",
            str(ready),
        ],
        env=env,
        stderr=node_log,
    )
    try:
        wait_ready(node, ready, tmp / "node.log")
        base = ready.read_text()
        cpu0 = _cpu_seconds(node.pid)
        try:
            import uvloop

            result = uvloop.run(run(args, base, tenant_id, apps, store_url))
        except ImportError:
            result = asyncio.run(run(args, base, tenant_id, apps, store_url))
        cycles = result["paced"]["cycles"] + result["max"]["cycles"]
        result["node_cpu_ms_per_cycle"] = round((_cpu_seconds(node.pid) - cpu0) * 1000 / max(1, cycles), 3)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(10)
        node_log.close()
    print(json.dumps({"bench": "bot_to_bot", **result}))


if __name__ == "__main__":
    main()
