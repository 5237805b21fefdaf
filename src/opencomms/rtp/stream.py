"""One call's RTP stream as the media engine thread sees it: what arrives (validation, source latching / symmetric
RTP, RFC 3550 statistics, RFC 4733 keys, the jitter buffer), RTCP (reports, RTT, BYE) and the numbering state the
bank sends with.

Owns the per-call receive logic and RTCP, the negotiated `StreamParams` and `RtpConfig`. Must not run DSP in
batches (bank.py), touch asyncio or block: after attachment every method runs on the engine thread (the bank
calls them); other threads only read the counters (`quality()`) and `last_rtp`/`last_rtcp`. While a stream sends
plain audio its numbering and send counters live in the bank's send lane (sendlane.py), which writes them back
here (`seq`, `was_sending`, `packets_sent`, `octets_sent`, `send_errors`) before anything else reads them on the
engine thread, and every ~0.25 s for the readers on other threads. Likewise, once `on_rtp` has seen the stream in
its common case (`lane_terms`), the socket layer's receive lane takes its in-sequence packets to the jitter buffer
and counts them (sockio.py); `absorb` takes those counts, and the received figures add what the lane still holds.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Protocol, final

from opencomms._compiled.pickling import Reduced, reduce_frozen

from ..media.dtmf.rfc4733 import (
    TelephoneEventError,
    TelephoneEventReceiver,
    TelephoneEventSender,
    TelephoneEventStarted,
)
from ..media.g711 import alaw_to_ulaw, ulaw_to_alaw
from ..media.g722 import G722_SILENCE
from .address import is_literal
from .jitter import JitterBuffer, JitterConfig
from .offer_answer import NegotiatedAudio
from .opus import LARGE_SLOT, MAX_PACKET, MAX_RECEIVED, OpusSettings
from .packet import RtpError, pack_header, parse_header
from .rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_from_unix,
    parse_compound,
    report_interval,
)
from .stats import CallQuality, ReceiverStats, round_trip_time

__all__ = ["LaneCounts", "Outgoing", "RtpConfig", "Stream", "StreamParams"]

log = logging.getLogger("opencomms.rtp")

RATE: Final = 8000
ULAW: Final = 0
ALAW: Final = 1
EVENT: Final = 2
WIDE: Final = 3
OPUS: Final = 4
_FILL = {ULAW: 0xFF, ALAW: 0xD5, WIDE: G722_SILENCE, OPUS: 0}
OPUS_CLOCK: Final = 6
"""RTP timestamp units of Opus (48 kHz, RFC 7587) per unit of the bank's 8 kHz clock."""
_FIXED = struct.Struct("!BBHII")


class LaneCounts(Protocol):
    """What a stream reads of the socket layer's lane (rtp/sockio.py): counts consumed and not yet absorbed."""

    def peek(self, slot: int) -> tuple[int, int, float]: ...


Outgoing = tuple["Stream", "memoryview | bytes", tuple[str, int]]
"""A packet ready to go: (stream, datagram, destination)."""
_KINDS = {"PCMU": ULAW, "PCMA": ALAW, "G722": WIDE, "opus": OPUS, "telephone-event": EVENT}
_LARGE_KEPT = 64
"""Oversized Opus payloads a stream keeps for its slots (over a second of 20 ms packets: more than the jitter buffer
holds)."""
_RNG = random.Random()  # RTCP interval jitter of every stream (seeding one per stream costs more than a call)


