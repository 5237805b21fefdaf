"""Cluster benchmark: SIP calls per second through Kamailio to 1, 2 and 3 nodes on one Redis, and the node
CPU-seconds each call costs, against a single node on SQLite (SIPp straight at it) in the same run.

Run: .venv/bin/python bench/cluster_calls.py [--rate 15] [--seconds 5] [--hold-ms 1000] [--nodes 1,2,3]
     [--bot builtin|ivr] [--per-node] [--same-load] [--rounds 1]

Each configuration starts from nothing: the SQLite node (`opencomms serve`), or a local cluster as
`opencomms cluster up` starts it (redis-server, Kamailio with the generated dispatcher configuration, N nodes);
one bot (bench/sip_calls.py's built-in bot by default: answers, plays a 0.6 s WAV) pointed at node 1 only, so
requests for calls other nodes own are forwarded; SIPp (bench/sipp/uac_ivr.xml) offers --rate calls/s for
--seconds, each held --hold-ms. CPU is read from /proc before and after: the nodes' (summed), Kamailio's (all its
processes) and Redis's. Prints one line per configuration, then one JSON line with every figure. The calls/s is
what succeeded of the offered rate (the machine's 2 shared cores cap it; the CPU per call is the figure to
compare, and projects the capacity of more cores).

What is compared. A node's CPU per call falls as its load rises (the media tick, the loop's wakeups, the store's
batches are shared by more calls): the SQLite node alone costs ~45 % more per call at 10 calls/s than at 30. So at a
fixed total rate (the default) a cluster of N nodes, each carrying 1/N of the calls, is compared with a SQLite node N
times as busy as any of them: that difference is the load per node, not the cluster's overhead. `--per-node` offers
--rate to every node (each node as busy as the SQLite one), and `--same-load` adds SQLite runs at rate/N, the load each
node of N carries, to compare with at a fixed total; both are printed. The idle CPU subtracted ("net of idle") is
measured for IDLE_SECONDS from the threads' exact run time (/proc/<pid>/task/*/schedstat, nanoseconds), not from
clock ticks (10 ms each: a 2 s window of a node idling at ~12 ms/s was off by up to 40 %). `--rounds N` repeats
every configuration N times, alternating the order, and compares the medians.
"""

from __future__ import annotations

import argparse
import json
import os
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

