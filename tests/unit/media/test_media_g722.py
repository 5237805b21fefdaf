"""G.722 on 16 kHz frames: a tone above 4 kHz survives encode/decode (G.711's 8 kHz path cannot carry it), the
coder keeps its state across 20 ms frames, and the gap fill byte decodes to silence."""

from __future__ import annotations

import numpy as np

from opencomms.media.g711 import ulaw_decode, ulaw_encode
from opencomms.media.g722 import FRAME_BYTES, FRAME_SAMPLES, G722_SILENCE, G722Decoder, G722Encoder
from opencomms.media.resample import resample


def _tone(freq: float, seconds: float = 0.5, level: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def band_rms(x: np.ndarray, lo: float, hi: float, rate: int = 16000) -> float:
    """RMS of `x` between `lo` and `hi` Hz (Parseval over the real FFT)."""
    spectrum = np.fft.rfft(x.astype(np.float64))
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    band = (freqs >= lo) & (freqs < hi)
    return float(np.sqrt(2 * np.sum(np.abs(spectrum[band]) ** 2)) / x.size)


def _g722_roundtrip(x: np.ndarray) -> np.ndarray:
    enc, dec = G722Encoder(), G722Decoder()
    out = []
    for k in range(0, x.size, FRAME_SAMPLES):  # frame by frame, as the RTP bank does
        codes = enc.encode(x[k : k + FRAME_SAMPLES])
        assert len(codes) == FRAME_BYTES
        out.append(dec.decode(codes))
    return np.concatenate(out)


def test_a_6khz_tone_survives_g722_but_not_g711() -> None:
    x = _tone(6000.0)
    wide = _g722_roundtrip(x)[1600:]  # past the coder's start-up (QMF delay, ADPCM adaptation)
    assert wide.dtype == np.int16 and wide.size == x.size - 1600
    assert band_rms(wide, 4000, 8000) > 0.7 * band_rms(x, 4000, 8000)  # ~5600 of 5657
    narrow = resample(ulaw_decode(ulaw_encode(resample(x, 16000, 8000))), 8000, 16000)[1600:]
    assert band_rms(narrow, 4000, 8000) < 0.05 * band_rms(x, 4000, 8000)


def test_speech_band_is_kept_too() -> None:
    x = (_tone(500.0).astype(np.int32) + _tone(3000.0, level=4000) + _tone(7000.0, level=2000)).astype(np.int16)
    y = _g722_roundtrip(x)[1600:]
    for lo, hi, level in ((300, 700, 8000), (2800, 3200, 4000), (6800, 7200, 2000)):
        assert abs(band_rms(y, lo, hi) - level / np.sqrt(2)) < 0.15 * level / np.sqrt(2), (lo, hi)


def test_the_fill_byte_decodes_to_silence() -> None:
    dec = G722Decoder()
    assert np.abs(dec.decode(bytes([G722_SILENCE]) * 800)[400:]).max() <= 2
