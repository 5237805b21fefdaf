"""RTCP packets (SR, RR, SDES, BYE, unknown) by round trip and byte layout; compound validation; RFC 3550
appendix A statistics and RTT against hand-computed values; the report interval."""

from __future__ import annotations

import random
import struct

import pytest

from opencomms.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_compound,
    compact_ntp,
    ntp_from_unix,
    parse_compound,
    report_interval,
)
from opencomms.rtp.stats import CallQuality, ReceiverStats, round_trip_time

BLOCK = ReportBlock(0xCAFEBABE, 32, 2, 0x10009, 9, 0x12345678, 32768)


def test_compound_round_trip() -> None:
    packets = [
        SenderReport(
            0x11111111, ntp_from_unix(1700000000.25), 123456, 500, 80000, (BLOCK, ReportBlock(5, 0, -3, 7, 0))
        ),
        SourceDescription((SdesChunk(0x11111111, ((1, b"abc@opencomms"), (6, b"tool"))), SdesChunk(2, ()))),
        Bye((0x11111111, 7), "call ended"),
        UnknownRtcp(204, 1, b"\x00\x00\x00\x01name\x01\x02\x03\x04"),
    ]
    data = build_compound(packets)
    assert parse_compound(data) == packets
    rr = [ReceiverReport(9), SourceDescription.cname(9, "x"), Bye((9,))]
    assert parse_compound(build_compound(rr)) == rr
    assert parse_compound(build_compound(rr))[1].chunks[0].cname == "x"  # type: ignore[union-attr]


def test_sender_report_layout() -> None:
    sr = SenderReport(1, 0x0102030405060708, 9, 10, 11, (BLOCK,))
    data = build_compound([sr])
    assert data[:4] == bytes([0x81, 200, 0, 12])  # V=2, RC=1, PT=200, length 13 words - 1
    assert struct.unpack("!IQIII", data[4:28]) == (1, 0x0102030405060708, 9, 10, 11)
    assert data[28:52] == bytes.fromhex("cafebabe 20 000002 00010009 00000009 12345678 00008000")
    negative = ReportBlock(1, 0, -1, 0, 0).pack()
    assert negative[4:8] == b"\x00\xff\xff\xff" and ReportBlock.unpack(negative, 0).cumulative_lost == -1


def test_sdes_and_bye_padding_layout() -> None:
    data = build_compound([SourceDescription.cname(0xA, "ab")])
    assert data == bytes([0x81, 202, 0, 3]) + bytes.fromhex("0000000a 01 02 6162 00000000")  # a whole null word
    bye = build_compound([Bye((1,), "x")])
    assert bye == bytes([0x81, 203, 0, 2, 0, 0, 0, 1, 1, ord("x"), 0, 0])


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x81\xc8", "shorter"),
        (bytes([0x40, 201, 0, 1, 0, 0, 0, 1]), "version"),
        (bytes([0x80, 202, 0, 0]), "start with an SR or RR"),
        (bytes([0x80, 201, 0, 5, 0, 0, 0, 1]), "runs past"),
        (bytes([0x80, 100, 0, 1, 0, 0, 0, 1]), "not RTCP"),
        (bytes([0x81, 201, 0, 1, 0, 0, 0, 1]), "report count"),
        (bytes([0xA0, 201, 0, 1, 0, 0, 0, 1]) + bytes([0x80, 202, 0, 0]), "only the last"),
        (bytes([0xA0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]), "padding"),
        (bytes([0x80, 201, 0, 1, 0, 0, 0, 1, 0x80]), "trailing"),
        (bytes([0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, 0, 0]), "SDES item"),
        (bytes([0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 202, 0, 1, 0, 0, 0, 1]), "terminating null"),
        (bytes([0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 203, 0, 0]), "BYE"),
    ],
)
def test_invalid_compounds(data: bytes, why: str) -> None:
    with pytest.raises(RtcpError, match=why):
        parse_compound(data)


def test_reduced_size_rtcp_when_not_strict() -> None:
    data = build_compound([SourceDescription.cname(3, "c")])
    assert parse_compound(data, strict=False) == [SourceDescription.cname(3, "c")]
    padded = bytes([0xA0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4])
    assert parse_compound(padded) == [ReceiverReport(1)]


def test_ntp_helpers() -> None:
    ntp = ntp_from_unix(0.5)
    assert ntp == (2_208_988_800 << 32) | (1 << 31)
    assert compact_ntp(ntp) == ((2_208_988_800 & 0xFFFF) << 16) | 0x8000


