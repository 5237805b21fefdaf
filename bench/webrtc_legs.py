"""Benchmark (issue 12): browser legs per core, the node and its rtpengine together, Opus on the browsers' side.

Run: PYTHONPATH=src .venv/bin/python bench/webrtc_legs.py [--sizes 10,20,30,40,50,100,200] [--size 10]
     [--talking 3] [--seconds 6] [--warmup 2] [--aiortc 4] [--codec opus|pcmu] [--media-process]
     [--browser-opus precoded|chrome|ffmpeg] [--rtpengine-transcodes] [--webrtc KEY=VALUE] [--dump FILE]

The node runs its defaults unless told otherwise: it codes the browsers' Opus itself (`webrtc.opus_in_node`) and
its rtpengine only relays, at SCHED_FIFO where permitted (`webrtc.rtpengine_realtime_priority`);
`--rtpengine-transcodes` has rtpengine transcode Opus to the node's codecs (the default before 2026-12-07).

The node is this script in a child process (`--node`): a TestPlatform on loopback with the WebRTC edge, which
spawns the node's rtpengine ("A", as in production), meetings of `--size` legs with the lobby bypassed, and one
per-join guest ticket per leg (issued in the node's process, as POST /web/join issues them). The simulated
browsers are a second rtpengine ("B", started like gateway/rtpengine_daemon.py with its own ng and port range)
driven by this process: for each leg, a plain RTP/AVP offer from a Python socket goes to B, which turns it
into a browser's offer (ICE, DTLS-SRTP actpass, Opus only, rtcp-mux); that offer is the INVITE a SIP-over-WebSocket
client sends to the node's edge (`/sip/ws?ticket=`, as JsSIP does); the node's 200 OK (A's ICE + DTLS + Opus) is
B's answer. So every leg runs ICE, a DTLS handshake and SRTP between B and A, Opus both ways. `--talking` legs per
meeting send a tone, the others silence (20 ms packets from Python; see `--browser-opus` below for who codes them).

Timing is measured where the browser would receive: the packets the node's mix sends come back through A (SRTP), B
to the leg's Python socket, timestamped by the kernel (SO_TIMESTAMPNS); per stream, in talkspurts,
a packet is within 5 ms when it arrives no more than 5 ms after its due time on the RTP timestamp's 20 ms schedule
(the tools/rtp_gaps.py rule). The node (and with it A, its child) is pinned to CPU 0; this process and B to CPU 1
(OPENCOMMS_BENCH_NO_PIN=1: no pinning). Sizes grow in one node (legs are added, not restarted). A size passes when
every leg was established, >= 99 % of the expected packets came back and >= 99.9 % of them were within 5 ms;
"legs per core" is the largest passing size (node + A had one core). The sweep goes on past a size that misses the
timing (a busy machine misses it long before the CPU runs out; `--stop-at-first-miss` stops there) and ends when
node + A use more than 0.9 core, a leg fails or packets go missing; the CPU figures are those of the largest size
with every packet back: node + A (and each apart) in ms of CPU per leg-second, "marginal" the same for the legs
added since the previous size (fixed costs cancel), and "by CPU" = legs / (node + A cores). B's and this process's
CPU are reported apart (the generator), with `generator_saturated` when their core was nearly full.
`--codec pcmu`: the browsers send G.711 and the node runs `webrtc.opus = false`, so rtpengine only relays
(ICE, DTLS-SRTP <-> RTP): what the Opus transcoding costs shows by difference.

Then `--aiortc N` legs from aiortc (Python WebRTC: one process, ICE/DTLS-SRTP/Opus like a browser, its own track
generating a tone and a consumer decoding what it receives) join the same node through the same edge, and that
process's CPU per leg gives aiortc's legs per core for the comparison (0: skipped; needs `pip install aiortc`).
Prints one JSON line per size, a summary line, and one JSON line last.

What Debian's rtpengine (10.5) does here, checked before writing this: two instances set up DTLS to each other
(A answers B's `setup:actpass` with `setup:active`), both run full ICE (`ICE: force`, host candidates on 127.0.0.1),
and Opus is transcoded through ffmpeg's libopus (32 kbit/s; 10.5 passes no encoder options to ffmpeg, whose default
is stereo, fullband, complexity 10). perf on A under this load with those defaults: about 60 % of its CPU in libopus
(decode and encode). The node's rtpengine now encodes as `webrtc.opus_complexity`, `opus_max_bandwidth`,
`opus_mono` say (gateway/opus_tuning.py: a preloaded library in 10.5); `--webrtc key=value` sets any [webrtc] field
of the node (e.g. `--webrtc opus_complexity=10 --webrtc opus_max_bandwidth=fullband --webrtc opus_mono=false`:
ffmpeg's defaults, as before). `--browser-opus chrome` (default) makes B encode as Chrome does (mono, complexity 9,
fullband), which is what A decodes; `ffmpeg` keeps rtpengine's defaults there (stereo, complexity 10).
Chrome also obeys the Opus fmtp of the answer it gets (gateway/opus_fmtp.py, `webrtc.browser_opus_*`):
`maxplaybackrate` caps its band and default bitrate (16000: wideband, 20 kbit/s), `usedtx=1` turns on DTX, where a
silent sender sends one comfort-noise packet every 400 ms. The simulated browsers do the same (B's encoder; the
silent legs' Python side sends every 20th packet, sequence numbers contiguous, timestamps running on), set from the
node's [webrtc] settings, and every 200 OK's fmtp is checked against them (a mismatch fails the leg); the result
line shows the fmtp ("browser_fmtp") and what B encoded ("browser_encoder").

`--browser-opus precoded` (the default since 2026-12-07; `chrome` before): B codes nothing. Python's plain offer is
Opus itself and its packets are one second of the tone and a silent frame coded ONCE by libopus with Chrome's
settings for the node's answer (the same wideband bitrate and DTX), so B only does what a browser's network stack
does (ICE, DTLS-SRTP) and timing is measured on the relayed Opus (48 kHz RTP clock). B coding Opus for every leg
took a whole core at 150-200 legs and made the generator, not the node, late; the node and its rtpengine receive
the same kind of stream either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # this worktree's sources, whatever PYTHONPATH says

from _common import cpu_seconds, open_meeting, stop_node, wait_ready_file  # noqa: E402

NODE_CPU, LOAD_CPU = 0, 1
PIN = not os.environ.get("OPENCOMMS_BENCH_NO_PIN") and len(os.sched_getaffinity(0)) >= 2
TARGET_PCT = 99.9
TARGET_LEGS_PER_CORE = 200
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PTIME = 0.02
DTX_EVERY = 20
SEND_SLOTS = 10
"""The generator sends each leg in one of this many 2 ms slots of the 20 ms (by its SSRC): browsers are independent
and their packets arrive spread over the tick, not in one burst (a burst of hundreds in the same millisecond made
the simulated browsers' rtpengine relay late in some runs and not in others, by the phase between the two ticks)."""
"""A silent WebRTC sender in DTX sends a comfort-noise update every 400 ms (libwebrtc's Opus DTX)."""

TO_BROWSER = {
    "transport-protocol": "UDP/TLS/RTP/SAVPF",
    "ICE": "force",
    "rtcp-mux": ["offer", "require"],
    "SDES": ["off"],
    "replace": ["origin", "session-connection"],
    "codec": {"transcode": ["opus"], "mask": ["PCMU"]},
}
"""B's offer flags: the Python leg's plain PCMU offer becomes a browser's (ICE, DTLS-SRTP, Opus only)."""
TO_BROWSER_RELAY = {k: v for k, v in TO_BROWSER.items() if k != "codec"}
"""B relays what Python offers (ICE, DTLS-SRTP, no transcoding): `--codec pcmu` (a browser offering G.711 to a node
with `webrtc.opus = false`) and `--browser-opus precoded` (Python sends the Opus itself)."""
FROM_BROWSER = {"replace": ["origin", "session-connection"]}


# --- the node under test (child process) -----------------------------------------------------------------------


def webrtc_overrides(items: list[str]) -> dict[str, Any]:
    """`--webrtc key=value` as WebRtcConfig fields (typed as the field's default)."""
    from opencomms.config import WebRtcConfig

    defaults = WebRtcConfig()
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        default = getattr(defaults, key)  # AttributeError: no such field
        if isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, tuple):
            out[key] = tuple(v for v in value.split(",") if v)
        else:
            out[key] = type(default)(value)
    return out