@dataclass(frozen=True, slots=True)
class RtpConfig:
    """Settings of every RTP session of a node."""

    jitter: JitterConfig = field(default_factory=JitterConfig)
    """Jitter buffer: 40-200 ms adaptive target by default."""
    media_timeout: float | None = 30.0
    """Seconds without RTP from a peer that should be sending before `on_timeout` (None: never)."""
    hold_timeout: float | None = None
    """The same while the peer is not sending to us (hold, inactive); RTCP counts as traffic then."""
    rtcp_interval: float = 5.0
    """Mean seconds between RTCP reports (RFC 3550 minimum; randomised 0.5-1.5x)."""
    symmetric: bool = True
    """Send to where the peer's RTP (RTCP) comes from once it arrives (RFC 4961, comedia), not the SDP address."""
    relatch_after: float = 2.0
    """Packets from another address are dropped unless the current source has been silent this long (then the
    new address takes over: NAT rebinding). Before the first packet any source is accepted."""
    dtmf_volume: int = 10
    """RFC 4733 volume field of events we send (-10 dBm0)."""
    suppress_audio_during_dtmf: bool = True
    """Send no audio packets while an RFC 4733 event is on (the in-band tone would be heard twice)."""
    housekeeping: float = 1.0
    """Seconds between the event loop's media-timeout checks."""
    opus: OpusSettings = field(default_factory=OpusSettings)
    """How the bank encodes Opus on the streams that negotiated it (relayed browsers, `webrtc.opus_in_node`)."""

    def __reduce__(self) -> Reduced:  # picklable when compiled (see opencomms._compiled.pickling)
        return reduce_frozen(self)


@dataclass(frozen=True, slots=True)
class StreamParams:
    """A negotiation's effect on the stream (replaced whole on a re-INVITE)."""

    payload_type: int = 0
    """Payload type of our audio packets (the peer's number for the codec)."""
    alaw: bool = False
    """PCMA instead of PCMU, both ways (received packets of the other law are transcoded)."""
    g722: bool = False
    """G.722 both ways (16 kHz audio, no 8 kHz step; received G.711 packets are then dropped, and G.722 packets
    while G.711 is negotiated)."""
    telephone_event: int | None = None
    """Payload type for RFC 4733 events we send; None: DTMF stays in-band."""
    event_rate: int = RATE
    """Clock rate of the negotiated telephone-event (its rtpmap, which offer/answer matches to the audio codec's:
    8000 with G.711 and G.722, 48000 with Opus): event durations and timestamps count in its units."""
    opus: bool = False
    """Opus both ways (a relayed browser: 16 kHz audio coded by the bank, a 48 kHz RTP clock)."""
    sends: bool = True
    receives: bool = True
    receive_payload_types: Mapping[int, str] = field(default_factory=lambda: {0: "PCMU", 8: "PCMA"})
    remote_rtp: tuple[str, int] | None = None
    remote_rtcp: tuple[str, int] | None = None

    @classmethod
    def from_media(cls, media: NegotiatedAudio) -> StreamParams:
        return cls(
            payload_type=media.codec.payload_type,
            alaw=media.codec.name.upper() == "PCMA",
            g722=media.codec.name.upper() == "G722",
            opus=media.codec.name.upper() == "OPUS",
            telephone_event=media.telephone_event,
            event_rate=media.codec.clock_rate,  # telephone-event is only accepted at the codec's rate
            sends=media.direction.sends,
            receives=media.direction.receives,
            receive_payload_types=dict(media.receive_payload_types),
            remote_rtp=media.remote_rtp,
            remote_rtcp=media.remote_rtcp,
        )

    def __reduce__(self) -> Reduced:  # picklable when compiled (see opencomms._compiled.pickling)
        return reduce_frozen(self)


