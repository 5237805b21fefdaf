"""Benchmark (a) of issue 17 with a light load generator: conference legs per core through SIP, node only.

Run: .venv/bin/python bench/conference_load.py [--legs 300,500,600] [--size 10] [--talkers 3]
     [--modes process,thread] [--seconds 20] [--settle 5] [--rate 50]

Why: the Asterisk anchor's bench_conference.sh (bench/conference_sip.py) runs one SIPp per room; 50 SIPp instances
playing RTP do not hold on one core, so it cannot reach the 500-leg point. This generator is ONE process on the
other CPU: it places the calls itself (INVITE with an SDP offer of PCMU to `sip:meeting-K@` as the anchor's
scenario, ACK, BYE at the end, 200 to whatever the node asks inside the dialog), then every 20 ms sends one PCMU
packet from each leg's own UDP socket (the port its SDP offered): speech on `--talkers` legs of each room (espeak-ng
speech, each talker at another offset), µ-law silence on the others. It drains every socket and keeps each packet's
KERNEL receive time (SO_TIMESTAMPNS: on loopback the time the node's sendto put it on the wire), so the generator's
own scheduling delays do not count as node lateness; the packets of the window go through the anchor's
tools/rtp_gaps.py analysis (the one bench_conference.sh uses for Asterisk and the node): % within 5 ms of each
stream's 20 ms schedule.

Each (mode, legs) point is a fresh node: bench/conference_sip.py's node (`--node`: a TestPlatform with meetings
1..ROOMS by joinMeetingId, anonymous SIP guests, lobby bypassed), pinned to CPU 0 (its media child inherits it),
the generator pinned to CPU 1 (OPENCOMMS_BENCH_NO_PIN=1: no pinning). Modes: `process` = `[media] process = true`
(engine and RTP in the node's media child), `thread` = the engine thread in the node's process. Node CPU = the node
process and its children (the media child) over the window. A point passes when >= 99.9 % of the node's packets
left within 5 ms; legs per core = the largest passing point of a mode. The generator prints its own CPU (about
0.1-0.25 cores at 500-600 legs; 0.28 cores sending and receiving 35,000 packets/s for 700 legs against itself).
OPENCOMMS_BENCH_RT=N: the node's engine thread runs SCHED_FIFO N (see conference_sip.py). On a loaded machine the
node pinned to CPU 0 is starved and sends late or not at all: check `uptime` first (the figure needs a quiet one).
One RESULT line last; `results_lines()` returns it for bench/conference_sip.py --sweep.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from _common import rtp_gaps, stop_node, wait_ready_file  # noqa: E402

NODE_CPU, LOAD_CPU = 0, 1
PIN = not os.environ.get("OPENCOMMS_BENCH_NO_PIN") and len(os.sched_getaffinity(0)) >= 2
TARGET_PCT = 99.9
PREFIX = "meeting-"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
CACHE = Path(tempfile.gettempdir()) / "opencomms-bench-cache"
SILENCE = b"\xff" * 160
RTP = struct.Struct("!BBHII")


# -- caller audio -------------------------------------------------------------------------------------------------


def speech() -> bytes:
    """8 kHz µ-law speech: espeak-ng + sox as the anchor makes caller.pcap (cached), else a speech-like signal."""
    target = CACHE / "caller.ulaw"
    if target.exists() and target.stat().st_size > 8000:
        return target.read_bytes()
    CACHE.mkdir(parents=True, exist_ok=True)
    if shutil.which("espeak-ng") and shutil.which("sox"):
        wav = CACHE / "caller.src.wav"
        text = "Hello. I would like to check the balance of my account, please. I am calling about my last invoice."
        subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), text], check=True, capture_output=True)
        subprocess.run(["sox", "-V1", str(wav), "-r", "8000", "-c", "1", "-t", "ul", str(target), "pad", "0", "1"])
        if target.exists() and target.stat().st_size > 8000:
            return target.read_bytes()
    import numpy as np

    from opencomms.media.g711 import ulaw_encode

    t = np.arange(8000 * 6) / 8000
    envelope = (np.sin(2 * np.pi * 0.7 * t) > 0).astype(np.float64)  # talkspurts and pauses
    voice = 4000 * envelope * (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 720 * t))
    return bytes(ulaw_encode(voice.astype(np.int16)).tobytes())


# -- SIP (minimal UAC, hand-built messages) -----------------------------------------------------------------------


class Leg:
    """One phone: its dialog and its RTP socket."""

    __slots__ = (
        "answered",
        "branch",
        "call_id",
        "contact",
        "ended",
        "failed",
        "index",
        "invite",
        "next_retry",
        "remote",
        "retries",
        "room",
        "rport",
        "seq",
        "sock",
        "tag",
        "talker",
        "to",
    )

    def __init__(self, index: int, room: int, talker: bool, sock: socket.socket) -> None:
        self.index, self.room, self.talker, self.sock = index, room, talker, sock
        self.rport = sock.getsockname()[1]
        self.call_id = f"{random.getrandbits(64):016x}-{index}@conference-load"
        self.tag = f"{random.getrandbits(32):08x}"
        self.branch = ""
        self.to = ""
        self.contact = ""
        self.invite = b""
        self.remote: tuple[str, int] | None = None
        self.answered = self.failed = self.ended = False
        self.next_retry = 0.0
        self.retries = 0
        self.seq = random.getrandbits(16)


def _branch() -> str:
    return f"z9hG4bK{random.getrandbits(48):012x}"


def _header(msg: str, name: str) -> str:
    m = re.search(rf"(?im)^{name}\s*:\s*(.*?)\r?$", msg)
    return m.group(1).strip() if m else ""


class Generator:
    """The calls and their RTP; `run` drives it all from one thread."""

    def __init__(self, node: tuple[str, int], rooms: int, size: int, talkers: int, rate: float) -> None:
        self.node, self.rooms, self.size, self.rate = node, rooms, size, rate
        self.here = "127.0.0.1"
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sip.bind((self.here, 0))
        self.sip.setblocking(False)
        self.sip_port = self.sip.getsockname()[1]
        self.legs: list[Leg] = []
        self.by_call: dict[str, Leg] = {}
        self.by_fd: dict[int, Leg] = {}
        for i in range(rooms * size):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.bind((self.here, 0))
            s.setblocking(False)
            leg = Leg(i, i // size + 1, i % size < talkers, s)
            self.legs.append(leg)
            self.by_call[leg.call_id] = leg
            self.by_fd[s.fileno()] = leg
        self.voice = speech()
        self.frames = len(self.voice) // 160
        self.poll = select.epoll()
        self.poll.register(self.sip.fileno(), select.EPOLLIN)
        for fd in self.by_fd:
            self.poll.register(fd, select.EPOLLIN)
        self.recording = False
        self.rx_time = array.array("q")
        self.rx_leg = array.array("i")
        self.rx_head = bytearray()
        self.rx_src: dict[int, int] = {}
        self.received = 0
        self.sent = 0
        self.send_errors = 0
        self.in_dialog = 0
        self.failures: dict[str, int] = {}
        """Final responses >= 300 to our INVITEs, by status line."""

    # -- messages --
    def _invite(self, leg: Leg) -> bytes:
        host, port = self.node
        uri = f"sip:{PREFIX}{leg.room}@{host}:{port}"
        sdp = (
            f"v=0\r\no=load {leg.index} 1 IN IP4 {self.here}\r\ns=-\r\nc=IN IP4 {self.here}\r\nt=0 0\r\n"
            f"m=audio {leg.rport} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        )
        leg.branch = _branch()
        return (
            f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {self.here}:{self.sip_port};branch={leg.branch};rport\r\n"
            f'From: "load" <sip:+1425555{leg.index:04d}@{self.here}:{self.sip_port}>;tag={leg.tag}\r\n'
            f"To: <{uri}>\r\nCall-ID: {leg.call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:load@{self.here}:{self.sip_port}>\r\nMax-Forwards: 70\r\n"
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nUser-Agent: opencomms-conference-load\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        ).encode()

    def _in_dialog(self, leg: Leg, method: str, cseq: int) -> bytes:
        host, port = self.node
        uri = leg.contact or f"sip:{PREFIX}{leg.room}@{host}:{port}"
        return (
            f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {self.here}:{self.sip_port};branch={_branch()};rport\r\n"
            f'From: "load" <sip:+1425555{leg.index:04d}@{self.here}:{self.sip_port}>;tag={leg.tag}\r\n'
            f"To: {leg.to}\r\nCall-ID: {leg.call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:load@{self.here}:{self.sip_port}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def _send_sip(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sip.sendto(data, self.node)

    def _on_sip(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = data.decode("utf-8", "replace")
        head, _, body = msg.partition("\r\n\r\n")
        first = head.split("\r\n", 1)[0]
        leg = self.by_call.get(_header(head, "Call-ID") or _header(head, "i"))
        if first.startswith("SIP/2.0 "):
            code = int(first.split()[1])
            cseq = _header(head, "CSeq")
            if leg is None or not cseq.endswith("INVITE") or code < 200:
                return
            if code >= 300:
                if not leg.failed:
                    reason = first.split(" ", 1)[1]
                    self.failures[reason] = self.failures.get(reason, 0) + 1
                leg.failed = True
                return
            leg.to = _header(head, "To") or _header(head, "t")
            m = re.search(r"<([^>]+)>", _header(head, "Contact") or _header(head, "m"))
            leg.contact = m.group(1) if m else ""
            self._send_sip(self._in_dialog(leg, "ACK", 1))  # every 200 (retransmissions too) gets its ACK
            if not leg.answered:
                c = re.search(r"(?m)^c=IN IP4 (\S+)", body)
                p = re.search(r"(?m)^m=audio (\d+)", body)
                if c and p:
                    leg.remote = (c.group(1), int(p.group(1)))
                leg.answered = True
            return
        # a request from the node: 200 OK (BYE ends the leg)
        self.in_dialog += 1
        method = first.split(" ", 1)[0]
        if method == "ACK":
            return
        vias = "\r\n".join(line for line in head.split("\r\n")[1:] if re.match(r"(?i)^(via|v)\s*:", line))
        lines = [
            "SIP/2.0 200 OK",
            vias,
            f"From: {_header(head, 'From') or _header(head, 'f')}",
            f"To: {_header(head, 'To') or _header(head, 't')}",
            f"Call-ID: {_header(head, 'Call-ID') or _header(head, 'i')}",
            f"CSeq: {_header(head, 'CSeq')}",
            f"Contact: <sip:load@{self.here}:{self.sip_port}>",
            "Content-Length: 0",
        ]
        with contextlib.suppress(OSError):
            self.sip.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)
        if method == "BYE" and leg is not None:
            leg.ended = True

    # -- the loop --
    def _drain(self, fds: list[tuple[int, int]], now_ns: int) -> None:
        for fd, _ in fds:
            if fd == self.sip.fileno():
                while True:
                    try:
                        data, addr = self.sip.recvfrom(65535)
                    except BlockingIOError:
                        break
                    self._on_sip(data, addr)
                continue
            leg = self.by_fd[fd]
            sock = leg.sock
            while True:
                try:
                    data, anc, _, addr = sock.recvmsg(256, 64)
                except BlockingIOError:
                    break
                self.received += 1
                if not self.recording or len(data) < 12:
                    continue
                t = now_ns
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                        sec, nsec = struct.unpack_from("qq", value)
                        t = sec * 1_000_000_000 + nsec
                self.rx_time.append(t)
                self.rx_leg.append(leg.index)
                self.rx_head += data[:12]
                self.rx_src[leg.index] = addr[1]

    def _send_rtp(self, k: int) -> None:
        voice, frames = self.voice, self.frames
        buf = bytearray(172)
        pack = RTP.pack_into
        for leg in self.legs:
            remote = leg.remote
            if remote is None or leg.ended:
                continue
            pack(buf, 0, 0x80, 0, (leg.seq + k) & 0xFFFF, (k * 160) & 0xFFFFFFFF, 0x3000 + leg.index)
            if leg.talker:
                at = ((k + 97 * leg.index) % frames) * 160
                buf[12:] = voice[at : at + 160]
            else:
                buf[12:] = SILENCE
            try:
                leg.sock.sendto(buf, remote)
                self.sent += 1
            except OSError:
                self.send_errors += 1

    def run(self, settle: float, seconds: float, cpu_of: list[int]) -> dict[str, object]:
        """Place the calls, settle, measure for `seconds`, hang up. Returns the figures."""
        start = time.monotonic()
        placed = 0
        k = 0
        phase = "ramp"
        next_check = 0.0
        waiting: list[Leg] = [self.legs[0]] if self.legs else []
        t_up = t_window = t_end = 0.0
        node0: float = 0.0
        gen0 = 0.0
        figures: dict[str, object] = {}
        while True:
            now = time.monotonic()
            # calls: place at `rate`, retransmit INVITEs (T1 doubling), give up after 7 tries
            while placed < len(self.legs) and now >= start + placed / self.rate:
                leg = self.legs[placed]
                leg.invite = self._invite(leg)
                self._send_sip(leg.invite)
                leg.next_retry = now + 0.5
                placed += 1
            if phase == "ramp" and now >= next_check:  # the unanswered INVITEs, ten times a second
                next_check = now + 0.1
                waiting = [g for g in self.legs[:placed] if not g.answered and not g.failed]
                for leg in waiting:
                    if now >= leg.next_retry:
                        leg.retries += 1
                        if leg.retries > 6:
                            self.failures["no answer"] = self.failures.get("no answer", 0) + 1
                            leg.failed = True
                            continue
                        self._send_sip(leg.invite)
                        leg.next_retry = now + min(4.0, 0.5 * 2**leg.retries)
            if phase == "ramp" and placed == len(self.legs) and not waiting:
                phase, t_up = "settle", now
                figures["ramp_s"] = round(now - start, 1)
            elif phase == "settle" and now >= t_up + settle:
                phase, t_window = "window", now
                self.recording = True
                node0, gen0 = _cpu_seconds(cpu_of), time.process_time()
            elif phase == "window" and now >= t_window + seconds:
                self.recording = False
                wall = now - t_window
                figures["node_cores"] = round((_cpu_seconds(cpu_of) - node0) / wall, 3)
                figures["generator_cores"] = round((time.process_time() - gen0) / wall, 3)
                figures["window_s"] = round(wall, 1)
                phase, t_end = "hangup", now
                for leg in self.legs:
                    if leg.answered and not leg.ended:
                        self._send_sip(self._in_dialog(leg, "BYE", 2))
            elif phase == "hangup" and now >= t_end + 2.0:
                break
            # RTP: every 20 ms from the first answer on
            due = start + k * 0.02
            if now >= due:
                self._send_rtp(k)
                k += 1
                if time.monotonic() - due > 0.1:  # far behind (a stall): skip ahead instead of bursting
                    k = int((time.monotonic() - start) / 0.02) + 1
                continue
            events = self.poll.poll(max(0.0, due - now))
            if events:
                self._drain(events, time.time_ns())
        figures.update(
            legs=len(self.legs),
            answered=sum(g.answered for g in self.legs),
            failed=sum(g.failed or not g.answered for g in self.legs),
            sent_per_s=round(self.sent / max(1e-9, time.monotonic() - start)),
            received=self.received,
            send_errors=self.send_errors,
            node_requests=self.in_dialog,
            failures=self.failures,
        )
        return figures

    def analyse(self) -> dict[str, object]:
        """The window's packets through the anchor's rtp_gaps analysis (kernel receive times)."""
        gaps = rtp_gaps()
        heads = bytes(self.rx_head)
        times, legs = self.rx_time, self.rx_leg

        def records(_path: str) -> Iterator[tuple[float, bytes, int, int, int, int, int, int, int]]:
            for i in range(len(times)):
                b, pt, seq, ts, ssrc = RTP.unpack_from(heads, 12 * i)
                if b >> 6 != 2:
                    continue
                leg = legs[i]
                yield times[i] / 1e9, b"", self.rx_src.get(leg, 0), leg, ssrc, pt & 0x7F, pt >> 7, seq, ts

        gaps.packets = records  # same analysis as bench_conference.sh, fed from memory
        result: dict[str, object] = gaps.analyse("")
        result["streams_expected"] = len(self.legs)
        return result

    def close(self) -> None:
        self.poll.close()
        self.sip.close()
        for leg in self.legs:
            leg.sock.close()


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return out


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of the processes `pids` and all their descendants now (utime + stime)."""
    total = 0
    for p in {d for pid in pids for d in _descendants(pid)}:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# -- one point: a fresh node, the generator ------------------------------------------------------------------------