async def serve_node(
    legs: int, size: int, ready: Path, media_process: bool, opus: bool, overrides: dict[str, Any]
) -> None:
    from opencomms.config import MediaConfig, MeetingsConfig, NodeConfig, SipConfig, WebRtcConfig
    from opencomms.gateway.webjoin import WebGrant
    from opencomms.testing.platform import TestPlatform

    base = random.randrange(41000, 47000, 1000)
    rtp = random.randrange(10000, 16000, 2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        ng = s.getsockname()[1]
    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        log_level="warning",
        log_format="text",
        media=MediaConfig(max_legs=max(legs * 2 + 64, 4096), process=media_process),
        # RTP ports below the ephemeral range and away from the 20000-30000 other nodes on this machine use
        sip=SipConfig(host="127.0.0.1", port=0, rtp_port_min=rtp, rtp_port_max=rtp + max(2000, legs * 4)),
        meetings=MeetingsConfig(max_participants=max(size + 10, 100)),
        webrtc=WebRtcConfig(
            enabled=True,
            ws_port=0,
            rtpengine=f"127.0.0.1:{ng}",
            rtpengine_port_min=base,
            rtpengine_port_max=base + 999,
            rtpengine_timeout=5.0,
            max_connections=max(1024, legs + 64),
            ticket_ttl=600.0,
            opus=opus,
            **overrides,
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with TestPlatform(config) as platform:
        edge = platform.node.webrtc
        assert edge is not None and edge.daemon is not None and edge.daemon.process is not None
        tickets, targets = [], []
        for i in range(legs):
            room = i // size + 1
            if i % size == 0:
                open_meeting(platform, room)
            target = f"sip:meeting-{room}@127.0.0.1"
            tickets.append(edge.tickets.issue(WebGrant(platform.tenant_id, f"Browser {i}", target), time.time()))
            targets.append(target)
        info = {"pid": os.getpid(), "rtpengine_pid": edge.daemon.process.pid, "ws": edge.ws_url}
        ready.write_text(json.dumps({**info, "tickets": tickets, "targets": targets}))  # noqa: ASYNC240
        await stop.wait()


# --- CPU accounting -------------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in descendants(pid))


# --- the simulated browsers' plain side: a media thread -------------------------------------------------------


@dataclass(frozen=True)
class Payloads:
    """What the Python side of every leg sends and expects back: payload type, RTP clock, one talker's frames
    (looped) and a silent frame."""

    pt: int
    rate: int
    tone: list[bytes]
    silence: bytes
    sdp: str
    """The m= line's format and attributes of the plain offer to B."""

    @property
    def step(self) -> int:
        return self.rate * 20 // 1000


def tone_pcm(rate: int) -> npt.NDArray[np.int16]:
    """One second of the talkers' tone (425 Hz, slowly modulated) at `rate`."""
    import numpy as np

    t = np.arange(rate) / rate
    return (6000 * np.sin(2 * np.pi * 425 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))).astype(np.int16)


def pcmu_payloads() -> Payloads:
    from opencomms.media.g711 import ulaw_encode

    pcm = tone_pcm(8000)
    tone = [bytes(ulaw_encode(pcm[i : i + 160])) for i in range(0, 8000, 160)]
    return Payloads(0, 8000, tone, b"\xff" * 160, "0\r\na=rtpmap:0 PCMU/8000")


def precoded_payloads(chrome: ChromeOpus) -> Payloads:
    """`--browser-opus precoded`: one second of the tone and a silent frame coded ONCE by libopus as Chrome codes
    for the node's answer (mono, complexity 9, wideband, its bitrate; DTX on the silent frame when asked), sent by
    Python as they are, so B only relays: the browsers' side costs what relaying costs, not an Opus codec per leg."""
    import numpy as np

    from opencomms.rtp.opus import OpusEncoder, OpusSettings

    talker = OpusEncoder(OpusSettings(complexity=9, bitrate=chrome.bitrate, dtx=False))
    pcm = tone_pcm(16000)
    tone = [talker.encode(pcm[i : i + 320]) for i in range(0, 16000, 320)]
    quiet = OpusEncoder(OpusSettings(complexity=9, bitrate=chrome.bitrate, dtx=chrome.dtx))
    silence = quiet.encode(np.zeros(320, dtype=np.int16))  # the first frame of silence: a full frame
    offer = "111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1"  # Chrome's: no usedtx
    return Payloads(111, 48000, tone, silence, offer)


@dataclass
class Leg:
    sock: socket.socket
    ssrc: int
    talking: bool
    dtx: bool = False
    """Silent and in DTX (the node's answer said usedtx=1): one packet every DTX_EVERY ticks, as WebRTC sends."""
    dest: tuple[str, int] | None = None
    seq: int = 0
    ts: int = 0
    started: bool = False
    received: int = 0
    window: list[tuple[float, int, int, int]] = field(default_factory=list)


class Media(threading.Thread):
    """Sends every leg's 20 ms packet (PCMU, or precoded Opus) to B and receives what B sends back (decoded to PCMU,
    or relayed Opus), with kernel timestamps."""

    def __init__(self, payloads: Payloads) -> None:
        super().__init__(daemon=True, name="bench-media")
        self.legs: dict[int, Leg] = {}
        self.poll = select.epoll()
        self.running = True
        self.recording = False
        self.sent = 0
        self.payloads = payloads
        self.tone = payloads.tone
        self.silence = payloads.silence
        self.lock = threading.Lock()

    def add(self, talking: bool, dtx: bool = False) -> Leg:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        # random first sequence number and timestamp, as browsers start theirs (RFC 3550)
        seq, ts = random.getrandbits(16), random.getrandbits(32)
        leg = Leg(sock, random.getrandbits(32), talking, dtx and not talking, seq=seq, ts=ts)
        with self.lock:
            self.legs[sock.fileno()] = leg
            self.poll.register(sock.fileno(), select.EPOLLIN)
        return leg

    def remove(self, leg: Leg) -> None:
        with self.lock:
            self.legs.pop(leg.sock.fileno(), None)
            with contextlib.suppress(OSError, ValueError):
                self.poll.unregister(leg.sock.fileno())
        leg.sock.close()

    def run(self) -> None:
        cmsg = socket.CMSG_SPACE(16)
        pt, step = self.payloads.pt, self.payloads.step
        pts = (0, 8) if pt == 0 else (pt,)  # what comes back: G.711 (B decoded it) or the relayed Opus
        due = time.monotonic()
        k = slot = 0
        while self.running:
            now = time.monotonic()
            if now >= due:
                with self.lock:
                    legs = [leg for leg in self.legs.values() if leg.ssrc % SEND_SLOTS == slot]
                payload_tone = self.tone[k % len(self.tone)]
                for leg in legs:
                    if leg.dest is None:
                        continue
                    if leg.dtx and (k + leg.ssrc) % DTX_EVERY:  # DTX: no packet this tick, the clock runs on
                        leg.ts = (leg.ts + step) & 0xFFFFFFFF
                        continue
                    header = struct.pack(
                        "!BBHII", 0x80, pt | (0 if leg.started else 0x80), leg.seq & 0xFFFF, leg.ts, leg.ssrc
                    )
                    with contextlib.suppress(OSError):
                        leg.sock.sendto(header + (payload_tone if leg.talking else self.silence), leg.dest)
                        self.sent += 1
                    leg.seq += 1
                    leg.started = True
                    leg.ts = (leg.ts + step) & 0xFFFFFFFF
                slot = (slot + 1) % SEND_SLOTS
                k += slot == 0
                due += PTIME / SEND_SLOTS
                if now - due > 0.2:  # fell far behind (a stalled machine): skip rather than burst
                    due = now + PTIME / SEND_SLOTS
                continue
            for fd, _ in self.poll.poll(max(0.0, due - now)):
                leg_or_none = self.legs.get(fd)
                if leg_or_none is None:
                    continue
                leg = leg_or_none
                while True:
                    try:
                        data, anc, _, _ = leg.sock.recvmsg(2048, cmsg)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    leg.received += 1
                    if not self.recording or len(data) < 12:
                        continue
                    arrival = time.time()
                    for level, kind, value in anc:
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                            sec, nsec = struct.unpack("qq", value[:16])
                            arrival = sec + nsec / 1e9
                    seq, ts = struct.unpack("!HI", data[2:8])
                    if data[1] & 0x7F in pts:
                        leg.window.append((arrival, data[1] >> 7, seq, ts))


def timing(legs: list[Leg], tolerance_ms: float = 5.0, rate: int = 8000) -> dict[str, Any]:
    """The rtp_gaps.py rule on each leg's window: talkspurts, lateness against the RTP timestamp schedule (`rate`:
    the RTP clock, 8000 for G.711, 48000 for Opus)."""
    step = rate * 20 // 1000
    total = within = 0
    lateness: list[float] = []
    worst = 100.0
    for leg in legs:
        pkts = leg.window
        if len(pkts) < 10:
            continue
        spurts, cur = [], [pkts[0]]
        for prev, p in itertools.pairwise(pkts):
            if p[1] or ((p[2] - prev[2]) & 0xFFFF) != 1 or ((p[3] - prev[3]) & 0xFFFFFFFF) != step:
                spurts.append(cur)
                cur = [p]
            else:
                cur.append(p)
        spurts.append(cur)
        s_total = s_within = 0
        for sp in spurts:
            t0, ts0 = sp[0][0], sp[0][3]
            offsets = [p[0] - t0 - ((p[3] - ts0) & 0xFFFFFFFF) / rate for p in sp]
            base = min(offsets)
            for o in offsets:
                late = (o - base) * 1000
                lateness.append(late)
                s_total += 1
                s_within += late <= tolerance_ms
        total += s_total
        within += s_within
        worst = min(worst, 100.0 * s_within / s_total)
    lateness.sort()

    def q(p: float) -> float | None:
        return round(lateness[min(len(lateness) - 1, int(p * len(lateness)))], 2) if lateness else None

    return {
        "packets": total,
        "within_5ms_pct": round(100.0 * within / total, 3) if total else 0.0,
        "worst_leg_within_5ms_pct": round(worst, 3) if total else 0.0,
        "lateness_p50_ms": q(0.5),
        "lateness_p99_ms": q(0.99),
        "lateness_max_ms": round(lateness[-1], 2) if lateness else None,
    }


# --- SIP over WebSocket, as JsSIP sends it ------------------------------------------------------------------


def header(text: str, name: str) -> str:
    return next((line for line in text.split("\r\n") if line.lower().startswith(name.lower() + ":")), "")


def invite(target: str, call_id: str, tag: str, sdp: str) -> str:
    return (
        f"INVITE {target} SIP/2.0\r\n"
        f"Via: SIP/2.0/WS bench.invalid;branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n"
        "Max-Forwards: 69\r\n"
        f"To: <{target}>\r\n"
        f'From: "Browser" <sip:browser@opencomms.invalid>;tag={tag}\r\n'
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:browser@bench.invalid;transport=ws;ob>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp.encode())}\r\n\r\n{sdp}"
    )


