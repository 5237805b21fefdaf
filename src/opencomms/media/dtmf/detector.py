"""In-band DTMF detection for many channels at once: turns per-window key decisions into key presses.

Owns the per-channel press state (current key, accumulated tone time, start, pause counting), slot
management and the key events. Must not read a clock (callers pass `now`), touch RTP, or do spectral work
itself (goertzel.py does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_MS, SAMPLE_RATE, frames_from_signal
from ..slots import SlotTable
from .config import DtmfDetectorConfig
from .goertzel import HOP_MS, WINDOW_HOPS, ToneAnalyzer
from .tones import keypad_key
from .verify import SpanVerifier

__all__ = ["DtmfDetector", "DtmfDetectorBank", "DtmfKeyDetected", "detect_keys"]

_KEY_CHARS = tuple(keypad_key(i // 4, i % 4) for i in range(16))
_REF_FRACTION = np.float32(0.75)  # lowest tone share taken as "window full of tone" (off-nominal + noise)


@dataclass(frozen=True, slots=True)
class DtmfKeyDetected:
    """One key press, reported once, as soon as its tone has lasted `min_duration_ms`."""

    channel: int
    """Slot of the channel in its bank (0 for a single-channel DtmfDetector)."""
    key: str
    """'0'-'9', '*', '#', 'A'-'D'."""
    start_time: float
    """Estimated start of the tone, on the caller's clock (the `now` passed with the frames)."""


