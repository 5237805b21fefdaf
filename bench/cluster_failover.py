"""Cluster benchmark (b), failover: the time from `kill -9` of a node to every affected bot being told, and the
notifications lost, over --cycles kill cycles.

Run: .venv/bin/python bench/cluster_failover.py [--nodes 2] [--cycles 3] [--calls 4] [--lease 3.0]

Starts a local cluster as `opencomms cluster up` does (redis-server, Kamailio, --nodes nodes; the node defaults
for the lease, claim and poll times unless given). One bot ("desk", a phone number) runs here; it answers every
call through the last node (requests for calls the victim owns are forwarded to it). Each cycle: --calls phone
calls (the virtual caller: SIP and RTP) go straight to the victim (node 1), so their dialogs and media live there,
and are answered; then the victim is killed (SIGKILL) and the clock runs until the bot has heard every call end;
then the victim is started again (same node id and ports) for the next cycle. Per call: the bot must have been
told created, established and terminated (resultInfo 503/9134, the lost node) once at least; anything missing
within --wait seconds counts as lost. Prints one line per cycle, then one result line: p50/p99 of the time to tell
each bot, p50/p99/max of the time until every bot of a cycle was told, and the notifications lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from opencomms.cluster.local import ClusterPlan, LocalCluster  # noqa: E402
from opencomms.directory import Directory  # noqa: E402
from opencomms.store.redis_common import RedisTarget  # noqa: E402
from opencomms.store.redis_sync import RedisStore  # noqa: E402
from opencomms.testing import GraphClient, RecordingBot  # noqa: E402
from opencomms.testing.caller import VirtualCaller  # noqa: E402

NUMBER = "+14255550188"
PERMISSIONS = ["Calls.Initiate.All", "Calls.AccessMedia.All"]
EXPECTED = ("created", "established", "terminated")
"""What the bot must hear of each affected call."""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Desk:
    """The bot: records notifications and answers every incoming call through `answer_url`."""

    def __init__(self, bot: RecordingBot, client: GraphClient) -> None:
        self.bot = bot
        self.client = client
        self.answered: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._answers: set[asyncio.Task[int]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._answer_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _answer_loop(self) -> None:
        while True:
            for n in list(self.bot.notifications):
                if n.change_type == "created" and n.call_id not in self.answered:
                    self.answered.add(n.call_id)
                    task = asyncio.create_task(self.client.answer(n.call_id))
                    self._answers.add(task)
                    task.add_done_callback(self._answers.discard)
            await asyncio.sleep(0.02)


def told(bot: RecordingBot, call_id: str) -> set[str]:
    """What the bot heard of one call: created, and the states it was told."""
    heard = set()
    for n in bot.for_call(call_id):
        if n.change_type == "created":
            heard.add("created")
        if n.state in ("established", "terminated"):
            heard.add(str(n.state))
    return heard


async def cycle(args: argparse.Namespace, cluster: LocalCluster, desk: Desk, index: int) -> dict[str, Any]:
    victim = cluster.nodes[0]
    bot = desk.bot
    before = {n.call_id for n in bot.notifications}
    caller = VirtualCaller(("127.0.0.1", victim.sip_port), number=f"+1555010{index:04d}")
    await caller.start()
    try:
        calls = [await caller.dial(NUMBER) for _ in range(args.calls)]
        await asyncio.gather(*(c.wait_answered(timeout=15) for c in calls))

        def new_calls() -> list[str]:
            return sorted({n.call_id for n in bot.notifications if n.change_type == "created"} - before)

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ids = new_calls()
            if len(ids) >= args.calls and all("established" in told(bot, c) for c in ids):
                break
            await asyncio.sleep(0.05)
        ids = new_calls()
        killed = time.monotonic()
        await asyncio.to_thread(cluster.kill_node, 0)
        deadline = killed + args.wait
        while time.monotonic() < deadline and not all("terminated" in told(bot, c) for c in ids):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        delays: list[float] = []
        lost = 0
        wrong_result = 0
        for call_id in ids:
            heard = told(bot, call_id)
            lost += sum(1 for what in EXPECTED if what not in heard)
            ends = [n for n in bot.for_call(call_id) if n.state == "terminated"]
            if ends:
                delays.append(ends[0].received_at - killed)
                info = (ends[0].resource_data or {}).get("resultInfo") or {}
                if (info.get("code"), info.get("subcode")) != (503, 9134):
                    wrong_result += 1
        lost += max(0, args.calls - len(ids)) * len(EXPECTED)
        await asyncio.to_thread(cluster.restart_node, 0)
    finally:
        await asyncio.wait_for(caller.close(), 30)
    return {
        "cycle": index + 1,
        "calls": len(ids),
        "told_ms": [round(1000 * d) for d in delays],
        "all_told_ms": round(1000 * max(delays)) if len(delays) == len(ids) and delays else None,
        "lost": lost,
        "wrong_result": wrong_result,
    }


async def run(args: argparse.Namespace, cluster: LocalCluster) -> dict[str, Any]:
    store = RedisStore(RedisTarget(cluster.redis_url, "bench", prefix=cluster.plan.key_prefix))
    directory = Directory(store)
    tenant = directory.create_tenant("Bench", "bench.example")
    app, secret = directory.create_app(tenant.id, "desk", permissions=PERMISSIONS)
    directory.create_instance(app.id, "Desk", phone_number=NUMBER)
    answer_node = cluster.nodes[-1].url
    bot = RecordingBot(app_id=app.id, jwks_url=f"{answer_node}/common/discovery/v2.0/keys")
    await bot.start("/desk/calls")
    directory.update_app(replace(directory.require_app(app.id), callback_url=bot.url))
    store.close()
    rows: list[dict[str, Any]] = []
    async with GraphClient(answer_node, tenant.id, app.id, secret) as client:
        desk = Desk(bot, client)
        desk.start()
        try:
            for i in range(args.cycles):
                row = await cycle(args, cluster, desk, i)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            await desk.stop()
            await bot.stop()
    told_s = [d / 1000 for r in rows for d in r["told_ms"]]
    all_told = [r["all_told_ms"] / 1000 for r in rows if r["all_told_ms"] is not None]
    return {
        "bench": "cluster_failover",
        "nodes": args.nodes,
        "cycles": len(rows),
        "calls_per_cycle": args.calls,
        "lease_s": args.lease,
        "affected_calls": sum(r["calls"] for r in rows),
        "told_p50_s": round(statistics.median(told_s), 2) if told_s else None,
        "told_p99_s": round(pct(told_s, 0.99), 2) if told_s else None,
        "all_told_p50_s": round(statistics.median(all_told), 2) if all_told else None,
        "all_told_p99_s": round(pct(all_told, 0.99), 2) if all_told else None,
        "all_told_max_s": round(max(all_told), 2) if all_told else None,
        "cycles_not_all_told": len(rows) - len(all_told),
        "notifications_expected": sum(r["calls"] for r in rows) * len(EXPECTED),
        "notifications_lost": sum(r["lost"] for r in rows),
        "wrong_result_info": sum(r["wrong_result"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2, help="cluster size (node 1 is the one killed)")
    parser.add_argument("--cycles", type=int, default=3, help="kill cycles")
    parser.add_argument("--calls", type=int, default=4, help="phone calls up on the victim in each cycle")
    parser.add_argument("--lease", type=float, default=0.0, help="[cluster] lease in seconds (0: the node default)")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds after the kill before a call counts lost")
    args = parser.parse_args()
    if args.nodes < 2:
        parser.error("--nodes: at least 2 (one dies, another takes over)")
    tmp = Path(tempfile.mkdtemp(prefix="opencomms-failover-"))
    env = [("OPENCOMMS_LOG_LEVEL", "warning"), ("OPENCOMMS_EGRESS__ALLOW", "127.0.0.1,::1")]
    if args.lease:
        lease = args.lease
        env += [("OPENCOMMS_CLUSTER__LEASE", str(lease)), ("OPENCOMMS_CLUSTER__CLAIM_IDLE", str(lease / 2))]
        env += [("OPENCOMMS_CLUSTER__POLL", str(min(0.5, lease / 6)))]
    else:
        from opencomms.config import ClusterConfig

        args.lease = ClusterConfig().lease
    plan = ClusterPlan(
        nodes=args.nodes, sip_port=0, http_port=0, node_sip_port=0, run_dir=str(tmp / "run"), env=tuple(env)
    )
    with LocalCluster(plan) as cluster:
        summary = asyncio.run(run(args, cluster))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