def ack(sent: str, ok: str) -> str:
    target = sent.split(" ", 2)[1]
    lines = [
        f"ACK {target} SIP/2.0",
        f"Via: SIP/2.0/WS bench.invalid;branch=z9hG4bK{uuid.uuid4().hex[:12]}",
        "Max-Forwards: 69",
        header(ok, "To"),
        header(sent, "From"),
        header(sent, "Call-ID"),
        "CSeq: 1 ACK",
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def reply_ok(request: str) -> str:
    """200 OK to an in-dialog request from the node (OPTIONS, INFO, BYE...)."""
    keep = [line for line in request.split("\r\n") if line.lower().split(":", 1)[0] in ("via", "from", "to", "call-id")]
    cseq = header(request, "CSeq")
    return "\r\n".join(["SIP/2.0 200 OK", *keep, cseq, "Content-Length: 0"]) + "\r\n\r\n"


def plain_sdp(port: int, media: str) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {media}\r\na=ptime:20\r\na=sendrecv\r\n"
    ).encode()


def opus_fmtp(sdp: str) -> dict[str, str]:
    """The fmtp parameters of the Opus in `sdp` (lower-case names)."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    pts = {line[9:].split()[0] for line in lines if line.startswith("a=rtpmap:") and " opus/48000" in line.lower()}
    for line in lines:
        if line.startswith("a=fmtp:") and line[7:].split(" ", 1)[0] in pts:
            params = (p.strip().partition("=") for p in line.split(" ", 1)[1].split(";"))
            return {k.lower(): v for k, _, v in params if k}
    return {}


@dataclass(frozen=True)
class ChromeOpus:
    """What Chrome's encoder does with the node's answer: `maxplaybackrate` caps its band and sets its default
    bitrate (libwebrtc's audio_encoder_opus: <= 8000 narrowband 12 kbit/s, <= 12000 mediumband, <= 16000 wideband
    20 kbit/s, above fullband 32 kbit/s), `usedtx=1` turns DTX on; complexity 9, mono on desktops."""

    max_rate: int = 48000
    dtx: bool = False

    @property
    def bandwidth(self) -> str:
        for rate, name in ((8000, "narrowband"), (12000, "mediumband"), (16000, "wideband"), (24000, "superwideband")):
            if self.max_rate <= rate:
                return name
        return "fullband"

    @property
    def bitrate(self) -> int:
        return 12000 if self.max_rate <= 8000 else 20000 if self.max_rate <= 16000 else 32000

    @staticmethod
    def expected(args: argparse.Namespace) -> ChromeOpus:
        """From the node's [webrtc] settings (what its answers will say; every answer is checked against it)."""
        from opencomms.config import WebRtcConfig

        cfg = WebRtcConfig(**webrtc_overrides(args.webrtc))
        rate = getattr(cfg, "browser_opus_max_rate", 0) or 48000
        return ChromeOpus(rate, bool(getattr(cfg, "browser_opus_dtx", False)))

    def matches(self, fmtp: dict[str, str]) -> bool:
        asked = int(fmtp.get("maxplaybackrate", "48000") or 48000)
        return asked == self.max_rate and (fmtp.get("usedtx") == "1") == self.dtx


