"""Cluster benchmark (c): bot-to-bot cycles per second through two nodes vs one.

Run: .venv/bin/python bench/cluster_bot_to_bot.py [--rate 20] [--seconds 4] [--workers 16] [--rounds 1]

The cycle of bench/bot_to_bot.py (A creates a call to B, B answers, A hangs up, both bots told every state) on a
local cluster as `opencomms cluster up` starts it (redis-server, Kamailio, the nodes). With one node both bots talk
to it; with two, bot A's requests go to node 1 (which owns the calls) and bot B's to node 2 (its answers are
forwarded to node 1, signed), and the notifications are delivered by whichever node's dispatcher takes them off
the shared outbox stream. Rounds alternate one node and two (the machine is shared). Prints one JSON line per
round, then one result line: the best closed-loop cycles/s of each, and the node CPU per cycle (all nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]
import bot_to_bot  # noqa: E402  (bench/bot_to_bot.py: the cycle driver and its bots)
from sip_calls import _cpu_seconds  # noqa: E402

from opencomms.cluster.local import ClusterPlan, LocalCluster  # noqa: E402

ENV = (
    ("OPENCOMMS_LOG_LEVEL", "warning"),
    ("OPENCOMMS_EGRESS__ALLOW", "127.0.0.1,::1"),
    ("OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_APP", "0"),
    ("OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_TENANT", "0"),
)


def one(args: argparse.Namespace, nodes: int, run_dir: Path) -> dict[str, Any]:
    plan = ClusterPlan(nodes=nodes, sip_port=0, http_port=0, node_sip_port=0, run_dir=str(run_dir), env=ENV)
    with LocalCluster(plan) as cluster:
        tenant_id, apps = bot_to_bot.provision(cluster.redis_url)
        urls = [n.url for n in cluster.nodes]
        bases = {"alice": urls[0], "bob": urls[-1]}
        pids = [n.process.pid for n in cluster.nodes]
        cpu0 = sum(_cpu_seconds(p) for p in pids)
        assert cluster.redis is not None
        redis0 = _cpu_seconds(cluster.redis.pid)
        result = asyncio.run(bot_to_bot.run(args, urls[0], tenant_id, apps, cluster.redis_url, bases))
        node_cpu = sum(_cpu_seconds(p) for p in pids) - cpu0
        redis_cpu = _cpu_seconds(cluster.redis.pid) - redis0
    cycles = result["paced"]["cycles"] + result["max"]["cycles"]
    return {
        "nodes": nodes,
        "cycles": cycles,
        "failed": result["paced"]["failed"] + result["max"]["failed"],
        "cycles_per_s": result["max"]["cycles_per_s"],
        "paced_delivery_p99_ms": result["paced"]["delivery_p99_ms"],
        "node_cpu_ms_per_cycle": round(node_cpu * 1000 / max(1, cycles), 2),
        "redis_cpu_ms_per_cycle": round(redis_cpu * 1000 / max(1, cycles), 2),
        "duplicates": result["max"]["duplicates"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="paced cycles per second (phase 1)")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each phase, per round")
    parser.add_argument("--workers", type=int, default=16, help="concurrent cycles in phase 2")
    parser.add_argument("--rounds", type=int, default=1, help="one node then two, this many times")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="opencomms-bench-cluster-b2b-"))
    rows: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for i in range(args.rounds):
        for nodes in (1, 2):
            rows[nodes].append(one(args, nodes, tmp / f"run{nodes}-{i}"))  # a fresh Redis each time
            print(json.dumps(rows[nodes][-1]), flush=True)
    best = {n: max(r["cycles_per_s"] for r in runs) for n, runs in rows.items()}
    cpu = {
        n: round(
            sum(r["node_cpu_ms_per_cycle"] * r["cycles"] for r in runs) / max(1, sum(r["cycles"] for r in runs)), 2
        )
        for n, runs in rows.items()
    }
    failed = sum(r["failed"] for runs in rows.values() for r in runs)
    print(
        json.dumps(
            {"bench": "cluster_bot_to_bot", "cycles_per_s": best, "node_cpu_ms_per_cycle": cpu, "failed": failed}
        )
    )
    print(
        f"bot-to-bot cycles/s: one node {best[1]}, two nodes {best[2]} ({best[2] / best[1] - 1:+.0%}); node CPU per "
        f"cycle {cpu[1]} ms vs {cpu[2]} ms; failed {failed}"
    )


if __name__ == "__main__":
    main()
