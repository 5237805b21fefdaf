"""Service-hosted operations on a whole mix (a meeting): a prompt played to every member (`MixPlayer`) and a
recording of what the mix's listeners hear (`MixRecorder`). Owns the plays and recordings by mix id; must not mix
(it hands a frame per playing mix to `Mixes.step`, which adds it to every member's INPUT, and reads the mix totals
that `Mixes.step` computes for the recorded mixes). Python work is per playing or recorded mix, not per member.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ...domain.media import RecordStop
from ..frames import FRAME_SAMPLES, SAMPLE_RATE
from .events import MediaEvent, MixPlayFinished, MixRecordingFinished, Samples

if TYPE_CHECKING:
    from .mixing import Mixes

__all__ = ["MixPlayer", "MixRecorder"]

_N = FRAME_SAMPLES
Pending = list[Callable[[float], MediaEvent]]


@dataclass(slots=True, eq=False)
class _Play:
    tag: str
    clips: list[Samples]
    index: int = 0
    pos: int = 0


class MixPlayer:
    """Each mix's FIFO of plays (clips back to back, sample-exact), one frame per playing mix per tick."""

    def __init__(self) -> None:
        self._plays: dict[str, deque[_Play]] = {}

    def __len__(self) -> int:
        return len(self._plays)

    def play(self, mix_id: str, tag: str, clips: Sequence[Samples], pending: Pending) -> None:
        """Queue clips (1-D int16, 16 kHz, not copied: never modify them afterwards) for every member of the mix."""
        kept = [clip for clip in clips if clip.size]
        if not kept:
            pending.append(partial(MixPlayFinished, mix_id, tag, True))
            return
        self._plays.setdefault(mix_id, deque()).append(_Play(tag, kept))

    def stop(self, mix_id: str, tag: str | None, pending: Pending) -> None:
        """Stop the mix's plays with `tag` (or all): MixPlayFinished(completed=False) for each."""
        queue = self._plays.get(mix_id)
        if queue is None:
            return
        for play in [p for p in queue if tag is None or p.tag == tag]:
            queue.remove(play)
            pending.append(partial(MixPlayFinished, mix_id, play.tag, False))
        if not queue:
            del self._plays[mix_id]

    def step(self, now: float, events: list[MediaEvent]) -> dict[str, npt.NDArray[np.int32]]:
        """This tick's frame of every playing mix (a play that ends inside the frame is followed by the next)."""
        frames: dict[str, npt.NDArray[np.int32]] = {}
        for mix_id, queue in list(self._plays.items()):
            frame = np.zeros(_N, dtype=np.int32)
            filled = 0
            while filled < _N and queue:
                play = queue[0]
                clip = play.clips[play.index]
                take = min(_N - filled, clip.size - play.pos)
                frame[filled : filled + take] = clip[play.pos : play.pos + take]
                filled += take
                play.pos += take
                if play.pos == clip.size:
                    play.index, play.pos = play.index + 1, 0
                    if play.index == len(play.clips):
                        queue.popleft()
                        events.append(MixPlayFinished(mix_id, play.tag, True, now))
            if not queue:
                del self._plays[mix_id]
            frames[mix_id] = frame
        return frames


@dataclass(slots=True, eq=False)
class _Recording:
    tag: str
    max_samples: int
    frames: list[npt.NDArray[np.int16]] = field(default_factory=list)
    samples: int = 0


class MixRecorder:
    """One recording per mix of the mix's total (what a member that is not talking hears, prompts included)."""

    def __init__(self, mixes: Mixes) -> None:
        self._mixes = mixes
        self._recordings: dict[str, _Recording] = {}

    def __len__(self) -> int:
        return len(self._recordings)

    def record(self, mix_id: str, tag: str, max_seconds: float, pending: Pending) -> None:
        """Record from the next tick for at most `max_seconds`; a second record() cancels the first."""
        if max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        self.stop(mix_id, None, pending)
        self._recordings[mix_id] = _Recording(tag, round(max_seconds * SAMPLE_RATE))
        self._mixes.want(mix_id, True)

    def stop(self, mix_id: str, tag: str | None, pending: Pending) -> None:
        """Finish the mix's recording (if `tag` is None or matches) with CANCELLED, keeping what was captured."""
        rec = self._recordings.get(mix_id)
        if rec is None or (tag is not None and rec.tag != tag):
            return
        self._finish(mix_id, rec)
        pending.append(partial(_finished, mix_id, rec.tag, RecordStop.CANCELLED, _samples(rec)))

    def capture(self, now: float, events: list[MediaEvent]) -> None:
        """Append this tick's total of every recorded mix (silence for a mix without members)."""
        totals = self._mixes.totals
        for mix_id, rec in list(self._recordings.items()):
            total = totals.get(mix_id)
            frame = np.zeros(_N, dtype=np.int16) if total is None else total.astype(np.int16)
            take = min(_N, rec.max_samples - rec.samples)
            rec.frames.append(frame[:take])
            rec.samples += take
            if rec.samples >= rec.max_samples:
                self._finish(mix_id, rec)
                events.append(_finished(mix_id, rec.tag, RecordStop.MAX_DURATION, _samples(rec), now))

    def _finish(self, mix_id: str, rec: _Recording) -> None:
        del self._recordings[mix_id]
        self._mixes.want(mix_id, False)


def _samples(rec: _Recording) -> Samples:
    samples = np.concatenate(rec.frames) if rec.frames else np.zeros(0, dtype=np.int16)
    samples.flags.writeable = False
    return samples


def _finished(mix_id: str, tag: str, reason: RecordStop, samples: Samples, at: float) -> MixRecordingFinished:
    return MixRecordingFinished(mix_id, tag, reason, samples, at)
