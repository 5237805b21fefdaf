"""The node's built-in hold music: a soft arpeggiated chord loop, generated at first use (no audio file in git).

Eight seconds (C, A minor, F, G; a plucked note every quarter second over a quiet pad), 16 kHz mono int16 peaking
near -12 dBFS, made once per process and shared read-only: every held participant and every lobby phone plays the
same array (the engine stores a clip once however many legs play it). It loops seamlessly (each chord fades out
within its bar).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

__all__ = ["HOLD_MUSIC_SECONDS", "hold_music", "loops_for"]

SAMPLE_RATE = 16000
BAR = 2.0
"""Seconds per chord."""
CHORDS = (
    (261.63, 329.63, 392.00, 523.25),  # C
    (220.00, 261.63, 329.63, 440.00),  # A minor
    (174.61, 220.00, 261.63, 349.23),  # F
    (196.00, 246.94, 293.66, 392.00),  # G
)
HOLD_MUSIC_SECONDS = BAR * len(CHORDS)
PATTERN = (0, 1, 2, 3, 2, 1, 2, 3)
"""Order of the chord's notes, one every BAR / len(PATTERN) seconds."""


@functools.cache
def hold_music() -> npt.NDArray[np.int16]:
    """The loop (read-only, the same array on every call)."""
    bar_n = int(BAR * SAMPLE_RATE)
    step_n = bar_n // len(PATTERN)
    t_bar = np.arange(bar_n) / SAMPLE_RATE
    t_note = np.arange(bar_n - step_n * (len(PATTERN) - 1)) / SAMPLE_RATE
    out = np.zeros(bar_n * len(CHORDS), dtype=np.float64)
    fade = np.sin(np.pi * np.arange(bar_n) / bar_n) ** 2  # the pad swells and fades within its bar
    for k, chord in enumerate(CHORDS):
        bar = np.zeros(bar_n)
        for f in chord[:3]:
            bar += 0.05 * np.sin(2 * np.pi * f * t_bar) * fade
        for i, idx in enumerate(PATTERN):
            f = chord[idx]
            note = np.sin(2 * np.pi * f * t_note) + 0.3 * np.sin(4 * np.pi * f * t_note)
            env = np.exp(-t_note * 4.0) * np.minimum(1.0, t_note / 0.005)
            start = i * step_n
            bar[start : start + t_note.size] += 0.18 * note * env
        bar *= np.minimum(1.0, (bar_n - np.arange(bar_n)) / (0.01 * SAMPLE_RATE))  # no click at the bar's end
        out[k * bar_n : (k + 1) * bar_n] = bar
    peak = float(np.max(np.abs(out))) or 1.0
    pcm = np.round(out / peak * 32767 * 10 ** (-12 / 20)).astype(np.int16)
    pcm.flags.writeable = False
    return pcm


def loops_for(clip_samples: int, seconds: float) -> int:
    """How many times a clip of `clip_samples` plays back to back to last `seconds` (at least once)."""
    if clip_samples <= 0:
        return 1
    return max(1, int(seconds * SAMPLE_RATE // clip_samples) + 1)
