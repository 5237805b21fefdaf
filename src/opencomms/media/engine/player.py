"""The prompt player: each leg's FIFO of plays, written into OUTPUT one frame a tick, batched per distinct clip.
Owns the plays' clip bank and the per-row player position (clip slot, sample); must not mix, detect or record
(it only tells the recorder that a play ended, so a recording waiting for it can start)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_SAMPLES
from .clips import ClipBank
from .events import MediaEvent, PlayFinished, Samples
from .kernels import play_frames
from .recorder import play_ended

if TYPE_CHECKING:
    from .legs import Leg

_N = FRAME_SAMPLES


@dataclass(slots=True, eq=False)
class Play:
    """One play() on a leg's player."""

    tag: str
    clips: list[int]
    """Slots in the clip bank."""
    index: int = -1
    """Clip being played; -1 before the first."""


class Player:
    """Every leg's player. Per row: the slot of the clip being played (-1: none) and the position in it. The
    step copies one frame per playing leg from its clip's strided frame view (`kernels.play_frames`); only legs
    whose clip ends during the frame get per-leg Python work."""

    def __init__(self, capacity: int, by_row: list[Leg | None]) -> None:
        self.clips = ClipBank()
        self._by_row = by_row  # the engine's row -> leg table (shared, read only here)
        self._clip = np.full(capacity, -1, dtype=np.int64)
        self._pos = np.zeros(capacity, dtype=np.int64)
        self._starting: dict[Leg, None] = {}  # players to (re)start at the next tick (ordered set)

    def reset(self, row: int) -> None:
        """An idle player for a newly added row."""
        self._clip[row] = -1
        self._pos[row] = 0

    def drop(self, leg: Leg) -> None:
        """Forget the leg's plays (it is being removed): no events."""
        for play in leg.plays:
            self._release(play)
        leg.plays.clear()
        self._starting.pop(leg, None)
        self._clip[leg.row] = -1

    def play(self, leg: Leg, tag: str, clips: Sequence[Samples]) -> None:
        """Queue clips (1-D int16) after whatever the leg already has queued."""
        for clip in clips:
            if not isinstance(clip, np.ndarray) or clip.ndim != 1 or clip.dtype != np.int16:
                raise ValueError("clips must be 1-D int16 arrays")
        leg.plays.append(Play(tag, [self.clips.acquire(clip) for clip in clips]))
        if self._clip[leg.row] < 0:
            self._starting[leg] = None

    def stop(self, leg: Leg, tag: str | None, pending: list[Callable[[float], MediaEvent]]) -> None:
        """Stop the leg's plays with `tag` (or all), adding PlayFinished(completed=False) for each to `pending`;
        the next queued play starts at the next tick."""
        if not leg.plays:
            return
        stopped = [p for p in leg.plays if tag is None or p.tag == tag]
        if not stopped:
            return
        head_stopped = leg.plays[0] is stopped[0]
        leg.plays = deque(p for p in leg.plays if tag is not None and p.tag != tag)
        for play in stopped:
            self._release(play)
            pending.append(partial(PlayFinished, leg.id, play.tag, False))
            play_ended(leg, play.tag)
        if head_stopped:
            self._clip[leg.row] = -1
            self._pos[leg.row] = 0
            if leg.plays:
                self._starting[leg] = None

    def _release(self, play: Play) -> None:
        for slot in play.clips:
            self.clips.release(slot)

    def _next_clip(self, leg: Leg, now: float, events: list[MediaEvent]) -> int | None:
        """Step the leg's player to its next clip, finishing plays that run out; the clip's slot or None."""
        while leg.plays:
            play = leg.plays[0]
            play.index += 1
            if play.index < len(play.clips):
                return play.clips[play.index]
            leg.plays.popleft()
            self._release(play)
            events.append(PlayFinished(leg.id, play.tag, True, now))
            play_ended(leg, play.tag)
        return None

    def _continue(
        self, leg: Leg, out: npt.NDArray[np.int32], remaining: int, now: float, events: list[MediaEvent]
    ) -> None:
        """The leg's clip ended with `remaining` samples of this frame still free: fill them from the next
        clips (back to back) and leave the player on the clip that continues into the next frame."""
        row = leg.row
        while True:
            slot = self._next_clip(leg, now, events)
            if slot is None:
                self._clip[row] = -1
                self._pos[row] = 0
                return
            length = int(self.clips.lengths[slot])
            if length == 0:
                continue
            if remaining == 0:
                self._clip[row] = slot
                self._pos[row] = 0
                return
            take = min(length, remaining)
            at = _N - remaining
            out[row, at : at + take] += self.clips.padded(slot)[:take]
            remaining -= take
            if take < length:
                self._clip[row] = slot
                self._pos[row] = take
                return

    def step(self, out: npt.NDArray[np.int32], n: int, add: bool, now: float, events: list[MediaEvent]) -> None:
        """Write every playing leg's next frame into `out` (added to it when `add`, else assigned)."""
        for leg in self._starting:
            self._continue(leg, out, 0, now, events)
        self._starting.clear()
        lengths = self.clips.lengths
        ended = play_frames(out[:n], self._clip[:n], self._pos[:n], lengths, self.clips.all_windows, add)
        for row in ended:
            ended_leg = self._by_row[row]
            assert ended_leg is not None
            self._continue(ended_leg, out, int(self._pos[row] - lengths[self._clip[row]]), now, events)
