"""The RTP bank with Opus rows (relayed browsers, `webrtc.opus_in_node`): listeners hearing the same mix share one
encoding per tick (each with its own RTP header, 48 kHz timestamps), received Opus is played into the leg at 16 kHz,
a bad payload is counted and concealed, a DTX gap counts as silence rather than concealment, and digital silence is
not sent."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable

import numpy as np
import pytest

from opencomms.media.engine import Heard, MediaEngine
from opencomms.rtp.bank import RtpBank
from opencomms.rtp.opus import OpusDecoder, OpusEncoder, available
from opencomms.rtp.packet import pack_header
from opencomms.rtp.stream import Stream, StreamParams

from .test_rtp_bank import ManualHost, received, tone
from .test_rtp_opus import peak_hz

pytestmark = pytest.mark.skipif(not available(), reason="libopus0 not installed")

OPUS = StreamParams(payload_type=111, opus=True, receive_payload_types={111: "opus", 0: "PCMU"})


def _meeting(
    udp: Callable[[], socket.socket], names: tuple[str, ...] = ("a", "b", "c")
) -> tuple[ManualHost, RtpBank, dict[str, Stream], dict[str, socket.socket]]:
    """A bot and browsers in one mix, each browser an Opus stream to a peer socket of its own."""
    engine = MediaEngine(8)
    host = ManualHost(engine)
    bank = RtpBank(host, capacity=4, kernel_timestamps=False, paced=False)
    engine.add_leg("bot")
    engine.join("bot", "m")
    streams, peers = {}, {}
    for name in names:
        engine.add_leg(name)
        engine.join(name, "m")
        peers[name] = udp()
        streams[name] = Stream(name, udp(), udp())
        streams[name].apply(dataclasses.replace(OPUS, remote_rtp=peers[name].getsockname()))
        bank.attach(streams[name])
    return host, bank, streams, peers


def test_listeners_of_one_mix_share_one_encoding(udp: Callable[[], socket.socket]) -> None:
    host, bank, _streams, peers = _meeting(udp)
    host.engine.play("bot", "p", [tone(1.0, 700.0)])
    for k in range(25):
        host.tick(0.02 * k)
    got = {name: received(peers[name]) for name in peers}
    assert all(len(p) == 25 for p in got.values())
    a = got["a"]
    assert all(p.payload_type == 111 for p in a) and a[0].marker and not a[1].marker
    assert [(p.timestamp - a[0].timestamp) % (1 << 32) for p in a[:3]] == [0, 960, 1920]  # 48 kHz clock
    assert [p.payload for p in got["b"]] == [p.payload for p in a] == [p.payload for p in got["c"]]
    assert len({p.ssrc for p in (a[0], got["b"][0], got["c"][0])}) == 3
    assert bank._opus.encodes == 25 and bank._opus.frames == 75  # one encoding per tick for three listeners
    dec = OpusDecoder()
    audio = np.concatenate([dec.decode(p.payload).copy() for p in a])[3200:]
    assert abs(peak_hz(audio) - 700.0) < 20 and np.sqrt(np.mean(audio.astype(float) ** 2)) > 3000


def test_digital_silence_is_not_sent(udp: Callable[[], socket.socket]) -> None:
    host, bank, _streams, peers = _meeting(udp, ("a",))
    for k in range(10):
        host.tick(0.02 * k)
    assert received(peers["a"]) == [] and bank._opus.encodes == 0


def _padded(packet: bytes, size: int) -> bytes:
    """The same one-frame Opus packet, `size` bytes long: code 3 with Opus padding (RFC 6716 3.2.5), as large as a
    sender that ignores `maxaveragebitrate` writes (aiortc: ~290 bytes)."""
    frame = packet[1:]
    pad = size - 2 - len(frame)
    count = pad // 255 + 1  # padding-length bytes: each 255 means 254 more and another length byte
    pad -= count
    lengths = bytes([255] * (pad // 254)) + bytes([pad % 254])
    assert len(lengths) == count
    return bytes([packet[0] | 0x03, 0x41]) + lengths + frame + bytes(pad)


@pytest.mark.parametrize(
    ("sizes", "bad"),
    [((0, 0), b"\xff\xff\xff\xff"), ((290, 1276), b"\x01" * 1277)],  # 0: as encoded; 1277: over RFC 6716's 1276
    ids=["slot-sized", "larger-than-a-slot"],
)
def test_received_opus_is_heard_at_16khz_bad_payloads_counted(
    udp: Callable[[], socket.socket], sizes: tuple[int, int], bad: bytes
) -> None:
    """Packets that fit a jitter-buffer slot, and packets far larger (a peer ignoring the answer's bitrate)."""
    host, _bank, streams, peers = _meeting(udp, ("a",))
    heard: list[np.ndarray] = []
    host.engine.subscribe(Heard("bot", lambda _leg, frame, _now: heard.append(frame.copy())))
    host.tick(0.0)
    ours = streams["a"].rtp_sock.getsockname()
    wave, enc = tone(0.8, 6000.0), OpusEncoder()
    for k in range(40):
        payload = enc.encode(wave[k * 320 : (k + 1) * 320])
        if sizes[k % 2]:
            payload = _padded(payload, sizes[k % 2])
        peers["a"].sendto(pack_header(111, k == 0, 100 + k, 5000 + 960 * k, 7) + (bad if k == 30 else payload), ours)
        host.tick(0.02 * (k + 1))
    audio = np.concatenate(heard[10:28])
    assert abs(peak_hz(audio) - 6000.0) < 20  # 6 kHz: wideband, no 8 kHz step
    assert np.sqrt(np.mean(audio.astype(float) ** 2)) > 3000
    assert streams["a"].invalid_packets == 1 and streams["a"].frames_played >= 35
    assert len(streams["a"].opus_large) <= 2  # large payloads are taken as their slots are played


def test_a_dtx_gap_is_silence_not_concealment(udp: Callable[[], socket.socket]) -> None:
    host, _bank, streams, peers = _meeting(udp, ("a",))
    ours = streams["a"].rtp_sock.getsockname()
    enc = OpusEncoder()
    quiet = (np.random.default_rng(1).standard_normal(320) * 30).astype(np.int16)
    t, seq, ts = 0.0, 100, 5000
    for _burst in range(4):  # a silent browser: one comfort-noise packet every 400 ms, sequence numbers unbroken
        peers["a"].sendto(pack_header(111, False, seq, ts, 7) + enc.encode(quiet), ours)
        seq, ts = seq + 1, ts + 960 * 20
        for _ in range(20):
            host.tick(t)
            t += 0.02
    st = streams["a"]
    assert st.dtx_frames > 0 and st.frames_concealed <= st.lost_run  # at most the gap still open
    before = st.frames_concealed
    peers["a"].sendto(pack_header(111, False, seq + 5, ts + 960 * 5, 7) + enc.encode(quiet), ours)  # 5 lost
    for _ in range(20):
        host.tick(t)
        t += 0.02
    assert st.frames_concealed > before  # a gap in the sequence numbers is loss: its concealment counts
