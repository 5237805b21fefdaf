"""The transcription pool: speakers' frames in (from any thread, typically the media engine's), captions out.

Threads, none of them the event loop's or the media engine's:
- one **segmenter thread** drains the inbox every `hop` of stream time (woken by `feed`, never by a timer), runs
  each speaker's `Segmenter` (Silero VAD, a fraction of a millisecond per speaker and hop) and queues utterances;
- `workers` **decoder threads** take up to `max_batch` queued utterances at a time and decode them as one batch
  (`WhisperTranscriber`, CTranslate2 releases the GIL).

Bounds and overload, never silent loss: the inbox holds at most `max_inbox_frames` frames (beyond that frames are
dropped and counted: the segmenter thread is behind); the utterance queue holds `max_queued`; an utterance that
finds it full, or waits longer than `max_wait` seconds, becomes a `Caption` with status `overloaded` (no text) for
its speaker, so a bot learns which span it did not get. Every speaker's memory is bounded by its segmenter.
Must not know calls, legs or notifications (calling/transcription.py does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .segmenter import Segmenter, SegmenterConfig, SpeechDetector, Utterance
from .whisper import Recognized

__all__ = ["Caption", "PoolConfig", "PoolStats", "Recognizer", "TranscriptionPool"]

log = logging.getLogger("opencomms.speech")

FINAL = "final"
IDLE_SECONDS = 0.5
OVERLOADED = "overloaded"


class Recognizer(Protocol):
    def transcribe(self, utterances: Sequence[npt.NDArray[np.int16]]) -> list[Recognized]: ...


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Sizes and limits of the pool (see the module docstring)."""

    workers: int = 1
    """Decoder threads (each decodes one batch at a time with the model's own CTranslate2 threads)."""
    max_batch: int = 4
    """Utterances decoded together by one worker."""
    max_queued: int = 32
    """Utterances waiting for a worker, node-wide; more are reported `overloaded`."""
    max_wait: float = 3.0
    """Seconds an utterance may wait for a worker before it is reported `overloaded` (a late caption is useless)."""
    hop: float = 0.1
    """Stream seconds between two runs of the segmenter thread."""
    max_inbox_frames: int = 4000
    """Frames waiting for the segmenter thread, all speakers together (80 s of audio, 2.5 MB)."""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_batch < 1 or self.max_queued < 1 or self.max_inbox_frames < 1:
            raise ValueError("workers, max_batch, max_queued and max_inbox_frames must be positive")
        if self.max_wait <= 0 or self.hop <= 0:
            raise ValueError("max_wait and hop must be positive")


@dataclass(frozen=True, slots=True)
class Caption:
    """One speaker's utterance as text (status `final`), or the span the pool could not decode (`overloaded`)."""

    key: Hashable
    start: float
    end: float
    speech_end: float
    text: str
    status: str = FINAL
    ready_at: float = 0.0
    """Pool clock when the caption was made."""


@dataclass
class PoolStats:
    utterances: int = 0
    captions: int = 0
    empty: int = 0
    """Utterances decoded to no text (noise, music)."""
    overloaded: int = 0
    frames_dropped: int = 0
    batches: int = 0
    decode_seconds: float = 0.0
    failures: int = 0
    queued_peak: int = 0


@dataclass(slots=True)
class _Job:
    key: Hashable
    utterance: Utterance
    queued_at: float


@dataclass(slots=True)
class _Inbox:
    items: list[tuple[Hashable, npt.NDArray[np.int16] | None, float]] = field(default_factory=list)
    frames: int = 0


