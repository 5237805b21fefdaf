"""Benchmark (issue 17 (d)): bots join one meeting at a steady rate; latency from the join POST to the bot's
`established` notification (target p99 < 50 ms at 20 joins/s).

Run: PYTHONPATH=src .venv/bin/python bench/meeting_join.py [--rate 20] [--joins 100] [--stay 0] [--bots 4]

The node runs as its own process (`opencomms serve`, SQLite store), provisioned before it starts: a tenant, the
organizer (a user), a scheduling app with OnlineMeetings.ReadWrite.All and a tenant-wide access policy, and
`--bots` bot apps with Calls.JoinGroupCall.All. The scheduler creates the meeting with
`POST /users/{id}/onlineMeetings`; each bot is the SDK's CommsClient (REST) plus a NotificationReceiver served
by a real HTTP server on loopback that validates every callback JWT. Joins go round-robin over the bots, paced at
`--rate`, each by the meeting's joinWebUrl (parsed by the SDK into chatInfo + organizerMeetingInfo). Every join
also sends a roster change to every leg already in the meeting (delta rosters by default; `--roster classic` for
whole rosters): by default every bot stays, so the meeting grows to `--joins` legs; `--stay S` makes each bot hang
up S seconds after it joined (a meeting of about rate x S legs). Prints one JSON line; the CPU figures are the
node's and this process's (every bot's REST client and callback server) per join; `p99_by_size` is the join p99 by
the meeting's size when the join was sent (`--bucket` legs per bucket: "0-99", "100-199", ...), and
`post_201_p50_p99_ms` the time to the POST's 201 (the node's REST side alone).
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
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from _common import cpu_seconds

from opencomms.sdk import ClientCredentials, CommsClient, Notification, NotificationReceiver, jwks_url_for
from opencomms.sdk.serve import serve_receiver

MEMBER = ["Calls.JoinGroupCall.All", "Calls.AccessMedia.All"]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Joins:
    """Send times by call id and established times by call id; either may come first."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.answered: list[float] = []
        """Milliseconds from each join POST to its 201."""
        self.size: dict[str, int] = {}
        """Legs in the meeting when the join was sent (joins sent before it)."""
        self.established: dict[str, float] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.notifications = 0
        self.roster_notifications = 0

    async def handle(self, note: Notification) -> None:
        now = time.perf_counter()
        self.notifications += 1
        if note.resource_url.endswith("/participants"):
            self.roster_notifications += 1
        if note.state == "established" and note.call_id not in self.established:
            self.established[note.call_id] = now
            self.done.setdefault(note.call_id, asyncio.Event()).set()

    def latencies_ms(self) -> list[float]:
        return [(self.established[c] - t) * 1000 for c, t in self.sent.items() if c in self.established]


