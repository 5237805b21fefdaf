"""DTMF tone facts (ITU-T Q.23 frequencies, keys, RFC 4733 event codes) and tone synthesis.

Graph's tone names are not here: they are spelled only in `opencomms.wire.tones`.

Owns the key tables, `generate_dtmf` and the frame-by-frame `ToneSequencer` behind sendDtmfTones.
Must not detect tones, build RTP packets or read a clock: frames come out only when asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_MS, FULL_SCALE, SAMPLE_RATE, samples_per_frame

__all__ = [
    "COL_FREQS",
    "DBM0_IN_DBFS",
    "FLASH_KEY",
    "KEYS",
    "ROW_FREQS",
    "DtmfKeyError",
    "ToneSequencer",
    "event_code",
    "generate_dtmf",
    "key_for_event",
    "key_frequencies",
    "keypad_key",
    "normalize_key",
]

ROW_FREQS: tuple[float, float, float, float] = (697.0, 770.0, 852.0, 941.0)
"""Low-group frequencies in Hz (rows of the keypad)."""
COL_FREQS: tuple[float, float, float, float] = (1209.0, 1336.0, 1477.0, 1633.0)
"""High-group frequencies in Hz (columns of the keypad)."""
_KEYPAD = ("123A", "456B", "789C", "*0#D")
KEYS = "0123456789*#ABCD"
"""The 16 DTMF keys, in RFC 4733 event-code order (event code = index)."""
FLASH_KEY = "!"
"""Hook flash: RFC 4733 event 16 and Graph tone `flash`; it has no in-band tone."""
DBM0_IN_DBFS = -3.17
"""0 dBm0 expressed in dBFS for G.711 decoded to left-aligned 16-bit (μ-law +3.17 dBm0 = full scale)."""


class DtmfKeyError(ValueError):
    """A character, Graph tone name or event code that is not a DTMF key."""


def normalize_key(key: str) -> str:
    """Canonical key character: digits, '*', '#', 'A'-'D' (letters case-insensitive) or FLASH_KEY."""
    k = key.upper()
    if len(k) != 1 or (k not in KEYS and k != FLASH_KEY):
        raise DtmfKeyError(f"not a DTMF key: {key!r}")
    return k


def key_frequencies(key: str) -> tuple[float, float]:
    """(row Hz, column Hz) of a key; the flash key has none and raises."""
    k = normalize_key(key)
    for row, keys in enumerate(_KEYPAD):
        col = keys.find(k)
        if col >= 0:
            return ROW_FREQS[row], COL_FREQS[col]
    raise DtmfKeyError("hook flash has no in-band tone")


def keypad_key(row: int, col: int) -> str:
    """Key at keypad position (row 0-3, column 0-3)."""
    return _KEYPAD[row][col]


def event_code(key: str) -> int:
    """RFC 4733 event code: 0-9 digits, 10 '*', 11 '#', 12-15 A-D, 16 hook flash."""
    k = normalize_key(key)
    return 16 if k == FLASH_KEY else KEYS.index(k)


def key_for_event(code: int) -> str | None:
    """Key for an RFC 4733 event code, or None for codes that are not DTMF or flash (17 and up)."""
    if 0 <= code < 16:
        return KEYS[code]
    return FLASH_KEY if code == 16 else None


def _amplitude(level_dbfs: float) -> float:
    return float(FULL_SCALE * 10.0 ** (level_dbfs / 20.0))


def generate_dtmf(
    key: str, duration_ms: float, level_dbfs: float = -10.0, rate: int = SAMPLE_RATE
) -> npt.NDArray[np.int16]:
    """The dual tone of `key`: both tones at `level_dbfs` each (no twist), starting at phase 0.

    Level is per tone, relative to a full-scale sine; -10 dBFS per tone sums to a -4 dB peak, never clips.
    """
    f_row, f_col = key_frequencies(key)
    n = round(duration_ms * rate / 1000.0)
    return _dual_tone(f_row, f_col, np.arange(n, dtype=np.float64) / rate, _amplitude(level_dbfs))


def _dual_tone(f_row: float, f_col: float, t: npt.NDArray[np.float64], amplitude: float) -> npt.NDArray[np.int16]:
    y = amplitude * (np.sin(2.0 * math.pi * f_row * t) + np.sin(2.0 * math.pi * f_col * t))
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


@dataclass(frozen=True, slots=True)
class _Segment:
    start: int
    end: int
    key: str


class ToneSequencer:
    """Plays a list of keys as frames: each tone for `tone_ms`, then `gap_ms` of silence (Graph's
    `delayBetweenTonesMs`) before the next. Frames are produced on demand with `next_frame()` (or by
    iterating), so the media engine pulls one per tick; `done` turns true after the last gap's frame.

    The flash key has no in-band form and is played as silence of the tone's length (send it as RFC 4733
    event 16 instead). Defaults follow browsers' insertDTMF: 100 ms tones, 70 ms gaps.
    """

    def __init__(
        self,
        keys: Iterable[str],
        tone_ms: int = 100,
        gap_ms: int = 70,
        level_dbfs: float = -10.0,
        rate: int = SAMPLE_RATE,
        frame_ms: int = FRAME_MS,
    ) -> None:
        if tone_ms <= 0 or gap_ms < 0:
            raise ValueError("tone_ms must be positive and gap_ms non-negative")
        self.rate = rate
        self.frame_samples = samples_per_frame(rate, frame_ms)
        self._amplitude = _amplitude(level_dbfs)
        tone, gap = rate * tone_ms // 1000, rate * gap_ms // 1000
        segments: list[_Segment] = []
        at = 0
        for key in keys:
            segments.append(_Segment(at, at + tone, normalize_key(key)))
            at += tone + gap
        self._segments = tuple(segments)
        self.total_samples = at
        self._position = 0

    @property
    def total_frames(self) -> int:
        """Frames the whole sequence takes (the last one padded with silence)."""
        return -(-self.total_samples // self.frame_samples)

    @property
    def done(self) -> bool:
        """True once every frame has been produced."""
        return self._position >= self.total_samples

    def next_frame(self) -> npt.NDArray[np.int16]:
        """The next frame of the sequence; silence once done."""
        start, stop = self._position, self._position + self.frame_samples
        frame = np.zeros(self.frame_samples, dtype=np.int16)
        for seg in self._segments:
            lo, hi = max(start, seg.start), min(stop, seg.end)
            if lo >= hi or seg.key == FLASH_KEY:
                continue
            t = np.arange(lo - seg.start, hi - seg.start, dtype=np.float64) / self.rate
            frame[lo - start : hi - start] = _dual_tone(*key_frequencies(seg.key), t, self._amplitude)
        self._position = stop
        return frame

    def __iter__(self) -> Iterator[npt.NDArray[np.int16]]:
        while not self.done:
            yield self.next_frame()
