"""The engine side of application-hosted media: per tapped leg, the frames its bot sent waiting for the engine,
and what the leg hears, collected once per tick as one HeardFrames event.

Owns the per-leg playout queue (8 frames, the oldest dropped when full), the one-frame-per-tick pacing into the
engine's far-end queue, backlog trimming, and the leg's HeardTalkers listener; the commands `TapOpen`, `TapClose`
and `TapPush` (plain data, so they run on the engine thread or in a media process alike). Runs only on the
engine's side; must not touch asyncio, sockets or the WebSocket protocol (calling/apphosted.py does).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .companions import Companions, EngineCompanion
from .engine import HeardFrames, HeardTalkers, MediaEngine, MediaEvent, Samples, Subscription

__all__ = ["BACKLOG_TICKS", "QUEUE_FRAMES", "AppTaps", "TapClose", "TapOpen", "TapPush", "taps_of"]

QUEUE_FRAMES = 8
"""Frames from a bot waiting for the engine, per leg (the oldest dropped when full)."""
BACKLOG_TICKS = 5
"""Ticks in a row that start with a frame left waiting before the oldest is dropped (a standing backlog)."""

_Heard = tuple[str, Samples, list[tuple[str, str, Samples]], float]


@dataclass(eq=False)
class _Tap:
    leg_id: str
    inbound: deque[Samples] = field(default_factory=lambda: deque(maxlen=QUEUE_FRAMES))
    subscription: Subscription | None = None
    ticks: int = 0
    """Ticks the leg's listener has seen: the index of the coming tick."""
    pushed_for: int = -1
    """The last tick a frame from the bot was pushed for."""
    excess_at: int = -1
    """The last tick that started with a frame from the bot left waiting."""
    backlog_ticks: int = 0


class AppTaps(EngineCompanion):
    """Every tapped leg of one engine (engine side only). `drain()` after each tick gives what they heard."""

    def __init__(self, engine: MediaEngine) -> None:
        super().__init__(engine)
        self._taps: dict[str, _Tap] = {}
        self._heard: list[_Heard] = []
        self.trimmed = 0

    def open(self, leg_id: str) -> None:
        """(Re)start tapping `leg_id` for a new connection: its queue starts empty. Nothing if the leg is gone."""
        self.close(leg_id)
        engine = self.engine
        if not engine.has_leg(leg_id):
            return
        tap = _Tap(leg_id)
        tap.subscription = engine.subscribe(
            HeardTalkers(leg_id, lambda _leg, heard, unmixed, now: self._tick(tap, heard, unmixed, now))
        )
        self._taps[leg_id] = tap

    def close(self, leg_id: str) -> None:
        tap = self._taps.pop(leg_id, None)
        if tap is not None and tap.subscription is not None:
            self.engine.unsubscribe(tap.subscription)
            tap.subscription = None

    def push(self, leg_id: str, frame: Samples) -> None:
        """A frame from the bot arrived: queued, and pushed for the coming tick if that tick has none yet."""
        tap = self._taps.get(leg_id)
        if tap is None:
            return
        if len(tap.inbound) == QUEUE_FRAMES:
            self.trimmed += 1
        tap.inbound.append(frame)
        self._play_one(tap, arrival=True)

    def drain(self) -> list[MediaEvent]:
        """The tick's HeardFrames (none when nothing was tapped and nothing trimmed)."""
        if not self._heard and not self.trimmed:
            return []
        event = HeardFrames(tuple(self._heard), self.trimmed)
        self._heard, self.trimmed = [], 0
        return [event]

    def _play_one(self, tap: _Tap, *, arrival: bool = False) -> None:
        """Push the oldest frame from the bot for the coming tick, unless one is already pushed for it (the
        engine's far-end queue holds at most one frame of this leg). On an arrival (just before the tick), note
        whether frames are left waiting: the sign of a backlog."""
        coming = tap.ticks
        if tap.pushed_for >= coming:
            if arrival and tap.inbound:
                tap.excess_at = coming
            return
        try:
            frame = tap.inbound.popleft()
        except IndexError:
            return
        if self.engine.has_leg(tap.leg_id):
            self.engine.push_inbound(tap.leg_id, frame)
            tap.pushed_for = coming

    def _tick(self, tap: _Tap, heard: Samples, unmixed: list[tuple[str, int, Samples]], now: float) -> None:
        if tap.excess_at == tap.ticks:  # a frame waited through this tick's start: it could have been heard
            tap.backlog_ticks += 1
            if tap.backlog_ticks >= BACKLOG_TICKS:  # a standing backlog: drop its oldest frame
                tap.backlog_ticks = 0
                if tap.inbound:
                    tap.inbound.popleft()
                    self.trimmed += 1
        else:
            tap.backlog_ticks = 0
        tap.ticks += 1
        self._play_one(tap)
        # the engine's views live for this call only
        parts = [(other, str(source) if source else "", frame.copy()) for other, source, frame in unmixed]
        self._heard.append((tap.leg_id, heard.copy(), parts, now))


_TAPS: Companions[AppTaps] = Companions(AppTaps)


def taps_of(engine: MediaEngine) -> AppTaps:
    """The engine's taps (made on first use; engine side only)."""
    return _TAPS.of(engine)


@dataclass(frozen=True, slots=True)
class TapOpen:
    leg_id: str

    def apply(self, engine: MediaEngine) -> None:
        taps_of(engine).open(self.leg_id)


@dataclass(frozen=True, slots=True)
class TapClose:
    leg_id: str

    def apply(self, engine: MediaEngine) -> None:
        taps_of(engine).close(self.leg_id)


@dataclass(frozen=True, slots=True)
class TapPush:
    leg_id: str
    frame: Samples = field(compare=False, repr=False)

    def apply(self, engine: MediaEngine) -> None:
        taps_of(engine).push(self.leg_id, frame=self.frame)