class TranscriptionPool:
    """Per-speaker segmentation and batched decoding on threads of its own; `on_caption` is called on a pool
    thread (hand it to the event loop yourself)."""

    def __init__(
        self,
        recognizer: Recognizer,
        detector: SpeechDetector,
        on_caption: Callable[[Caption], None],
        *,
        config: PoolConfig | None = None,
        segmenter: SegmenterConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or PoolConfig()
        self.segmenter_config = segmenter or SegmenterConfig()
        self.recognizer = recognizer
        self._detector = detector
        """Shared by every speaker (each has its own state), used by the segmenter thread only."""
        self._on_caption = on_caption
        self._clock = clock
        self.stats = PoolStats()
        self._lock = threading.Lock()
        self._inbox = _Inbox()
        self._inbox_ready = threading.Condition(self._lock)
        self._last_wake = -1e18
        self._queue: deque[_Job] = deque()
        self._queue_ready = threading.Condition(threading.Lock())
        self._closed = False
        self._segmenters: dict[Hashable, Segmenter] = {}
        self._heard_at: dict[Hashable, float] = {}
        """Stream time of each speaker's latest frame: a speaker the engine stopped handing over (no longer a
        talker of its conference) has its open utterance closed after `IDLE_SECONDS`."""
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        feeder = threading.Thread(target=self._feed_loop, name="opencomms-speech-vad", daemon=True)
        self._threads.append(feeder)
        for i in range(self.config.workers):
            self._threads.append(threading.Thread(target=self._work_loop, name=f"opencomms-speech-{i}", daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads (queued utterances are dropped: the node is stopping)."""
        with self._lock:
            self._closed = True
            self._inbox_ready.notify_all()
        with self._queue_ready:
            self._queue.clear()
            self._queue_ready.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def speakers(self) -> int:
        return len(self._segmenters)

    @property
    def held_samples(self) -> int:
        """Audio samples the segmenters hold now, all speakers together (read from any thread: approximate)."""
        return sum(seg.held_samples for seg in list(self._segmenters.values()))

    # -- input (any thread) ------------------------------------------------------------------------------------
    def feed(self, key: Hashable, frame: npt.NDArray[np.int16], at: float) -> None:
        """One frame of speaker `key` at stream time `at` (the frame is copied)."""
        with self._lock:
            inbox = self._inbox
            if inbox.frames >= self.config.max_inbox_frames or self._closed:
                self.stats.frames_dropped += 1
                return
            inbox.items.append((key, np.array(frame, dtype=np.int16), at))
            inbox.frames += 1
            if at - self._last_wake >= self.config.hop:
                self._last_wake = at
                self._inbox_ready.notify()

    def end(self, key: Hashable) -> None:
        """Speaker `key` is gone: its open utterance is decoded, then it is forgotten."""
        with self._lock:
            self._inbox.items.append((key, None, 0.0))
            self._inbox_ready.notify()

    # -- the segmenter thread ----------------------------------------------------------------------------------
    def _feed_loop(self) -> None:
        while True:
            with self._lock:
                while not self._inbox.items and not self._closed:
                    self._inbox_ready.wait()
                if self._closed:
                    return
                items, self._inbox = self._inbox.items, _Inbox()
            try:
                self._segment(items)
            except Exception:  # never let one bad input stop every speaker's captions
                self.stats.failures += 1
                log.exception("speech segmentation failed")

    def _segment(self, items: list[tuple[Hashable, npt.NDArray[np.int16] | None, float]]) -> None:
        runs: dict[Hashable, tuple[float, list[npt.NDArray[np.int16]]]] = {}
        ended: list[Hashable] = []
        for key, frame, at in items:
            if frame is None:
                ended.append(key)
                continue
            run = runs.get(key)
            if run is None:
                runs[key] = (at, [frame])
            else:
                run[1].append(frame)
        for key, (at, frames) in runs.items():
            seg = self._segmenters.get(key)
            if seg is None:
                seg = self._segmenters[key] = Segmenter(self._detector, self.segmenter_config)
            for utterance in seg.push(np.concatenate(frames), at):
                self._submit(key, utterance)
            self._heard_at[key] = at + len(frames) * 0.02
        if runs:
            newest = max(self._heard_at[key] for key in runs)
            for key, seg in self._segmenters.items():
                if seg.in_speech and newest - self._heard_at.get(key, newest) > IDLE_SECONDS:
                    for utterance in seg.flush():
                        self._submit(key, utterance)
        for key in ended:
            seg = self._segmenters.pop(key, None)
            self._heard_at.pop(key, None)
            if seg is not None:
                for utterance in seg.flush():
                    self._submit(key, utterance)

    def _submit(self, key: Hashable, utterance: Utterance) -> None:
        self.stats.utterances += 1
        with self._queue_ready:
            if len(self._queue) < self.config.max_queued and not self._closed:
                self._queue.append(_Job(key, utterance, self._clock()))
                self.stats.queued_peak = max(self.stats.queued_peak, len(self._queue))
                self._queue_ready.notify()
                return
        self._overloaded(key, utterance)

    def _overloaded(self, key: Hashable, utterance: Utterance) -> None:
        self.stats.overloaded += 1
        self._deliver(Caption(key, utterance.start, utterance.end, utterance.speech_end, "", OVERLOADED))

    # -- decoder threads ---------------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        cfg = self.config
        while True:
            with self._queue_ready:
                while not self._queue and not self._closed:
                    self._queue_ready.wait()
                if self._closed:
                    return
                now = self._clock()
                batch: list[_Job] = []
                stale: list[_Job] = []
                while self._queue and len(batch) < cfg.max_batch:
                    job = self._queue.popleft()
                    (stale if now - job.queued_at > cfg.max_wait else batch).append(job)
            for job in stale:
                self._overloaded(job.key, job.utterance)
            if batch:
                self._decode(batch)

    def _decode(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            recognized = self.recognizer.transcribe([job.utterance.audio for job in batch])
        except Exception:
            self.stats.failures += 1
            log.exception("speech decoding failed")
            for job in batch:
                self._overloaded(job.key, job.utterance)
            return
        self.stats.batches += 1
        self.stats.decode_seconds += time.perf_counter() - started
        for job, result in zip(batch, recognized, strict=True):
            u = job.utterance
            if not result.text:
                self.stats.empty += 1
                continue
            self.stats.captions += 1
            self._deliver(Caption(job.key, u.start, u.end, u.speech_end, result.text, FINAL))

    def _deliver(self, caption: Caption) -> None:
        caption = Caption(
            caption.key,
            caption.start,
            caption.end,
            caption.speech_end,
            caption.text,
            caption.status,
            self._clock(),
        )
        try:
            self._on_caption(caption)
        except Exception:
            log.exception("caption delivery failed")
