"""RTCP (RFC 3550 §6): SR, RR, SDES, BYE and compound packets, parsed and built symmetrically.

Owns the wire layouts, compound validation (RFC 3550 A.2), NTP time helpers and the report interval rule.
Must not keep per-stream statistics (stats.py), know sockets or read clocks: times are passed in.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "NTP_EPOCH_OFFSET",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "UnknownRtcp",
    "build_compound",
    "compact_ntp",
    "ntp_from_unix",
    "parse_compound",
    "report_interval",
]

NTP_EPOCH_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900) to the Unix epoch (1970)."""
SR, RR, SDES, BYE = 200, 201, 202, 203
CNAME = 1
_HEAD = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")
_SR_INFO = struct.Struct("!IQIII")
_MAX_COUNT = 31


class RtcpError(ValueError):
    """Bytes that are not a valid RTCP (compound) packet, or values that do not fit the fields."""


def ntp_from_unix(unix_seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) of a Unix time."""
    return int((unix_seconds + NTP_EPOCH_OFFSET) * 4294967296.0) & 0xFFFFFFFFFFFFFFFF


def compact_ntp(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (16.16 seconds): the unit of LSR, DLSR and RTT arithmetic."""
    return (ntp >> 16) & 0xFFFFFFFF


def report_interval(min_interval: float = 5.0, rng: random.Random | None = None, initial: bool = False) -> float:
    """Seconds to the next report for a two-party audio call: the RFC 3550 §6.3 minimum (halved before the first
    report), randomised by a factor in [0.5, 1.5] and divided by e - 3/2 to compensate for the randomisation
    bias (§6.3.1). Bandwidth never binds for one G.711 stream (RTCP's 5 % is 3.2 kbit/s)."""
    base = min_interval / 2 if initial else min_interval
    factor = (rng or random).uniform(0.5, 1.5)
    return base * factor / 1.21828


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """Reception report about one source (24 bytes)."""

    ssrc: int
    fraction_lost: int
    """Lost since the previous report, as a fraction of 256 (0..255)."""
    cumulative_lost: int
    """Expected minus received since the start, signed 24 bits (duplicates can make it negative)."""
    highest_seq: int
    """Extended highest sequence number received (cycles << 16 | max seq)."""
    jitter: int
    """Interarrival jitter estimate in timestamp units."""
    lsr: int = 0
    """Middle 32 bits of the NTP time of the last SR received from the source (0 = none yet)."""
    dlsr: int = 0
    """Delay since that SR, in 1/65536 s."""

    def __post_init__(self) -> None:
        if not 0 <= self.fraction_lost <= 255:
            raise RtcpError("fraction lost is 8 bits")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise RtcpError("cumulative lost is signed 24 bits")
        for v in (self.ssrc, self.highest_seq, self.jitter, self.lsr, self.dlsr):
            if not 0 <= v <= 0xFFFFFFFF:
                raise RtcpError("report block fields are 32-bit unsigned")

    def pack(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc, self.fraction_lost << 24 | lost, self.highest_seq, self.jitter, self.lsr, self.dlsr
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview, at: int) -> ReportBlock:
        ssrc, word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, at)
        lost = word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (PT 200): what the sender sent, with reports about what it received."""

    ssrc: int
    ntp_timestamp: int
    """64-bit NTP wall-clock time at which `rtp_timestamp` was current."""
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (PT 201): reports from a participant that sent no RTP since its last report."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One source's SDES items as (type, value) pairs; type 1 is CNAME."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...]

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (PT 202)."""

    chunks: tuple[SdesChunk, ...]

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls((SdesChunk(ssrc, ((CNAME, cname.encode()),)),))


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE (PT 203): these sources leave, optionally saying why."""

    sources: tuple[int, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """Any other packet (APP, RTPFB, PSFB, XR...), kept as its header count and body."""

    packet_type: int
    count: int
    body: bytes


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def _header(count: int, packet_type: int, body_len: int, padding: bool = False) -> bytes:
    if body_len % 4:
        raise RtcpError("RTCP bodies are whole 32-bit words")
    return _HEAD.pack(0x80 | (0x20 if padding else 0) | count, packet_type, body_len // 4)


def _blocks(reports: Sequence[ReportBlock]) -> bytes:
    if len(reports) > _MAX_COUNT:
        raise RtcpError("at most 31 report blocks per packet")
    return b"".join(r.pack() for r in reports)


def _pack_one(p: RtcpPacket) -> bytes:
    if isinstance(p, SenderReport):
        body = _SR_INFO.pack(p.ssrc, p.ntp_timestamp, p.rtp_timestamp, p.packet_count, p.octet_count)
        body += _blocks(p.reports)
        return _header(len(p.reports), SR, len(body)) + body
    if isinstance(p, ReceiverReport):
        body = struct.pack("!I", p.ssrc) + _blocks(p.reports)
        return _header(len(p.reports), RR, len(body)) + body
    if isinstance(p, SourceDescription):
        parts = []
        for chunk in p.chunks:
            raw = struct.pack("!I", chunk.ssrc)
            for kind, value in chunk.items:
                if not 1 <= kind <= 255 or len(value) > 255:
                    raise RtcpError("SDES item types are 1..255 and values at most 255 bytes")
                raw += bytes((kind, len(value))) + value
            raw += bytes(4 - len(raw) % 4)  # the terminating null item, padded to a word
            parts.append(raw)
        body = b"".join(parts)
        return _header(len(p.chunks), SDES, len(body)) + body
    if isinstance(p, Bye):
        body = b"".join(struct.pack("!I", s) for s in p.sources)
        if p.reason is not None:
            text = p.reason.encode()[:255]
            body += bytes((len(text),)) + text
            body += bytes(-len(body) % 4)
        return _header(len(p.sources), BYE, len(body)) + body
    return _header(p.count, p.packet_type, len(p.body)) + p.body


def build_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialize packets back to back into one compound packet (the caller puts SR/RR first, then SDES)."""
    return b"".join(_pack_one(p) for p in packets)