from bench.sip_calls import NUMBER, PERMISSIONS, SCENARIO, BotProcess, _cpu_seconds, free_port, wait_ready  # noqa: E402


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its direct children (Kamailio's workers)."""
    total = _cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                total += _cpu_seconds(int(entry.name))
    return total


def _setup(store: Any, bot_choice: str, node_url: str, tmp: Path) -> BotProcess:
    from opencomms.directory import Directory

    directory = Directory(store)
    tenant = directory.create_tenant("Bench", "bench.example")
    app, secret = directory.create_app(tenant.id, "ivr", permissions=PERMISSIONS)
    directory.create_instance(app.id, "Reception", phone_number=NUMBER)
    bot = BotProcess(bot_choice, node_url, tenant.id, app.id, secret, tmp)
    directory.update_app(replace(directory.require_app(app.id), callback_url=bot.url))
    return bot


def _calls(args: argparse.Namespace, port: int, tmp: Path) -> Any:
    from tests.sipp.sipp import run_sipp

    return run_sipp(
        SCENARIO,
        "127.0.0.1",
        port,
        calls=int(args.rate * args.seconds),
        rate=args.rate,
        service=NUMBER.lstrip("+"),
        call_duration_ms=args.hold_ms,
        recv_timeout_ms=10000,
        timeout=args.seconds + 60,
        workdir=tmp / "sipp",
    )


IDLE_SECONDS = 3.0
"""Seconds the nodes' idle CPU (media clock, lease renewals, sweeps, claims, probes) is measured before the calls."""


def _run_ns(pid: int) -> int:
    """Nanoseconds the threads of `pid` alive now have run (exact, unlike the clock ticks of /proc/<pid>/stat)."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _idle_rate(pids: list[int]) -> float:
    """CPU seconds per second the nodes spend with no call."""
    ns0, t0 = sum(_run_ns(p) for p in pids), time.monotonic()
    time.sleep(IDLE_SECONDS)
    return (sum(_run_ns(p) for p in pids) - ns0) / 1e9 / (time.monotonic() - t0)


def _figures(
    name: str, args: argparse.Namespace, result: Any, wall: float, node_cpu: float, idle: float, extra: dict[str, float]
) -> dict[str, Any]:
    ok = max(1, result.successful)
    return {
        "config": name,
        "successful": result.successful,
        "failed": result.failed,
        "calls_per_s": round(result.successful / args.seconds, 1),
        "node_cpu_s": round(node_cpu, 2),
        "node_cpu_ms_per_call": round(1000 * node_cpu / ok, 2),
        "node_idle_cpu_pct": round(100 * idle, 2),
        "node_cpu_ms_per_call_net_of_idle": round(1000 * max(0.0, node_cpu - idle * wall) / ok, 2),
        **{f"{k}_cpu_ms_per_call": round(1000 * v / ok, 2) for k, v in extra.items()},
    }


def run_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    import signal
    import subprocess

    from opencomms.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="opencomms-clusterbench-sqlite-"))
    store_url = f"sqlite:///{tmp / 'node.db'}"
    http_port, sip_port = free_port(), free_port()
    store = open_store(store_url)
    bot = _setup(store, args.bot, f"http://127.0.0.1:{http_port}", tmp)
    store.close()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "OPENCOMMS_LOG_LEVEL": "warning",
        "OPENCOMMS_SIP__PORT": str(sip_port),
        "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1,::1",
    }
    ready = tmp / "ready"
    cmd = [sys.executable, "-m", "opencomms.cli.main", "serve", "--store", store_url, "--port", str(http_port)]
    node = subprocess.Popen([*cmd, "--ready-file", str(ready)], env=env, stderr=(tmp / "node.log").open("wb"))
    try:
        wait_ready(node, ready, tmp / "node.log")
        bot.go()
        time.sleep(0.5)
        idle = _idle_rate([node.pid])
        cpu0, wall0 = _cpu_seconds(node.pid), time.monotonic()
        result = _calls(args, sip_port, tmp)
        wall, cpu = time.monotonic() - wall0, _cpu_seconds(node.pid) - cpu0
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
        bot.stop()
    name = "sqlite-1" if getattr(args, "label", "") == "" else f"sqlite-1@{args.label}"
    return _figures(name, args, result, wall, cpu, idle, {})


def run_cluster(args: argparse.Namespace, nodes: int) -> dict[str, Any]:
    if args.per_node:  # every node as loaded as the SQLite node: --rate calls/s each
        args = argparse.Namespace(**{**vars(args), "rate": args.rate * nodes})
    from opencomms.cluster.local import ClusterPlan, LocalCluster
    from opencomms.store.redis_common import RedisTarget
    from opencomms.store.redis_sync import RedisStore

    tmp = Path(tempfile.mkdtemp(prefix=f"opencomms-clusterbench-{nodes}-"))
    env = (("OPENCOMMS_LOG_LEVEL", "warning"), ("OPENCOMMS_EGRESS__ALLOW", "127.0.0.1,::1"))
    plan = ClusterPlan(nodes=nodes, sip_port=0, http_port=0, node_sip_port=0, run_dir=str(tmp / "run"), env=env)
    with LocalCluster(plan) as cluster:
        store = RedisStore(RedisTarget(cluster.redis_url, "bench", prefix=plan.key_prefix))
        bot = _setup(store, args.bot, cluster.nodes[0].url, tmp)
        store.close()
        try:
            bot.go()
            time.sleep(0.5)
            assert cluster.kamailio is not None and cluster.redis is not None
            pids = [n.process.pid for n in cluster.nodes]
            idle = _idle_rate(pids)
            each0 = [_cpu_seconds(p) for p in pids]
            node0 = sum(each0)
            kam0, red0 = _tree_cpu(cluster.kamailio.pid), _cpu_seconds(cluster.redis.pid)
            wall0 = time.monotonic()
            result = _calls(args, cluster.sip_port, tmp)
            wall = time.monotonic() - wall0
            each = [round(_cpu_seconds(p) - c, 2) for p, c in zip(pids, each0, strict=True)]
            node_cpu = sum(_cpu_seconds(p) for p in pids) - node0
            extra = {
                "kamailio": _tree_cpu(cluster.kamailio.pid) - kam0,
                "redis": _cpu_seconds(cluster.redis.pid) - red0,
            }
        finally:
            bot.stop()
    row = _figures(f"cluster-{nodes}", args, result, wall, node_cpu, idle, extra)
    row["node_cpu_s_each"] = each  # node 1 first: the bot's node, which forwards to the others
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=15.0, help="calls per second SIPp offers")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of calls per configuration")
    parser.add_argument("--hold-ms", type=int, default=1000, help="how long each call lasts")
    parser.add_argument("--nodes", default="1,2,3", help="cluster sizes to run (comma-separated)")
    parser.add_argument("--bot", default="builtin", help="builtin (bench/sip_calls.py's) or ivr (examples/ivr)")
    parser.add_argument(
        "--per-node",
        action="store_true",
        help="offer --rate calls/s per node (N x --rate to a cluster of N): each node as loaded as the SQLite one "
        "(a node's CPU per call grows as its load falls: per-tick and per-wakeup costs are shared by fewer calls)",
    )
    parser.add_argument(
        "--same-load",
        action="store_true",
        help="also run the SQLite node at rate/N for each cluster of N > 1 (the load each of its nodes carries)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of every configuration, order alternating")
    parser.add_argument("--bot-process", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    plan: list[tuple[str, Any]] = [("sqlite", args)]
    plan += [("cluster", n) for n in sizes]
    if args.same_load and not args.per_node:
        for n in (n for n in sizes if n > 1):
            plan.append(("sqlite", argparse.Namespace(**{**vars(args), "rate": args.rate / n, "label": f"1/{n}"})))
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for kind, what in plan if r % 2 == 0 else plan[::-1]:
            row = run_sqlite(what) if kind == "sqlite" else run_cluster(args, what)
            row["round"] = r + 1
            runs.setdefault(row["config"], []).append(row)
            print(json.dumps(row), flush=True)
    med = {name: statistics.median(x["node_cpu_ms_per_call_net_of_idle"] for x in rows) for name, rows in runs.items()}
    idle = {name: statistics.median(x["node_idle_cpu_pct"] for x in rows) for name, rows in runs.items()}
    base = med["sqlite-1"]
    parts = [f"sqlite {base:.2f} ms"]
    for n in sizes:
        name = f"cluster-{n}"
        text = f"{name} {med[name]:.2f} ({100 * (med[name] / base - 1):+.1f} %"
        same = med.get(f"sqlite-1@1/{n}")
        if same:
            text += f"; vs sqlite at the same load {same:.2f}: {100 * (med[name] / same - 1):+.1f} %"
        parts.append(text + ")")
    how = "per node" if args.per_node else "in all"
    print(
        f"cluster_calls: {args.rate:g} calls/s {how}, {args.rounds} round(s), median node CPU per call net of idle: "
        + ", ".join(parts)
        + "; idle per node % of a core: "
        + ", ".join(f"{k} {v / (int(k.split('-')[1]) if k.startswith('cluster') else 1):.2f}" for k, v in idle.items())
    )
    summary = {
        "bench": "cluster_calls",
        "offered_rate": args.rate,
        "per_node": args.per_node,
        "seconds": args.seconds,
        "hold_ms": args.hold_ms,
        "bot": args.bot,
        "rounds": args.rounds,
        "median_ms_per_call": med,
        "overhead_vs_sqlite_pct": {k: round(100 * (v / base - 1), 1) for k, v in med.items() if k[0] == "c"},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
