"""Benchmark: the cost of Prometheus metrics on the hot path, metrics off vs on in one run.

Runs bench/bot_to_bot.py (closed-loop bot-to-bot call cycles: cycles/s) and bench/sip_calls.py (SIPp calls into
the built-in bot at a fixed rate: completed calls/s and the node's CPU time per call) as they are, with the node
started with `OPENCOMMS_METRICS__ENABLED=false` and `=true`, in the order off, on, on, off (per round) so that a
drift of the machine cancels out. With metrics on, every REST request, SIP message, notification and finished
leg is observed; nothing scrapes (a scrape's own cost is not on the hot path, see the `scrape_ms` line).

Prints one line per run and a last JSON line with the ratios (on/off): cycles/s and SIP CPU per call; the
target is a cost under 3 %.

Run: .venv/bin/python bench/metrics_cost.py [--seconds 5] [--sip-seconds 8] [--sip-rate 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDER = (False, True, True, False)


def _run(script: str, args: list[str], metrics: bool) -> dict[str, Any]:
    env = {
        **os.environ,
        "OPENCOMMS_METRICS__ENABLED": "true" if metrics else "false",
        # the per-minute call quotas (600 / app) would bound the closed loop, not the node's CPU
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_APP": "0",
        "OPENCOMMS_QUOTAS__CALLS_PER_MINUTE_PER_TENANT": "0",
    }
    cmd = [sys.executable, str(HERE / script), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bot_to_bot(seconds: float, workers: int, metrics: bool) -> tuple[float, float]:
    r = _run("bot_to_bot.py", ["--seconds", str(seconds), "--rate", "10", "--workers", str(workers)], metrics)
    rate, cpu_ms = float(r["max"]["cycles_per_s"]), float(r["node_cpu_ms_per_cycle"])
    print(
        f"bot_to_bot metrics={'on ' if metrics else 'off'} cycles/s={rate:.1f} failed={r['max']['failed']} "
        f"node_cpu_ms_per_cycle={cpu_ms:.3f}"
    )
    return rate, cpu_ms


def sip_calls(seconds: float, rate: float, hold_ms: int, metrics: bool) -> tuple[float, float]:
    args = ["--seconds", str(seconds), "--rate", str(rate), "--hold-ms", str(hold_ms), "--bot", "builtin"]
    r = _run("sip_calls.py", args, metrics)
    per_s = float(r["completed_per_s"])
    cpu_ms = 1000.0 * float(r["node_cpu_cores"]) * float(r["wall_s"]) / max(1, int(r["successful"]))
    print(
        f"sip_calls  metrics={'on ' if metrics else 'off'} completed/s={per_s:.1f} failed={r['failed']} "
        f"node_cpu_ms_per_call={cpu_ms:.2f}"
    )
    return per_s, cpu_ms


def scrape_ms() -> float:
    """Time to render one /metrics body on a started node (in this process, idle, SIP listening on loopback)."""
    import asyncio

    from opencomms.config import NodeConfig, SipConfig
    from opencomms.server import Node

    async def measure() -> float:
        config = NodeConfig(store_url="memory://", port=0, log_level="warning", sip=SipConfig(port=0))
        async with Node(config) as node:
            assert node.metrics is not None
            node.metrics.http_request("GET", "healthz", 200, 0.001)
            t0 = time.perf_counter()
            for _ in range(20):
                node.metrics.render()
            return (time.perf_counter() - t0) / 20 * 1000.0

    return asyncio.run(measure())


def observers_us_per_cycle(n: int = 20000) -> float:
    """In-process: the observer calls one bot-to-bot cycle makes (3 REST requests, 8 notifications staged and
    delivered, 2 of them call ends), in microseconds: the hot-path cost without the machine's noise."""
    import orjson

    from opencomms.calling import notifications as notes
    from opencomms.domain import results
    from opencomms.metrics import NodeMetrics, Sources
    from opencomms.store.base import OutboxEntry

    def entry(change: str, data: dict[str, Any]) -> OutboxEntry:
        body = orjson.dumps(notes.envelope(change, "/communications/calls/3f2504e0", data))
        return OutboxEntry("e", "k", "a", "t", "http://127.0.0.1/x", body, 0.0, 0.0)

    m = NodeMetrics(Sources(health=dict))
    ended = {"state": "terminated", "resultInfo": results.ENDED_BY_DELETE.to_wire()}
    staged = [entry("created", {"state": "incoming"}), *(entry("updated", {"state": "established"}),) * 5]
    staged += [entry("deleted", ended)] * 2
    requests = [("POST", "communications/calls", 201), ("POST", "communications/calls/{id}/answer", 202)]
    requests.append(("DELETE", "communications/calls/{id}", 204))
    t0 = time.perf_counter()
    for _ in range(n):
        for method, route, status in requests:
            m.http_request(method, route, status, 0.001)
        for e in staged:
            m.notification_staged(e)
            m.notification_delivered(0.002)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="bot-to-bot: seconds of each phase of a run")
    parser.add_argument("--workers", type=int, default=32, help="bot-to-bot: concurrent cycles")
    parser.add_argument("--sip-seconds", type=float, default=8.0, help="SIP: seconds SIPp starts calls")
    parser.add_argument("--sip-rate", type=float, default=20.0, help="SIP: calls per second offered")
    parser.add_argument("--hold-ms", type=int, default=500, help="SIP: call hold time")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of off, on, on, off")
    parser.add_argument("--skip-sip", action="store_true", help="bot-to-bot only")
    args = parser.parse_args()
    b2b: dict[bool, list[float]] = {False: [], True: []}
    b2b_cpu: dict[bool, list[float]] = {False: [], True: []}
    sip_rate: dict[bool, list[float]] = {False: [], True: []}
    sip_cpu: dict[bool, list[float]] = {False: [], True: []}
    print("warm-up run (discarded): the first node of a run is faster than the rest on a shared machine")
    bot_to_bot(args.seconds, args.workers, True)
    for _ in range(args.rounds):
        for metrics in ORDER:
            rate, cpu_ms = bot_to_bot(args.seconds, args.workers, metrics)
            b2b[metrics].append(rate)
            b2b_cpu[metrics].append(cpu_ms)
        if not args.skip_sip:
            for metrics in ORDER:
                per_s, cpu = sip_calls(args.sip_seconds, args.sip_rate, args.hold_ms, metrics)
                sip_rate[metrics].append(per_s)
                sip_cpu[metrics].append(cpu)

    def ratio(d: dict[bool, list[float]]) -> float | None:
        return round(sum(d[True]) / sum(d[False]), 4) if d[False] and sum(d[False]) else None

    def pairs(d: dict[bool, list[float]]) -> list[float]:
        """on/off of each adjacent pair (off,on then on,off in each round): neighbours share the machine's state."""
        return [round(on / off, 3) for on, off in zip(d[True], d[False], strict=True) if off]

    result: dict[str, Any] = {
        "bench": "metrics_cost",
        "b2b_cycles_per_s_off": round(sum(b2b[False]) / len(b2b[False]), 1),
        "b2b_cycles_per_s_on": round(sum(b2b[True]) / len(b2b[True]), 1),
        "b2b_on_off_ratio": ratio(b2b),
        "b2b_pair_ratios": pairs(b2b),
        "b2b_node_cpu_ms_per_cycle_off": round(sum(b2b_cpu[False]) / len(b2b_cpu[False]), 3),
        "b2b_node_cpu_ms_per_cycle_on": round(sum(b2b_cpu[True]) / len(b2b_cpu[True]), 3),
        "b2b_cpu_per_cycle_on_off_ratio": ratio(b2b_cpu),
        "b2b_cpu_pair_ratios": pairs(b2b_cpu),
    }
    if not args.skip_sip:
        result |= {
            "sip_completed_per_s_on_off_ratio": ratio(sip_rate),
            "sip_cpu_ms_per_call_off": round(sum(sip_cpu[False]) / len(sip_cpu[False]), 3),
            "sip_cpu_ms_per_call_on": round(sum(sip_cpu[True]) / len(sip_cpu[True]), 3),
            "sip_cpu_per_call_on_off_ratio": ratio(sip_cpu),
            "sip_cpu_pair_ratios": pairs(sip_cpu),
        }
    result["observers_us_per_b2b_cycle"] = round(observers_us_per_cycle(), 2)
    if b2b[False]:  # a saturated node's event loop is one busy core: the observers' share of it at that rate
        result["observers_share_of_saturated_loop"] = round(
            result["observers_us_per_b2b_cycle"] * 1e-6 / (1.0 / result["b2b_cycles_per_s_off"]), 4
        )
    result["scrape_ms"] = round(scrape_ms(), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
