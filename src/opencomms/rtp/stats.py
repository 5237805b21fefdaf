"""Reception statistics of one RTP source (RFC 3550 A.1, A.3, A.8), round-trip time from report blocks, and the
CallQuality summary kept in call records.

Owns the sequence-number bookkeeping (probation, wrap, restarts), loss and jitter arithmetic and LSR/DLSR.
Must not parse or build packets (packet.py, rtcp.py), read clocks or do I/O: arrival times are passed in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Final, final

from opencomms._compiled.pickling import Reduced, reduce_frozen

from .rtcp import ReportBlock, SenderReport, compact_ntp

__all__ = ["CallQuality", "ReceiverStats", "round_trip_time"]

RTP_SEQ_MOD: Final = 1 << 16
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
MIN_SEQUENTIAL: Final = 2
_TS_MOD: Final = 1 << 32


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - _TS_MOD if v & 0x80000000 else v


@final
class ReceiverStats:
    """Statistics of one source, exactly as RFC 3550 appendix A computes them.

    Create it with the first packet's sequence number (`probation` packets in sequence are needed before the
    source counts as valid, A.1); then call `update_seq(seq)` for every packet of the source, `update_jitter`
    for every audio packet (not RFC 4733 reports, which repeat a timestamp), `on_sender_report` for its SRs and
    `report_block(now)` to make the next reception report (which also starts the next fraction-lost interval).
    """

    def __init__(self, ssrc: int, seq: int, clock_rate: int = 8000, probation: int = MIN_SEQUENTIAL) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self._init_seq(seq)
        if probation:  # A.1: the first packet only starts probation; without it, update_seq(seq) counts it
            self.max_seq = (seq - 1) & 0xFFFF
        self.probation = probation
        self.jitter = 0.0
        """Interarrival jitter estimate J in timestamp units (A.8)."""
        self._last_arrival: float | None = None
        self._last_ts = 0
        self.last_sr = 0
        """Middle 32 bits of the NTP time of the last SR received (0: none yet)."""
        self.last_sr_arrival = 0.0

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def update_seq(self, seq: int) -> bool:
        """Account for one packet; False while on probation or when it looks like a stray from another stream
        (a jump of more than MAX_DROPOUT, accepted as a restart only when the next packet follows it)."""
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD  # wrapped
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                self._init_seq(seq)  # two sequential packets after a big jump: the source restarted
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: a duplicate or a reordered packet
        self.received += 1
        return True

    def update_jitter(self, rtp_timestamp: int, arrival: float) -> None:
        """J += (|D| - J) / 16 with D the change in transit time (arrival - timestamp) between this audio packet
        and the previous one, in timestamp units; timestamps are compared modulo 2^32."""
        if self._last_arrival is not None:
            d = (arrival - self._last_arrival) * self.clock_rate - _signed32(rtp_timestamp - self._last_ts)
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._last_arrival = arrival
        self._last_ts = rtp_timestamp

    def on_sender_report(self, sr: SenderReport, arrival: float) -> None:
        """Remember the SR's time for LSR/DLSR in our next report."""
        self.last_sr = compact_ntp(sr.ntp_timestamp)
        self.last_sr_arrival = arrival

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the source became valid (0 while on probation)."""
        return 0 if self.probation else self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost: expected - received (negative with duplicates)."""
        return self.expected - self.received

    def report_block(self, now: float) -> ReportBlock:
        """The reception report for this source at time `now` (same clock as the arrival times); starts the next
        fraction-lost interval (A.3)."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval == 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        lost = max(-0x800000, min(0x7FFFFF, self.lost))
        dlsr = 0
        if self.last_sr:
            dlsr = max(0, min(0xFFFFFFFF, int((now - self.last_sr_arrival) * 65536)))
        return ReportBlock(
            self.ssrc,
            min(fraction, 255),
            lost,
            self.extended_max & 0xFFFFFFFF,
            int(self.jitter) & 0xFFFFFFFF,
            self.last_sr,
            dlsr,
        )


def round_trip_time(block: ReportBlock, arrival_ntp: int) -> float | None:
    """RTT in seconds from a report block about our stream that arrived at NTP time `arrival_ntp` (our clock):
    A - LSR - DLSR (RFC 3550 §6.4.1). None when the peer has not seen an SR from us yet (LSR 0) or the result
    is negative or absurd (more than 60 s: clocks jumped)."""
    if block.lsr == 0:
        return None
    rtt = (compact_ntp(arrival_ntp) - block.lsr - block.dlsr) & 0xFFFFFFFF
    seconds = rtt / 65536.0
    return None if seconds > 60.0 else seconds


@dataclass(frozen=True, slots=True)
class CallQuality:
    """One call's RTP figures for call records. Inbound figures are measured here; `remote_*` figures are what
    the peer reported about our stream in its last RTCP report (None until one arrives)."""

    packets_sent: int
    packets_received: int
    packets_lost: int
    """Inbound packets lost (expected - received, RFC 3550 A.3), over every source the peer used."""
    loss_percent: float
    """Inbound loss as a percentage of the packets expected."""
    jitter_ms: float
    """Inbound interarrival jitter (RFC 3550 A.8) in milliseconds, of the current source."""
    rtt_ms: float | None
    """Round-trip time from the last report block about our stream (LSR/DLSR), in milliseconds."""
    remote_packets_lost: int | None = None
    remote_loss_percent: float | None = None
    """The peer's last fraction-lost figure about our stream, as a percentage."""
    remote_jitter_ms: float | None = None
    concealed_frames: int = 0
    """20 ms frames the jitter buffer had to conceal (lost or late packets)."""

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain JSON-ready form (snake_case; the call-record writer maps names)."""
        return asdict(self)

    def __reduce__(self) -> Reduced:  # picklable when compiled (see opencomms._compiled.pickling)
        return reduce_frozen(self)