@contextlib.contextmanager
def node_process(rooms: int, size: int, media_process: bool) -> Iterator[tuple[int, int]]:
    """bench/conference_sip.py's node (meetings 1..rooms) in a child process; yields (SIP port, pid)."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        cmd = [sys.executable, str(HERE / "conference_sip.py"), str(rooms), str(size), "--node", str(ready)]
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        env["OPENCOMMS_BENCH_MEDIA_PROCESS"] = "1" if media_process else "0"
        pin = (lambda: os.sched_setaffinity(0, {NODE_CPU})) if PIN else None  # the media child inherits it
        node = subprocess.Popen(cmd, env=env, cwd=ROOT, preexec_fn=pin)
        try:
            wait_ready_file(node, ready)
            time.sleep(0.2)
            info = json.loads(ready.read_text())
            yield int(info["port"]), int(info["pid"])
        finally:
            stop_node(node)


def point(legs: int, size: int, talkers: int, mode: str, args: argparse.Namespace) -> dict[str, object]:
    rooms = max(1, legs // size)
    with node_process(rooms, size, mode == "process") as (port, pid):
        gen = Generator(("127.0.0.1", port), rooms, size, talkers, args.rate)
        try:
            figures = gen.run(args.settle, args.seconds, [pid])
            rtp = gen.analyse()
        finally:
            gen.close()
    n = rooms * size
    cores = float(str(figures.get("node_cores") or 0.0))
    return {
        "mode": mode,
        "legs": n,
        "rooms": rooms,
        **figures,
        "cpu_ms_per_leg_s": round(1000.0 * cores / n, 2),
        "rtp": rtp,
        "pass": (rtp.get("within_5ms_pct") or 0) >= TARGET_PCT and figures.get("failed") == 0,
    }


def line(r: dict[str, object]) -> str:
    rtp = r["rtp"]
    assert isinstance(rtp, dict)
    return (
        f"{r['mode']:>7} {r['legs']:>4} legs ({r['rooms']}x{int(str(r['legs'])) // int(str(r['rooms']))}): "
        f"{r['answered']} up / {r['failed']} failed{' ' + str(r['failures']) if r.get('failures') else ''}, "
        f"ramp {r.get('ramp_s')} s; "
        f"RTP within 5 ms {rtp.get('within_5ms_pct')} % ({rtp.get('streams')}/{rtp.get('streams_expected')} streams, "
        f"{rtp.get('packets')} packets, p99/max lateness {rtp.get('lateness_ms_p99')}/{rtp.get('lateness_ms_max')} ms, "
        f"worst stream {rtp.get('worst_stream_within_5ms_pct')} %); "
        f"node {r.get('node_cores')} cores = {r['cpu_ms_per_leg_s']} ms CPU per leg-second; "
        f"generator {r.get('generator_cores')} cores"
    )


def sweep(
    sizes: list[int], modes: list[str], args: argparse.Namespace, *, pin_self: bool = False
) -> tuple[list[dict[str, object]], str]:
    """Every (mode, legs) point; returns the rows and the RESULT line. `pin_self`: pin this process (the generator)
    to the load CPU first, and raise its descriptor limit (main does both)."""
    if pin_self:
        _pin(LOAD_CPU)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    rows = []
    for mode in modes:
        for legs in sizes:
            r = point(legs, args.size, args.talkers, mode, args)
            print(line(r), flush=True)
            rows.append(r)
    parts = []
    for mode in modes:
        passed = [r for r in rows if r["mode"] == mode and r["pass"]]
        best = max(passed, key=lambda r: int(str(r["legs"])), default=None)
        if best is None:
            parts.append(f"{mode}: none of {sizes} legs reached {TARGET_PCT} % within 5 ms")
        else:
            parts.append(
                f"{mode}: {best['legs']} legs per core ({best['rtp']['within_5ms_pct']} % within 5 ms, "  # type: ignore[index]
                f"{best['cpu_ms_per_leg_s']} ms CPU per leg-second)"
            )
    head = (
        f"RESULT conference_load: meetings of {args.size}, {args.talkers} talking, SIP + RTP both ways, node on one "
        f"core; most legs with >= {TARGET_PCT} % within 5 ms (target >= 500): "
    )
    return rows, head + "; ".join(parts)


def _pin(cpu: int) -> None:
    if PIN and hasattr(os, "sched_setaffinity") and cpu in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {cpu})


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--legs", default="300,500,600", help="comma-separated leg counts (rooms = legs / size)")
    ap.add_argument("--size", type=int, default=10, help="phones per meeting")
    ap.add_argument("--talkers", type=int, default=3, help="phones of each meeting sending speech (others silence)")
    ap.add_argument("--modes", default="process,thread", help="process ([media] process = true) and/or thread")
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds between the last answer and the window")
    ap.add_argument("--rate", type=float, default=50.0, help="calls placed per second")
    ap.add_argument("--json", action="store_true", help="print every point as a JSON line too")
    return ap


def main() -> None:
    args = parser().parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the node of the running point stops too
    sizes = [int(x) for x in args.legs.split(",") if x]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("process", "thread"):
            raise SystemExit(f"unknown mode {m!r} (process, thread)")
    rows, result = sweep(sizes, modes, args, pin_self=True)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    print(result)


if __name__ == "__main__":
    main()
