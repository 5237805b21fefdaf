"""Audio helpers for bot tests: a speech-like test signal and finding a known signal inside what was heard.

Pure functions on 16 kHz mono int16 arrays; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opencomms.media.frames import SAMPLE_RATE

__all__ = ["Match", "contains", "find_signal", "speechlike"]

Samples = npt.NDArray[np.int16]


def speechlike(seconds: float, seed: int = 1, level: float = 4000.0) -> Samples:
    """Voiced syllables with pauses, band-limited below 3.4 kHz so it survives a G.711 phone line intact
    (a deterministic stand-in for a caller's voice; `seed` varies the harmonics' phases)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 140.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = np.zeros_like(t)
    for k in range(1, 20):
        if k * 180 < 3300:
            voice += np.sin(k * phase + rng.uniform(0, 6)) / k
    envelope = 0.2 + 0.8 * (np.sin(2 * np.pi * 2.5 * t) > -0.2)
    return np.clip(voice * envelope * level, -32768, 32767).astype(np.int16)


@dataclass(frozen=True, slots=True)
class Match:
    """Where a known signal was found in a longer one."""

    offset: float
    """Seconds into the longer signal where the known one starts (negative: it began before the recording)."""
    score: float
    """Normalised correlation over the overlap: 1.0 identical (up to gain), above ~0.9 clearly the same audio."""
    coverage: float
    """Share of the known signal that lies inside the longer one (a recording may cut its start or end)."""


def find_signal(heard: Samples, source: Samples, rate: int = SAMPLE_RATE) -> Match:
    """Best alignment of `source` inside `heard` (FFT cross-correlation), allowing `source` to run over
    either end of `heard` (a recording trimmed at a stop tone)."""
    src = source.astype(np.float64)
    m = src.size
    if heard.size == 0 or m == 0:
        return Match(0.0, 0.0, 0.0)
    hay = np.concatenate([np.zeros(m), heard.astype(np.float64), np.zeros(m)])
    size = 1 << (hay.size + m - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(hay, size) * np.conj(np.fft.rfft(src, size)), size)[: hay.size - m + 1]
    lag = int(np.argmax(xc)) - m  # where source[0] sits in `heard`
    lo, hi = max(0, -lag), min(m, heard.size - lag)
    if hi <= lo:
        return Match(lag / rate, 0.0, 0.0)
    part = src[lo:hi]
    seg = heard[lag + lo : lag + hi].astype(np.float64)
    score = float(np.dot(seg, part) / (np.linalg.norm(seg) * np.linalg.norm(part) + 1e-9))
    return Match(lag / rate, score, (hi - lo) / m)


def contains(
    heard: Samples, source: Samples, *, piece: float = 0.1, slip: float = 0.1, min_score: float = 0.9
) -> float:
    """Share of `source` (in `piece`-second pieces, pauses left out) found in `heard` with a correlation of at
    least `min_score`, each piece within `slip` seconds of where the whole signal aligns best. Audio that crossed
    a jitter buffer may lose or gain a 20 ms frame here and there; this measure tolerates that, a single
    correlation does not."""
    whole = find_signal(heard, source)
    step = max(1, round(piece * SAMPLE_RATE))
    margin = round(slip * SAMPLE_RATE)
    base = round(whole.offset * SAMPLE_RATE)
    found = total = 0
    floor = 0.01 * float(np.sqrt(np.mean(source.astype(np.float64) ** 2)))
    for at in range(0, source.size - step + 1, step):
        part = source[at : at + step]
        if float(np.sqrt(np.mean(part.astype(np.float64) ** 2))) < floor:
            continue  # a pause in the source: nothing to find
        total += 1
        lo = max(0, base + at - margin)
        hi = min(heard.size, base + at + step + margin)
        if hi - lo < step:
            continue
        if _best_normalised(heard[lo:hi], part) >= min_score:
            found += 1
    return found / total if total else 0.0


def _best_normalised(window: Samples, part: Samples) -> float:
    """Highest normalised correlation of `part` at any position fully inside `window`."""
    hay, src = window.astype(np.float64), part.astype(np.float64)
    m = src.size
    size = 1 << (hay.size + m - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(hay, size) * np.conj(np.fft.rfft(src, size)), size)[: hay.size - m + 1]
    energy = np.concatenate([[0.0], np.cumsum(hay * hay)])
    norms = np.sqrt(np.maximum(energy[m:] - energy[:-m], 0.0)) * np.linalg.norm(src) + 1e-9
    return float(np.max(xc / norms))
