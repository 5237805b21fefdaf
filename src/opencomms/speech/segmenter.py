"""Utterance segmentation for live transcription: one speaker's 16 kHz audio in, whole utterances out.

Sans-I/O: samples and their stream time go in (`push`), `Utterance`s come out; the speech detector is injected
(`SpeechDetector`: Silero VAD in the node, an energy gate in tests), with no clock, thread or model of its own.
Memory is bounded: at most `max_seconds` of speech plus the pre-roll are held per speaker, whatever the input
(a talker who never pauses is cut into `max_seconds` pieces at the quietest recent point).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["CHUNK", "SAMPLE_RATE", "Segmenter", "SegmenterConfig", "SpeechDetector", "Utterance"]

SAMPLE_RATE = 16_000
CHUNK = 512
"""Samples per detector decision (32 ms at 16 kHz, Silero VAD's window)."""
_CHUNK_SECONDS = CHUNK / SAMPLE_RATE


class SpeechDetector(Protocol):
    """Speech probability per 512-sample chunk, with per-speaker state (`new_state`) carried across calls."""

    def new_state(self) -> object: ...

    def probabilities(self, state: object, chunks: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """`chunks`: `(n, 512)` float32 in [-1, 1], in time order; returns `n` probabilities in [0, 1]."""
        ...


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """How speech is cut into utterances."""

    threshold: float = 0.5
    """Speech probability at or above which a chunk starts (or continues) an utterance."""
    neg_threshold: float = 0.35
    """Below this a chunk counts as silence (between the two thresholds it continues speech already started)."""
    min_silence: float = 0.35
    """Seconds of silence that end an utterance. The end-of-speech to caption delay starts with it."""
    min_speech: float = 0.25
    """Utterances with less speech than this (seconds) are dropped as clicks and coughs."""
    pre_roll: float = 0.3
    """Seconds of audio kept before the first speech chunk (the detector is late on soft onsets)."""
    max_seconds: float = 15.0
    """Longest utterance (seconds); longer speech is cut at the quietest chunk of its last `cut_window`."""
    cut_window: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 < self.neg_threshold <= self.threshold <= 1.0:
            raise ValueError("thresholds must satisfy 0 < neg_threshold <= threshold <= 1")
        if self.min_silence <= 0 or self.max_seconds <= 1.0 or self.pre_roll < 0 or self.min_speech < 0:
            raise ValueError("min_silence must be positive, max_seconds above 1 s, pre_roll and min_speech >= 0")
        if not 0 < self.cut_window < self.max_seconds:
            raise ValueError("cut_window must be positive and shorter than max_seconds")


@dataclass(frozen=True, slots=True)
class Utterance:
    """One speaker's utterance: int16 samples at 16 kHz and its span in the speaker's stream time (seconds)."""

    audio: npt.NDArray[np.int16]
    start: float
    end: float
    speech_end: float
    """Stream time of the last speech chunk (`end` adds the trailing silence kept): captions are timed from it."""
    cut: bool = False
    """True when cut at `max_seconds` (the speaker went on)."""


class Segmenter:
    """One speaker's segmenter (see the module docstring). `push` samples as they come, `flush` at the end."""

    def __init__(self, detector: SpeechDetector, config: SegmenterConfig | None = None) -> None:
        self.config = cfg = config or SegmenterConfig()
        self.detector = detector
        self._state = detector.new_state()
        self._pending = np.zeros(0, dtype=np.int16)
        """Samples waiting for a whole chunk."""
        self._time = 0.0
        """Stream time of the first pending sample."""
        self._pre: list[npt.NDArray[np.int16]] = []
        self._pre_chunks = max(0, round(cfg.pre_roll / _CHUNK_SECONDS))
        self._chunks: list[npt.NDArray[np.int16]] = []
        """The current utterance's chunks (empty: not in speech)."""
        self._probs: list[float] = []
        self._start = 0.0
        self._speech_chunks = 0
        self._silent_run = 0
        self._last_speech = 0.0
        self._end_chunks = max(1, round(cfg.min_silence / _CHUNK_SECONDS))
        self._max_chunks = int(cfg.max_seconds / _CHUNK_SECONDS)
        self._cut_chunks = max(1, int(cfg.cut_window / _CHUNK_SECONDS))

    @property
    def in_speech(self) -> bool:
        return bool(self._chunks)

    @property
    def held_samples(self) -> int:
        """Samples held now (bounded by max_seconds plus the pre-roll plus one chunk)."""
        return self._pending.size + CHUNK * (len(self._chunks) + len(self._pre))

    def push(self, samples: npt.NDArray[np.int16], at: float | None = None) -> list[Utterance]:
        """Add samples (int16, 16 kHz). `at`: their stream time when known (a gap in the stream, e.g. a talker the
        engine stopped handing over, starts a new run: pending audio is dropped, an open utterance ends)."""
        out: list[Utterance] = []
        if at is not None:
            expected = self._time + self._pending.size / SAMPLE_RATE
            if abs(at - expected) > 0.1:  # a gap (or a jump back): close what was open and restart the clock
                out.extend(self.flush())
                self._pending = np.zeros(0, dtype=np.int16)
                self._time = at
        buf = np.concatenate([self._pending, samples.astype(np.int16, copy=False)]) if self._pending.size else samples
        whole = buf.size // CHUNK
        if whole == 0:
            self._pending = np.array(buf, dtype=np.int16)
            return out
        chunks = np.asarray(buf[: whole * CHUNK], dtype=np.int16).reshape(whole, CHUNK)
        self._pending = np.array(buf[whole * CHUNK :], dtype=np.int16)
        probs = self.detector.probabilities(self._state, chunks.astype(np.float32) / 32768.0)
        for chunk, prob in zip(chunks, probs.tolist(), strict=True):
            done = self._step(chunk, float(prob))
            if done is not None:
                out.append(done)
            self._time += _CHUNK_SECONDS
        return out

    def flush(self) -> list[Utterance]:
        """End of the stream (or a gap): the open utterance, if it has enough speech."""
        if not self._chunks:
            self._pre.clear()
            return []
        done = self._emit(len(self._chunks), cut=False)
        self._pre.clear()
        return [done] if done is not None else []

    # -- the per-chunk machine ---------------------------------------------------------------------------------
    def _step(self, chunk: npt.NDArray[np.int16], prob: float) -> Utterance | None:
        cfg = self.config
        if not self._chunks:
            if prob >= cfg.threshold:  # speech starts, with the pre-roll in front
                self._chunks = [*self._pre, chunk.copy()]
                self._probs = [0.0] * len(self._pre) + [prob]
                self._start = self._time - len(self._pre) * _CHUNK_SECONDS
                self._pre = []
                self._speech_chunks = 1
                self._silent_run = 0
                self._last_speech = self._time + _CHUNK_SECONDS
            elif self._pre_chunks:
                self._pre.append(chunk.copy())
                if len(self._pre) > self._pre_chunks:
                    self._pre.pop(0)
            return None
        self._chunks.append(chunk.copy())
        self._probs.append(prob)
        if prob >= cfg.threshold or (prob >= cfg.neg_threshold and self._silent_run == 0):
            self._speech_chunks += 1
            self._silent_run = 0
            self._last_speech = self._time + _CHUNK_SECONDS
        else:
            self._silent_run += 1
            if self._silent_run >= self._end_chunks:
                return self._emit(len(self._chunks), cut=False)
        if len(self._chunks) >= self._max_chunks:  # too long: cut at the quietest recent chunk, keep the rest
            tail = self._probs[-self._cut_chunks :]
            at = len(self._chunks) - self._cut_chunks + int(np.argmin(tail)) + 1
            return self._emit(at, cut=True)
        return None

    def _emit(self, count: int, *, cut: bool) -> Utterance | None:
        """The first `count` chunks as an utterance; the rest (after a cut) start the next one."""
        chunks, probs = self._chunks[:count], self._probs[:count]
        rest, rest_probs = self._chunks[count:], self._probs[count:]
        start = self._start
        end = start + count * _CHUNK_SECONDS
        if cut:
            speech_end = end
        else:
            speech_end = min(self._last_speech, end)
            keep = count - max(0, self._silent_run - 3)  # trailing silence: keep ~0.1 s of it
            chunks = chunks[:keep]
            end = start + keep * _CHUNK_SECONDS
        speech = sum(1 for p in probs if p >= self.config.neg_threshold)
        if rest:
            self._chunks, self._probs = list(rest), list(rest_probs)
            self._start = end if not cut else start + count * _CHUNK_SECONDS
            self._speech_chunks = sum(1 for p in rest_probs if p >= self.config.neg_threshold)
        else:
            self._chunks, self._probs = [], []
            self._speech_chunks = 0
            self._silent_run = 0
        if speech * _CHUNK_SECONDS < self.config.min_speech:
            return None
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return Utterance(audio, start, end, speech_end, cut)


def join_audio(parts: Sequence[npt.NDArray[np.int16]]) -> npt.NDArray[np.int16]:
    """Concatenate frames (helper for tests and the bench)."""
    return np.concatenate(list(parts)) if parts else np.zeros(0, dtype=np.int16)
