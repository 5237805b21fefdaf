"""RFC 4733 events count in the negotiated telephone-event's own clock: 48000 with Opus (a relayed browser),
8000 with G.711 and G.722. A 100 ms key the node sends lasts 100 ms at the peer's clock, and a 100 ms key the
peer sends is read as 100 ms."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from opencomms.media.dtmf.rfc4733 import ReceivedEvent, TelephoneEventEnded
from opencomms.rtp.offer_answer import G722, OPUS, PCMU, Codec, answer
from opencomms.rtp.packet import pack_header
from opencomms.rtp.sdp import SessionDescription
from opencomms.rtp.stream import Outgoing, Stream, StreamParams

from .test_rtp_opus_negotiation import OFFER

TE = 101


def _stream(udp: Callable[[], socket.socket], rate: int, opus: bool) -> Stream:
    stream = Stream("leg", udp())
    receive = {111: "opus", TE: "telephone-event"} if opus else {0: "PCMU", TE: "telephone-event"}
    stream.apply(
        StreamParams(
            payload_type=111 if opus else 0,
            opus=opus,
            telephone_event=TE,
            event_rate=rate,
            receive_payload_types=receive,
            remote_rtp=("127.0.0.1", 9),
        )
    )
    return stream


def test_the_event_rate_is_the_negotiated_telephone_events() -> None:
    def negotiated(codecs: tuple[Codec, ...], offer: str = OFFER) -> tuple[str, int | None, int]:
        media = answer(SessionDescription.parse(offer), "127.0.0.1", 30000, codecs).media
        return media.codec.name, media.telephone_event, StreamParams.from_media(media).event_rate

    assert negotiated((OPUS, PCMU)) == ("opus", 110, 48000)  # telephone-event/48000 beside opus/48000/2
    assert negotiated((PCMU,)) == ("PCMU", 126, 8000)  # telephone-event/8000
    g722 = OFFER.replace("m=audio 40000 RTP/AVP 111 0 8 110 126", "m=audio 40000 RTP/AVP 9 0 110 126")
    g722 = g722.replace("a=rtpmap:111", "a=rtpmap:9 G722/8000\r\na=rtpmap:111")
    assert negotiated((G722, PCMU), g722) == ("G722", 126, 8000)  # RFC 3551: G.722's RTP clock is 8000


@pytest.mark.parametrize(("rate", "opus"), [(48000, True), (8000, False)])
def test_a_sent_event_lasts_its_milliseconds_at_the_telephone_event_clock(
    udp: Callable[[], socket.socket], rate: int, opus: bool
) -> None:
    stream = _stream(udp, rate, opus)
    stream.dtmf.append(("5", 100.0, 40.0))
    out: list[Outgoing] = []
    step = 960 if opus else 160  # the audio clock's 20 ms
    for k in range(12):
        stream.event_packets(0.02 * k, (1000 + k * step) & 0xFFFFFFFF, out)
    payloads = [bytes(p[1])[12:] for p in out]
    durations = [int.from_bytes(p[2:4], "big") for p in payloads]
    ends = [d for p, d in zip(payloads, durations, strict=True) if p[1] & 0x80]
    assert ends == [100 * rate // 1000] * 3  # the end report (sent three times): 100 ms in the event's units
    assert durations[:2] == [20 * rate // 1000, 40 * rate // 1000]  # updates every 20 ms of its clock
    assert {int.from_bytes(bytes(p[1])[4:8], "big") for p in out} == {1000}  # one event, the audio's timestamp


@pytest.mark.parametrize(("rate", "opus"), [(48000, True), (8000, False)])
def test_a_received_event_is_read_in_the_telephone_event_clock(
    udp: Callable[[], socket.socket], rate: int, opus: bool
) -> None:
    stream = _stream(udp, rate, opus)
    keys: list[str] = []
    stream.on_key = keys.append
    ended: list[ReceivedEvent] = []
    receive = stream._te_rx.receive

    def spy(payload: bytes, ts: int, now: float) -> list[ReceivedEvent]:
        got = receive(payload, ts, now)
        ended.extend(e for e in got if isinstance(e, TelephoneEventEnded))
        return got

    stream._te_rx.receive = spy  # type: ignore[method-assign]
    peer = ("127.0.0.1", 40000)
    units = rate // 50  # 20 ms
    for k in range(1, 6):  # updates of 20..100 ms, the last one the end report
        payload = bytes([5, (0x80 if k == 5 else 0) | 10]) + (k * units).to_bytes(2, "big")
        stream.on_rtp(pack_header(TE, k == 1, k, 480000, 77) + payload, peer, 0.02 * k)
    assert keys == ["5"]
    (end,) = ended
    assert end.duration == 5 * units and end.duration_ms == pytest.approx(100.0) and not end.timed_out