def media_port(sdp: bytes) -> int:
    for line in sdp.decode().split("\r\n"):
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise ValueError("no m=audio line")


class Browsers:
    """Legs of simulated browsers: B's WebRTC side, the node's edge over SIP-over-WebSocket, Python's plain side."""

    def __init__(
        self, ws_url: str, b: Any, media: Media, flags: dict[str, Any], chrome: ChromeOpus | None = None
    ) -> None:
        self.ws_url = ws_url
        self.chrome = chrome
        self.fmtp: dict[str, str] | None = None
        self.flags = flags
        self.b = b
        self.media = media
        self.failures: list[str] = []
        self.unexpected = 0
        self.open: list[tuple[Any, asyncio.Task[None], Leg]] = []

    async def start_leg(self, http: Any, ticket: str, target: str, talking: bool) -> None:
        leg = self.media.add(talking, self.chrome is not None and self.chrome.dtx)
        call_id, tag = uuid.uuid4().hex, uuid.uuid4().hex[:8]
        try:
            plain = plain_sdp(leg.sock.getsockname()[1], self.media.payloads.sdp)
            offer = await self.b.offer(call_id, tag, plain, self.flags)
            ws = await http.ws_connect(f"{self.ws_url}?ticket={ticket}", protocols=("sip",), heartbeat=None)
            await ws.send_str(sent := invite(target, call_id, tag, offer.decode()))
            while True:
                msg = await ws.receive(timeout=15)
                if not isinstance(msg.data, str) or not msg.data.startswith("SIP/2.0 "):
                    raise RuntimeError(f"unexpected {msg.type}: {str(msg.data)[:80]}")
                status = int(msg.data.split(" ", 2)[1])
                if status >= 200:
                    break
            if status != 200:
                raise RuntimeError(f"INVITE answered {status} {header(msg.data, 'Warning')}")
            ok = msg.data
            fmtp = opus_fmtp(ok.split("\r\n\r\n", 1)[1])
            if self.fmtp is None:
                self.fmtp = fmtp
            if self.chrome is not None and not self.chrome.matches(fmtp):
                raise RuntimeError(f"the node's Opus fmtp {fmtp} is not what the simulated browsers do: {self.chrome}")
            to_tag = header(ok, "To").split("tag=", 1)[1].split(";")[0]
            answer = await self.b.answer(call_id, tag, to_tag, ok.split("\r\n\r\n", 1)[1].encode(), FROM_BROWSER)
            await ws.send_str(ack(sent, ok))
            leg.dest = ("127.0.0.1", media_port(answer))
        except Exception as exc:  # counted, reported
            self.failures.append(f"{type(exc).__name__}: {exc}"[:200])
            self.media.remove(leg)
            return
        self.open.append((ws, asyncio.get_running_loop().create_task(self._serve(ws)), leg))

    async def _serve(self, ws: Any) -> None:
        async for msg in ws:
            text = msg.data if isinstance(msg.data, str) else ""
            if text and not text.startswith("SIP/2.0"):
                self.unexpected += 1
                if not text.startswith(("ACK ", "INVITE ")):
                    await ws.send_str(reply_ok(text))

    async def close(self) -> None:
        for ws, task, leg in self.open:
            task.cancel()
            with contextlib.suppress(Exception):
                await ws.close()
            self.media.remove(leg)
        self.open.clear()


