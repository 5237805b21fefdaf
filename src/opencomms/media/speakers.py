"""Who is speaking in a conversation, for application-hosted media: voice activity of each participant's own audio
(the engine's VadBank, every participant in one batch per tick), the dominant-speaker rule, and the choice of the
loudest unmixed frames. Pure: no clock, no I/O, no calls or sockets (calling/apphosted.py drives it)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .engine import Samples
from .frames import FRAME_SAMPLES
from .slots import BankFullError
from .vad import VadBank

__all__ = ["DominantSpeaker", "SpeakerVad", "loudest"]

HISTORY = 10


class DominantSpeaker:
    """Who dominates a conversation for one listener: the participant who most recently started speaking and is
    still speaking; when they stop, the latest starter among those still speaking; nobody (None) when all are
    silent. `history` lists the last dominant speakers, newest first."""

    def __init__(self) -> None:
        self._speaking: dict[str, None] = {}
        self.current: str | None = None
        self.history: list[str] = []

    def update(self, source_id: str, speaking: bool) -> bool:
        """Record a VAD change; True when the dominant speaker changed."""
        self._speaking.pop(source_id, None)
        if speaking:
            self._speaking[source_id] = None
        latest = next(reversed(self._speaking), None) if self._speaking else None
        if latest == self.current:
            return False
        self.current = latest
        if latest is not None:
            self.history = [latest, *(s for s in self.history if s != latest)][:HISTORY]
        return True


class SpeakerVad:
    """Voice activity of many participants' own audio: one VadBank row per participant (added on first sight,
    freed by `forget`), all processed in one batch per frame time. Beyond `capacity` participants, the newest
    are not tracked."""

    def __init__(self, capacity: int = 1024) -> None:
        self._bank = VadBank(capacity)
        self._rows: dict[str, int] = {}
        self._legs: dict[int, str] = {}
        self._buf = np.zeros((capacity, FRAME_SAMPLES), dtype=np.int16)

    def __len__(self) -> int:
        return len(self._rows)

    def forget(self, leg_id: str) -> None:
        row = self._rows.pop(leg_id, None)
        if row is not None:
            del self._legs[row]
            self._bank.remove_channel(row)

    def process(self, frames: Iterable[tuple[str, Samples]]) -> list[tuple[str, bool]]:
        """One frame time: each participant's frame (a participant missing from `frames` counts as silent).
        Returns the participants whose activity changed, with their new state."""
        given: list[tuple[int, Samples]] = []
        for leg_id, frame in frames:
            row = self._rows.get(leg_id)
            if row is None:
                try:
                    row = self._bank.add_channel()
                except BankFullError:
                    continue
                self._rows[leg_id] = row
                self._legs[row] = leg_id
            given.append((row, frame))
        n = self._bank.end
        if n == 0:
            return []
        buf = self._buf[:n]
        buf.fill(0)
        for row, frame in given:
            buf[row] = frame
        result = self._bank.process(buf)
        return [
            (self._legs[row], bool(result.active[row]))
            for row in np.flatnonzero(result.changed).tolist()
            if row in self._legs
        ]


def loudest(frames: list[tuple[str, Samples]], limit: int) -> list[tuple[str, Samples]]:
    """At most `limit` frames, the loudest (by energy) when there are more, in their original order."""
    if len(frames) <= limit:
        return frames
    energy = [float(np.dot(f.astype(np.float64), f.astype(np.float64))) for _, f in frames]
    keep = sorted(sorted(range(len(frames)), key=lambda i: -energy[i])[:limit])
    return [frames[i] for i in keep]