def test_sequence_accounting_with_wrap_loss_and_fraction() -> None:
    stats = ReceiverStats(0xABC, 65530, probation=0)
    for seq in [*range(65530, 65536), 0, 1, *range(4, 10)]:  # 2 and 3 lost, across the wrap
        assert stats.update_seq(seq)
    assert stats.extended_max == 65536 + 9 and stats.expected == 16 and stats.received == 14 and stats.lost == 2
    block = stats.report_block(now=0.0)
    assert (block.ssrc, block.fraction_lost, block.cumulative_lost, block.highest_seq) == (0xABC, 32, 2, 0x10009)
    for seq in range(10, 20):
        stats.update_seq(seq)
    block = stats.report_block(now=0.0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 2)
    stats.update_seq(20)
    stats.update_seq(20)  # a duplicate counts as received (A.1): cumulative lost may fall below zero
    stats.update_seq(21)
    assert stats.lost == 1
    assert stats.report_block(0.0).fraction_lost == 0  # lost_interval <= 0 reports 0


def test_probation_and_restart() -> None:
    stats = ReceiverStats(1, 100)  # default: 2 packets in sequence make the source valid
    assert not stats.update_seq(100) and stats.expected == 0
    assert stats.update_seq(101) and stats.base_seq == 101 and stats.received == 1
    assert stats.update_seq(102)
    assert not stats.update_seq(40000)  # a wild jump: not counted
    assert stats.update_seq(40001)  # followed by its successor: the source restarted
    assert stats.base_seq == 40001 and stats.received == 1 and stats.cycles == 0
    assert stats.update_seq(39990)  # slightly old: a late packet
    stats = ReceiverStats(1, 7)
    assert not stats.update_seq(7) and not stats.update_seq(9)  # out of order during probation restarts it
    assert stats.update_seq(10) and stats.probation == 0


def test_interarrival_jitter_matches_rfc3550_a8_by_hand() -> None:
    stats = ReceiverStats(1, 0, probation=0)
    stats.update_jitter(0, 10.000)
    stats.update_jitter(160, 10.020)
    assert stats.jitter == pytest.approx(0.0, abs=1e-9)
    stats.update_jitter(320, 10.050)  # 10 ms late: D = 80 units
    assert stats.jitter == pytest.approx(80 / 16)
    stats.update_jitter(480, 10.060)  # back on time: D = 80 again
    assert stats.jitter == pytest.approx(5 + (80 - 5) / 16)
    wrapped = ReceiverStats(1, 0, probation=0)
    wrapped.update_jitter(0xFFFFFF60, 1.0)
    wrapped.update_jitter(0, 1.02)  # timestamps wrapped: still 160 units apart
    assert wrapped.jitter == pytest.approx(0.0, abs=1e-6)


def test_lsr_dlsr_and_round_trip_time() -> None:
    stats = ReceiverStats(7, 0, probation=0)
    stats.update_seq(0)
    sr_ntp = ntp_from_unix(1000.0)
    stats.on_sender_report(SenderReport(7, sr_ntp, 0, 1, 160), arrival=50.0)
    block = stats.report_block(now=50.5)
    assert block.lsr == compact_ntp(sr_ntp) and block.dlsr == 32768
    # Our SR left at 1000.0 (our clock); the peer held it 0.1 s; its report reached us at 1000.3: RTT 0.2 s.
    theirs = ReportBlock(1, 0, 0, 0, 0, compact_ntp(sr_ntp), int(0.1 * 65536))
    assert round_trip_time(theirs, ntp_from_unix(1000.3)) == pytest.approx(0.2, abs=2 / 65536)
    assert round_trip_time(ReportBlock(1, 0, 0, 0, 0), ntp_from_unix(1000.3)) is None
    assert round_trip_time(theirs, ntp_from_unix(999.0)) is None  # negative: clocks jumped


def test_report_interval_bounds() -> None:
    rng = random.Random(1)
    values = [report_interval(5.0, rng) for _ in range(1000)]
    assert min(values) >= 2.5 / 1.21828 and max(values) <= 7.5 / 1.21828
    assert max(report_interval(5.0, rng, initial=True) for _ in range(100)) <= 3.75 / 1.21828


def test_call_quality_dict() -> None:
    q = CallQuality(10, 9, 1, 10.0, 2.5, 30.0)
    assert q.to_dict()["loss_percent"] == 10.0 and q.to_dict()["rtt_ms"] == 30.0
