"""Benchmark: bot-to-bot cycles per node CPU-second with the node's state on Redis vs on its embedded SQLite.

The same run as bench/bot_to_bot.py (a paced phase, then --workers cycles back to back), against a node on
`sqlite:///…` and then a node on `redis://…` (a throwaway redis-server started here, no persistence), --rounds
times alternately in one run (the machine is shared: alternating spreads its noise over both). Reports, per store,
the best closed-loop cycles/s, the node's CPU milliseconds per cycle, cycles per node CPU-second, and for Redis the
redis-server's own CPU per cycle; the last line compares the two.
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
from pathlib import Path
from typing import Any

PROFILE: list[str] = []
"""Interpreter options before `-m` (e.g. cProfile while investigating)."""
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "src")]
import bot_to_bot  # noqa: E402  (bench/bot_to_bot.py: the cycle driver and its bots)
import redis  # noqa: E402
from sip_calls import _cpu_seconds, free_port, wait_ready  # noqa: E402

from opencomms.testing.redis import RedisServer  # noqa: E402


def one(args: argparse.Namespace, store_url: str, tmp: Path, extra_pid: int | None) -> dict[str, Any]:
    """Provision two bots on `store_url`, run a node on it, drive the cycles; the figures of this store."""
    tenant_id, apps = bot_to_bot.provision(store_url)
    port = free_port()
    ready = tmp / f"ready-{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE.parent / "src"),
        "OPENCOMMS_LOG_LEVEL": "warning",
        "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1,::1",
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_APP": "0",
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_TENANT": "0",
        "OPENCOMMS_CLUSTER__NODE_ID": "bench-node",
        "OPENCOMMS_SIP__PORT": "0",  # no SIP in this bench: never collide with a node on 5060
    }
    log = (tmp / f"node-{port}.log").open("wb")
    argv = [sys.executable, *PROFILE, "-m", "opencomms.cli.main", "serve", "--store", store_url, "--port", str(port)]
    node = subprocess.Popen([*argv, "--ready-file", str(ready)], env=env, stderr=log)
    try:
        wait_ready(node, ready, tmp / f"node-{port}.log")
        cpu0 = _cpu_seconds(node.pid)
        extra0 = _cpu_seconds(extra_pid) if extra_pid else 0.0
        result = asyncio.run(bot_to_bot.run(args, ready.read_text(), tenant_id, apps, store_url))
        node_cpu = _cpu_seconds(node.pid) - cpu0
        extra_cpu = (_cpu_seconds(extra_pid) - extra0) if extra_pid else 0.0
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(10)
        log.close()
    cycles = result["paced"]["cycles"] + result["max"]["cycles"]
    return {
        "cycles": cycles,
        "failed": result["paced"]["failed"] + result["max"]["failed"],
        "cycles_per_s": result["max"]["cycles_per_s"],
        "delivery_p99_ms": result["max"]["delivery_p99_ms"],
        "node_cpu_ms_per_cycle": round(node_cpu * 1000 / max(1, cycles), 3),
        "cycles_per_node_cpu_s": round(cycles / node_cpu, 1) if node_cpu else None,
        "redis_cpu_ms_per_cycle": round(extra_cpu * 1000 / max(1, cycles), 3) if extra_pid else None,
        "duplicates": result["max"]["duplicates"],
    }


def merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one store as one figure: totals, CPU per cycle over all cycles, the best cycles/s."""
    cycles = sum(r["cycles"] for r in runs)
    node_ms = sum(r["node_cpu_ms_per_cycle"] * r["cycles"] for r in runs)
    redis_ms = [r["redis_cpu_ms_per_cycle"] * r["cycles"] for r in runs if r["redis_cpu_ms_per_cycle"] is not None]
    return {
        "rounds": len(runs),
        "cycles": cycles,
        "failed": sum(r["failed"] for r in runs),
        "best_cycles_per_s": max(r["cycles_per_s"] for r in runs),
        "node_cpu_ms_per_cycle": round(node_ms / max(1, cycles), 3),
        "cycles_per_node_cpu_s": round(cycles * 1000 / node_ms, 1) if node_ms else None,
        "redis_cpu_ms_per_cycle": round(sum(redis_ms) / max(1, cycles), 3) if redis_ms else None,
        "per_round_node_cpu_ms": [r["node_cpu_ms_per_cycle"] for r in runs],
        "duplicates": sum(r["duplicates"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="paced cycles per second (phase 1)")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each phase, per store and round")
    parser.add_argument("--workers", type=int, default=16, help="concurrent cycles in phase 2")
    parser.add_argument("--rounds", type=int, default=2, help="SQLite then Redis, this many times (a shared machine)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="opencomms-bench-redis-"))
    rounds: dict[str, list[dict[str, Any]]] = {"sqlite": [], "redis": []}
    with RedisServer() as server:
        assert server.process is not None
        for i in range(args.rounds):
            rounds["sqlite"].append(one(args, f"sqlite:///{tmp / f'node{i}.db'}", tmp, None))
            redis.Redis.from_url(server.url).flushdb()  # each round provisions its bots afresh
            rounds["redis"].append(one(args, server.url, tmp, server.process.pid))
    figures = {name: merged(runs) for name, runs in rounds.items()}
    for name, fig in figures.items():
        print(json.dumps({"bench": "redis_store", "store": name, **fig}))
    lite, red = figures["sqlite"], figures["redis"]
    overhead = red["node_cpu_ms_per_cycle"] / lite["node_cpu_ms_per_cycle"] - 1 if lite["node_cpu_ms_per_cycle"] else 0
    print(
        f"bot-to-bot per node CPU-second: sqlite {lite['cycles_per_node_cpu_s']}, redis {red['cycles_per_node_cpu_s']}"
        f" (node CPU per cycle {overhead:+.0%}; redis-server adds {red['redis_cpu_ms_per_cycle']} ms per cycle)"
    )


if __name__ == "__main__":
    main()