async def sweep(args: argparse.Namespace, info: dict[str, Any], sizes: list[int]) -> tuple[list[dict[str, Any]], Any]:
    import aiohttp

    from opencomms.gateway.rtpengine import RtpEngineClient
    from opencomms.gateway.rtpengine_daemon import RtpEngineDaemon, RtpEngineSettings

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        ng = s.getsockname()[1]
    base = random.randrange(48000, 58000, 1000)
    from opencomms.gateway.opus_tuning import OpusTuning

    # what the browsers' Opus encoder does: Chrome's libwebrtc encodes mono (no `stereo=1` asked) at complexity 9
    # on desktops, fullband; "ffmpeg": rtpengine's own default (stereo, complexity 10)
    # "precoded": Python sends Opus coded once as Chrome would and B relays it (the light generator)
    coded_by_b = args.codec == "opus" and args.browser_opus != "precoded"
    chrome = ChromeOpus.expected(args) if args.browser_opus != "ffmpeg" and args.codec == "opus" else None
    opus = OpusTuning(complexity=9, max_bandwidth=chrome.bandwidth, mono=True) if chrome and coded_by_b else None
    flags = TO_BROWSER if coded_by_b else TO_BROWSER_RELAY
    if chrome is not None and coded_by_b:
        flags = {**flags, "codec": {**TO_BROWSER["codec"], "transcode": [f"opus/48000/2/{chrome.bitrate}"]}}
    payloads = precoded_payloads(chrome) if chrome is not None and not coded_by_b else pcmu_payloads()
    # B only relaying (precoded) runs SCHED_FIFO where allowed: the measuring instrument must not be what is late
    fifo = 10 if not coded_by_b and hasattr(os, "geteuid") and os.geteuid() == 0 else 0
    settings = RtpEngineSettings(
        ng_port=ng, port_min=base, port_max=base + 999, timeout=60, log_level=4, opus=opus, realtime_priority=fifo
    )
    daemon = RtpEngineDaemon(settings)
    await daemon.start()
    assert daemon.process is not None
    b = RtpEngineClient(daemon.address, timeout=5.0)
    media = Media(payloads)
    media.start()
    browsers = Browsers(info["ws"], b, media, flags, chrome)
    rows: list[dict[str, Any]] = []
    node_pid, a_pid, b_pid = info["pid"], info["rtpengine_pid"], daemon.process.pid
    try:
        # no pool limit: every leg holds its WebSocket (aiohttp's default of 100 would stall leg 101 forever)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            started = 0
            gate = asyncio.Semaphore(args.concurrency)

            async def one(i: int) -> None:
                async with gate:
                    talking = i % args.size < args.talking
                    await browsers.start_leg(http, info["tickets"][i], info["targets"][i], talking)

            for size in sizes:
                t0 = time.perf_counter()
                tasks = []
                for i in range(started, size):
                    await asyncio.sleep(max(0.0, t0 + (i - started) / args.rate - time.perf_counter()))
                    tasks.append(asyncio.create_task(one(i)))
                await asyncio.gather(*tasks)
                setup_s = time.perf_counter() - t0
                print(f"{len(browsers.open)} legs up ({len(browsers.failures)} failed)", file=sys.stderr, flush=True)
                started = size
                await asyncio.sleep(args.warmup)
                for leg in (leg for _, _, leg in browsers.open):
                    leg.window = []
                    leg.received = 0
                cpu0 = (tree_cpu(node_pid), cpu_seconds(a_pid), cpu_seconds(b_pid), time.process_time())
                t_start = time.perf_counter()
                media.recording = True
                await asyncio.sleep(args.seconds)
                media.recording = False
                wall = time.perf_counter() - t_start
                cpu1 = (tree_cpu(node_pid), cpu_seconds(a_pid), cpu_seconds(b_pid), time.process_time())
                node_tree, a_cpu, b_cpu, gen_cpu = ((y - x) / wall for x, y in zip(cpu0, cpu1, strict=True))
                legs = [leg for _, _, leg in browsers.open]
                got = sum(leg.received for leg in legs)
                expected = len(legs) * wall / PTIME
                row: dict[str, Any] = {
                    "legs": len(legs),
                    "asked": size,
                    "failed": len(browsers.failures),
                    "setup_s": round(setup_s, 2),
                    "received_pct": round(100.0 * got / expected, 2) if expected else 0.0,
                    **timing(legs, rate=payloads.rate),
                    "node_and_rtpengine_cores": round(node_tree, 3),
                    "node_cores": round(node_tree - a_cpu, 3),
                    "rtpengine_cores": round(a_cpu, 3),
                    "generator_rtpengine_cores": round(b_cpu, 3),
                    "generator_python_cores": round(gen_cpu, 3),
                    "cpu_ms_per_leg_s": round(1000 * node_tree / len(legs), 3) if legs else None,
                    "legs_per_core_by_cpu": round(len(legs) / node_tree) if node_tree > 0 else None,
                    "browser_side_rtpengine_ms_per_leg_s": round(1000 * b_cpu / len(legs), 3) if legs else None,
                }
                if rows and len(legs) > rows[-1]["legs"]:  # the cost of the legs added (fixed overheads cancel)
                    added = len(legs) - rows[-1]["legs"]
                    row["marginal_ms_per_leg_s"] = round(
                        1000 * (node_tree - rows[-1]["node_and_rtpengine_cores"]) / added, 3
                    )
                row["generator_saturated"] = b_cpu + gen_cpu > 0.9 if PIN else None
                row["pass"] = (
                    row["legs"] == size
                    and row["received_pct"] >= 99.0
                    and row["within_5ms_pct"] >= TARGET_PCT
                    and node_tree < 1.0
                )
                rows.append(row)
                if args.dump:  # every leg's received packets of this size, for a closer look at the timing
                    dump = json.dumps([{"talking": leg.talking, "window": leg.window} for leg in legs])
                    await asyncio.to_thread(Path(args.dump).write_text, dump)
                print(json.dumps(row), flush=True)
                # on to the next size while there is CPU left (a loaded machine fails the timing, not the CPU
                # figures); a saturated core, failed legs or lost packets end the sweep
                if node_tree > 0.9 or row["legs"] < size or row["received_pct"] < 90.0:
                    break
                if not row["pass"] and args.stop_at_first_miss:
                    break
            unexpected = browsers.unexpected
            await browsers.close()
    finally:
        media.running = False
        b.close()
        await daemon.stop()
    first_failures = browsers.failures[:3]
    notes = {"first_failures": first_failures, "unexpected_requests": unexpected, "browser_fmtp": browsers.fmtp}
    if chrome is not None:
        notes["browser_encoder"] = {"bandwidth": chrome.bandwidth, "bitrate": chrome.bitrate, "dtx": chrome.dtx}
    return rows, notes


