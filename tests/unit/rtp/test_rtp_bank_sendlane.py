"""The bank's send lane in a hand-ticked bank with real loopback sockets: streams in the steady state are numbered
by the lane, the others by Python, and a stream moving between the two keeps one sequence, the marker after each
pause, the timestamp rule; counters reach the `Stream` before RTCP reports, at detachment, and round robin; a
paced batch built before its stream left its row or failed sends nothing; RFC 4733 events while armed; a latched
destination takes effect at the next packet; send failures."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable

from opencomms.media.engine import MediaEngine
from opencomms.mediahost.streams import ChildStreams, StreamDtmf, register
from opencomms.rtp.bank import RtpBank
from opencomms.rtp.packet import RtpPacket, pack_header
from opencomms.rtp.rtcp import SenderReport, parse_compound
from opencomms.rtp.stream import Stream, StreamParams
from tests.unit.rtp.test_rtp_bank import ManualHost, again, received, setup, tone


class FirstHost(ManualHost):
    """EngineThread's `before_tick` too: the paced batch waits in the bank until the next tick starts."""

    def __init__(self, engine: MediaEngine) -> None:
        super().__init__(engine)
        self.before_tick: list[Callable[[], None]] = []

    def tick(self, now: float) -> None:
        for fn in self.before_tick:
            fn()
        super().tick(now)


def armed(bank: RtpBank, stream: Stream) -> bool:
    return bool(bank._tx_lane.armed[stream.row])


def continuous(packets: list[RtpPacket]) -> bool:
    return all((b.sequence - a.sequence) % 65536 == 1 for a, b in itertools.pairwise(packets))


def test_a_stream_enters_the_lane_after_its_first_tick_and_numbers_on_without_a_seam(
    udp: Callable[[], socket.socket],
) -> None:
    host, bank, stream, peer = setup(udp)
    stream.seq = 0xFFFD  # the sequence wraps inside the lane
    host.engine.play("bot", "p", [tone(1.0)])
    host.tick(50.0)
    assert armed(bank, stream)  # armed in its first tick, which the lane then stamped
    for k in range(1, 8):
        host.tick(50.0 + 0.02 * k)
    packets = received(peer)
    assert len(packets) == 8 and continuous(packets)
    assert [p.sequence for p in packets[:4]] == [0xFFFD, 0xFFFE, 0xFFFF, 0]
    assert [p.marker for p in packets] == [True] + [False] * 7
    assert all(p.ssrc == 0x5150 and p.payload_type == 0 and len(p.payload) == 160 for p in packets)
    assert [p.timestamp for p in packets] == [stream.rtp_timestamp(50.0 + 0.02 * k) for k in range(8)]
    bank.fold_counters()
    assert stream.seq == 5 and stream.was_sending and stream.packets_sent == 8 and stream.octets_sent == 8 * 160


def test_hold_and_resume_leave_and_reenter_the_lane_with_the_marker_after_the_pause(
    udp: Callable[[], socket.socket],
) -> None:
    host, bank, stream, peer = setup(udp, alaw=True, payload_type=8)
    for k in range(5):
        host.tick(0.02 * k)
    bank.update(stream, again(stream, alaw=True, payload_type=8, sends=False))  # hold
    for k in range(5, 10):
        host.tick(0.02 * k)
    assert not armed(bank, stream) and not stream.was_sending
    bank.update(stream, again(stream, payload_type=0))  # resumed, and now PCMU
    for k in range(10, 15):
        host.tick(0.02 * k)
    assert armed(bank, stream)
    packets = received(peer)
    assert len(packets) == 10 and continuous(packets)  # no sequence number skipped across the pause
    assert [p.marker for p in packets] == [True, False, False, False, False] * 2
    assert [p.payload_type for p in packets] == [8] * 5 + [0] * 5
    assert (packets[5].timestamp - packets[4].timestamp) % (1 << 32) == 6 * 160  # the clock ran on meanwhile