def _parse_one(pt: int, count: int, body: bytes) -> RtcpPacket:
    if pt == SR:
        if len(body) < _SR_INFO.size + 24 * count:
            raise RtcpError("SR shorter than its report count says")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        blocks = tuple(ReportBlock.unpack(body, _SR_INFO.size + 24 * i) for i in range(count))
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks)
    if pt == RR:
        if len(body) < 4 + 24 * count:
            raise RtcpError("RR shorter than its report count says")
        blocks = tuple(ReportBlock.unpack(body, 4 + 24 * i) for i in range(count))
        return ReceiverReport(struct.unpack_from("!I", body)[0], blocks)
    if pt == SDES:
        chunks, at = [], 0
        for _ in range(count):
            if at + 4 > len(body):
                raise RtcpError("SDES chunk runs past the packet")
            ssrc = struct.unpack_from("!I", body, at)[0]
            at += 4
            items = []
            while True:
                if at >= len(body):
                    raise RtcpError("SDES chunk without a terminating null item")
                kind = body[at]
                if kind == 0:
                    at = (at + 4) & ~3  # skip the null item and the padding to the next word
                    break
                if at + 2 > len(body) or at + 2 + body[at + 1] > len(body):
                    raise RtcpError("SDES item runs past the packet")
                items.append((kind, bytes(body[at + 2 : at + 2 + body[at + 1]])))
                at += 2 + body[at + 1]
            chunks.append(SdesChunk(ssrc, tuple(items)))
        return SourceDescription(tuple(chunks))
    if pt == BYE:
        if len(body) < 4 * count:
            raise RtcpError("BYE shorter than its source count says")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = None
        if len(body) > 4 * count:
            n = body[4 * count]
            if 4 * count + 1 + n > len(body):
                raise RtcpError("BYE reason runs past the packet")
            reason = body[4 * count + 1 : 4 * count + 1 + n].decode("utf-8", "replace")
        return Bye(tuple(sources), reason)
    return UnknownRtcp(pt, count, body)


def parse_compound(data: bytes | bytearray | memoryview, *, strict: bool = True) -> list[RtcpPacket]:
    """Split and parse a compound packet, validating it as RFC 3550 A.2 does: every packet is version 2, the
    lengths add up to the datagram exactly, only the last packet may be padded, and (with `strict`) the first
    packet is an SR or RR. `strict=False` accepts reduced-size RTCP (RFC 5506), which starts with anything."""
    raw = bytes(data)
    if len(raw) < 4:
        raise RtcpError("RTCP packet shorter than its header")
    out: list[RtcpPacket] = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise RtcpError("trailing bytes after the last RTCP packet")
        b0, pt, words = _HEAD.unpack_from(raw, at)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version {b0 >> 6}, expected 2")
        if not 192 <= pt <= 223:
            raise RtcpError(f"packet type {pt} is not RTCP")
        end = at + 4 + 4 * words
        if end > len(raw):
            raise RtcpError("RTCP length runs past the datagram")
        body = raw[at + 4 : end]
        if b0 & 0x20:
            if end != len(raw):
                raise RtcpError("only the last packet of a compound may be padded")
            pad = body[-1] if body else 0
            if pad == 0 or pad > len(body):
                raise RtcpError("bad RTCP padding count")
            body = body[:-pad]
        if strict and not out and pt not in (SR, RR):
            raise RtcpError("a compound RTCP packet must start with an SR or RR")
        out.append(_parse_one(pt, b0 & 0x1F, body))
        at = end
    return out