class DtmfDetectorBank:
    """DTMF detection for up to `capacity` channels, one 20 ms frame per channel per call.

    Channels live in fixed rows: `add_channel()` returns the lowest free row (state reset),
    `remove_channel(row)` frees it. `process(frames, now)` takes an `(n, frame_samples)` array (int16, or
    float32 already converted) whose row i is channel i's audio; rows of free slots are ignored, so the caller
    can keep one audio matrix per tick and leave unused rows as they are. `n` may be anything from `end` (one
    past the highest row in use) to `capacity`: a bank sized for thousands of channels with a few in use
    analyses only the prefix it is given. `now` is the time of the frames' first sample.

    A press starts at the first 15 ms window that passes every spectral test for a key; its start is
    placed inside that window from how full of tone the window is. It is reported once the tone has
    lasted `min_duration_ms` (start to the estimated end of the latest passing window) and the whole span
    passes the once-per-press tests of verify.py (actual frequencies, purity, 2nd harmonics). Before
    that, two windows without the key drop the candidate; after it, the press ends only after
    `min_pause_ms` without the key, so a held key is one digit and brief drop-outs do not split it.
    Another key seen while a press is held counts as a drop-out.
    """

    _HISTORY_FRAMES = 2  # frames kept for the span tests (a span reaches at most ~2 frames back)
    _CANDIDATE_MISSES = 2  # windows without the key that drop an unconfirmed candidate

    def __init__(self, capacity: int, sample_rate: int = SAMPLE_RATE, config: DtmfDetectorConfig | None = None) -> None:
        self.config = config or DtmfDetectorConfig()
        self.sample_rate = sample_rate
        self._slots = SlotTable(capacity)
        self._analyzer = ToneAnalyzer(capacity, sample_rate, self.config)
        self._verifier = SpanVerifier(sample_rate, self.config, max_ms=(self._HISTORY_FRAMES + 1) * FRAME_MS)
        self.frame_samples = self._analyzer.frame_samples
        self._hop_s = HOP_MS / 1000.0
        self._window_s = WINDOW_HOPS * HOP_MS / 1000.0
        self._min_s = self.config.min_duration_ms / 1000.0
        self._misses_to_end = max(1, math.ceil(self.config.min_pause_ms / HOP_MS))
        self._key = np.full(capacity, -1, dtype=np.int8)
        self._peak = np.zeros(capacity, dtype=np.float32)
        self._first_end = np.zeros(capacity, dtype=np.float64)
        self._first_share = np.zeros(capacity, dtype=np.float32)
        self._settled = np.zeros(capacity, dtype=np.bool_)  # reported, or vetoed by the span tests
        self._misses = np.zeros(capacity, dtype=np.int16)
        # Recent frames of busy rows only (for the span test), with the frame number each slot holds.
        self._history = np.zeros((self._HISTORY_FRAMES, capacity, self.frame_samples), dtype=np.float32)
        self._history_frame = np.full((self._HISTORY_FRAMES, capacity), -1, dtype=np.int64)
        self._frame_no = 0

    @property
    def capacity(self) -> int:
        """Number of rows (the first dimension `process` expects)."""
        return self._slots.capacity

    @property
    def active(self) -> npt.NDArray[np.bool_]:
        """Read-only mask of rows in use."""
        return self._slots.active

    @property
    def end(self) -> int:
        """One past the highest row in use: the fewest rows `process` accepts."""
        return self._slots.end

    def add_channel(self) -> int:
        """Claim a free row with fresh state; raises BankFullError when all are in use."""
        row = self._slots.add()
        self._analyzer.reset(row)
        self._key[row] = -1
        self._settled[row] = False
        self._misses[row] = 0
        self._history_frame[:, row] = -1
        return row

    def remove_channel(self, row: int) -> None:
        """Free a row; its later audio is ignored. Raises KeyError if it is not in use."""
        self._slots.remove(row)

    def process(self, frames: npt.NDArray[np.int16] | npt.NDArray[np.float32], now: float) -> list[DtmfKeyDetected]:
        """Analyse one frame for each of the first `n` rows (`end <= n <= capacity`); returns the presses
        confirmed during this frame. Rows from `n` on are not looked at and their state does not advance."""
        if frames.ndim != 2 or frames.shape[1] != self.frame_samples:
            raise ValueError(f"expected shape (n, {self.frame_samples}), got {frames.shape}")
        n = frames.shape[0]
        self._slots.check_prefix(n)
        x: npt.NDArray[np.float32] = frames.astype(np.float32, copy=False)
        keys, fraction = self._analyzer.analyse(x)
        keys[:, ~self._slots.active[:n]] = -1
        busy = np.flatnonzero((keys >= 0).any(axis=0) | (self._key[:n] >= 0))
        events: list[DtmfKeyDetected] = []
        if busy.size:
            events = self._advance(busy, keys[:, busy], fraction[:, busy], now, x)
            slot = self._frame_no % self._HISTORY_FRAMES
            self._history[slot, busy] = x[busy]
            self._history_frame[slot, busy] = self._frame_no
        self._frame_no += 1
        return events

    def _advance(
        self,
        rows: npt.NDArray[np.intp],
        keys: npt.NDArray[np.int8],
        fraction: npt.NDArray[np.float32],
        now: float,
        x: npt.NDArray[np.float32],
    ) -> list[DtmfKeyDetected]:
        """Step the press state of `rows` through this frame's windows (vectorised over the rows)."""
        cur, peak, misses, settled = self._key[rows], self._peak[rows], self._misses[rows], self._settled[rows]
        first_end, first_share = self._first_end[rows], self._first_share[rows]
        w = self._window_s
        events: list[DtmfKeyDetected] = []
        for hop in range(keys.shape[0]):
            key, share = keys[hop], fraction[hop]
            end = now + (hop + 1) * self._hop_s
            hit = key >= 0
            same = hit & (key == cur)
            fresh = hit & ~same & ~(settled & (cur >= 0))  # a new candidate (replaces an unconfirmed one)
            lost = ~same & ~fresh & (cur >= 0)  # silence, noise or another key while one is held
            peak = np.where(fresh, share, np.where(same, np.maximum(peak, share), peak)).astype(np.float32)
            first_end = np.where(fresh, end, first_end)
            first_share = np.where(fresh, share, first_share).astype(np.float32)
            cur = np.where(fresh, key, cur).astype(np.int8)
            settled &= ~fresh
            misses = np.where(same | fresh, 0, np.where(lost, misses + 1, misses)).astype(np.int16)
            limit = np.where(settled, self._misses_to_end, self._CANDIDATE_MISSES)
            ended = lost & (misses >= limit)
            cur = np.where(ended, -1, cur).astype(np.int8)
            settled &= ~ended
            # Tone from its start (inside the first window) to its end so far (inside this window); each
            # window's fill is its tone share over the run's best share, so noise does not shorten tones.
            ref = np.maximum(peak, _REF_FRACTION)
            start = first_end - np.minimum(first_share / ref, 1.0) * w
            tone_end = end - (1.0 - np.minimum(share / ref, 1.0)) * w
            due = np.flatnonzero((same | fresh) & ~settled & (tone_end - start >= self._min_s))
            if due.size:
                verdict = self._verify(rows[due], cur[due], start[due], end, now, x)
                events.extend(
                    DtmfKeyDetected(int(rows[i]), _KEY_CHARS[int(cur[i])], float(start[i]))
                    for i, ok in zip(due, verdict, strict=True)
                    if ok
                )
                settled[due] = True
        self._key[rows], self._peak[rows], self._misses[rows], self._settled[rows] = cur, peak, misses, settled
        self._first_end[rows], self._first_share[rows] = first_end, first_share
        return events

    def _verify(
        self,
        rows: npt.NDArray[np.intp],
        keys: npt.NDArray[np.int8],
        starts: npt.NDArray[np.float64],
        end: float,
        now: float,
        x: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.bool_]:
        """Run the span tests on each candidate's tone, cut from this frame and the kept frames before it
        (a row's frames are kept only while it is busy, so a span may start at most ~10 ms late)."""
        frame, kept = self.frame_samples, self._HISTORY_FRAMES
        audio = np.zeros((rows.size, (kept + 1) * frame), dtype=np.float32)
        audio[:, kept * frame :] = x[rows]
        first = np.full(rows.size, kept * frame, dtype=np.intp)  # first sample we hold, per candidate
        contiguous = np.ones(rows.size, dtype=np.bool_)
        for back in range(1, kept + 1):
            slot = (self._frame_no - back) % kept
            contiguous &= self._history_frame[slot, rows] == self._frame_no - back
            at = (kept - back) * frame
            audio[contiguous, at : at + frame] = self._history[slot, rows[contiguous]]
            first[contiguous] = at
        stop = kept * frame + round(self.sample_rate * (end - now))
        begin = np.maximum(stop - np.rint((end - starts) * self.sample_rate).astype(np.intp), first)
        return self._verifier.verify(audio, begin, stop, keys.astype(np.intp))


class DtmfDetector:
    """Single-channel convenience wrapper around a bank of capacity 1 (events carry channel 0)."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, config: DtmfDetectorConfig | None = None) -> None:
        self._bank = DtmfDetectorBank(1, sample_rate, config)
        self._bank.add_channel()
        self.frame_samples = self._bank.frame_samples

    def process(self, frame: npt.NDArray[np.int16] | npt.NDArray[np.float32], now: float) -> list[DtmfKeyDetected]:
        """Analyse one frame (1-D, `frame_samples` long, int16 or float32) starting at time `now`."""
        return self._bank.process(frame.reshape(1, -1), now)


def detect_keys(
    signal: npt.NDArray[np.int16],
    sample_rate: int = SAMPLE_RATE,
    config: DtmfDetectorConfig | None = None,
    start_time: float = 0.0,
) -> list[DtmfKeyDetected]:
    """Run a fresh detector over a whole 1-D signal (a recording, a test vector) frame by frame."""
    detector = DtmfDetector(sample_rate, config)
    frame_s = FRAME_MS / 1000.0
    events: list[DtmfKeyDetected] = []
    for i, frame in enumerate(frames_from_signal(signal, detector.frame_samples)):
        events.extend(detector.process(frame, start_time + i * frame_s))
    return events
