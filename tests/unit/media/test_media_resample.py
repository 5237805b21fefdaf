"""Resampling quality (pass band, stop band) and streaming continuity across frames."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from opencomms.media.resample import STREAMING, Resampler, resample


def sine(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 10000.0) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def level_db(x: npt.NDArray[np.int16], amplitude: float = 10000.0) -> float:
    """RMS of the middle half relative to a sine of `amplitude` (edges hold the filter's transients)."""
    mid = x[x.size // 4 : -x.size // 4].astype(np.float64)
    rms = float(np.sqrt(np.mean(mid**2)))
    return 20 * np.log10(max(rms, 1e-9) / (amplitude / np.sqrt(2)))


@pytest.mark.parametrize("src", [8000, 11025, 22050, 44100, 48000])
def test_one_kilohertz_keeps_its_level(src: int) -> None:
    y = resample(sine(1000, src), src, 16000)
    assert y.size == 16000
    assert level_db(y) > -0.5
    assert level_db(y) < 0.5


def test_near_nyquist_tone_is_removed_when_decimating() -> None:
    y = resample(sine(7500, 48000, amplitude=30000), 48000, 16000)
    assert level_db(y, 30000) < -40
    # ... and a tone above the new Nyquist does not alias back in.
    y = resample(sine(9000, 48000, amplitude=30000), 48000, 16000)
    assert level_db(y, 30000) < -60


def test_upsampling_images_are_removed() -> None:
    y = resample(sine(3000, 8000, amplitude=30000), 8000, 16000).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y[4000:12000] * np.hanning(8000)))
    freqs = np.fft.rfftfreq(8000, 1 / 16000)
    image = spectrum[np.abs(freqs - 5000) < 50].max()
    assert 20 * np.log10(image / spectrum.max()) < -60


def test_whole_signal_is_aligned_and_sized() -> None:
    x = sine(440, 16000, 0.1)
    assert resample(x, 16000, 16000) is not x
    y = resample(x, 16000, 8000)
    assert y.size == 800
    back = resample(y, 8000, 16000)
    assert back.size == x.size
    # No delay: the round trip lines up with the original (away from the edges).
    err = back[200:-200].astype(np.int32) - x[200:-200]
    assert np.abs(err).max() < 100
    assert resample(np.zeros(0, np.int16), 8000, 16000).size == 0


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (48000, 16000), (16000, 48000)])
def test_frame_by_frame_equals_one_call(src: int, dst: int) -> None:
    x = sine(697, src, 2.0)
    whole = Resampler(src, dst).process(x)
    streamed = Resampler(src, dst)
    frame = src // 50
    parts = [streamed.process(x[i : i + frame]) for i in range(0, x.size, frame)]
    assert {p.size for p in parts} == {dst // 50}
    joined = np.concatenate(parts)
    assert joined.size == whole.size == x.size * dst // src
    assert np.abs(joined.astype(np.int32) - whole).max() <= 1


def test_streaming_equals_the_delay_compensated_whole_signal() -> None:
    x = sine(1000, 8000, 1.0)
    r = Resampler(8000, 16000)
    y = np.concatenate([r.process(x[i : i + 160]) for i in range(0, x.size, 160)])
    ref = resample(x, 8000, 16000, STREAMING)
    d = r.delay
    assert 0 < d < 64
    assert np.abs(y[d:].astype(np.int32) - ref[: y.size - d]).max() <= 1


def test_no_clicks_at_frame_boundaries() -> None:
    x = sine(1000, 8000, 1.0)
    r = Resampler(8000, 16000)
    y = np.concatenate([r.process(x[i : i + 160]) for i in range(0, x.size, 160)]).astype(np.float64)
    steady = y[1000:]
    # The largest sample-to-sample step of a 1 kHz sine of amplitude A at 16 kHz is A*2*sin(pi/16).
    assert np.abs(np.diff(steady)).max() < 10000 * 2 * np.sin(np.pi / 16) * 1.02
    ideal = 10000 * np.sin(2 * np.pi * 1000 * (np.arange(y.size) - r.delay) / 16000)
    assert np.abs(steady - ideal[1000:]).max() < 40


def test_odd_chunk_sizes_and_reset() -> None:
    x = sine(500, 11025, 0.5)
    whole = Resampler(11025, 16000).process(x)
    r = Resampler(11025, 16000)
    parts = np.concatenate([r.process(x[i : i + 37]) for i in range(0, x.size, 37)])
    assert parts.size == whole.size
    assert np.abs(parts.astype(np.int32) - whole).max() <= 1
    r.reset()
    np.testing.assert_array_equal(r.process(x), whole)


def test_batched_channels_match_single_channel() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(-8000, 8000, size=(6, 1600)).astype(np.int16)
    batch = Resampler(8000, 16000, channels=6)
    singles = [Resampler(8000, 16000) for _ in range(6)]
    for i in range(0, 1600, 160):
        out = batch.process(x[:, i : i + 160])
        assert out.shape == (6, 320)
        for c in range(6):
            assert np.abs(out[c].astype(np.int32) - singles[c].process(x[c, i : i + 160])).max() <= 1


def test_input_validation() -> None:
    with pytest.raises(TypeError):
        Resampler(8000, 16000).process(np.zeros(160, np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Resampler(8000, 16000).process(np.zeros((2, 160), np.int16))
    with pytest.raises(ValueError):
        Resampler(8000, 16000, channels=2).process(np.zeros((3, 160), np.int16))
    with pytest.raises(TypeError):
        resample(np.zeros(10, np.float64), 8000, 16000)  # type: ignore[arg-type]
