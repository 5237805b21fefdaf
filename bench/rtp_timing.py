"""RTP timing without privileges, engine thread vs media process, in one run: N long G.711 calls (RTP both ways, a
prompt looping into each) on one node while SIPp places short calls into an IVR bot at --rate per second.

Run: .venv/bin/python bench/rtp_timing.py [--calls 500] [--rate 100] [--seconds 20] [--modes thread,process]

Each mode runs in a fresh node process (this script with --node MODE): a real `Node` (SQLite store, SIP on
loopback, `[media] process` false or true), no SCHED_FIFO, no CPU pinning, no nice. The N long calls are RTP
sessions of the node's own gateway bank (`node.sip.bank`, ports from `node.sip.ports`) on engine legs added by
engine commands (each SIP leg in a mix with a bot leg playing a long prompt); their far ends are one peer
process (bench/rtp_sessions.py --peer: a PCMU packet to every session every 20 ms, arrivals timed). Meanwhile
SIPp runs bench/sipp/uac_ivr.xml at --rate calls/s into the built-in bot of bench/sip_calls.py (webhook with
JWT checks, answer over REST, a prompt, SIPp's BYE after --hold-ms): HTTP, SIP, the store and notifications keep
the event loop busy, as in production.

Modes: `thread` (the engine thread), `process` (`[media] process = true`), and suffixes to either, combined in
any order: `-niceN` (the node's event loop thread lowers its own priority to nice N), `-groupniceN` (the node's
session, its scheduling group, at autogroup nice N: /proc/self/autogroup), `-sliceX` (`[media]
latency_slice_ms = X`, 0 = the kernel's slice) and, for `process`, `-spinX` (the engine thread wakes X ms early and
yields until due), e.g. `process-nice5-slice0`. None needs a privilege. With the
kernel's autogroups every session is a scheduling group of equal weight: the media child runs in one of its own;
the node shares this script's session, and so do the bot, the RTP peer and SIPp (the load) unless `--apart` gives
each a session of its own, as separate programs would have. The placement changes the figures by tens of points
(bench/RESULTS.md): compare modes only with the same placement, and a session whose group is at nice 0
(`cat /proc/self/autogroup`).

Figures, after --warmup: sent<=5ms and send p99 (the node's view: each packet's sendto against its tick's due
time, every stream of the bank, SIPp's calls included), rx<=5ms and rx p99 (the peer's view: arrival minus RTP
timestamp, relative to each stream's best), wire<=5ms and its p99 (the Asterisk anchor's own measure, as its
bench_concurrent.sh takes it for Asterisk: a --capture s tcpdump on lo of the node's RTP through its
tools/rtp_gaps.py, each stream against its own 20 ms schedule, so the place of a stream in the tick's send batch
does not count, its variation does), late/skipped ticks, SIPp's successful/failed calls, node CPU (the
media child's included). The target (issue 16): >= 99.9 % within 5 ms at 500 calls per core. Prints a table and
one JSON line per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ["OPENCOMMS_BENCH_NO_PIN"] = "1"  # the peer (rtp_sessions.py --peer) is not pinned either
os.environ["OPENCOMMS_BENCH_NICE"] = "0"


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pcts(hist: list[int]) -> tuple[float, float]:
    """(% within 5 ms, p99 in ms) of a per-ms lateness histogram."""
    total = sum(hist)
    if not total:
        return float("nan"), float("nan")
    within = 100.0 * sum(hist[:5]) / total
    running, p99 = 0, len(hist) - 1
    for ms, count in enumerate(hist):
        running += count
        if running >= 0.99 * total:
            p99 = ms
            break
    return round(within, 3), float(p99)


async def node_main(
    mode: str,
    n: int,
    rate: float,
    seconds: float,
    warmup: float,
    hold_ms: int,
    rtp_ports: str,
    apart: bool,
    capture_s: float,
) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import rtp_sessions
    import sip_calls
    from tests.sipp.sipp import run_sipp

    from opencomms.config import EgressConfig, MediaConfig, NodeConfig, SipConfig
    from opencomms.directory import Directory
    from opencomms.media.engine.commands import ConnectLeg, Play
    from opencomms.mediahost.remote import MediaProcess
    from opencomms.rtp import PCMU, Direction, NegotiatedAudio, RtpConfig, RtpSession
    from opencomms.server import Node, freeze_process_heap
    from opencomms.store import open_store

    slice_ms = re.search(r"-slice([0-9.]+)", mode)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8 * n + 4096)), hard))
    tmp = Path(tempfile.mkdtemp(prefix=f"opencomms-rtptiming-{mode}-"))
    store_url = f"sqlite:///{tmp / 'node.db'}"
    store = open_store(store_url)
    directory = Directory(store)
    tenant = directory.create_tenant("Bench", "bench.example")
    app, secret = directory.create_app(tenant.id, "ivr", permissions=sip_calls.PERMISSIONS)
    directory.create_instance(app.id, "Reception", phone_number=sip_calls.NUMBER)
    http_port, sip_port = sip_calls.free_port(), sip_calls.free_port()
    node_url = f"http://127.0.0.1:{http_port}"
    bot = sip_calls.BotProcess("builtin", node_url, tenant.id, app.id, secret, tmp, new_session=apart)
    directory.update_app(dataclasses.replace(directory.require_app(app.id), callback_url=bot.url))
    store.close()
    config = NodeConfig(
        host="127.0.0.1",
        port=http_port,
        store_url=store_url,
        log_level="warning",
        sip=SipConfig(
            host="127.0.0.1",
            port=sip_port,
            max_calls=n + 2 * int(rate * hold_ms / 1000) + 200,
            rtp_port_min=int(rtp_ports.split("-")[0]),
            rtp_port_max=int(rtp_ports.split("-")[1]),
        ),
        egress=EgressConfig(allow=("127.0.0.1", "::1")),
        media=MediaConfig(
            max_legs=max(4096, 2 * n + 1000),
            process=mode.startswith("process"),
            **({"latency_slice_ms": float(slice_ms.group(1))} if slice_ms else {}),
        ),
    )
    node = Node(config)
    if isinstance(node.engine, MediaProcess):
        spin = re.search(r"-spin([0-9.]+)", mode)
        node.engine.settings = dataclasses.replace(
            node.engine.settings, measure_lateness=True, spin=float(spin.group(1)) / 1000.0 if spin else 0.0
        )
    else:
        node.sip.bank.measure_lateness = True  # type: ignore[union-attr]
    prompt = rtp_sessions._prompt()
    async with node:
        freeze_process_heap()  # as `opencomms serve` does once its node started
        started = asyncio.Event()
        serving = asyncio.create_task(node.serve(lambda _: started.set()))
        await started.wait()
        sip = node.sip
        assert sip is not None
        nice = re.search(r"-nice([0-9]+)", mode)
        if nice:  # the loop (this thread, and threads it starts) yields to the media child
            os.setpriority(os.PRIO_PROCESS, 0, int(nice.group(1)))
        group = re.search(r"-groupnice([0-9]+)", mode)
        if group:  # this session's scheduling group (the node's) yields to the media child's
            await asyncio.to_thread(Path("/proc/self/autogroup").write_text, group.group(1))
        bot.go()
        rtp = RtpConfig(media_timeout=None)
        sessions = [RtpSession(f"sip{i}", sip.bank, sip.ports, "127.0.0.1", config=rtp) for i in range(n)]
        local = [await s.open() for s in sessions]
        gen = rtp_sessions.Peers(local, seconds + warmup + 3, new_session=apart)
        host, port = gen.address
        clips = tuple(np.roll(prompt, 4000 * k) for k in range(4))
        for i in range(n):  # one batch: in a media process the clips cross once (pickle keeps them shared)
            node.engine.call(ConnectLeg(f"bot{i}", f"c{i}", 0, False))
            node.engine.call(ConnectLeg(f"sip{i}", f"c{i}", 0, False))
            node.engine.call(Play(f"bot{i}", "prompt", (clips[i % len(clips)],)))
        media = NegotiatedAudio(
            PCMU,
            Direction.SENDRECV,
            (host, port),
            (host, port + 1),
            101,
            {0: "PCMU", 8: "PCMA", 101: "telephone-event"},
        )
        await asyncio.gather(*(s.start(media) for s in sessions))
        gen.go()
        await asyncio.sleep(warmup)
        sipp = asyncio.create_task(
            asyncio.to_thread(
                run_sipp,
                sip_calls.SCENARIO,
                "127.0.0.1",
                sip_port,
                calls=int(rate * seconds),
                rate=rate,
                service=sip_calls.NUMBER.lstrip("+"),
                call_duration_ms=hold_ms,
                recv_timeout_ms=10000,
                timeout=seconds + 60,
                workdir=tmp / "sipp",
                new_session=apart,
            )
        )
        await asyncio.sleep(1.0)  # the SIPp load is on
        hist0, stats0 = _lateness(node), node.engine.stats()
        media_pid = node.engine.pid if isinstance(node.engine, MediaProcess) else None
        cpu0 = _cpu(os.getpid()) + (_cpu(media_pid) if media_pid else 0.0)
        wall0 = time.monotonic()
        window = max(1.0, seconds - 2.0)
        pcap = tmp / "rtp_out.pcap"
        capture = await asyncio.to_thread(_capture, pcap, rtp_ports) if capture_s > 0 else None
        await asyncio.sleep(min(window, capture_s) if capture else 0.0)
        wire = await asyncio.to_thread(_stop_capture, capture, pcap) if capture else None
        await asyncio.sleep(max(0.0, window - (time.monotonic() - wall0)))
        wall = time.monotonic() - wall0
        cpu = _cpu(os.getpid()) + (_cpu(media_pid) if media_pid else 0.0) - cpu0
        media_cpu = _cpu(media_pid) if media_pid else None
        hist = [b - a for a, b in zip(hist0, _lateness(node), strict=True)]
        stats = node.engine.stats()
        bank = {k: v for k, v in node.sip.bank.stats().items() if k.endswith("_ms") or k == "streams"}
        result = await sipp
        for s in sessions:
            await s.close()
        node.stop()
        await serving
    rx = gen.results()
    bot_stats = bot.stop()
    within, p99 = _pcts(hist)
    return {
        "bench": "rtp_timing",
        "mode": mode,
        "calls": n,
        "rate": rate,
        "sent_within_5ms_pct": within,
        "send_lateness_p99_ms": p99,
        "send_lateness_hist_ms": hist[:30],
        "packets_measured": sum(hist),
        "rx_within_5ms_pct": rx["rx_within_5ms_pct"],
        "wire_within_5ms_pct": (wire or {}).get("within_5ms_pct"),
        "wire_lateness_p99_ms": (wire or {}).get("lateness_ms_p99"),
        "wire_packets": (wire or {}).get("packets"),
        "rx_lateness_p99_ms": rx["rx_lateness_p99_ms"],
        "late_ticks": stats["late_ticks"] - stats0["late_ticks"],
        "skipped_ticks": stats["skipped_ticks"] - stats0["skipped_ticks"],
        "tick_p50_ms": stats["tick_p50_ms"],
        "tick_p99_ms": stats["tick_p99_ms"],
        "media_gc": (stats.get("media_process") or {}).get("gc"),
        "engine_legs": stats.get("engine_legs"),
        "bank": bank,
        "sipp_successful": result.successful,
        "sipp_failed": result.failed,
        "node_cpu_cores": round(cpu / wall, 3),
        "media_process_cpu_s": None if media_cpu is None else round(media_cpu, 2),
        "bot_answered": bot_stats.get("answered"),
        "peer_cpu_cores": rx["peer_cpu_cores"],
    }


def _capture(pcap: Path, rtp_ports: str) -> subprocess.Popen[bytes]:
    """tcpdump on lo of the node's RTP (even source ports of its range: RTCP is on the odd ones), as the anchor's
    bench_concurrent.sh captures Asterisk's."""
    low, high = rtp_ports.split("-")
    bpf = f"udp and src host 127.0.0.1 and src portrange {low}-{high} and udp[0:2] & 1 = 0"
    cmd = ["tcpdump", "-i", "lo", "-n", "-s", "64", "-B", "65536", "-Z", "root", "-w", str(pcap), bpf]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)  # tcpdump's filter in place before the window counts
    return proc


