"""RTP packets (RFC 3550 §5.1): the fixed header, CSRC list, one header extension and padding, parsed and built.

Owns the wire layout and its validation (version 2, lengths, padding count, the RTCP-conflict payload types).
Must not number packets, keep per-stream state, decode payloads or do I/O: sessions and jitter buffers do that.
`parse_header` is the allocation-light hot path for receivers; `RtpPacket` is the symmetric, complete form.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "HEADER_SIZE",
    "RtpError",
    "RtpExtension",
    "RtpHeader",
    "RtpPacket",
    "pack_header",
    "parse_header",
]

HEADER_SIZE = 12
"""Bytes in the fixed RTP header (no CSRCs, no extension)."""
_VERSION = 2
_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")
_RTCP_CONFLICT = range(72, 77)  # RTCP SR..APP with the marker bit read as RTP (RFC 5761 §4)

RtpHeader = tuple[int, bool, int, int, int, int, int]
"""What `parse_header` returns: (payload_type, marker, sequence, timestamp, ssrc, payload_start, payload_end)."""


class RtpError(ValueError):
    """Bytes that are not a valid RTP packet, or field values that do not fit the header."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """The one header extension an RTP packet may carry (RFC 3550 §5.3.1): a 16-bit profile word and data whose
    length is a multiple of 4 bytes (RFC 8285 one- and two-byte element lists live inside `data`)."""

    profile: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise RtpError(f"extension profile {self.profile} is not 16 bits")
        if len(self.data) % 4 or len(self.data) > 4 * 0xFFFF:
            raise RtpError("extension data must be a multiple of 4 bytes, at most 262140")


def parse_header(data: bytes | bytearray | memoryview) -> RtpHeader:
    """Validate `data` as one RTP packet and return its header fields and where the payload lies.

    Raises RtpError for: fewer than 12 bytes, a version other than 2, a CSRC list or extension running past the
    end, a padding count of 0 or larger than what follows the header, and payload types 72-76 (RTCP SR..APP
    seen through an RTP header: the packet is RTCP on the wrong port)."""
    size = len(data)
    if size < HEADER_SIZE:
        raise RtpError(f"RTP packet of {size} bytes is shorter than the 12-byte header")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != _VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    pt = b1 & 0x7F
    if pt in _RTCP_CONFLICT:
        raise RtpError(f"payload type {pt} collides with RTCP (SR..APP)")
    start = HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if start + 4 > size:
            raise RtpError("RTP header extension runs past the end of the packet")
        start += 4 + 4 * _EXT.unpack_from(data, start)[1]
    end = size
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0:
            raise RtpError("RTP padding count is 0")
        end -= pad
    if start > end:
        raise RtpError("RTP header, extension and padding are longer than the packet")
    return pt, bool(b1 & 0x80), seq, ts, ssrc, start, end


def pack_header(payload_type: int, marker: bool, sequence: int, timestamp: int, ssrc: int) -> bytes:
    """The 12-byte fixed header (version 2, no padding, extension or CSRCs); fields are masked to their widths."""
    return _FIXED.pack(
        0x80, (payload_type & 0x7F) | (0x80 if marker else 0), sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
    )


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. `bytes(p)` serializes it and `RtpPacket.parse(bytes(p)) == p`.

    `padding` is the number of padding bytes (0 = none; the last of them holds the count, the others are zero).
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"payload type {self.payload_type} is not 0..127")
        if not 0 <= self.sequence <= 0xFFFF:
            raise RtpError(f"sequence number {self.sequence} is not 16 bits")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise RtpError("timestamp and SSRC must be 32-bit unsigned")
        if len(self.csrcs) > 15 or any(not 0 <= c <= 0xFFFFFFFF for c in self.csrcs):
            raise RtpError("at most 15 CSRCs, each 32-bit unsigned")
        if not 0 <= self.padding <= 255:
            raise RtpError(f"padding {self.padding} is not 0..255")

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Read one packet (validated as `parse_header` does)."""
        pt, marker, seq, ts, ssrc, start, end = parse_header(data)
        b0 = data[0]
        cc = b0 & 0x0F
        csrcs = struct.unpack_from(f"!{cc}I", data, HEADER_SIZE) if cc else ()
        extension = None
        if b0 & 0x10:
            at = HEADER_SIZE + 4 * cc
            profile, words = _EXT.unpack_from(data, at)
            extension = RtpExtension(profile, bytes(data[at + 4 : at + 4 + 4 * words]))
        padding = len(data) - end
        return cls(pt, seq, ts, ssrc, bytes(data[start:end]), marker, tuple(csrcs), extension, padding)

    def __bytes__(self) -> bytes:
        b0 = 0x80 | len(self.csrcs) | (0x20 if self.padding else 0) | (0x10 if self.extension else 0)
        parts = [
            _FIXED.pack(
                b0,
                self.payload_type | (0x80 if self.marker else 0),
                self.sequence,
                self.timestamp,
                self.ssrc,
            )
        ]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            parts.append(_EXT.pack(self.extension.profile, len(self.extension.data) // 4))
            parts.append(self.extension.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)