def test_counters_reach_the_stream_round_robin_before_rtcp_and_at_detach(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, peer = setup(udp)
    first = stream.seq
    rtcp_peer = udp()
    stream.rtcp_addr = rtcp_peer.getsockname()
    stream.rtcp_next = 1e9
    host.tick(0.0)
    host.tick(0.02)
    assert stream.packets_sent < 2  # in the lane's row counters until folded back
    for k in range(2, 14):
        host.tick(0.02 * k)
    assert stream.packets_sent >= 2  # the round robin came by within 12 ticks
    stream.rtcp_next = 0.0
    host.tick(0.28)  # unpaced: the report counts every packet sent so far, this tick's 15th too
    (report,) = parse_compound(rtcp_peer.recv(2048))[:1]
    assert isinstance(report, SenderReport) and report.packet_count == 15 and report.octet_count == 15 * 160
    host.tick(0.30)
    assert stream.packets_sent == 15  # the 16th waits in the lane's counters
    bank.detach(stream, bye=False)
    host.tick(0.32)
    assert stream.packets_sent == 16 == len(received(peer)) and stream.seq == (first + 16) & 0xFFFF


def test_rfc4733_events_while_armed_take_the_lane_numbering_and_give_it_back(
    udp: Callable[[], socket.socket],
) -> None:
    host, bank, stream, peer = setup(udp, telephone_event=101)
    for k in range(5):
        host.tick(0.02 * k)
    assert armed(bank, stream)
    bank.send_dtmf(stream, "5", 40.0, 0.0)
    for k in range(5, 20):
        host.tick(0.02 * k)
        if k == 5:
            assert not armed(bank, stream)  # left the lane when the key was queued
    assert armed(bank, stream)  # back once the event ended
    packets = received(peer)
    assert continuous(packets)  # one sequence through audio, events and audio
    kinds = [p.payload_type for p in packets]
    assert kinds[:5] == [0] * 5 and kinds[5] == 101 and kinds[-1] == 0 and 101 not in kinds[kinds.index(0, 5) :]
    resumed = packets[kinds.index(0, 5)]
    assert not resumed.marker  # audio held back during the event, no pause of the stream itself
    bank.fold_counters()
    assert stream.packets_sent == len(packets) and stream.events_sent == kinds.count(101)


def test_keys_from_the_conversation_disarm_the_row_too(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, peer = setup(udp, telephone_event=101)
    host.tick(0.0)
    host.tick(0.02)
    assert armed(bank, stream)
    host.engine.send_tones("bot", "t", "9", tone_ms=60, gap_ms=0)  # the bot sends a key: RFC 4733 to the phone
    host.tick(0.04)
    assert not armed(bank, stream)  # left the lane when the engine reported the key
    for k in range(3, 15):
        host.tick(0.02 * k)
    packets = received(peer)
    kinds = [p.payload_type for p in packets]
    assert 101 in kinds and kinds[-1] == 0 and continuous(packets) and armed(bank, stream)


def test_a_lane_batch_built_before_its_row_changed_hands_sends_nothing(udp: Callable[[], socket.socket]) -> None:
    engine = MediaEngine(8)
    host = FirstHost(engine)
    for leg in ("bot", "sip"):
        engine.add_leg(leg)
    bank = RtpBank(host, capacity=4, kernel_timestamps=False, paced=True)
    peer = udp()
    stream = Stream("sip", udp(), udp(), ssrc=0x5150)
    stream.apply(StreamParams(remote_rtp=peer.getsockname()))
    bank.attach(stream)
    host.tick(0.0)
    host.tick(0.02)
    assert len(received(peer)) == 1 and armed(bank, stream)
    box, bank._paced = bank._paced, None  # tick 1's batch, held back
    assert box is not None and box.lane == 1 and not box.streams
    bank.detach(stream, bye=False)
    other_peer = udp()
    other = Stream("bot", udp(), udp(), ssrc=0x7777)
    other.apply(StreamParams(remote_rtp=other_peer.getsockname()))
    bank.attach(other)
    host.tick(0.04)
    assert other.row == 0 and stream.row == -1
    assert [p.ssrc for p in received(other_peer)] == []  # its first packet waits for the next tick
    bank._transmit(box)  # the old batch, after its stream left row 0 and another took it
    assert received(peer) == [] and received(other_peer) == [] and stream.packets_sent == 1


def test_a_stream_failing_between_building_and_sending_sends_nothing(udp: Callable[[], socket.socket]) -> None:
    engine = MediaEngine(8)
    host = FirstHost(engine)
    engine.add_leg("sip")
    bank = RtpBank(host, capacity=4, kernel_timestamps=False, paced=True)
    peer = udp()
    stream = Stream("sip", udp(), udp())
    stream.apply(StreamParams(remote_rtp=peer.getsockname()))
    faults: list[str] = []
    stream.on_fault = faults.append
    bank.attach(stream)
    host.tick(0.0)
    host.tick(0.02)
    box, bank._paced = bank._paced, None
    assert box is not None and box.lane == 1
    bank._fault(stream, "receive", TypeError("a bug"))
    bank._transmit(box)
    assert len(received(peer)) == 1 and faults == ["receive"] and stream.packets_sent == 1


def test_a_latched_destination_takes_effect_at_the_next_packet(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, peer = setup(udp)  # unpaced: each tick's packet leaves in the tick
    for k in range(3):
        host.tick(0.02 * k)
    assert armed(bank, stream) and len(received(peer)) == 3
    far = udp()  # the far end's packets come from elsewhere (NAT): symmetric RTP sends there from now on
    far.sendto(pack_header(0, True, 1, 160, 42) + bytes(160), stream.rtp_sock.getsockname())
    host.tick(0.06)  # this tick's packet was sent before the receive step latched the new source
    host.tick(0.08)
    assert len(received(peer)) == 1 and stream.rtp_addr == far.getsockname()
    (moved,) = received(far)
    assert moved.payload_type == 0 and not moved.marker and armed(bank, stream)
    stream.rtp_addr = None  # as an update without an address would leave it: nothing sent, marker after
    host.tick(0.10)
    stream.rtp_addr = far.getsockname()
    host.tick(0.12)
    (back,) = received(far)
    assert back.marker and (back.sequence - moved.sequence) % 65536 == 1


def test_send_failures_are_counted_and_a_destination_no_socket_takes_drops_the_stream(
    udp: Callable[[], socket.socket],
) -> None:
    host, bank, stream, peer = setup(udp)
    faults: list[str] = []
    stream.on_fault = faults.append
    host.tick(0.0)
    host.tick(0.02)
    assert armed(bank, stream)
    stream.rtp_addr = ("127.0.0.1", 0)  # port 0: the kernel refuses the packet (EINVAL), the stream goes on
    host.tick(0.04)
    assert faults == [] and stream.send_errors == 1 and armed(bank, stream)
    stream.rtp_addr = ("no.such.host", 4000)  # not a literal: never a lookup on the engine thread
    host.tick(0.06)
    assert faults == ["send"] and stream.fault == "send" and stream.send_errors == 2 and not armed(bank, stream)
    assert stream.packets_sent == 2 and len(received(peer)) == 2


def test_keys_queued_in_the_media_process_disarm_the_row_too(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, peer = setup(udp, telephone_event=101)
    children = ChildStreams(bank)
    children.streams["sip"] = stream
    register(host.engine, children)
    host.tick(0.0)
    host.tick(0.02)
    assert armed(bank, stream)
    StreamDtmf("sip", "3", 40.0, 0.0).apply(host.engine)  # what the child runs for the node's send_dtmf
    assert not armed(bank, stream)
    for k in range(2, 10):
        host.tick(0.02 * k)
    packets = received(peer)
    assert 101 in [p.payload_type for p in packets] and continuous(packets) and armed(bank, stream)