@final
class Stream:
    """One call's RTP state. Construct it (any thread), then `apply` its first params before attaching it to an
    RtpBank; from then on only the engine thread calls its methods (through the bank)."""

    def __init__(
        self,
        leg_id: str,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket | None = None,
        config: RtpConfig | None = None,
        *,
        cname: str | None = None,
        ssrc: int | None = None,
        on_key: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
        numbering: tuple[int, int] | None = None,
    ) -> None:
        self.leg_id = leg_id
        self.rtp_sock = rtp_sock
        self.rtcp_sock = rtcp_sock
        self.config = config = config or RtpConfig()
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.cname = cname or f"{secrets.token_hex(8)}@opencomms"
        self.on_key = on_key
        """Called on the engine thread with each RFC 4733 key as its first report arrives."""
        self.key_sink: Callable[[Stream, str, float], None] | None = None
        """Set by the bank while attached: told of each RFC 4733 key as its first report arrives (with the arrival
        time), before `on_key`; it hands the key to the engine (ToneDetected for the legs hearing this one)."""
        self._rng = rng or _RNG
        self.params = StreamParams()
        self._kinds: dict[int, int] = {0: ULAW, 8: ALAW}
        self._law = ULAW
        # addresses (symmetric RTP / RTCP)
        self.rtp_addr: tuple[str, int] | None = None
        self.rtcp_addr: tuple[str, int] | None = None
        self._source: tuple[str, int] | None = None
        self._rtcp_source: tuple[str, int] | None = None
        # receive
        self.jb = JitterBuffer(_with_fill(config.jitter, _FILL[ULAW]))
        self.stats: ReceiverStats | None = None
        self._te_rx = TelephoneEventReceiver(RATE)
        self._last_rtp = -math.inf
        self.last_rtcp = -math.inf
        self._carried_expected = 0
        self._carried_lost = 0
        # send (the bank's numbering state)
        self.row = -1
        self.offset = 0
        """Where this stream's packet is in each of the bank's two packet buffers (set at attach)."""
        self.fds: tuple[int, ...] = ()
        """The bank's I/O slots of this stream's sockets (set at attach; rtp/sockio.py)."""
        # (first sequence number, timestamp base): random, or `numbering` (a media process takes the node's own)
        self.seq, self.ts_base = numbering or (secrets.randbelow(1 << 16), secrets.randbits(32))
        self.ts_offset: int | None = None
        """RTP timestamp = (ts_offset + round(tick time * 8000)) mod 2^32, fixed by the first tick."""
        self.events_on = False
        """An RFC 4733 event is queued or being sent (checked by the bank every tick)."""
        self.was_sending = False
        self.conceal = 0
        self.te = TelephoneEventSender(RATE, 20, config.dtmf_volume)
        self.dtmf: deque[tuple[str, float, float]] = deque()
        self.dtmf_next = -math.inf
        # RTCP
        self.rtcp_next = math.inf
        self._sent_at_report = 0
        self.remote_block: ReportBlock | None = None
        self.rtt: float | None = None
        self.remote_bye = False
        # counters (engine thread writes, anyone reads)
        self.packets_sent = 0
        self.octets_sent = 0
        self.events_sent = 0
        self.send_errors = 0
        self.bad_destinations = 0
        """Negotiated addresses refused as send targets (not an IP literal, port out of range)."""
        self.fault: str | None = None
        """Set by the bank when this stream raised inside its batch ("send", "receive", "play", "rtcp"): it takes
        no further part, and `on_fault` reported it."""
        self.on_fault: Callable[[str], None] | None = None
        """Called on the engine thread, once, when the bank drops this stream after an error of its own."""
        self._packets_received = 0
        self._octets_received = 0
        self.lane_io: LaneCounts | None = None
        """Set by the bank while attached: the socket layer whose lane may consume this stream's packets (their
        counts are added here until `absorb` takes them)."""
        self.lane_slot = -1
        self._lane_pt = -1
        """Payload type of the last audio packet played as it came (the lane's), or -1."""
        self.reported: CallQuality | None = None
        """Set on the node's mirror of a stream that runs in the media process: its figures as last reported
        (`quality()` returns them)."""
        self.invalid_packets = 0
        self.foreign_packets = 0
        """Valid packets from an address other than the latched source (dropped)."""
        self.unknown_payload = 0
        self.rtcp_received = 0
        self.frames_played = 0
        self.frames_concealed = 0
        self.lost_run = 0
        """LOST frames played out (concealed) since the last good frame (set by the bank)."""
        self.dtx_frames = 0
        """Frames of the peer's discontinuous transmission: a gap in the timestamps closed by the next sequence
        number was silence the peer did not send, not loss; the concealment counted for it is taken back."""
        self.clock = 1
        """RTP timestamp units per 8 kHz unit of the bank's clock (OPUS_CLOCK for Opus)."""
        self._prev_seq = -1
        self._prev_ts = 0
        self._opus_origin: tuple[int, int] | None = None  # (SSRC, timestamp) the 48 -> 8 kHz mapping counts from
        self.opus_large: dict[int, bytes] = {}
        """Received Opus payloads too large for a jitter-buffer slot, by the key their slot holds (LARGE_SLOT); the
        bank takes each when it plays its slot; at most `_LARGE_KEPT` wait (the oldest go first)."""
        self._large_key = 0

    # -- setup (engine thread once attached) -------------------------------------------------------------------

    def apply(self, params: StreamParams) -> None:
        """Take a new negotiation: codec, payload types, direction, addresses (re-learnt if they changed)."""
        old = self.params
        self.params = params
        self._kinds = {pt: _KINDS[name] for pt, name in params.receive_payload_types.items() if name in _KINDS}
        law = OPUS if params.opus else WIDE if params.g722 else ALAW if params.alaw else ULAW
        self.clock = OPUS_CLOCK if law == OPUS else 1
        if params.event_rate != self.te.clock_rate:  # RFC 4733 units follow the telephone-event's rtpmap
            self.te = TelephoneEventSender(params.event_rate, 20, self.config.dtmf_volume)
            self._te_rx = TelephoneEventReceiver(params.event_rate)
        if law != self._law:
            self._law = law
            self.jb = JitterBuffer(_with_fill(self.config.jitter, _FILL[law]))
        if params.remote_rtp != old.remote_rtp or self.rtp_addr is None:
            self._source = None
            self.rtp_addr = self._sendable(params.remote_rtp)
        if params.remote_rtcp != old.remote_rtcp or self.rtcp_addr is None:
            self._rtcp_source = None
            self.rtcp_addr = self._sendable(params.remote_rtcp)

    def _sendable(self, addr: tuple[str, int] | None) -> tuple[str, int] | None:
        """`addr` if a socket can send to it without a name lookup on this thread; else None (nothing is sent
        until the peer's own packets latch an address), counted in `bad_destinations`. The gateway resolves and
        checks addresses before they get here: this is the last line."""
        if addr is None:
            return None
        host, port = addr
        if is_literal(host) and isinstance(port, int) and 0 < port <= 65535:
            return addr
        self.bad_destinations += 1
        return None

    def schedule_rtcp(self, now: float) -> None:
        """First report: half the interval after attachment (RFC 3550 §6.3)."""
        self.rtcp_next = now + report_interval(self.config.rtcp_interval, self._rng, initial=True)

    def rtp_timestamp(self, at: float) -> int | None:
        """Our RTP timestamp at engine time `at` (None before the first tick): timestamps follow the tick clock."""
        offset = self.ts_offset
        return None if offset is None else (offset + round(at * RATE) * self.clock) & 0xFFFFFFFF

    # -- receive (engine thread) ---------------------------------------------------------------------------------

    def on_rtp(self, data: bytes, addr: tuple[str, int], arrival: float) -> None:
        """One datagram from the RTP socket, received at `arrival` (engine clock)."""
        if len(data) >= 12 and data[0] == 0x80 and not 72 <= data[1] & 0x7F <= 76:
            # The common case: version 2, no padding, extension or CSRCs (parse_header would agree).
            _, pt, seq, ts, ssrc = _FIXED.unpack_from(data)
            pt &= 0x7F
            start, end = 12, len(data)
        else:
            try:
                pt, _marker, seq, ts, ssrc, start, end = parse_header(data)
            except RtpError:
                self.invalid_packets += 1
                return
        if addr != self._source and not self._latch(addr, arrival):
            self.foreign_packets += 1
            return
        self._last_rtp = arrival
        kind = self._kinds.get(pt)
        if kind is None:
            self.unknown_payload += 1
            return
        stats = self.stats
        if stats is None or stats.ssrc != ssrc:
            stats = self._new_source(ssrc, seq)
        if seq == stats.max_seq + 1 and not stats.probation:  # in sequence, no wrap: A.1's common case
            stats.max_seq = seq
            stats.received += 1
        else:
            stats.update_seq(seq)
        self._packets_received += 1
        self._octets_received += end - start
        if not self.params.receives:
            return
        if kind == EVENT:
            self._on_event(data[start:end], ts, arrival)
            return
        payload = data[start:end]
        if (
            self.lost_run
            and seq == (self._prev_seq + 1) & 0xFFFF
            and (
                _ts_after(ts, self._prev_ts) > 160 * self.clock or self.lost_run >= self.config.jitter.idle_after_frames
            )
        ):
            # The next packet after a gap in time (or after the buffer ran idle: rtpengine's transcoded output
            # numbers its timestamps on, gap or not): the peer sent nothing for a while (DTX), nothing was lost.
            self.frames_concealed -= self.lost_run
            self.dtx_frames += self.lost_run
            self.lost_run = 0
        self._prev_seq, self._prev_ts = seq, ts
        if kind != self._law:
            self._lane_pt = -1
            if WIDE in (kind, self._law) or OPUS in (kind, self._law):  # no byte mapping: not this stream's codec
                self.unknown_payload += 1
                return
            payload = (ulaw_to_alaw(payload) if kind == ULAW else alaw_to_ulaw(payload)).tobytes()
        elif kind == OPUS:
            self._lane_pt = -1
            payload, ts = self._opus_slot(ssrc, ts, payload)
            if not payload:
                return
        else:
            self._lane_pt = pt
        self.jb.put(ssrc, ts, payload, arrival)

    # -- the lane (engine thread) ------------------------------------------------------------------------------

    def lane_terms(self) -> tuple[tuple[str, int], int, int, int] | None:
        """(source, SSRC, payload type, last sequence number) the socket layer's lane may take this stream's next
        packets on (`DatagramIO.arm`), or None while they need `on_rtp` (no valid source yet, the last audio
        packet transcoded or Opus, a concealment run open, not receiving): the packets `on_rtp` would handle in its
        common case, nothing else."""
        stats, source = self.stats, self._source
        if stats is None or stats.probation or source is None or self._lane_pt < 0 or self.lost_run:
            return None
        if not self.params.receives or self.fault is not None:
            return None
        return source, stats.ssrc, self._lane_pt, stats.max_seq

    def absorb(self, pending: tuple[int, int, int, int, float]) -> None:
        """Take what the lane consumed (`DatagramIO.lane`): exactly what `on_rtp` would have counted for them."""
        count, octets, seq, ts, arrival = pending
        stats = self.stats
        if stats is not None:  # received first: `quality()` read meanwhile elsewhere never counts them as lost
            stats.received += count
            stats.max_seq = seq
        self._packets_received += count
        self._octets_received += octets
        self._last_rtp = arrival
        self._prev_seq, self._prev_ts = seq, ts

    @property
    def packets_received(self) -> int:
        io = self.lane_io
        return self._packets_received + (io.peek(self.lane_slot)[0] if io is not None else 0)

    @property
    def octets_received(self) -> int:
        io = self.lane_io
        return self._octets_received + (io.peek(self.lane_slot)[1] if io is not None else 0)

    @property
    def last_rtp(self) -> float:
        """Engine-clock time of the last accepted RTP packet (-inf: none yet)."""
        io = self.lane_io
        return max(self._last_rtp, io.peek(self.lane_slot)[2]) if io is not None else self._last_rtp

    @last_rtp.setter
    def last_rtp(self, value: float) -> None:  # the node's mirror of a media process's stream
        self._last_rtp = value

    def _opus_slot(self, ssrc: int, ts: int, payload: bytes) -> tuple[bytes, int]:
        """An Opus packet as the jitter buffer takes it: a 20 ms slot of 160 bytes (its length, then the payload)
        at an 8 kHz timestamp (counted from the SSRC's first packet, less 20 s for packets reordered before it). A
        payload over MAX_PACKET (a sender that ignored the answer's `maxaveragebitrate`) waits in `opus_large` and
        its slot says where (LARGE_SLOT, then the key)."""
        size = len(payload)
        if not 0 < size <= MAX_RECEIVED:
            self.invalid_packets += 1
            return b"", 0
        origin = self._opus_origin
        if origin is None or origin[0] != ssrc:
            origin = self._opus_origin = (ssrc, (ts - 960_000) & 0xFFFFFFFF)
        if size <= MAX_PACKET:
            slot = bytes((size,)) + payload + bytes(MAX_PACKET - size)
        else:
            key = self._large_key = (self._large_key + 1) & 0xFFFFFFFF
            large = self.opus_large
            large[key] = payload
            if len(large) > _LARGE_KEPT:  # slots the jitter buffer dropped (late, overflow) are never played
                del large[next(iter(large))]
            slot = bytes((LARGE_SLOT,)) + key.to_bytes(4, "big") + bytes(MAX_PACKET - 4)
        return slot, ((ts - origin[1]) & 0xFFFFFFFF) // OPUS_CLOCK

    def opus_payload(self, slot: bytes, take: bool) -> bytes | None:
        """The Opus payload a jitter-buffer slot holds (None: an empty slot, or a large payload no longer kept);
        `take` removes a large one from `opus_large` (the slot is played), else it stays (in-band FEC reads the
        packet after a lost one, played in its own turn later)."""
        size = slot[0]
        if size == LARGE_SLOT:
            key = int.from_bytes(slot[1:5], "big")
            return self.opus_large.pop(key, None) if take else self.opus_large.get(key)
        return slot[1 : 1 + size] if size else None

    def _latch(self, addr: tuple[str, int], now: float) -> bool:
        if self._source is not None and now - self._last_rtp < self.config.relatch_after:
            return False
        self._source = addr
        if self.config.symmetric:
            self.rtp_addr = addr
        return True

    def _new_source(self, ssrc: int, seq: int) -> ReceiverStats:
        old = self.stats
        if old is not None:
            self._carried_expected += old.expected
            self._carried_lost += old.lost
        self.stats = ReceiverStats(ssrc, seq, RATE, probation=0)
        return self.stats

    def _on_event(self, payload: bytes, ts: int, now: float) -> None:
        try:
            events = self._te_rx.receive(payload, ts, now)
        except TelephoneEventError:
            self.invalid_packets += 1
            return
        for event in events:
            if not isinstance(event, TelephoneEventStarted):
                continue
            if self.key_sink is not None:
                self.key_sink(self, event.key, now)
            if self.on_key is not None:
                try:
                    self.on_key(event.key)
                except Exception:
                    log.exception("RTP key hand-off failed", extra={"call_id": self.leg_id})

    def on_rtcp(self, data: bytes, addr: tuple[str, int], arrival: float, wall: float) -> None:
        """One datagram from the RTCP socket (`wall`: Unix time of arrival, for RTT)."""
        try:
            packets: list[RtcpPacket] = parse_compound(data, strict=False)  # reduced-size RTCP too
        except RtcpError:
            self.invalid_packets += 1
            return
        if addr != self._rtcp_source:
            if self._rtcp_source is not None and arrival - self.last_rtcp < self.config.relatch_after:
                self.foreign_packets += 1
                return
            self._rtcp_source = addr
            if self.config.symmetric:
                self.rtcp_addr = addr
        self.last_rtcp = arrival
        self.rtcp_received += 1
        for p in packets:
            blocks: tuple[ReportBlock, ...] = ()
            if isinstance(p, SenderReport):
                if self.stats is not None and p.ssrc == self.stats.ssrc:
                    self.stats.on_sender_report(p, arrival)
                blocks = p.reports
            elif isinstance(p, ReceiverReport):
                blocks = p.reports
            elif isinstance(p, Bye):
                self.remote_bye = True
            for block in blocks:
                if block.ssrc == self.ssrc:
                    self.remote_block = block
                    rtt = round_trip_time(block, ntp_from_unix(wall))
                    if rtt is not None:
                        self.rtt = rtt

    # -- RTCP out (engine thread) ----------------------------------------------------------------------------------

    def send_rtcp(self, now: float, wall: float, bye: bool = False) -> None:
        """Send a compound report now (SR if we sent RTP since the last one, else RR; SDES CNAME; BYE when
        leaving) and schedule the next."""
        self.rtcp_next = now + report_interval(self.config.rtcp_interval, self._rng)
        sock, addr = self.rtcp_sock, self.rtcp_addr
        if sock is None or addr is None:
            return
        blocks: tuple[ReportBlock, ...] = ()
        if self.stats is not None:
            self.stats.jitter = self.jb.jitter  # the jitter buffer runs the A.8 estimator on every audio packet
            blocks = (self.stats.report_block(now),)
        ts = self.rtp_timestamp(now)
        sent = self.packets_sent
        first: RtcpPacket
        if sent != self._sent_at_report and ts is not None:
            first = SenderReport(
                self.ssrc, ntp_from_unix(wall), ts, sent & 0xFFFFFFFF, self.octets_sent & 0xFFFFFFFF, blocks
            )
        else:
            first = ReceiverReport(self.ssrc, blocks)
        self._sent_at_report = sent
        packets: list[RtcpPacket] = [first, SourceDescription.cname(self.ssrc, self.cname)]
        if bye:
            packets.append(Bye((self.ssrc,)))
        try:
            sock.sendto(build_compound(packets), addr)
        except (OSError, ValueError, TypeError, OverflowError):  # an unusable address must not end the batch
            self.send_errors += 1

    def event_packets(self, now: float, ts: int, out: list[Outgoing]) -> bool:
        """Append the RFC 4733 packets due now to `out` (starting the next queued key when idle); True while an
        event is on. Sequence numbers are taken here, in sending order with the audio."""
        te_pt = self.params.telephone_event
        sender = self.te
        if te_pt is None:
            self.dtmf.clear()
            self.events_on = False
            return False
        if not sender.busy and self.dtmf and now >= self.dtmf_next - 1e-6:
            key, duration_ms, gap_ms = self.dtmf.popleft()
            sender.start(key, ts, now, duration_ms)
            self.dtmf_next = now + (duration_ms + gap_ms) / 1000.0
        addr = self.rtp_addr
        for packet in sender.poll(now + 1e-6):
            if addr is None or not self.params.sends:
                continue
            header = pack_header(te_pt, packet.marker, self.seq, packet.timestamp, self.ssrc)
            self.seq = (self.seq + 1) & 0xFFFF
            out.append((self, header + bytes(packet.payload), addr))
            self.events_sent += 1
        self.events_on = sender.busy or bool(self.dtmf)
        return sender.busy

    # -- figures (any thread) ----------------------------------------------------------------------------------------

    def quality(self) -> CallQuality:
        """The stream's figures so far (read without locking: the received ones at most one packet stale; while
        the bank's send lane numbers the stream, `packets_sent` as of its last fold-back, up to about 0.25 s ago)."""
        if self.reported is not None:
            return self.reported
        stats, block = self.stats, self.remote_block
        expected = self._carried_expected + (stats.expected if stats is not None else 0)
        lost = max(0, self._carried_lost + (stats.lost if stats is not None else 0))
        return CallQuality(
            packets_sent=self.packets_sent,
            packets_received=self.packets_received,
            packets_lost=lost,
            loss_percent=round(100.0 * lost / expected, 3) if expected > 0 else 0.0,
            jitter_ms=round(self.jb.jitter_ms, 3),
            rtt_ms=round(self.rtt * 1000.0, 3) if self.rtt is not None else None,
            remote_packets_lost=block.cumulative_lost if block is not None else None,
            remote_loss_percent=round(block.fraction_lost * 100.0 / 256.0, 3) if block is not None else None,
            remote_jitter_ms=round(block.jitter * 1000.0 / RATE, 3) if block is not None else None,
            concealed_frames=self.frames_concealed,
        )


def _ts_after(ts: int, prev: int) -> int:
    """How far RTP timestamp `ts` is after `prev` (mod 2^32; negative when before)."""
    d = (ts - prev) & 0xFFFFFFFF
    return d - (1 << 32) if d >= 1 << 31 else d


@functools.lru_cache(maxsize=64)  # one config per node in practice: no dataclass copy per call
def _with_fill(config: JitterConfig, fill: int) -> JitterConfig:
    return replace(config, fill=fill, clock_rate=RATE, frame_ms=20)
