"""Benchmark (a) of issue 17 through SIP, side by side with Asterisk's ConfBridge in the same run.

Run: .venv/bin/python bench/conference_sip.py [ROOMS SIZE] [--hold 60] [--capture 20] [--only node|asterisk]
     (defaults 30 10: 300 phones in 30 meetings of 10, every caller talking, as the anchor's figure)

The Asterisk anchor's `/work/shared/anchors/asterisk/bench_conference.sh ROOMS SIZE` runs twice: once against a
node (TARGET_PORT/TARGET_PID, SERVICE_PREFIX=meeting-: SIPp's room K calls `sip:meeting-K@`), once against its
own Asterisk (ConfBridge rooms confK; installed by the anchor's install.sh when missing). The node is this script
in a child process (`--node`): a TestPlatform on loopback with `[meetings] anonymous_sip_guests` on, ROOMS
meetings whose joinMeetingIds are 1..ROOMS with the lobby bypassed for everyone (made in the node's process through
the testing kit, no REST backdoor), SIP on a free UDP port; its CPU is the whole process's. Server pinned to CPU 0
and SIPp/tcpdump to CPU 1 for both (bench_conference.sh's PIN=1 for Asterisk; the node pins itself), when the
machine has two CPUs (OPENCOMMS_BENCH_NO_PIN=1: no pinning). OPENCOMMS_BENCH_MEDIA_PROCESS=1: the node's media
engine and RTP run in its media process (`[media] process`).

OPENCOMMS_BENCH_RT=N: the node's engine thread runs SCHED_FIFO N (`[media] realtime_priority`).

--sweep LEGS,...: afterwards the node alone with bench/conference_load.py's generator (one process placing the SIP
calls and sending/receiving every leg's RTP, 3 talking per meeting, kernel receive times), which holds 500+ legs on
one core where 50 SIPp instances do not; `--sweep-modes process,thread` ([media] process on/off). Its RESULT line
is printed after this script's own, which is repeated last.

Figures per server: CPU per leg-second (server cores over the window / legs, in ms), RTP within 5 ms of its 20 ms
schedule (tools/rtp_gaps.py on a tcpdump of the server's RTP), failed calls; then the node/Asterisk CPU ratio.
One result line last. The machine is shared and noisy: compare only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from _common import ANCHOR, open_meeting, stop_node, wait_ready_file  # noqa: E402

NODE_CPU, LOAD_CPU = 0, 1
PIN = not os.environ.get("OPENCOMMS_BENCH_NO_PIN") and len(os.sched_getaffinity(0)) >= 2
MEDIA_PROCESS = os.environ.get("OPENCOMMS_BENCH_MEDIA_PROCESS") == "1"
"""The node runs `[media] process = true` (its CPU figure then misses the media child's: TARGET_PID is the node)."""
REALTIME = int(os.environ.get("OPENCOMMS_BENCH_RT", "0") or 0)
"""`[media] realtime_priority` of the node (SCHED_FIFO engine thread, as media servers run; 0: off, the default)."""


async def serve_node(rooms: int, size: int, ready: Path) -> None:
    """The node under test: meetings 1..rooms (scope everyone), SIP on a free port; runs until SIGTERM."""
    from opencomms.config import MediaConfig, MeetingsConfig, NodeConfig, SipConfig
    from opencomms.testing.platform import TestPlatform

    legs = rooms * size
    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        log_level="warning",
        log_format="text",
        media=MediaConfig(max_legs=max(legs * 2 + 64, 4096), process=MEDIA_PROCESS, realtime_priority=REALTIME),
        # one load generator is one source: it may hold every call (the default share is half of max_calls); RTP
        # ports below the kernel's ephemeral range and apart from the 20000-30000 of other nodes on the machine
        sip=SipConfig(
            host="127.0.0.1",
            port=0,
            max_calls=max(1000, legs + 100),
            call_source_share=1.0,
            rtp_port_min=10000,
            rtp_port_max=19998,
        ),
        meetings=MeetingsConfig(anonymous_sip_guests=True, max_participants=max(size + 10, 100)),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with TestPlatform(config) as platform:
        for k in range(1, rooms + 1):
            open_meeting(platform, k)
        _, port = platform.sip_address
        ready.write_text(json.dumps({"port": port, "pid": os.getpid()}))  # noqa: ASYNC240 (a few bytes, once)
        await stop.wait()


def run_conference(rooms: int, size: int, env: dict[str, str], label: str) -> dict[str, object]:
    """bench_conference.sh with `env`; its result.json plus the lines it printed."""
    out = Path(tempfile.mkdtemp(prefix=f"conf-sip-{label}-"))
    env = {**os.environ, **env, "OUT_DIR": str(out / "run")}
    proc = subprocess.run(
        ["bash", str(ANCHOR / "bench_conference.sh"), str(rooms), str(size)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    result_file = out / "run" / "result.json"
    if not result_file.exists():
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{label}: bench_conference.sh left no result (rc {proc.returncode})")
    result: dict[str, object] = json.loads(result_file.read_text())
    result["text"] = (out / "run" / "result.txt").read_text()
    return result


def figures(result: dict[str, object]) -> tuple[float | None, float | None, int, int]:
    """(CPU ms per leg-second, % RTP within 5 ms, successful, failed)."""
    cores = result.get("cpu_cores_window")
    n = int(str(result.get("n") or 0))
    rtp = result.get("rtp") or {}
    pct = rtp.get("within_5ms_pct") if isinstance(rtp, dict) else None
    per_leg = None if not isinstance(cores, (int, float)) or not n else 1000.0 * cores / n
    return per_leg, pct, int(str(result.get("successful") or 0)), int(str(result.get("failed") or 0))


def bench_node(rooms: int, size: int, common: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        cmd = [sys.executable, __file__, str(rooms), str(size), "--node", str(ready)]
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        node = subprocess.Popen(cmd, env=env, cwd=ROOT)
        try:
            wait_ready_file(node, ready, 30.0)
            info = json.loads(ready.read_text())
            env2 = {**common, "TARGET_PORT": str(info["port"]), "TARGET_PID": str(info["pid"])}
            env2["SERVICE_PREFIX"] = "meeting-"
            if PIN:
                env2["LOAD_CPUS"] = str(LOAD_CPU)
            return run_conference(rooms, size, env2, "node")
        finally:
            stop_node(node)


def bench_asterisk(rooms: int, size: int, common: dict[str, str]) -> dict[str, object]:
    if not Path("/opt/asterisk-anchor").exists():
        subprocess.run(["bash", str(ANCHOR / "install.sh")], check=True)
    env = dict(common)
    if PIN:
        env["PIN"] = "1"
    return run_conference(rooms, size, env, "asterisk")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rooms", nargs="?", type=int, default=30)
    ap.add_argument("size", nargs="?", type=int, default=10)
    ap.add_argument("--hold", type=int, default=60, help="seconds all calls are held (HOLD_S)")
    ap.add_argument("--capture", type=int, default=20, help="seconds of RTP captured inside the hold (CAPTURE_S)")
    ap.add_argument("--ramp", type=int, default=30, help="calls per second while the calls come up")
    ap.add_argument("--only", choices=("node", "asterisk"), default=None)
    ap.add_argument("--sweep", default="", help="leg counts for the node-only sweep with conference_load.py")
    ap.add_argument("--sweep-modes", default="process,thread", help="media modes of the sweep")
    ap.add_argument("--sweep-seconds", type=float, default=20.0, help="measurement window of each sweep point")
    ap.add_argument("--node", metavar="READY_FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.node:
        if PIN and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {NODE_CPU})
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.run(serve_node(args.rooms, args.size, Path(args.node)))
            return
        asyncio.run(serve_node(args.rooms, args.size, Path(args.node)))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the node (or the sweep's) stops too
    common = {"HOLD_S": str(args.hold), "CAPTURE_S": str(min(args.capture, args.hold)), "RAMP": str(args.ramp)}
    results: dict[str, tuple[float | None, float | None, int, int]] = {}
    for label, run in (("node", bench_node), ("asterisk", bench_asterisk)):
        if args.only not in (None, label):
            continue
        result = run(args.rooms, args.size, common)
        sys.stdout.write(re.sub(r"(?m)^", f"[{label}] ", str(result["text"]).rstrip()) + "\n")
        results[label] = figures(result)
    legs = args.rooms * args.size
    parts = []
    for label, (per_leg, pct, ok, failed) in results.items():
        cpu = "n/a" if per_leg is None else f"{per_leg:.2f} ms CPU per leg-second"
        parts.append(f"{label}: {cpu}, RTP within 5 ms {pct} %, {ok} ok / {failed} failed")
    node_cpu, ast_cpu = results.get("node", (None,))[0], results.get("asterisk", (None,))[0]
    ratio = f"; node/Asterisk CPU ratio {node_cpu / ast_cpu:.2f}" if node_cpu and ast_cpu else ""
    head = f"RESULT conference_sip {args.rooms}x{args.size} ({legs} legs, every caller talking): "
    print(head + "; ".join(parts) + ratio, flush=True)
    if args.sweep:  # its lines, then its RESULT line, then ours again (last: what bench/run.py keeps)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import conference_load

        load_args = conference_load.parser().parse_args(
            ["--legs", args.sweep, "--modes", args.sweep_modes, "--seconds", str(args.sweep_seconds)]
        )
        _, result = conference_load.sweep(
            [int(x) for x in args.sweep.split(",") if x], load_args.modes.split(","), load_args, pin_self=True
        )
        print(result)
        print(head + "; ".join(parts) + ratio)


if __name__ == "__main__":
    main()
