"""Our libopus binding (rtp/opus.py) at the engine's 16 kHz: a tone survives an encode -> decode round trip at its
frequency, a lost frame is concealed (not silence, not a crash), a payload libopus refuses is counted and concealed,
digital silence costs (almost) nothing, and the settings are checked."""

from __future__ import annotations

import numpy as np
import pytest

from opencomms.rtp.opus import FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings, available

pytestmark = pytest.mark.skipif(not available(), reason="libopus0 not installed")


def tone(freq: float, seconds: float = 1.0, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000.0
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(float) * np.hanning(audio.size)))
    return float(np.argmax(spectrum)) * 16000.0 / audio.size


@pytest.mark.parametrize("freq", [440.0, 1800.0, 6000.0])
def test_a_tone_keeps_its_frequency_through_encode_and_decode(freq: float) -> None:
    enc, dec = OpusEncoder(OpusSettings(complexity=1)), OpusDecoder()
    wave = tone(freq)
    out = []
    for k in range(wave.size // FRAME_SAMPLES):
        payload = enc.encode(wave[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES])
        assert 2 < len(payload) <= 159
        out.append(dec.decode(payload).copy())
    audio = np.concatenate(out)[3200:]
    assert abs(peak_hz(audio) - freq) < 20.0  # 6 kHz: wideband (8 kHz of audio) carries it
    assert np.sqrt(np.mean(audio.astype(float) ** 2)) > 0.5 * 8000 / np.sqrt(2)
    assert enc.errors == 0 and dec.errors == 0


def test_a_lost_frame_is_concealed_from_the_audio_before_it() -> None:
    enc, dec = OpusEncoder(), OpusDecoder()
    wave = tone(500.0)
    for k in range(20):
        dec.decode(enc.encode(wave[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]))
    concealed = dec.decode(None).copy()
    assert concealed.shape == (FRAME_SAMPLES,)
    assert np.sqrt(np.mean(concealed.astype(float) ** 2)) > 1000  # the tone goes on, not a hole
    assert abs(peak_hz(np.tile(concealed, 4)) - 500.0) < 40.0


def test_a_bad_payload_is_counted_and_concealed_not_raised() -> None:
    dec = OpusDecoder()
    frame = dec.decode(b"\xff\xff\xff\xff")  # code 3 with a frame count of 63 x 20 ms: invalid
    assert frame.shape == (FRAME_SAMPLES,) and dec.errors == 1
    dec.decode(b"")  # an empty payload is a lost frame, not an error
    assert dec.errors == 1


def test_silence_is_discontinued_by_dtx() -> None:
    enc = OpusEncoder(OpusSettings(dtx=True))
    sizes = [len(enc.encode(np.zeros(FRAME_SAMPLES, dtype=np.int16))) for _ in range(40)]
    assert sum(1 for s in sizes[20:] if s <= 2) >= 18  # after a few frames: nothing worth sending


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        OpusSettings(complexity=11)
    with pytest.raises(ValueError):
        OpusSettings(bitrate=64000)
    with pytest.raises(ValueError):
        OpusEncoder().encode(np.zeros(100, dtype=np.int16))