def _stop_capture(proc: subprocess.Popen[bytes], pcap: Path) -> dict[str, Any]:
    """Stops tcpdump; the anchor's rtp_gaps analysis of what it caught (within_5ms_pct, lateness_ms_p99...)."""
    from _common import rtp_gaps

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    if not pcap.is_file():
        raise SystemExit(f"tcpdump wrote nothing: {err.decode(errors='replace')[-500:]}")
    result: dict[str, Any] = rtp_gaps().analyse(str(pcap))
    pcap.unlink()
    return result


def _lateness(node: Any) -> list[int]:
    engine = node.engine
    hist = getattr(engine, "lateness_ms", None)
    if hist is None and hasattr(engine, "engine"):  # the thread: the gateway's bank in this process
        hist = node.sip.bank.lateness_ms.tolist()
    return list(hist or [0] * 101)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--hold-ms", type=int, default=1000)
    ap.add_argument("--modes", default="thread,process")
    ap.add_argument("--rounds", type=int, default=1, help="modes run interleaved this many times (a noisy host)")
    ap.add_argument("--rtp-ports", default="20000-30000", help="the node's RTP port range (another node on the host)")
    ap.add_argument(
        "--apart", action="store_true", help="the bot, the RTP peer and SIPp each in a session of their own"
    )
    ap.add_argument(
        "--capture", type=float, default=8.0, help="seconds of tcpdump in the window, for the wire figure (0: none)"
    )
    ap.add_argument("--node", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.node:
        out = asyncio.run(
            node_main(
                args.node,
                args.calls,
                args.rate,
                args.seconds,
                args.warmup,
                args.hold_ms,
                args.rtp_ports,
                args.apart,
                args.capture,
            )
        )
        print(json.dumps(out), flush=True)
        return
    rows = []
    for mode in args.modes.split(",") * args.rounds:
        cmd = [sys.executable, __file__, "--node", mode, "--calls", str(args.calls), "--rate", str(args.rate)]
        cmd += ["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--hold-ms", str(args.hold_ms)]
        cmd += ["--rtp-ports", args.rtp_ports, "--capture", str(args.capture)] + (["--apart"] if args.apart else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=args.seconds * 4 + 300)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{") and '"rtp_timing"' in line]
        if not lines:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"{mode}: the node run failed")
        rows.append(json.loads(lines[-1]))
    print(
        f"{'mode':8} {'calls':>5} {'rate':>5} {'sent<=5ms':>10} {'p99 ms':>7} {'wire<=5ms':>10} {'p99 ms':>7} "
        f"{'rx<=5ms':>8} {'rx p99':>7} {'late':>5} {'sipp ok/fail':>12} {'cpu':>6}"
    )
    for r in rows:
        print(
            f"{r['mode']:8} {r['calls']:>5} {r['rate']:>5.0f} {r['sent_within_5ms_pct']:>10.3f} "
            f"{r['send_lateness_p99_ms']:>7.0f} {r['wire_within_5ms_pct'] or float('nan'):>10.3f} "
            f"{r['wire_lateness_p99_ms'] or float('nan'):>7.1f} "
            f"{r['rx_within_5ms_pct']:>8.3f} {r['rx_lateness_p99_ms']:>7.1f} "
            f"{r['late_ticks']:>5} {r['sipp_successful']:>6}/{r['sipp_failed']:<5} {r['node_cpu_cores']:>6.2f}"
        )
    if args.rounds > 1:
        for mode in args.modes.split(","):
            mine = [r for r in rows if r["mode"] == mode]
            sent = sum(r["sent_within_5ms_pct"] for r in mine) / len(mine)
            rx = sum(r["rx_within_5ms_pct"] for r in mine) / len(mine)
            print(f"mean of {len(mine)}: {mode}: sent<=5ms {sent:.3f} %, rx<=5ms {rx:.3f} %")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
