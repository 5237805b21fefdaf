"""Recordings: capture of a leg's INPUT frames and the rules that end it (stop key, silences, duration).
Owns each leg's Recording, the set of recording legs and the rows whose speech is reported; must not produce
audio, run the DSP banks (it reads their results) or decide when a play ends (the player tells it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ...domain.media import RecordStop
from ..dtmf.detector import DtmfKeyDetected
from ..dtmf.tones import normalize_key
from ..frames import FRAME_SAMPLES, SAMPLE_RATE
from .events import MediaEvent, RecordingFinished, RecordingStarted, Samples

if TYPE_CHECKING:
    from .legs import Leg

_N = FRAME_SAMPLES


@dataclass(slots=True, eq=False)
class Recording:
    """One record() on a leg: its limits and what it has captured so far."""

    tag: str
    max_samples: int
    initial_silence: int
    """Samples without speech from the start that end the recording; 0 = never."""
    max_silence: int
    """Samples of silence after speech that end the recording; 0 = never."""
    stop_keys: frozenset[str]
    waiting_for: str | None
    """Play tag whose end starts the capture; None = start at the next tick."""
    started: bool = False
    start_time: float = 0.0
    frames: list[Samples] = field(default_factory=list)
    captured: int = 0
    speech: bool = False
    silence_run: int = 0

    def samples(self, limit: int | None = None) -> Samples:
        out = np.concatenate(self.frames) if self.frames else np.zeros(0, dtype=np.int16)
        if limit is not None:
            out = out[: max(0, limit)].copy()
        out.flags.writeable = False
        return out


def seconds_to_samples(seconds: float) -> int:
    return max(0, round(seconds * SAMPLE_RATE))


def play_ended(leg: Leg, tag: str) -> None:
    """A play of the leg ended (completed or stopped): a recording waiting for it starts at this tick."""
    rec = leg.recording
    if rec is not None and rec.waiting_for == tag:
        rec.waiting_for = None


class Recorder:
    """Every leg's recording. `legs` (an ordered set) holds the legs with a recording waiting or capturing;
    `speech_mask` (the engine's per-row array, shared) is kept equal to `Leg.reports_speech()` of each row."""

    def __init__(self, speech_mask: npt.NDArray[np.bool_]) -> None:
        self.legs: dict[Leg, None] = {}
        self.speech_mask = speech_mask

    def update_speech_mask(self, leg: Leg) -> None:
        self.speech_mask[leg.row] = leg.reports_speech()

    def record(
        self,
        leg: Leg,
        tag: str,
        *,
        max_seconds: float,
        initial_silence_seconds: float,
        max_silence_seconds: float,
        stop_keys: str,
        after_play: str | None,
        pending: list[Callable[[float], MediaEvent]],
    ) -> None:
        """Start a recording (see MediaEngine.record), cancelling the leg's current one into `pending`."""
        if max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        keys = frozenset(normalize_key(k) for k in stop_keys)
        waiting = after_play if after_play is not None and any(p.tag == after_play for p in leg.plays) else None
        if leg.recording is not None:
            self.cancel(leg, pending)
        leg.recording = Recording(
            tag=tag,
            max_samples=max(1, seconds_to_samples(max_seconds)),
            initial_silence=seconds_to_samples(initial_silence_seconds),
            max_silence=seconds_to_samples(max_silence_seconds),
            stop_keys=keys,
            waiting_for=waiting,
        )
        self.legs[leg] = None

    def cancel(self, leg: Leg, pending: list[Callable[[float], MediaEvent]]) -> None:
        """Finish the leg's recording with CANCELLED (into `pending`), keeping what was captured."""
        rec = leg.recording
        assert rec is not None
        pending.append(partial(RecordingFinished, leg.id, rec.tag, RecordStop.CANCELLED, rec.samples(), rec.speech))
        leg.recording = None
        self.legs.pop(leg, None)
        self.update_speech_mask(leg)

    def drop(self, leg: Leg) -> None:
        """Forget the leg's recording (it is being removed): no events."""
        leg.recording = None
        self.legs.pop(leg, None)

    def start(self, now: float, events: list[MediaEvent]) -> None:
        """Begin capture, with the frame at `now`, of every recording no longer waiting."""
        for leg in self.legs:
            rec = leg.recording
            if rec is not None and not rec.started and rec.waiting_for is None:
                rec.started, rec.start_time = True, now
                events.append(RecordingStarted(leg.id, rec.tag, now))
                self.update_speech_mask(leg)

    def key(self, leg: Leg, key: str, at: float, now: float, events: list[MediaEvent]) -> None:
        """A key reported out of band on the leg (RFC 4733, see MediaEngine.push_key) after this tick's capture:
        a capturing recording that stops on it finishes with STOP_TONE, without the samples from `at` on."""
        rec = leg.recording
        if rec is None or not rec.started or key not in rec.stop_keys:
            return
        limit = min(rec.captured, round((at - rec.start_time) * SAMPLE_RATE))
        events.append(RecordingFinished(leg.id, rec.tag, RecordStop.STOP_TONE, rec.samples(limit), rec.speech, now))
        leg.recording = None
        del self.legs[leg]
        self.update_speech_mask(leg)

    def capture(
        self,
        inp: npt.NDArray[np.int32],
        active: npt.NDArray[np.bool_],
        keys: dict[int, list[DtmfKeyDetected]],
        now: float,
        events: list[MediaEvent],
    ) -> None:
        """Append each capturing leg's INPUT frame and finish the recordings whose end condition is met, given
        the VAD's `active` rows and the DTMF `keys` detected per row in this tick."""
        finished: list[Leg] = []
        for leg in self.legs:
            rec = leg.recording
            if rec is None or not rec.started:
                continue
            row = leg.row
            rec.frames.append(inp[row].astype(np.int16))
            rec.captured += _N
            if active[row]:
                rec.speech = True
                rec.silence_run = 0
            else:
                rec.silence_run += _N
            reason: RecordStop | None = None
            limit: int | None = None
            stop = [k for k in keys.get(row, ()) if k.key in rec.stop_keys]
            if stop:
                reason = RecordStop.STOP_TONE
                limit = min(rec.captured, round((stop[0].start_time - rec.start_time) * SAMPLE_RATE))
            elif rec.captured >= rec.max_samples:
                reason, limit = RecordStop.MAX_DURATION, rec.max_samples
            elif not rec.speech and rec.initial_silence and rec.captured >= rec.initial_silence:
                reason = RecordStop.INITIAL_SILENCE
            elif rec.speech and rec.max_silence and rec.silence_run >= rec.max_silence:
                reason = RecordStop.MAX_SILENCE
            if reason is not None:
                events.append(RecordingFinished(leg.id, rec.tag, reason, rec.samples(limit), rec.speech, now))
                finished.append(leg)
        for leg in finished:
            leg.recording = None
            del self.legs[leg]
            self.update_speech_mask(leg)
