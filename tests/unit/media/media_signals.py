"""Synthetic test signals for the media DSP tests: tones, noise, speech-like audio, espeak-ng speech."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import numpy.typing as npt

RATE = 16_000

# (F1, F2, F3) in Hz of some English vowels (adult male; scaled up for higher voices).
_VOWELS = (
    (270, 2290, 3010),
    (390, 1990, 2550),
    (530, 1840, 2480),
    (660, 1720, 2410),
    (730, 1090, 2440),
    (570, 840, 2410),
    (440, 1020, 2240),
    (300, 870, 2240),
    (640, 1190, 2390),
    (490, 1350, 1690),
)
_BANDWIDTHS = (80.0, 110.0, 160.0)


def to_int16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def tone_pair(
    f_low: float,
    f_high: float,
    ms: float,
    low_dbfs: float = -10.0,
    high_dbfs: float = -10.0,
    rate: int = RATE,
    phases: tuple[float, float] = (0.0, 0.0),
) -> npt.NDArray[np.float64]:
    """Two sines (float, not yet rounded) with independent levels: for twist and deviation tests."""
    t = np.arange(round(ms * rate / 1000)) / rate
    a, b = 32767 * 10 ** (low_dbfs / 20), 32767 * 10 ** (high_dbfs / 20)
    return a * np.sin(2 * np.pi * f_low * t + phases[0]) + b * np.sin(2 * np.pi * f_high * t + phases[1])


def place(
    parts: list[tuple[int, npt.NDArray[np.float64] | npt.NDArray[np.int16]]], total: int
) -> npt.NDArray[np.float64]:
    """Sum signals into a silent buffer of `total` samples at the given sample offsets."""
    out = np.zeros(total)
    for offset, sig in parts:
        out[offset : offset + sig.size] += sig
    return out


def white_noise_for_snr(
    signal: npt.NDArray[np.float64] | npt.NDArray[np.int16], snr_db: float, size: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """White Gaussian noise whose power is `snr_db` below the mean power of `signal`."""
    power = float(np.mean(np.asarray(signal, dtype=np.float64) ** 2))
    return rng.standard_normal(size) * np.sqrt(power / 10 ** (snr_db / 10))


def _formant_gain(freqs: npt.NDArray[np.float64], formants: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Magnitude of a cascade of 2-pole resonators (one per formant), normalised to 1 at DC."""
    gain = np.ones_like(freqs)
    for i, bw in enumerate(_BANDWIDTHS):
        f = formants[..., i]
        r = freqs / f
        gain = gain / np.sqrt((1 - r * r) ** 2 + (freqs * bw / (f * f)) ** 2)
    return gain


def speech_like(seconds: float, rng: np.random.Generator, rate: int = RATE) -> npt.NDArray[np.int16]:
    """Speech-like audio: voiced syllables (harmonic-rich, pitch gliding within 80-300 Hz, formants moving
    between vowel targets), fricative noise bursts and pauses, at conversational levels."""
    total = int(seconds * rate)
    out = np.zeros(total)
    at = 0
    while at < total:
        kind = rng.random()
        if kind < 0.7:  # voiced syllable
            n = int(rng.uniform(0.08, 0.35) * rate)
            t = np.arange(n) / rate
            f0 = np.linspace(rng.uniform(80, 300), rng.uniform(80, 300), n)
            scale = rng.uniform(1.0, 1.25)
            v0, v1 = (np.array(_VOWELS[rng.integers(len(_VOWELS))], dtype=np.float64) * scale for _ in range(2))
            mix = (t / t[-1])[:, None]
            formants = v0 * (1 - mix) + v1 * mix
            phase = 2 * np.pi * np.cumsum(f0) / rate
            seg = np.zeros(n)
            for k in range(1, int(4000 / f0.min()) + 1):
                fk = k * f0
                amp = _formant_gain(fk, formants) / k * (fk < 0.45 * rate)
                seg += amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
            envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
            seg *= envelope / (np.sqrt(np.mean(seg**2)) + 1e-9)
        elif kind < 0.85:  # fricative / plosive burst: shaped noise
            n = int(rng.uniform(0.03, 0.2) * rate)
            spec = np.fft.rfft(rng.standard_normal(n))
            f = np.fft.rfftfreq(n, 1 / rate)
            lo = rng.uniform(1500, 4000)
            spec *= (f > lo) * (f < rng.uniform(lo + 1000, 7800))
            seg = np.fft.irfft(spec, n)
            seg /= np.sqrt(np.mean(seg**2)) + 1e-9
            seg *= rng.uniform(0.2, 0.6)
        else:  # pause
            n = int(rng.uniform(0.02, 0.3) * rate)
            seg = np.zeros(n)
        level = 32767 * 10 ** (rng.uniform(-30, -12) / 20) * np.sqrt(2)
        seg = seg[: total - at] * level
        out[at : at + seg.size] += seg
        at += seg.size
    out += rng.standard_normal(total) * 32767 * 10 ** (-60 / 20)  # faint background
    return to_int16(out)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak(text: str, voice: str, speed: int, pitch: int) -> tuple[npt.NDArray[np.int16], int]:
    """Synthesize `text` with espeak-ng; returns (samples, sample rate) from its WAV output."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), text],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not produce a WAV file")
    rate = int.from_bytes(wav[24:28], "little")
    start = wav.index(b"data") + 8  # espeak-ng streams: the data size field is not reliable
    body = wav[start : start + (len(wav) - start) // 2 * 2]
    return np.frombuffer(body, dtype="<i2").astype(np.int16), rate
