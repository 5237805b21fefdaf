"""RTP gateway benchmark: N concurrent G.711 calls on loopback, RTP both ways, a prompt playing into every call.

Run: .venv/bin/python bench/rtp_sessions.py [--sizes 250,500,750,1000] [--seconds 8] [--switch-ms 0]

"Per core": the node process (engine thread, event loop, every socket) is confined to CPU 0 with
os.sched_setaffinity, the traffic generator to CPU 1, both at nice -10, and the engine thread runs SCHED_FIFO,
when allowed (as media servers are run; on a shared machine this is what makes CPU 0 the node's core).
OPENCOMMS_BENCH_RT=0, OPENCOMMS_BENCH_NICE=0, OPENCOMMS_BENCH_NO_PIN=1 turn these off. A size passes when
>= 99.9 % of the RTP packets the node sent left within 5 ms of their tick's due time.

Each size runs in a fresh node process (this script with --node N): one MediaEngine on an EngineThread, one
RtpBank (paced sending, the default), N RtpSessions on 127.0.0.1 under uvloop, each bound to a SIP leg that shares
a mix with a bot leg playing a long prompt; so every tick each SIP leg hears the prompt (-> RTP out) and its
peer's audio arrives (-> jitter buffer -> engine). The peers are a second process (--peer): one UDP socket sending
a 20 ms PCMU packet to every session every 20 ms and timing what comes back. Figures, after a warm-up, with gc
frozen as a node does:

* send: the bank's send half per tick (16k->8k for all legs, G.711, headers; the sendto loop itself runs at the
  start of the next tick and is inside "tick") - us/session is that divided by N;
* flush: the bank's whole batch (send half, reading every socket, jitter buffers, decode, 8k->16k, push_inbound,
  RTCP); tick: EngineThread's figure (commands incl. the paced sendto loop, mixing, DTMF/VAD of 2N legs, taps,
  flush); late/skipped ticks during the measurement;
* sent<=5ms: packets whose sendto returned within 5 ms of their tick's due time (the node's clock);
  rx<=5ms: the peers' view, arrival minus RTP timestamp relative to each stream's best, within 5 ms;
* CPU cores: process CPU seconds per wall second (1.0 = one core); the JSON line also splits it by thread.

OPENCOMMS_BENCH_PYSPY=<path of py-spy> profiles each node during the measurement (/tmp/rtp_sessions_N.txt).

Prints a table and, last, one JSON line; `results_section()` runs it and returns RESULTS.md lines. Hook it into
bench/run.py with: `sections.append(__import__("rtp_sessions").results_section(date, where))`.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # one core's worth of BLAS, as the node pins it
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import asyncio
import gc
import json
import resource
import select
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (250, 500, 600, 750, 1000)
TARGET_PCT = 99.9
PORTS = (30000, 39998)
PROFILE = os.environ.get("OPENCOMMS_BENCH_PYSPY", "")  # path of py-spy: profile each node to /tmp/rtp_sessions_N.txt
NODE_CPU, PEER_CPU = 0, 1  # "per core": the node process on CPU 0 only, the traffic generator on CPU 1
if os.environ.get("OPENCOMMS_BENCH_NO_PIN"):
    NODE_CPU = PEER_CPU = -1


NICE = int(os.environ.get("OPENCOMMS_BENCH_NICE", "-10"))  # priority of node and peer (as a media server runs)


def _pin(cpu: int) -> None:
    """Confine this process (every thread) to one CPU, where the machine has it, at priority NICE when allowed."""
    if hasattr(os, "sched_setaffinity") and cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    except (OSError, AttributeError):
        pass  # not permitted: normal priority


# -- the peers (a separate process) ---------------------------------------------------------------------------


def peer(seconds: float) -> None:
    """Read the session ports from stdin (one JSON line), print our address, wait for a "go" line, then send and
    receive for `seconds`."""
    from opencomms.media.g711 import ulaw_encode

    targets = [("127.0.0.1", p) for p in json.loads(sys.stdin.readline())]
    _pin(PEER_CPU)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    print(json.dumps(sock.getsockname()), flush=True)
    sys.stdin.readline()  # "go": the sessions are started
    t = np.arange(160 * 50) / 8000
    voice = ulaw_encode((3000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)).tobytes()
    header = struct.Struct("!BBHII")
    bufs = [bytearray(172) for _ in targets]
    arrivals: list[tuple[float, bytes]] = []
    start = time.monotonic()
    k = 0
    send_errors = 0
    while True:
        due = start + k * 0.02
        now = time.monotonic()
        if now - start > seconds:
            break
        while now < due:
            ready, _, _ = select.select([sock], [], [], due - now)
            if ready:
                while True:
                    try:
                        data = sock.recv(2048)
                    except BlockingIOError:
                        break
                    arrivals.append((time.monotonic(), data[:12]))
            now = time.monotonic()
        chunk = voice[(k % 50) * 160 : (k % 50 + 1) * 160]
        for i, (buf, addr) in enumerate(zip(bufs, targets, strict=True)):
            header.pack_into(buf, 0, 0x80, 0, (k + i) & 0xFFFF, (k * 160) & 0xFFFFFFFF, 0x1000 + i)
            buf[12:] = chunk
            try:
                sock.sendto(buf, addr)
            except OSError:
                send_errors += 1
        k += 1
    # The receiver's view of our schedule: arrival - timestamp/8000 per stream, relative to its best (earliest).
    by_ssrc: dict[int, list[tuple[float, int]]] = {}
    for arrival, head in arrivals:
        _, pt, _, ts, ssrc = header.unpack(head)
        if pt & 0x7F == 0:
            by_ssrc.setdefault(ssrc, []).append((arrival, ts))
    lateness = []
    skip = int(len(arrivals) / max(1, len(by_ssrc)) * 0.25)  # the first quarter is warm-up
    for packets in by_ssrc.values():
        arr = np.array([a for a, _ in packets[skip:]])
        ts = np.array([t for _, t in packets[skip:]], dtype=np.int64)
        if arr.size < 2:
            continue
        ts = np.unwrap(ts.astype(np.float64), period=1 << 32)
        offset = arr - ts / 8000.0
        lateness.append(offset - offset.min())
    late = np.concatenate(lateness) if lateness else np.zeros(1)
    print(
        json.dumps(
            {
                "peer_sent": k * len(targets),
                "peer_sent_per_s": round(k * len(targets) / (time.monotonic() - start)),
                "peer_cpu_cores": round(time.process_time() / (time.monotonic() - start), 3),
                "peer_send_errors": send_errors,
                "peer_received": len(arrivals),
                "rx_within_5ms_pct": round(100.0 * float(np.mean(late <= 0.005)), 3),
                "rx_lateness_p99_ms": round(1000.0 * float(np.percentile(late, 99)), 3),
                "rx_lateness_max_ms": round(1000.0 * float(late.max()), 3),
            }
        ),
        flush=True,
    )


class Peers:
    """The peer process, driven synchronously (stdin/stdout lines)."""

    def __init__(self, ports: list[int], seconds: float, *, new_session: bool = False) -> None:
        """`new_session`: the peer in a session (so a scheduling autogroup) of its own, as another program."""
        cmd = [sys.executable, __file__, "--peer", "--seconds", str(seconds)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=new_session
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(ports) + "\n")
        self.proc.stdin.flush()
        host, port = json.loads(self.proc.stdout.readline())
        self.address: tuple[str, int] = (host, port)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def results(self) -> dict[str, float]:
        out, _ = self.proc.communicate(timeout=60)
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return result


# -- the node (this process, one size) ------------------------------------------------------------------------


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of the engine thread and of the rest of this process (Linux /proc)."""
    import threading

    engine_tid = next((t.native_id for t in threading.enumerate() if t.name == "opencomms-media"), None)
    out = {"engine": 0.0, "other": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        key = "engine" if int(task.name) == engine_tid else "other"
        out[key] += (int(fields[11]) + int(fields[12])) / tick
    return out


def _profiler(n: int, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy of this process for `seconds` (collapsed stacks of every thread to /tmp/rtp_sessions_N.txt), if
    OPENCOMMS_BENCH_PYSPY names it."""
    if not PROFILE:
        return None
    cmd = [PROFILE, "record", "-p", str(os.getpid()), "-f", "raw", "-o", f"/tmp/rtp_sessions_{n}.txt", "-r", "100"]
    return subprocess.Popen([*cmd, "--threads", "--nonblocking", "-d", str(int(seconds))], stdout=subprocess.DEVNULL)


def _prompt() -> np.ndarray:
    sys.path.insert(0, str(HERE))
    from media_engine import prompts  # bench/media_engine.py: espeak-ng prompts or speech-like audio

    _, clips = prompts()
    return np.concatenate(clips * 8)  # a minute or so: every leg plays one long clip (stored once)


async def node(n: int, seconds: float, warmup: float, switch_ms: float) -> dict[str, float | int | str]:
    from opencomms.media.clock import EngineThread
    from opencomms.media.engine import MediaEngine
    from opencomms.rtp import PCMU, Direction, NegotiatedAudio, PortAllocator, RtpBank, RtpConfig, RtpSession

    _pin(NODE_CPU)
    if switch_ms > 0:  # else EngineThread's own (2 ms)
        sys.setswitchinterval(switch_ms / 1000.0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * n + 256)), hard))
    prompt = _prompt()
    engine = MediaEngine(max(4096, 2 * n))
    rt = None if os.environ.get("OPENCOMMS_BENCH_RT", "1") == "0" else 10  # SCHED_FIFO 10 when allowed
    thread = EngineThread(engine, switch_interval=None if switch_ms > 0 else 0.002, realtime_priority=rt)
    bank = RtpBank(thread, capacity=n, measure_lateness=True)
    ports = PortAllocator(*PORTS)
    config = RtpConfig(media_timeout=None)
    sessions = [RtpSession(f"sip{i}", bank, ports, "127.0.0.1", config=config) for i in range(n)]
    local = [await s.open() for s in sessions]
    gen = Peers(local, seconds + warmup + 1)
    host, port = gen.address
    thread.start()

    clips = [np.roll(prompt, 4000 * k) for k in range(4)]  # a few shared clips: the player batches by clip

    def setup(e: MediaEngine) -> None:
        for i in range(n):
            e.add_leg(f"bot{i}")
            e.add_leg(f"sip{i}")
            e.join(f"bot{i}", f"c{i}")
            e.join(f"sip{i}", f"c{i}")
            e.play(f"bot{i}", "prompt", [clips[i % len(clips)]])

    thread.call_result(setup).result(timeout=10)
    media = NegotiatedAudio(
        PCMU, Direction.SENDRECV, (host, port), (host, port + 1), 101, {0: "PCMU", 8: "PCMA", 101: "telephone-event"}
    )
    await asyncio.gather(*(s.start(media) for s in sessions))
    gen.go()
    gc.collect()
    gc.freeze()
    gc_callbacks: list[float] = []
    gc.callbacks.append(lambda phase, info: gc_callbacks.append(time.monotonic()) if info["generation"] == 2 else None)
    await asyncio.sleep(warmup)
    bank.lateness_ms[:] = 0
    before = {"ticks": thread.ticks, "late": thread.late_ticks, "overruns": thread.overruns, "skipped": 0}
    before["skipped"] = thread.skipped_ticks
    profiler = _profiler(n, seconds)
    cpu0, wall0, threads0 = time.process_time(), time.monotonic(), _thread_cpu()
    received0 = sum(s.quality().packets_received for s in sessions)
    sent0 = sum(s.quality().packets_sent for s in sessions)
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    threads = {k: round((v - threads0.get(k, 0.0)) / wall, 3) for k, v in _thread_cpu().items()}
    received = sum(s.quality().packets_received for s in sessions) - received0
    sent = sum(s.quality().packets_sent for s in sessions) - sent0
    ts, bs = thread.stats(), bank.stats()
    if profiler is not None:
        profiler.wait(60)
    concealed = sum(s.quality().concealed_frames for s in sessions)
    drops = {
        k: sum(getattr(s.stream, k) for s in sessions)
        for k in ("foreign_packets", "invalid_packets", "unknown_payload", "send_errors", "packets_received")
    }
    drops |= {
        f"jb_{k}": sum(getattr(s.stream.jb, k) for s in sessions)
        for k in ("received", "late", "jumps", "lost", "underflows", "latency_dropped", "overflow_dropped")
    }
    for s in sessions:
        await s.close()
    thread.stop()
    rx = gen.results()
    return {
        "sessions": n,
        "send_p50_ms": bs["send_p50_ms"],
        "send_p99_ms": bs["send_p99_ms"],
        "send_per_session_us": round(1000.0 * float(bs["send_p50_ms"]) / n, 2),
        "receive_p50_ms": bs["receive_p50_ms"],
        "flush_p50_ms": bs["flush_p50_ms"],
        "flush_p99_ms": bs["flush_p99_ms"],
        "tick_p50_ms": ts["tick_p50_ms"],
        "tick_p99_ms": ts["tick_p99_ms"],
        "tick_max_ms": ts["tick_max_ms"],
        "late_ticks": ts["late_ticks"] - before["late"],
        "skipped_ticks": ts["skipped_ticks"] - before["skipped"],
        "sent_within_5ms_pct": bs.get("within_5ms_pct", 0.0),
        "rx_within_5ms_pct": rx["rx_within_5ms_pct"],
        "rx_lateness_p99_ms": rx["rx_lateness_p99_ms"],
        "packets_sent_per_s": round(sent / wall),
        "packets_received_per_s": round(received / wall),
        "concealed_frames": concealed,
        "cpu_cores": round(cpu / wall, 3),
        "engine_thread_cores": threads["engine"],
        "loop_thread_cores": threads["other"],
        "switch_ms": switch_ms,
        "realtime": thread.realtime,
        "gen2_collections": len(gc_callbacks) // 2,
        "send_delay_ms_hist": {i: int(c) for i, c in enumerate(bank.lateness_ms.tolist()) if c},
        "peer_sent_per_s": rx["peer_sent_per_s"],
        "datagrams_read": bs["datagrams"],
        **drops,
        "peer_cpu_cores": rx["peer_cpu_cores"],
    }


# -- driver -----------------------------------------------------------------------------------------------------


def run_all(sizes: list[int], seconds: float, warmup: float, switch_ms: float) -> list[dict[str, float | int | str]]:
    rows = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--node", str(n), "--seconds", str(seconds), "--warmup", str(warmup)]
        cmd += ["--switch-ms", str(switch_ms)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def table(rows: list[dict[str, float | int | str]]) -> str:
    head = (
        "sessions  send p50/p99 ms  us/session  flush p50/p99 ms  tick p50/p99/max ms  late/skipped ticks  "
        "sent<=5ms %  rx<=5ms %  pkts/s out/in  concealed  CPU cores"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['sessions']:>8}  {r['send_p50_ms']:>6}/{r['send_p99_ms']:<7}  {r['send_per_session_us']:>10}  "
            f"{r['flush_p50_ms']:>7}/{r['flush_p99_ms']:<8}  "
            f"{r['tick_p50_ms']:>6}/{r['tick_p99_ms']}/{r['tick_max_ms']:<6}  "
            f"{r['late_ticks']:>8}/{r['skipped_ticks']:<9}  {r['sent_within_5ms_pct']:>11}  "
            f"{r['rx_within_5ms_pct']:>9}  {r['packets_sent_per_s']:>6}/{r['packets_received_per_s']:<6}  "
            f"{r['concealed_frames']:>9}  {r['cpu_cores']:>9}"
        )
    return "\n".join(lines)


def best_size(rows: list[dict[str, float | int | str]]) -> int | None:
    """The largest size whose sent-within-5-ms share reached TARGET_PCT (None: none did)."""
    passed = [int(r["sessions"]) for r in rows if float(r["sent_within_5ms_pct"]) >= TARGET_PCT]
    return max(passed) if passed else None


def results_section(date: str, where: str) -> list[str]:
    """RESULTS.md lines (runs the benchmark in fresh processes)."""
    cmd = [sys.executable, "bench/rtp_sessions.py"]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True, cwd=HERE.parent).stdout
    print(out, flush=True)
    rows = json.loads(out.strip().splitlines()[-1])
    shown = "python bench/rtp_sessions.py"
    lines = [
        "## RTP gateway: concurrent G.711 calls per core, RTP both ways, a prompt playing",
        "",
        "N calls on loopback: each an RtpSession bound to a SIP leg mixed with a bot leg playing a prompt, so every",
        "20 ms each call sends a PCMU packet (the prompt) and receives one (jitter buffer -> engine, DTMF/VAD).",
        "Per core: the node process is pinned to CPU 0 (os.sched_setaffinity), the traffic generator to CPU 1,",
        "both at nice -10, the engine thread SCHED_FIFO (as media servers run; on a shared machine it keeps other",
        "processes from delaying ticks; column RT); gc frozen as a node does. Sent <= 5 ms: packets whose sendto",
        "returned within 5 ms of their tick's due time (node clock); rx <= 5 ms: the generator's view (arrival vs",
        "RTP timestamp, relative to each stream's best; the generator is not real-time, so this is noisier). Engine",
        "CPU: the media thread's CPU seconds per second (1.0 = a whole core).",
        "",
        "| calls | sent <= 5 ms | rx <= 5 ms | tick p50 / p99 | engine CPU | node CPU | late / skipped ticks | RT"
        " | target | command | date | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sessions']} | {r['sent_within_5ms_pct']} % | {r['rx_within_5ms_pct']} % | {r['tick_p50_ms']} /"
            f" {r['tick_p99_ms']} ms | {r['engine_thread_cores']} | {r['cpu_cores']} | {r['late_ticks']} /"
            f" {r['skipped_ticks']} | {'yes' if r.get('realtime') else 'no'} | >= {TARGET_PCT} % at >= 500 | `{shown}`"
            f" | {date} | {where} |"
        )
    best = best_size(rows)
    lines += ["", f"Most calls on one core with >= {TARGET_PCT} % of packets sent within 5 ms: **{best or 'none'}**."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--switch-ms", type=float, default=0.0, help="GIL switch interval (ms; 0: the node's)")
    parser.add_argument("--node", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer(args.seconds)
        return
    if args.node:
        try:
            import uvloop

            run = uvloop.run
        except ImportError:  # pragma: no cover
            run = asyncio.run
        print(json.dumps(run(node(args.node, args.seconds, args.warmup, args.switch_ms))))
        return
    rows = run_all([int(x) for x in args.sizes.split(",")], args.seconds, args.warmup, args.switch_ms)
    switch = args.switch_ms or 2.0
    print(f"{args.seconds:.0f} s per size after {args.warmup:.0f} s warm-up; GIL switch interval {switch} ms")
    print(table(rows))
    print(f"most calls with >= {TARGET_PCT} % sent within 5 ms: {best_size(rows)}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
