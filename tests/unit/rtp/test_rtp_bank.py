"""The engine-side RTP bank driven by a hand-ticked MediaEngine and real loopback sockets: numbering (sequence,
timestamp from the tick clock, marker), codecs, hold, RFC 4733 sending, the receive path into the leg (latching,
keys), RTCP between two streams, legs that vanish, attach/detach."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np
import pytest

from opencomms._compiled import compiled_modules
from opencomms.media.engine import Heard, MediaEngine, MediaEvent, ToneDetected
from opencomms.media.g711 import alaw_decode, ulaw_decode, ulaw_encode
from opencomms.rtp.bank import PACKET, RtpBank, _Outbox
from opencomms.rtp.packet import RtpPacket, pack_header
from opencomms.rtp.rtcp import Bye, ReceiverReport, SenderReport, SourceDescription, parse_compound
from opencomms.rtp.stream import RtpConfig, Stream, StreamParams

T = TypeVar("T")


class ManualHost:
    """EngineThread's command interface, run by hand: commands before each tick, like the real thread."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self._queue: list[tuple[Callable[[MediaEngine], Any], Future[Any] | None]] = []
        self.events: list[tuple[float, MediaEvent]] = []

    def call(self, fn: Callable[[MediaEngine], object]) -> None:
        self._queue.append((fn, None))

    def call_result(self, fn: Callable[[MediaEngine], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.append((fn, future))
        return future

    def tick(self, now: float) -> None:
        queue, self._queue = self._queue, []
        for fn, future in queue:
            try:
                apply = getattr(fn, "apply", None)  # an engine command, or the bank's paced send (a function)
                result = apply(self.engine) if apply is not None else fn(self.engine)
            except Exception as exc:
                if future is None:
                    raise
                future.set_exception(exc)
            else:
                if future is not None:
                    future.set_result(result)
        self.events.extend((now, event) for event in self.engine.tick(now))


def received(sock: socket.socket) -> list[RtpPacket]:
    out = []
    sock.setblocking(False)
    while True:
        try:
            out.append(RtpPacket.parse(sock.recv(2048)))
        except BlockingIOError:
            sock.setblocking(True)
            return out


def tone(seconds: float, freq: float = 1000.0, level: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def setup(
    udp: Callable[[], socket.socket], peer: socket.socket | None = None, *, paced: bool = False, **params: Any
) -> tuple[ManualHost, RtpBank, Stream, socket.socket]:
    engine = MediaEngine(8)
    host = ManualHost(engine)
    for leg in ("bot", "sip"):
        engine.add_leg(leg)
        engine.join(leg, "call")
    bank = RtpBank(host, capacity=4, kernel_timestamps=False, paced=paced)  # arrivals on the hand-made tick clock
    peer = peer or udp()
    stream = Stream("sip", udp(), udp(), ssrc=0x5150)
    stream.apply(StreamParams(remote_rtp=peer.getsockname(), **params))
    bank.attach(stream)
    return host, bank, stream, peer


def again(stream: Stream, **params: Any) -> StreamParams:
    return StreamParams(remote_rtp=stream.params.remote_rtp, **params)


def test_packets_follow_the_tick_clock(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, peer = setup(udp)
    host.engine.play("bot", "p", [tone(1.0)])
    for k in range(10):
        host.tick(100.0 + 0.02 * k)
    packets = received(peer)
    assert len(packets) == 10 and bank.flushes == 10
    assert [p.marker for p in packets] == [True] + [False] * 9
    assert all(p.payload_type == 0 and p.ssrc == 0x5150 and len(p.payload) == 160 for p in packets)
    assert [(p.sequence - packets[0].sequence) % 65536 for p in packets] == list(range(10))
    assert [(p.timestamp - packets[0].timestamp) % (1 << 32) for p in packets] == [160 * k for k in range(10)]
    assert stream.rtp_timestamp(100.0) == packets[0].timestamp
    decoded = ulaw_decode(packets[-1].payload).astype(float)
    assert 4000 < np.sqrt(np.mean(decoded**2)) < 7000  # the bot's 1 kHz tone at 8000 peak
    host.tick(100.0 + 0.02 * 13)  # two ticks skipped: the timestamp follows time
    (late,) = received(peer)
    assert (late.timestamp - packets[-1].timestamp) % (1 << 32) == 160 * 4 and not late.marker
    bank.fold_counters()  # the send lane's counters reach the stream within 12 ticks, or now
    assert stream.packets_sent == 11 and stream.octets_sent == 11 * 160


def test_paced_sending_goes_out_at_the_start_of_the_next_tick(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, peer = setup(udp, paced=True, telephone_event=101)
    bank.measure_lateness = True
    host.tick(0.0)
    assert received(peer) == []  # built in tick 0, queued for the start of tick 1
    bank.send_dtmf(stream, "3", 40.0, 40.0)
    host.tick(0.02)
    (first,) = received(peer)
    assert first.marker and first.payload_type == 0 and stream.packets_sent == 1
    host.tick(0.04)
    (event,) = received(peer)  # tick 1's event packet: audio held back while the key is on
    assert event.payload_type == 101 and event.marker and (event.sequence - first.sequence) % 65536 == 1
    assert (event.timestamp - first.timestamp) % (1 << 32) == 160
    detached = bank.detach(stream, bye=False)
    host.tick(0.06)  # tick 2's packet was queued before the detach: it still goes
    assert detached.result() is None and [p.payload_type for p in received(peer)] == [101]
    host.tick(0.08)
    assert received(peer) == []
    stale = bank._changes - 1  # built before the detach
    late = _Outbox(
        0, 0.1, stale, [(stream, b"late", peer.getsockname())], [stream], [0], [0], [PACKET], [peer.getsockname()]
    )
    bank._transmit(late)  # a batch that outlived its stream's detach
    assert received(peer) == [] and stream.packets_sent == 3
    assert int(bank.lateness_ms.sum()) == 3 and bank.stats()["packets_measured"] == 3


def test_a_batch_built_before_its_row_changed_hands_sends_nothing(udp: Callable[[], socket.socket]) -> None:
    """A paced batch waits for the next tick's start; a stream detached meanwhile and another attached into the
    same row (its socket registered under the same slot) must not send the first one's packet to its peer."""
    host, bank, stream, peer = setup(udp, paced=True)
    host.tick(0.0)
    host.tick(0.02)
    assert len(received(peer)) == 1
    built = bank._changes
    late = _Outbox(0, 0.04, built, [], [stream], [0], [0], [PACKET], [peer.getsockname()])
    bank.detach(stream, bye=False)
    other_peer = udp()
    other = Stream("bot", udp(), udp(), ssrc=0x7777)
    other.apply(StreamParams(remote_rtp=other_peer.getsockname()))
    bank.attach(other)
    host.tick(0.04)
    assert other.row == 0 and stream.row == -1
    received(peer), received(other_peer)
    bank._transmit(late)
    assert received(peer) == [] and received(other_peer) == [] and stream.packets_sent == 2


def test_alaw_hold_and_resume(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, peer = setup(udp, payload_type=8, alaw=True)
    host.engine.play("bot", "p", [tone(1.0)])
    host.tick(0.0)
    (p,) = received(peer)
    assert p.payload_type == 8 and np.abs(alaw_decode(p.payload)).max() > 1000
    bank.update(stream, again(stream, payload_type=8, alaw=True, sends=False))
    for k in range(1, 4):
        host.tick(0.02 * k)
    assert received(peer) == []
    bank.update(stream, again(stream, payload_type=8, alaw=True))
    host.tick(0.08)
    (resumed,) = received(peer)
    assert resumed.marker and (resumed.sequence - p.sequence) % 65536 == 1
    assert (resumed.timestamp - p.timestamp) % (1 << 32) == 640
    stream.rtp_addr = None  # no address (c=0.0.0.0 hold): nothing sent either
    host.tick(0.10)
    assert received(peer) == []


def test_rfc4733_events_go_out_on_the_same_stream_and_hold_audio_back(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, peer = setup(udp, telephone_event=101)
    host.tick(0.0)
    bank.send_dtmf(stream, "7", 60.0, 40.0)
    bank.send_dtmf(stream, "#", 40.0, 40.0)
    for k in range(1, 25):
        host.tick(0.02 * k)
    packets = received(peer)
    events = [p for p in packets if p.payload_type == 101]
    first = [p for p in events if p.payload[0] == 7]
    assert first[0].marker and all(p.timestamp == first[0].timestamp for p in first)
    assert [p.payload[1] & 0x80 for p in first] == [0, 0, 0, 0x80, 0x80, 0x80]  # 3 updates, 3 end reports
    assert [int.from_bytes(p.payload[2:4], "big") for p in first] == [160, 320, 480, 480, 480, 480]
    second = [p for p in events if p.payload[0] == 11]
    assert second[0].marker and second[0].timestamp != first[0].timestamp and len(second) == 5
    seqs = [p.sequence for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))  # one sequence for both kinds
    audio_during = [p for p in packets if p.payload_type == 0 and first[0].timestamp <= p.timestamp]
    assert audio_during and audio_during[0].timestamp >= first[-1].timestamp + 160 * 5
    assert stream.events_sent == len(events)
    bank.update(stream, again(stream, telephone_event=None))
    bank.send_dtmf(stream, "1", 60.0, 40.0)
    host.tick(0.6)
    host.tick(0.62)
    assert all(p.payload_type == 0 for p in received(peer))  # no telephone-event negotiated: dropped


def test_received_audio_is_played_into_the_leg(udp: Callable[[], socket.socket]) -> None:
    keys: list[str] = []
    host, bank, stream, peer = setup(udp, receive_payload_types={0: "PCMU", 101: "telephone-event"})
    stream.on_key = keys.append
    stranger = udp()
    heard: list[np.ndarray] = []
    host.engine.subscribe(Heard("bot", lambda _leg, frame, _now: heard.append(frame.copy())))
    host.tick(0.0)
    ours = stream.rtp_sock.getsockname()
    wave = tone(0.6, 500.0)[::2]  # 8 kHz
    for k in range(30):
        payload = ulaw_encode(wave[k * 160 : (k + 1) * 160]).tobytes()
        peer.sendto(pack_header(0, k == 0, 1000 + k, 5000 + 160 * k, 77) + payload, ours)
        if k == 3:
            stranger.sendto(pack_header(0, False, 9, 9, 9) + payload, ours)  # not the latched source: dropped
            peer.sendto(pack_header(101, True, 2000, 5000 + 160 * k, 77) + bytes([4, 10, 0, 160]), ours)
            peer.sendto(b"\x00junk", ours)
        host.tick(0.02 * (k + 1))
    levels = [float(np.sqrt(np.mean(f.astype(float) ** 2))) for f in heard]
    start = next(i for i, v in enumerate(levels) if v > 100)
    assert 3 <= start <= 4  # jitter buffer (40 ms) + one tick through the engine's inbound queue
    # the key (received in the tick at 0.08) is played in-band on the phone's leg for 100 ms from the next tick,
    # in place of its audio; the bot was told of it in the tick it arrived
    assert [(now, e) for now, e in host.events if isinstance(e, ToneDetected)] == [
        (0.08, ToneDetected("bot", "4", 0.08))
    ]
    assert all(4500 < v < 6500 for k, v in enumerate(levels[:30]) if k > start and not 5 <= k < 10)
    assert stream.frames_played >= 25 and stream.jb.lost == 0
    assert stream.foreign_packets == 1 and stream.invalid_packets == 1 and keys == ["4"]
    assert stream.rtp_addr == peer.getsockname() and stream.packets_received == 31
    for k in range(30, 40):  # the peer stops: concealment fades, then silence
        host.tick(0.02 * (k + 1))
    tail = [float(np.sqrt(np.mean(f.astype(float) ** 2))) for f in heard[-12:]]
    assert tail[-1] == 0.0 and stream.frames_concealed == 5
    assert bank.stats()["datagrams"] == 33  # 30 audio, the stranger, the key, the junk


def test_rtcp_reports_between_two_streams(udp: Callable[[], socket.socket]) -> None:
    engine = MediaEngine(8)
    host = ManualHost(engine)
    for leg in ("a", "b"):
        engine.add_leg(leg)
    bank = RtpBank(host, capacity=4)  # kernel timestamps: the tick clock is time.monotonic here
    config = RtpConfig(rtcp_interval=0.1)
    a = Stream("a", udp(), udp(), config)
    b = Stream("b", udp(), udp(), config)
    a.apply(StreamParams(remote_rtp=b.rtp_sock.getsockname(), remote_rtcp=b.rtcp_sock.getsockname()))  # type: ignore[union-attr]
    b.apply(StreamParams(remote_rtp=a.rtp_sock.getsockname(), remote_rtcp=a.rtcp_sock.getsockname()))  # type: ignore[union-attr]
    bank.attach(a)
    bank.attach(b)
    for _ in range(25):
        host.tick(time.monotonic())
        time.sleep(0.02)
    assert a.rtcp_received >= 1 and b.rtcp_received >= 1
    assert a.remote_block is not None and a.remote_block.ssrc == a.ssrc
    assert a.rtt is not None and 0 <= a.rtt < 0.1
    qa = a.quality()
    assert qa.packets_sent >= 20 and qa.packets_received >= 20 and qa.packets_lost == 0 and qa.rtt_ms is not None
    spy = udp()
    a.rtcp_addr = spy.getsockname()
    bank.detach(a)
    host.tick(time.monotonic())
    packets = parse_compound(spy.recv(2048))
    assert isinstance(packets[0], SenderReport | ReceiverReport) and isinstance(packets[1], SourceDescription)
    assert packets[-1] == Bye((a.ssrc,))


def test_a_leg_removed_elsewhere_delays_nobody(udp: Callable[[], socket.socket]) -> None:
    engine = MediaEngine(8)
    host = ManualHost(engine)
    for leg in ("a", "b"):
        engine.add_leg(leg)
    bank = RtpBank(host, capacity=4, paced=False)
    peer = udp()
    streams = [Stream(leg, udp()) for leg in ("a", "b")]
    for st in streams:
        st.apply(StreamParams(remote_rtp=peer.getsockname()))
        bank.attach(st)
    host.tick(0.0)
    assert len(received(peer)) == 2 and bank.flushes == 1
    host.call(lambda e: e.remove_leg("b"))  # the media service hung it up before the session closed
    host.tick(0.02)
    assert len(received(peer)) == 1 and bank.flushes == 2  # a's packet of this very tick, b's no more
    host.call(lambda e: e.add_leg("b"))  # a new leg of the same name (in b's old row) is not b's stream's
    host.tick(0.04)
    assert len(received(peer)) == 1
    detached = bank.detach(streams[1])
    host.tick(0.06)
    assert detached.result() is None and bank.streams == 1 and streams[1].row == -1


def test_attach_errors_and_detach_is_idempotent(udp: Callable[[], socket.socket]) -> None:
    host, bank, stream, _ = setup(udp)
    missing = bank.attach(Stream("nobody", udp()))
    twice = bank.attach(Stream("sip", udp()))
    host.tick(0.0)
    with pytest.raises(KeyError):
        missing.result()
    with pytest.raises(ValueError):
        twice.result()
    first, second = bank.detach(stream), bank.detach(stream)
    host.tick(0.02)
    assert first.result() is None and second.result() is None and bank.streams == 0
    assert bank.stats()["streams"] == 0 and bank.stats()["flushes"] == 1


def test_a_stream_that_hears_nothing_costs_no_playout_and_plays_when_packets_come(
    udp: Callable[[], socket.socket],
) -> None:
    host, _bank, stream, peer = setup(udp)
    if "opencomms.rtp.jitter" in compiled_modules():  # run by tests/unit/test_compiled.py's pure-Python pass
        pytest.skip("counts calls by replacing a method, which a compiled class does not allow")
    pops: list[float] = []
    real_pop = stream.jb.pop

    def counted(now: float) -> object:
        pops.append(now)
        return real_pop(now)

    stream.jb.pop = counted  # type: ignore[method-assign]
    for k in range(10):
        host.tick(0.02 * k)
    assert pops == []  # the far end sent nothing: its jitter buffer is not polled every tick
    wave = tone(0.2, 500.0)[::2]
    for k in range(10, 30):  # a talkspurt, then silence again
        if k < 20:
            payload = ulaw_encode(wave[(k - 10) * 160 : (k - 9) * 160]).tobytes()
            peer.sendto(pack_header(0, k == 10, 100 + k, 160 * k, 9) + payload, stream.rtp_sock.getsockname())
        host.tick(0.02 * k)
    assert stream.frames_played == 10 and pops[0] == pytest.approx(0.2)
    polled = len(pops)
    for k in range(30, 40):
        host.tick(0.02 * k)
    assert len(pops) == polled  # idle again after the talkspurt's tail: no more polling
