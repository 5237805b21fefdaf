"""RFC 4733 digits from a SIP peer reach the bot as engine events in the tick their first packet is read: the
bank pushes each decoded key into the engine (no event-loop hop, no in-band replay and Goertzel re-detection
before the bot hears of it), once per press whatever the retransmissions, and only for a stream whose leg is
still its own."""

from __future__ import annotations

import socket
from collections.abc import Callable

from opencomms.media.engine import ToneDetected
from opencomms.rtp.packet import pack_header
from tests.unit.rtp.test_rtp_bank import setup

TE = 101


def event(key_code: int, duration: int, *, end: bool = False) -> bytes:
    return bytes([key_code, (0x80 if end else 0) | 10, duration >> 8, duration & 0xFF])


def test_a_telephone_event_is_a_tone_event_for_the_bot_in_the_tick_it_arrives(
    udp: Callable[[], socket.socket],
) -> None:
    host, _bank, stream, peer = setup(udp, receive_payload_types={0: "PCMU", TE: "telephone-event"})
    ours = stream.rtp_sock.getsockname()
    host.tick(0.0)
    seq = 100

    def send(payload: bytes, ts: int, marker: bool = False) -> None:
        nonlocal seq
        peer.sendto(pack_header(TE, marker, seq, ts, 77) + payload, ours)
        seq += 1

    send(event(5, 160), 8000, marker=True)  # '5' starts
    host.tick(0.02)
    tones = [(now, e) for now, e in host.events if isinstance(e, ToneDetected)]
    assert tones == [(0.02, ToneDetected("bot", "5", 0.02))]  # read in this tick's batch, reported by this tick
    for k, duration in enumerate((320, 480, 640)):  # the same press goes on, then ends (three end packets)
        send(event(5, duration, end=k == 2), 8000)
        host.tick(0.04 + 0.02 * k)
    for _ in range(2):
        send(event(5, 640, end=True), 8000)
    send(event(11, 160), 9600, marker=True)  # then '#'
    for k in range(10):
        host.tick(0.1 + 0.02 * k)
    tones = [(now, e.key) for now, e in host.events if isinstance(e, ToneDetected)]
    assert tones == [(0.02, "5"), (0.1, "#")]  # one per press; the in-band replay is never re-detected
    assert all(e.leg_id == "bot" for _, e in host.events if isinstance(e, ToneDetected))


def test_keys_of_a_stream_whose_leg_was_removed_are_dropped(udp: Callable[[], socket.socket]) -> None:
    host, _bank, stream, peer = setup(udp, receive_payload_types={0: "PCMU", TE: "telephone-event"})
    ours = stream.rtp_sock.getsockname()
    host.tick(0.0)
    host.engine.remove_leg("sip")
    host.engine.add_leg("sip")  # a new leg with the same id in the row: not this stream's
    host.engine.join("sip", "call")
    peer.sendto(pack_header(TE, True, 1, 8000, 77) + event(1, 160), ours)
    for k in range(5):
        host.tick(0.02 * (k + 1))
    assert not [e for _, e in host.events if isinstance(e, ToneDetected)]