# --- aiortc for the comparison (a child process) --------------------------------------------------------------


async def aiortc_worker(info: dict[str, Any], first: int, count: int, seconds: float, warmup: float) -> None:
    import aiohttp
    import aioice.ice
    import numpy as np
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack
    from av import AudioFrame

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # loopback only, no STUN

    class Tone(AudioStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        async def recv(self) -> AudioFrame:
            frame = await super().recv()  # paced silence at 48 kHz, 20 ms
            t = (np.arange(frame.samples) + self.n) / 48000
            self.n += frame.samples
            pcm = (6000 * np.sin(2 * np.pi * 425 * t)).astype(np.int16).reshape(1, -1)
            out = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            out.sample_rate, out.pts, out.time_base = 48000, frame.pts, frame.time_base
            return out

    received = [0]

    async def consume(track: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                received[0] += 1

    pcs, sockets = [], []
    async with aiohttp.ClientSession() as http:
        for i in range(first, first + count):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTrack(Tone())
            pc.on("track", lambda track: asyncio.get_running_loop().create_task(consume(track)))
            await pc.setLocalDescription(await pc.createOffer())
            call_id, tag = uuid.uuid4().hex, uuid.uuid4().hex[:8]
            ws = await http.ws_connect(f"{info['ws']}?ticket={info['tickets'][i]}", protocols=("sip",))
            await ws.send_str(sent := invite(info["targets"][i], call_id, tag, pc.localDescription.sdp))
            while True:
                text = (await ws.receive(timeout=15)).data
                if int(text.split(" ", 2)[1]) >= 200:
                    break
            if int(text.split(" ", 2)[1]) != 200:
                raise SystemExit(f"aiortc leg answered {text.splitlines()[0]} {header(text, 'Warning')}")
            await pc.setRemoteDescription(RTCSessionDescription(text.split("\r\n\r\n", 1)[1], "answer"))
            await ws.send_str(ack(sent, text))
            pcs.append(pc)
            sockets.append(ws)
        await asyncio.sleep(warmup)
        got0, cpu0, t0 = received[0], time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - t0
        cpu = (time.process_time() - cpu0) / wall
        frames = (received[0] - got0) / wall / count
        print(json.dumps({"legs": count, "cores": round(cpu, 3), "frames_per_leg_s": round(frames, 1)}), flush=True)
        for pc in pcs:
            await pc.close()
        for ws in sockets:
            await ws.close()


def run_aiortc(info_path: Path, first: int, count: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--aiortc-worker", str(info_path), "--aiortc-first", str(first)]
    cmd += ["--aiortc", str(count), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=child_env())
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    result: dict[str, Any] = json.loads(lines[-1])
    cores = result["cores"]
    result["cpu_ms_per_leg_s"] = round(1000 * cores / count, 2)
    result["legs_per_core"] = round(count / cores, 1) if cores > 0 else None
    return result


# --- orchestration -------------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes", default="10,20,30,40,50,100,200", help="leg counts, increasing (legs are added in one node)"
    )
    ap.add_argument("--size", type=int, default=10, help="legs per meeting")
    ap.add_argument("--talking", type=int, default=3, help="legs per meeting sending a tone (the rest: silence)")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per size")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds after the last leg is up before measuring")
    ap.add_argument("--rate", type=float, default=40.0, help="legs set up per second")
    ap.add_argument("--concurrency", type=int, default=8, help="leg setups in flight at once")
    ap.add_argument("--aiortc", type=int, default=4, help="aiortc legs for the comparison (0: skip)")
    ap.add_argument(
        "--codec",
        choices=("opus", "pcmu"),
        default="opus",
        help="what the browsers send: opus (rtpengine transcodes) or pcmu (webrtc.opus = false: relayed as it is)",
    )
    ap.add_argument(
        "--stop-at-first-miss",
        action="store_true",
        help="stop at the first size below the timing target (default: go on while the core has CPU left)",
    )
    ap.add_argument("--media-process", action="store_true", help="the node runs `[media] process = true`")
    ap.add_argument(
        "--browser-opus",
        choices=("precoded", "chrome", "ffmpeg"),
        default="precoded",
        help="the simulated browsers' Opus: coded once as Chrome codes and relayed by B (precoded: the light"
        " generator), coded by B per leg as Chrome's (mono, complexity 9) or rtpengine's default (stereo, 10)",
    )
    ap.add_argument(
        "--webrtc",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [webrtc] setting of the node, e.g. opus_complexity=10 (repeatable)",
    )
    ap.add_argument(
        "--opus-in-node",
        action="store_true",
        help="webrtc.opus_in_node (the node's default): rtpengine relays the browsers' Opus and the node codes it",
    )
    ap.add_argument(
        "--rtpengine-transcodes",
        action="store_true",
        help="webrtc.opus_in_node = false: rtpengine transcodes the browsers' Opus to the node's codecs",
    )
    ap.add_argument(
        "--alternate",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="run the sweep ROUNDS times in each mode, rtpengine transcoding and --opus-in-node in turn, and compare",
    )
    ap.add_argument("--dump", metavar="FILE", help="write each leg's received packets (kernel time, marker, seq, ts)")
    ap.add_argument("--node", metavar="READY_FILE", help=argparse.SUPPRESS)
    ap.add_argument("--legs", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--aiortc-worker", metavar="INFO_FILE", help=argparse.SUPPRESS)
    ap.add_argument("--aiortc-first", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.opus_in_node or args.rtpengine_transcodes:
        args.webrtc.append(f"opus_in_node={'false' if args.rtpengine_transcodes else 'true'}")
    if args.alternate > 0 and not args.node and not args.aiortc_worker:
        alternate(args)
        return
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    if args.node:
        if PIN:
            os.sched_setaffinity(0, {NODE_CPU})
        overrides = webrtc_overrides(args.webrtc)
        run(serve_node(args.legs, args.size, Path(args.node), args.media_process, args.codec == "opus", overrides))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` or a parent's SIGTERM: stop the node too
    if args.aiortc_worker:
        if PIN:
            os.sched_setaffinity(0, {LOAD_CPU})
        info = json.loads(Path(args.aiortc_worker).read_text())
        asyncio.run(aiortc_worker(info, args.aiortc_first, args.aiortc, args.seconds, args.warmup))
        return

    sizes = sorted(int(x) for x in args.sizes.split(","))
    total = sizes[-1] + max(0, args.aiortc)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        cmd = [sys.executable, __file__, "--node", str(ready), "--legs", str(total), "--size", str(args.size)]
        if args.media_process:
            cmd.append("--media-process")
        cmd += ["--codec", args.codec]
        webrtc_overrides(args.webrtc)  # a typo fails here, not in the child
        for item in args.webrtc:
            cmd += ["--webrtc", item]
        node = subprocess.Popen(cmd, env=child_env(), cwd=ROOT)
        try:
            wait_ready_file(node, ready)
            time.sleep(0.1)
            info = json.loads(ready.read_text())
            if PIN:
                os.sched_setaffinity(0, {LOAD_CPU})
            rows, notes = run(sweep(args, info, sizes))
            aio: dict[str, Any] = {}
            if args.aiortc > 0:
                aio = run_aiortc(ready, sizes[-1], args.aiortc, args)
                print(json.dumps({"aiortc": aio}), flush=True)
        finally:
            stop_node(node)
    passed = [r for r in rows if r["pass"]]
    best = passed[-1] if passed else None
    closest = max(rows, key=lambda r: r["within_5ms_pct"]) if rows else {}
    valid = [r for r in rows if r["received_pct"] >= 99.0 and r["legs"] == r["asked"]]  # CPU figures that count
    at = valid[-1] if valid else {}
    cpu = {
        "legs": at.get("legs"),
        "node_and_rtpengine_ms_per_leg_s": at.get("cpu_ms_per_leg_s"),
        "node_ms_per_leg_s": round(1000 * at["node_cores"] / at["legs"], 3) if at else None,
        "rtpengine_ms_per_leg_s": round(1000 * at["rtpengine_cores"] / at["legs"], 3) if at else None,
        "marginal_ms_per_leg_s": at.get("marginal_ms_per_leg_s"),
        "legs_per_core_by_cpu": at.get("legs_per_core_by_cpu"),
        "browser_side_rtpengine_ms_per_leg_s": at.get("browser_side_rtpengine_ms_per_leg_s"),
    }
    ratio = None
    if aio.get("cpu_ms_per_leg_s") and cpu["node_and_rtpengine_ms_per_leg_s"]:
        ratio = round(aio["cpu_ms_per_leg_s"] / cpu["node_and_rtpengine_ms_per_leg_s"], 2)
    result = {
        "bench": "webrtc_legs",
        "codec": args.codec,
        "webrtc": args.webrtc,
        "browser_opus": args.browser_opus,
        "legs_per_core": best["legs"] if best else 0,
        "largest_tried": rows[-1]["asked"] if rows else 0,
        "target_legs_per_core": TARGET_LEGS_PER_CORE,
        "target_within_5ms_pct": TARGET_PCT,
        "cpu": cpu,
        "aiortc": aio,
        "aiortc_over_node_and_rtpengine_cpu": ratio,
        "sizes": rows,
        **notes,
        "pinned": PIN,
        "media_process": args.media_process,
        "load_1min_before": round(load, 2),
        "pass": bool(best) and best["legs"] >= TARGET_LEGS_PER_CORE,
    }
    if best:
        verdict = f"{best['legs']} legs on one core with {best['within_5ms_pct']} % within 5 ms"
    else:
        verdict = f"no size reached {TARGET_PCT} % within 5 ms (best {closest.get('within_5ms_pct')} % at"
        verdict += f" {closest.get('legs')} legs)"
    aio_text = (
        f"aiortc (the browser side in Python) {aio['cpu_ms_per_leg_s']} ms per leg-second = {aio['legs_per_core']}"
        f" legs per core, {ratio} x the node + rtpengine's"
        if "legs_per_core" in aio
        else f"aiortc: {aio.get('error', 'skipped')}"
    )
    sent = "Opus" if args.codec == "opus" else "PCMU (relayed, no transcoding)"
    print(
        f"webrtc_legs: browsers sending {sent} over ICE + DTLS-SRTP (rtpengine B) through the WebRTC edge into"
        f" meetings of {args.size}: {verdict}; CPU at {cpu['legs']} legs: node + rtpengine"
        f" {cpu['node_and_rtpengine_ms_per_leg_s']} ms per leg-second (node {cpu['node_ms_per_leg_s']}, rtpengine"
        f" {cpu['rtpengine_ms_per_leg_s']}; marginal {cpu['marginal_ms_per_leg_s']}) = {cpu['legs_per_core_by_cpu']}"
        f" legs per core by CPU (target {TARGET_LEGS_PER_CORE}); the browsers' rtpengine"
        f" {cpu['browser_side_rtpengine_ms_per_leg_s']} ms per leg-second; {aio_text}",
        flush=True,
    )
    print(json.dumps(result))


def alternate(args: argparse.Namespace) -> None:
    """`--alternate N`: this script's sweep N times per mode, the two modes in turn (a busy machine then weighs on
    both alike); per mode the median CPU per leg-second (node, rtpengine) and legs per core by CPU at each size."""
    argv, skip = [], False
    for item in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if item == "--alternate":
            skip = True
            continue
        if item.startswith("--alternate=") or item in ("--opus-in-node", "--rtpengine-transcodes"):
            continue
        argv.append(item)
    modes = {"rtpengine_transcodes": ["--rtpengine-transcodes"], "opus_in_node": ["--opus-in-node"]}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    load = os.getloadavg()[0]
    for _round in range(args.alternate):
        for mode, extra in modes.items():
            done = subprocess.run(
                [sys.executable, __file__, *argv, *extra], cwd=ROOT, capture_output=True, text=True, check=False
            )
            lines = [line for line in done.stdout.splitlines() if line.startswith('{"bench"')]
            if not lines:
                print(f"{mode}: no result (exit {done.returncode}): {done.stderr[-500:]}", flush=True)
                continue
            runs[mode].append(json.loads(lines[-1]))
            print(f"{mode}: {json.dumps(runs[mode][-1]['cpu'])}", flush=True)

    def median(values: list[float]) -> float | None:
        values = sorted(v for v in values if v is not None)
        return round(values[len(values) // 2], 3) if values else None

    summary: dict[str, Any] = {}
    for mode, results in runs.items():
        by_size: dict[int, dict[str, list[float]]] = {}
        for result in results:
            for row in result["sizes"]:
                if row["received_pct"] < 99.0 or row["legs"] != row["asked"]:
                    continue
                legs = row["legs"]
                figures = by_size.setdefault(legs, {"node": [], "rtpengine": [], "timing": []})
                figures["node"].append(1000 * row["node_cores"] / legs)
                figures["rtpengine"].append(1000 * row["rtpengine_cores"] / legs)
                figures["timing"].append(row["within_5ms_pct"])
        summary[mode] = {}
        for legs, f in sorted(by_size.items()):
            node, rtpe = median(f["node"]), median(f["rtpengine"])
            total = round(node + rtpe, 3) if node is not None and rtpe is not None else None
            summary[mode][legs] = {
                "node_ms_per_leg_s": node,
                "rtpengine_ms_per_leg_s": rtpe,
                "total_ms_per_leg_s": total,
                "legs_per_core_by_cpu": round(1000 / total) if total else None,
                "within_5ms_pct_median": median(f["timing"]),
                "runs": len(f["node"]),
            }
    parts = []
    for legs in sorted({n for s in summary.values() for n in s}):
        a, b = summary["rtpengine_transcodes"].get(legs, {}), summary["opus_in_node"].get(legs, {})
        parts.append(
            f"{legs} legs: rtpengine transcoding node {a.get('node_ms_per_leg_s')} + rtpengine"
            f" {a.get('rtpengine_ms_per_leg_s')} = {a.get('total_ms_per_leg_s')} ms ({a.get('legs_per_core_by_cpu')}"
            f" legs/core), Opus in the node {b.get('node_ms_per_leg_s')} + {b.get('rtpengine_ms_per_leg_s')} ="
            f" {b.get('total_ms_per_leg_s')} ms ({b.get('legs_per_core_by_cpu')} legs/core)"
        )
    print(f"webrtc_legs --alternate {args.alternate} (load {load:.2f} before): " + "; ".join(parts), flush=True)
    print(
        json.dumps(
            {
                "bench": "webrtc_legs_alternate",
                "rounds": args.alternate,
                "load_1min_before": round(load, 2),
                "summary": summary,
            }
        )
    )


if __name__ == "__main__":
    main()
