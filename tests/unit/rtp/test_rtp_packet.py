"""RTP header: byte layout, symmetric parse/serialize with CSRCs, extension and padding, strict validation."""

from __future__ import annotations

import pytest

from opencomms.rtp.packet import RtpError, RtpExtension, RtpPacket, pack_header, parse_header


def test_fixed_header_layout() -> None:
    data = pack_header(0, False, 1, 160, 0x11223344) + bytes(160)
    assert data[:12] == bytes.fromhex("80 00 0001 000000a0 11223344")
    assert parse_header(data) == (0, False, 1, 160, 0x11223344, 12, 172)
    marked = pack_header(101, True, 0x1FFFF, 0x1_0000_0005, 7)  # fields are masked to their widths
    assert marked[1] == 0x80 | 101 and marked[2:4] == b"\xff\xff" and marked[4:8] == b"\x00\x00\x00\x05"


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(0, 0, 0, 0),
        RtpPacket(8, 65535, 0xFFFFFFFF, 0xDEADBEEF, bytes(range(160)), marker=True),
        RtpPacket(101, 7, 1234, 99, b"\x05\x0a\x00\xa0", csrcs=(1, 2, 0xFFFFFFFF)),
        RtpPacket(96, 1, 2, 3, b"abc", extension=RtpExtension(0xBEDE, b"\x10\xff\x00\x00")),
        RtpPacket(0, 1, 2, 3, bytes(160), padding=4),
        RtpPacket(0, 1, 2, 3, b"", csrcs=tuple(range(15)), extension=RtpExtension(1, b""), padding=255, marker=True),
    ],
)
def test_round_trip(packet: RtpPacket) -> None:
    data = bytes(packet)
    assert RtpPacket.parse(data) == packet
    pt, marker, seq, ts, ssrc, start, end = parse_header(data)
    assert (pt, marker, seq, ts, ssrc) == (
        packet.payload_type,
        packet.marker,
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
    )
    assert data[start:end] == packet.payload


def test_padding_bytes_and_extension_length_on_the_wire() -> None:
    data = bytes(RtpPacket(0, 1, 2, 3, b"xy", extension=RtpExtension(0xBEDE, bytes(8)), padding=3))
    assert data[0] == 0x80 | 0x20 | 0x10
    assert data[12:16] == b"\xbe\xde\x00\x02" and data[-3:] == b"\x00\x00\x03"
    assert memoryview(data)[24:26] == b"xy"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x80\x00\x00\x01\x00\x00\x00", "shorter"),
        (bytes.fromhex("40 00 0001 00000000 00000000"), "version"),
        (bytes.fromhex("00 00 0001 00000000 00000000"), "version"),
        (bytes.fromhex("83 00 0001 00000000 00000000") + bytes(8), "longer than"),
        (bytes.fromhex("90 00 0001 00000000 00000000"), "extension"),
        (bytes.fromhex("90 00 0001 00000000 00000000 bede0002") + bytes(4), "longer than"),
        (bytes.fromhex("a0 00 0001 00000000 00000000 0000") + b"\x00", "padding count is 0"),
        (bytes.fromhex("a0 00 0001 00000000 00000000") + b"\x09", "longer than"),
        (bytes.fromhex("80 c8 0001 00000000 00000000"), "RTCP"),  # an SR on the RTP port
        (bytes.fromhex("80 4c 0001 00000000 00000000"), "RTCP"),
    ],
)
def test_invalid_packets_are_rejected(data: bytes, why: str) -> None:
    with pytest.raises(RtpError, match=why):
        parse_header(data)
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_field_validation() -> None:
    for bad in (
        lambda: RtpPacket(128, 0, 0, 0),
        lambda: RtpPacket(0, 65536, 0, 0),
        lambda: RtpPacket(0, 0, -1, 0),
        lambda: RtpPacket(0, 0, 0, 1 << 32),
        lambda: RtpPacket(0, 0, 0, 0, csrcs=tuple(range(16))),
        lambda: RtpPacket(0, 0, 0, 0, padding=256),
        lambda: RtpExtension(0x10000, b""),
        lambda: RtpExtension(1, b"abc"),
    ):
        with pytest.raises(RtpError):
            bad()


def test_parse_accepts_memoryview_and_bytearray() -> None:
    data = bytes(RtpPacket(0, 5, 6, 7, b"hello", csrcs=(9,)))
    assert RtpPacket.parse(memoryview(data)) == RtpPacket.parse(bytearray(data)) == RtpPacket.parse(data)
