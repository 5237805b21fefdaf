"""RTP streams inside the media process: the commands that attach, update and detach them (plain data: the
sockets arrive as descriptors beside the batch), and the child's registry that turns a stream's key, fault and
counters into messages for the node.

Owns `StreamAttach`, `StreamDetach`, `StreamUpdate`, `StreamDtmf`, `ChildStreams` and `WorkerSettings`. Runs
in the child only (commands are built on the node's side and applied there); must not touch asyncio.
"""

from __future__ import annotations

import socket
import weakref
from collections import deque
from dataclasses import dataclass, field, fields

from ..media.engine import MediaEngine, TalkerConfig
from ..rtp.bank import RtpBank
from ..rtp.stats import CallQuality
from ..rtp.stream import RtpConfig, Stream, StreamParams

__all__ = [
    "ChildStreams",
    "StreamAttach",
    "StreamDetach",
    "StreamDtmf",
    "StreamReport",
    "StreamUpdate",
    "WorkerSettings",
    "streams_of",
]

StreamReport = tuple[str, float, float, CallQuality | None]
"""(leg_id, last_rtp, last_rtcp, figures) as the node's mirror takes it."""
QUALITY_FIELDS = tuple(f.name for f in fields(CallQuality))


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What the child builds (the first frame it receives)."""

    capacity: int = 4096
    inbound_queue_frames: int = 8
    talkers: TalkerConfig = field(default_factory=TalkerConfig)
    max_lag_ticks: int = 5
    realtime_priority: int | None = None
    latency_slice: float | None = 0.0005
    """The engine thread's scheduling slice (EngineThread.latency_slice); None keeps the kernel's."""
    spin: float = 0.0
    """EngineThread.spin."""
    bank_capacity: int = 1024
    measure_lateness: bool = False
    log_level: int = 30


class ChildStreams:
    """The child's RtpBank and its streams by leg; stream keys and faults queue here for the node."""

    def __init__(self, bank: RtpBank) -> None:
        self.bank = bank
        self.streams: dict[str, Stream] = {}
        self.notes: deque[tuple[str, str, str]] = deque()
        """("key" | "fault", leg_id, key or step), taken by the writer thread."""

    def attach(self, engine: MediaEngine, cmd: StreamAttach) -> None:
        socks = [socket.socket(fileno=fd) for fd in cmd.fds]
        try:
            if len(socks) != (2 if cmd.rtcp else 1):
                raise ValueError("the RTP socket descriptors did not arrive")
            leg = cmd.leg_id
            st = Stream(
                leg,
                socks[0],
                socks[1] if cmd.rtcp else None,
                cmd.config,
                cname=cmd.cname,
                ssrc=cmd.ssrc,
                numbering=cmd.numbering,
                on_key=lambda key: self.notes.append(("key", leg, key)),
            )
            st.on_fault = lambda step: self.notes.append(("fault", leg, step))
            st.apply(cmd.params)
            self.bank._attach(engine, st)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        self.streams[leg] = st

    def detach(self, engine: MediaEngine, leg_id: str, bye: bool) -> StreamReport | None:
        st = self.streams.pop(leg_id, None)
        if st is None:
            return None
        try:
            self.bank._detach(engine, st, bye)
        finally:
            st.rtp_sock.close()
            if st.rtcp_sock is not None:
                st.rtcp_sock.close()
        return (leg_id, st.last_rtp, st.last_rtcp, st.quality())

    def reports(self) -> list[tuple[str, float, float, tuple[object, ...]]]:
        """Every stream's receive times and figures (as plain tuples: a tenth of the pickling cost of the
        dataclasses); read off the engine thread, as the node read them before (at most one packet stale)."""
        out = []
        for leg, st in list(self.streams.items()):
            q = st.quality()
            out.append((leg, st.last_rtp, st.last_rtcp, tuple(getattr(q, name) for name in QUALITY_FIELDS)))
        return out


_STREAMS: weakref.WeakKeyDictionary[MediaEngine, ChildStreams] = weakref.WeakKeyDictionary()


def streams_of(engine: MediaEngine) -> ChildStreams:
    """The child's streams of `engine` (registered by the worker)."""
    return _STREAMS[engine]


def register(engine: MediaEngine, streams: ChildStreams) -> None:
    _STREAMS[engine] = streams


@dataclass(frozen=True, slots=True)
class StreamAttach:
    """Attach an RTP stream to leg `leg_id`; its sockets travel as descriptors with the batch (`fds` is filled in
    by the child's reader: RTP, then RTCP when `rtcp`)."""

    leg_id: str
    config: RtpConfig
    cname: str
    ssrc: int
    params: StreamParams
    rtcp: bool
    fds: tuple[int, ...] = ()
    numbering: tuple[int, int] | None = None
    """The node's stream's first sequence number and timestamp base (the child then reads no randomness)."""

    def apply(self, engine: MediaEngine) -> None:
        streams_of(engine).attach(engine, self)


@dataclass(frozen=True, slots=True)
class StreamDetach:
    """Detach (an RTCP BYE first with `bye`) and close the child's sockets; the final report is the result."""

    leg_id: str
    bye: bool = True

    def apply(self, engine: MediaEngine) -> StreamReport | None:
        return streams_of(engine).detach(engine, self.leg_id, self.bye)


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    leg_id: str
    params: StreamParams

    def apply(self, engine: MediaEngine) -> None:
        streams = streams_of(engine)
        st = streams.streams.get(self.leg_id)
        if st is not None:
            streams.bank._update(engine, st, self.params)


@dataclass(frozen=True, slots=True)
class StreamDtmf:
    leg_id: str
    key: str
    duration_ms: float
    gap_ms: float

    def apply(self, engine: MediaEngine) -> None:
        streams = streams_of(engine)
        st = streams.streams.get(self.leg_id)
        if st is not None:
            streams.bank.queue_dtmf(st, self.key, self.duration_ms, self.gap_ms)
