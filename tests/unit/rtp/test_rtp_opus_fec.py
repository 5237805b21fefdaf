"""In-band FEC of a browser's Opus (`webrtc.opus_in_node`, the answer's `useinbandfec=1`): when a packet is lost
and the one after it is already in the jitter buffer, the bank rebuilds the lost frame from that packet's LBRR data
instead of libopus's concealment; what it rebuilds follows the lost audio far closer than concealment does."""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from opencomms.gateway.opus_fmtp import IN_NODE, BrowserOpus
from opencomms.media.engine import Heard
from opencomms.rtp.jitter import LOST, JitterBuffer, JitterConfig
from opencomms.rtp.opus import OpusDecoder, OpusEncoder, available
from opencomms.rtp.packet import pack_header

from .test_rtp_bank_opus import _meeting

pytestmark = pytest.mark.skipif(not available(), reason="libopus0 not installed")


def _speechlike(frames: int) -> npt.NDArray[np.int16]:
    """A gliding, pulsing tone: concealment (which extends the last pitch) cannot guess the lost frame."""
    t = np.arange(frames * 320) / 16000.0
    pitch = 2 * np.pi * (300 * t + 400 * t**2)
    return (8000 * np.sin(pitch) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)


def _browser_encoder() -> OpusEncoder:
    """An encoder as a browser's under loss: in-band FEC on, 20 % loss expected (what RTCP tells Chrome)."""
    enc = OpusEncoder()
    for request, value in ((4012, 1), (4014, 20)):  # OPUS_SET_INBAND_FEC, OPUS_SET_PACKET_LOSS_PERC
        enc._lib.opus_encoder_ctl(ctypes.c_void_p(enc._handle), ctypes.c_int(request), ctypes.c_int32(value))
    return enc


def _error(a: npt.NDArray[np.int16], b: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_a_lost_frame_is_rebuilt_from_the_next_packets_fec() -> None:
    wave, enc = _speechlike(30), _browser_encoder()
    packets = [enc.encode(wave[k * 320 : (k + 1) * 320]) for k in range(30)]
    clean, fec, plc = OpusDecoder(), OpusDecoder(), OpusDecoder()
    for k in range(15):
        clean.decode(packets[k])
        fec.decode(packets[k])
        plc.decode(packets[k])
    lost = clean.decode(packets[15]).copy()
    rebuilt, concealed = fec.recover(packets[16]).copy(), plc.decode(None).copy()  # packet 15 lost on the way
    assert _error(rebuilt, lost) < 0.5 * _error(concealed, lost)
    assert np.sqrt(np.mean(rebuilt.astype(float) ** 2)) > 2000
    assert _error(fec.decode(packets[16]), clean.decode(packets[16])) < 0.2 * _error(lost * 0, lost)  # and on


def test_the_jitter_buffer_shows_the_packet_after_a_lost_one_without_taking_it() -> None:
    jb = JitterBuffer(JitterConfig(min_delay_ms=20, clock_rate=8000, frame_ms=20))
    for k in (0, 1, 3):
        jb.put(5, 160 * k, bytes([k]) * 160, 0.0)
    assert jb.upcoming() is None  # not playing yet
    pops = [jb.pop(0.02 * k + 0.05) for k in range(4)]
    assert pops[:2] == [b"\x00" * 160, b"\x01" * 160] and pops[2] is LOST and pops[3] == b"\x03" * 160
    jb.put(5, 160 * 5, b"\x05" * 160, 0.2)
    assert jb.pop(0.2) is LOST and jb.upcoming() == b"\x05" * 160  # frame 4 lost, 5 is here
    assert jb.pop(0.22) == b"\x05" * 160 and jb.upcoming() is None  # ... and still played in its turn


def test_the_bank_plays_a_lost_browser_frame_from_the_next_packets_fec(udp: Callable[[], socket.socket]) -> None:
    host, bank, streams, peers = _meeting(udp, ("a",))
    heard: list[np.ndarray] = []
    host.engine.subscribe(Heard("bot", lambda _leg, frame, _now: heard.append(frame.copy())))
    ours = streams["a"].rtp_sock.getsockname()
    wave, enc = _speechlike(40), _browser_encoder()
    packets = [enc.encode(wave[k * 320 : (k + 1) * 320]) for k in range(40)]
    clean, plc = OpusDecoder(), OpusDecoder()
    reference = [clean.decode(p).copy() for p in packets]
    for p in packets[:20]:
        plc.decode(p)
    concealed = plc.decode(None).copy()  # what libopus's concealment would have played for frame 20
    host.tick(0.0)
    for k in range(40):
        if k != 20:  # lost on the way
            peers["a"].sendto(pack_header(111, k == 0, 100 + k, 5000 + 960 * k, 7) + packets[k], ours)
        host.tick(0.02 * (k + 1))
    assert bank._opus.recovered == 1 and streams["a"].frames_concealed == 1
    at = min(range(len(heard) - 20), key=lambda i: _error(heard[i + 10], reference[10]))  # frame 0's tick
    assert _error(heard[at + 10], reference[10]) < 1.0  # the bot hears the browser's frames as decoded
    assert _error(heard[at + 20], reference[20]) < 0.5 * _error(concealed, reference[20])


def test_the_answer_asks_for_in_band_fec_only_where_the_node_decodes() -> None:
    assert IN_NODE["useinbandfec"] == "1"  # webrtc.opus_in_node: the bank uses it
    assert "useinbandfec" not in BrowserOpus().params()  # rtpengine transcodes: it would not