async def run(args: argparse.Namespace, base: str, tenant: str, user_id: str, apps: dict[str, Any]) -> dict[str, Any]:
    joins = Joins()
    async with AsyncExitStack() as stack:
        scheduler_id, scheduler_secret = apps["scheduler"]
        scheduler = await stack.enter_async_context(
            CommsClient(base, ClientCredentials(base, tenant, scheduler_id, scheduler_secret))
        )
        meeting = await scheduler.create_online_meeting(user_id, subject="join benchmark")
        bots: list[tuple[CommsClient, str]] = []
        for app_id, secret in apps["bots"]:
            receiver = NotificationReceiver(app_id=app_id, jwks_url=jwks_url_for(base), handler=joins.handle)
            url = await stack.enter_async_context(serve_receiver(receiver))
            stack.push_async_callback(receiver.aclose)
            client = await stack.enter_async_context(CommsClient(base, ClientCredentials(base, tenant, app_id, secret)))
            await client.credentials.token(client._ensure_session(), f"{base}/.default")  # warm the token
            bots.append((client, f"{url}/calls"))

        failures: list[str] = []

        async def join(i: int) -> None:
            client, callback = bots[i % len(bots)]
            sent = time.perf_counter()
            try:
                call = await client.join_meeting(
                    join_web_url=meeting.join_web_url, callback_uri=callback, delta_roster=args.roster == "delta"
                )
            except Exception as exc:  # counted and reported
                failures.append(type(exc).__name__ + ": " + str(exc)[:200])
                return
            joins.sent[call.id] = sent
            joins.answered.append((time.perf_counter() - sent) * 1000)
            joins.size[call.id] = i
            event = joins.done.setdefault(call.id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), args.timeout)
            except TimeoutError:
                failures.append(f"{call.id}: no established within {args.timeout} s")
                return
            if args.stay > 0:
                await asyncio.sleep(args.stay)
                await client.delete_call(call.id)

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for i in range(args.joins):
            await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
            tasks.append(asyncio.create_task(join(i)))
        paced = time.perf_counter() - start
        await asyncio.gather(*tasks)
        await asyncio.sleep(0.5)  # let the last roster notifications arrive
        await scheduler.delete_online_meeting(user_id, meeting.id)  # ends every leg
        lat = joins.latencies_ms()
        buckets: dict[int, list[float]] = {}
        for call_id, t in joins.sent.items():
            if call_id in joins.established:
                size = joins.size[call_id] if args.stay <= 0 else 0
                buckets.setdefault(size // args.bucket, []).append((joins.established[call_id] - t) * 1000)
        by_size = {
            f"{b * args.bucket}-{(b + 1) * args.bucket - 1}": round(pct(v, 0.99), 2) for b, v in sorted(buckets.items())
        }
        return {
            "joins": len(lat),
            "failed": len(failures),
            "first_failures": failures[:3],
            "rate": args.rate,
            "achieved_rate": round((len(tasks) - 1) / paced, 1) if paced > 0 else float("nan"),
            "roster": args.roster,
            "bots": len(bots),
            "stay_s": args.stay,
            "p50_ms": round(pct(lat, 0.5), 2),
            "p90_ms": round(pct(lat, 0.9), 2),
            "p99_ms": round(pct(lat, 0.99), 2),
            "max_ms": round(max(lat), 2) if lat else float("nan"),
            "p99_by_size": by_size,
            "post_201_p50_p99_ms": [round(pct(joins.answered, 0.5), 2), round(pct(joins.answered, 0.99), 2)],
            "notifications": joins.notifications,
            "roster_notifications": joins.roster_notifications,
            "target_p99_ms": 50,
            "pass": bool(lat) and not failures and pct(lat, 0.99) < 50,
        }


def provision(store_url: str, bots: int) -> tuple[str, str, dict[str, Any]]:
    from opencomms.directory import Directory
    from opencomms.meetings.policy import AccessPolicies
    from opencomms.store import open_store

    store = open_store(store_url)
    try:
        directory = Directory(store)
        tenant = directory.create_tenant("Bench", "bench.example")
        user = directory.create_user(tenant.id, "Organizer")
        scheduler, secret = directory.create_app(tenant.id, "Scheduler", permissions=["OnlineMeetings.ReadWrite.All"])
        AccessPolicies(directory).grant(scheduler.id, None)
        apps: dict[str, Any] = {"scheduler": (scheduler.id, secret), "bots": []}
        for i in range(bots):
            app, bot_secret = directory.create_app(tenant.id, f"Joiner {i}", permissions=MEMBER)
            apps["bots"].append((app.id, bot_secret))
        return tenant.id, user.id, apps
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="joins per second")
    parser.add_argument("--joins", type=int, default=100, help="joins in all (the meeting's final size)")
    parser.add_argument("--bots", type=int, default=4, help="bot applications, each with its own HTTP server")
    parser.add_argument("--roster", choices=("delta", "classic"), default="delta")
    parser.add_argument(
        "--stay", type=float, default=0.0, help="seconds each bot stays before hanging up (0: to the end)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one join's established")
    parser.add_argument("--bucket", type=int, default=100, help="meeting sizes per p99_by_size bucket")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="opencomms-bench-"))
    store_url = f"sqlite:///{tmp / 'node.db'}"
    tenant, user_id, apps = provision(store_url, args.bots)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = tmp / "ready"
    env = {
        **os.environ,
        "OPENCOMMS_LOG_LEVEL": "warning",
        "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1,::1",
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_APP": "0",
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_TENANT": "0",
    }
    log_path = tmp / "node.log"
    with log_path.open("wb") as node_log:
        command = [sys.executable, "-m", "opencomms.cli.main", "serve", "--store", store_url]
        command += ["--port", str(port), "--ready-file", str(ready)]
        node = subprocess.Popen(
            command,
            env=env,
            stderr=node_log,
        )
        try:
            while not ready.exists():
                if node.poll() is not None:
                    raise SystemExit(log_path.read_text())
                time.sleep(0.05)
            base = ready.read_text()
            cpu0, own0 = cpu_seconds(node.pid), time.process_time()
            try:
                import uvloop

                result = uvloop.run(run(args, base, tenant, user_id, apps))
            except ImportError:
                result = asyncio.run(run(args, base, tenant, user_id, apps))
            result["node_cpu_ms_per_join"] = round((cpu_seconds(node.pid) - cpu0) * 1000 / max(1, args.joins), 2)
            # the bots (REST clients, HTTP servers validating every callback JWT) run in this process
            result["bots_cpu_ms_per_join"] = round((time.process_time() - own0) * 1000 / max(1, args.joins), 2)
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(10)
    print(json.dumps({"bench": "meeting_join", **result}))


if __name__ == "__main__":
    main()
