"""The RTP bank with G.722 rows: what a leg hears leaves as G.722 at 16 kHz (energy above 4 kHz intact), received
G.722 is played into the leg at 16 kHz, G.711 packets on a G.722 stream are not mistaken for it, and a row switches
between G.711 and G.722 on a re-negotiation; G.711 rows in the same batch are unchanged."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable

import numpy as np

from opencomms.media.engine import Heard, MediaEngine
from opencomms.media.g711 import ulaw_decode, ulaw_encode
from opencomms.media.g722 import G722Decoder, G722Encoder
from opencomms.rtp.bank import RtpBank
from opencomms.rtp.packet import pack_header
from opencomms.rtp.stream import Stream, StreamParams

from ..media.test_media_g722 import band_rms
from .test_rtp_bank import ManualHost, received, tone

WIDE = StreamParams(payload_type=9, g722=True, receive_payload_types={0: "PCMU", 8: "PCMA", 9: "G722"})


def _bank(udp: Callable[[], socket.socket]) -> tuple[ManualHost, RtpBank, dict[str, Stream], dict[str, socket.socket]]:
    """Two phones, "wide" (G.722) and "narrow" (PCMU), each with a bot leg of its own."""
    engine = MediaEngine(8)
    host = ManualHost(engine)
    bank = RtpBank(host, capacity=4, kernel_timestamps=False, paced=False)
    streams, peers = {}, {}
    for name, params in (("wide", WIDE), ("narrow", StreamParams())):
        engine.add_leg(name)
        engine.add_leg(f"bot-{name}")
        engine.join(name, name)
        engine.join(f"bot-{name}", name)
        peers[name] = udp()
        streams[name] = Stream(name, udp(), udp())
        streams[name].apply(dataclasses.replace(params, remote_rtp=peers[name].getsockname()))
        bank.attach(streams[name])
    return host, bank, streams, peers


def test_a_g722_row_sends_16khz_audio_next_to_a_pcmu_row(udp: Callable[[], socket.socket]) -> None:
    host, _, _streams, peers = _bank(udp)
    for name in ("wide", "narrow"):
        host.engine.play(f"bot-{name}", "p", [tone(1.0, 6000.0)])
    for k in range(25):
        host.tick(0.02 * k)
    wide, narrow = received(peers["wide"]), received(peers["narrow"])
    assert len(wide) == 25 and all(p.payload_type == 9 and len(p.payload) == 160 for p in wide)
    assert [(p.timestamp - wide[0].timestamp) % (1 << 32) for p in wide[:3]] == [0, 160, 320]  # 8000 Hz clock
    dec = G722Decoder()
    audio = np.concatenate([dec.decode(p.payload) for p in wide])[3200:]
    assert band_rms(audio, 4000, 8000) > 0.7 * 8000 / np.sqrt(2)
    assert all(p.payload_type == 0 for p in narrow)
    narrow_audio = np.concatenate([ulaw_decode(p.payload) for p in narrow])[1600:]
    assert np.sqrt(np.mean(narrow_audio.astype(float) ** 2)) < 100  # 6 kHz is above the 8 kHz path's band


def test_received_g722_is_played_at_16khz_and_g711_packets_are_dropped(udp: Callable[[], socket.socket]) -> None:
    host, _, streams, peers = _bank(udp)
    heard: list[np.ndarray] = []
    host.engine.subscribe(Heard("bot-wide", lambda _leg, frame, _now: heard.append(frame.copy())))
    host.tick(0.0)
    ours = streams["wide"].rtp_sock.getsockname()
    wave, enc = tone(0.8, 6000.0), G722Encoder()
    for k in range(40):
        payload = enc.encode(wave[k * 320 : (k + 1) * 320])
        peers["wide"].sendto(pack_header(9, k == 0, 100 + k, 160 * k, 7) + payload, ours)
        if k == 10:  # PCMU on the G.722 stream: counted, never decoded as G.722
            pcmu = ulaw_encode(np.zeros(160, dtype=np.int16)).tobytes()
            peers["wide"].sendto(pack_header(0, False, 5000, 0, 7) + pcmu, ours)
        host.tick(0.02 * (k + 1))
    audio = np.concatenate(heard[10:35])
    assert band_rms(audio, 4000, 8000) > 0.7 * 8000 / np.sqrt(2)
    assert streams["wide"].unknown_payload == 1 and streams["wide"].frames_played >= 35
    for k in range(40, 50):  # the peer stops: concealment fades to silence
        host.tick(0.02 * (k + 1))
    levels = [float(np.sqrt(np.mean(f.astype(float) ** 2))) for f in heard[-12:]]
    assert any(1000 < v < 4000 for v in levels) and levels[-1] == 0.0  # repeated at 1/2, 1/4, then silence
    assert streams["wide"].frames_concealed == 5


def test_a_row_switches_codec_on_renegotiation(udp: Callable[[], socket.socket]) -> None:
    host, bank, streams, peers = _bank(udp)
    host.engine.play("bot-wide", "p", [tone(1.0, 1000.0)])
    host.tick(0.0)
    bank.update(streams["wide"], StreamParams(remote_rtp=peers["wide"].getsockname()))  # re-INVITE to PCMU
    host.tick(0.02)
    host.tick(0.04)
    first, *rest = received(peers["wide"])
    assert first.payload_type == 9 and [p.payload_type for p in rest] == [0, 0]
    assert bank._coders[streams["wide"].row] is None
    bank.update(streams["wide"], dataclasses.replace(WIDE, remote_rtp=peers["wide"].getsockname()))
    for k in range(3, 10):
        host.tick(0.02 * k)
    back = received(peers["wide"])
    assert [p.payload_type for p in back] == [9] * 7
    dec = G722Decoder()
    level = np.sqrt(np.mean(np.concatenate([dec.decode(p.payload) for p in back])[1600:].astype(float) ** 2))
    assert 4000 < level < 7000  # a fresh coder: the 1 kHz tone at 8000 peak decodes cleanly
