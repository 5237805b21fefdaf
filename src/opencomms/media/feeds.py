"""The engine side of node-side media consumers (live transcription, media streams): per feed, one listener on one
leg whose frames are copied and collected once per tick as one FedFrames event, and, for a feed that plays, a short
queue of frames pushed into its leg one per tick.

Owns the feeds (`FeedOpen`, `FeedClose`, `FeedPush`, `FeedClear`: plain data, so they run on the engine thread or
in a media process alike), the silence filter of talker feeds (a quiet speaker stops crossing after a second), and
the per-feed count of frames taken from the play queue (played or cleared), by which the node paces its own,
longer queue and echoes its marks. Runs only on the engine's side; must not touch asyncio, sockets, the speech
pool or the WebSocket protocol (calling/transcription.py and calling/mediastreams.py do).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from .companions import Companions, EngineCompanion
from .engine import FedFrames, Heard, HeardTalkers, MediaEngine, MediaEvent, Said, Samples, Subscription

__all__ = ["PLAY_QUEUE_FRAMES", "FeedClear", "FeedClose", "FeedKind", "FeedOpen", "FeedPush", "Feeds", "feeds_of"]

PLAY_QUEUE_FRAMES = 50
"""Frames a playing feed holds at most (1 s; the node keeps it a few frames deep): the oldest are dropped past it."""

FeedKind = Literal["heard", "said", "talkers"]


@dataclass(eq=False)
class _Feed:
    feed_id: str
    leg_id: str
    kind: FeedKind
    send: bool
    quiet_peak: int
    quiet_frames: int
    subscription: Subscription | None = None
    queue: deque[Samples] = field(default_factory=lambda: deque(maxlen=PLAY_QUEUE_FRAMES))
    taken: int = 0
    quiet: dict[str, int] = field(default_factory=dict)


class Feeds(EngineCompanion):
    """Every feed of one engine (engine side only). `drain()` after each tick gives what they collected."""

    def __init__(self, engine: MediaEngine) -> None:
        super().__init__(engine)
        self._feeds: dict[str, _Feed] = {}
        self._out: list[tuple[str, object, float, int]] = []

    def __len__(self) -> int:
        return len(self._feeds)

    def open(self, cmd: FeedOpen) -> None:
        """(Re)open feed `cmd.feed_id` on its leg; nothing if the leg is gone."""
        self.close(cmd.feed_id)
        engine = self.engine
        if not engine.has_leg(cmd.leg_id):
            return
        feed = _Feed(cmd.feed_id, cmd.leg_id, cmd.kind, cmd.send, cmd.quiet_peak, cmd.quiet_frames)
        if cmd.kind == "talkers":
            listener: HeardTalkers | Heard | Said = HeardTalkers(
                cmd.leg_id, lambda _leg, _heard, talkers, now: self._talkers(feed, talkers, now)
            )
        elif cmd.kind == "heard":
            listener = Heard(cmd.leg_id, lambda _leg, frame, now: self._frame(feed, frame, now))
        else:
            listener = Said(cmd.leg_id, lambda _leg, frame, now: self._frame(feed, frame, now))
        feed.subscription = engine.subscribe(listener)
        self._feeds[cmd.feed_id] = feed

    def close(self, feed_id: str) -> None:
        feed = self._feeds.pop(feed_id, None)
        if feed is not None and feed.subscription is not None:
            self.engine.unsubscribe(feed.subscription)
            feed.subscription = None

    def push(self, feed_id: str, frames: tuple[Samples, ...]) -> None:
        feed = self._feeds.get(feed_id)
        if feed is not None:
            feed.queue.extend(frames)

    def clear(self, feed_id: str) -> None:
        feed = self._feeds.get(feed_id)
        if feed is not None:
            feed.taken += len(feed.queue)
            feed.queue.clear()

    def drain(self) -> list[MediaEvent]:
        """The tick's FedFrames (none when no feed collected anything)."""
        if not self._out:
            return []
        event = FedFrames(tuple(self._out))
        self._out = []
        return [event]

    def _play(self, feed: _Feed) -> bool:
        """Push the next queued frame into the feed's leg (heard by the others at the next tick)."""
        try:
            frame = feed.queue.popleft()
        except IndexError:
            return False
        feed.taken += 1
        if self.engine.has_leg(feed.leg_id):
            self.engine.push_inbound(feed.leg_id, frame)
        return True

    def _frame(self, feed: _Feed, frame: Samples, now: float) -> None:
        played = feed.kind == "heard" and self._play(feed)
        if feed.send:
            self._out.append((feed.feed_id, frame.copy(), now, feed.taken))
        elif played:
            self._out.append((feed.feed_id, None, now, feed.taken))

    def _talkers(self, feed: _Feed, talkers: list[tuple[str, int, Samples]], now: float) -> None:
        quiet, peak, limit = feed.quiet, feed.quiet_peak, feed.quiet_frames
        out = []
        for speaker, source, frame in talkers:
            if peak:
                if max(int(frame.max()), -int(frame.min())) < peak:
                    run = quiet[speaker] = quiet.get(speaker, 0) + 1
                    if run > limit:
                        continue
                else:
                    quiet[speaker] = 0
            out.append((speaker, str(source) if source else "", frame.copy()))
        if len(quiet) > len(talkers) + 64:  # speakers who left
            for gone in set(quiet) - {t[0] for t in talkers}:
                del quiet[gone]
        if out:
            self._out.append((feed.feed_id, tuple(out), now, feed.taken))


_FEEDS: Companions[Feeds] = Companions(Feeds)


def feeds_of(engine: MediaEngine) -> Feeds:
    """The engine's feeds (made on first use; engine side only)."""
    return _FEEDS.of(engine)


@dataclass(frozen=True, slots=True)
class FeedOpen:
    """Open feed `feed_id` on leg `leg_id`: `heard` (what the leg hears; a playing feed plays its queue into the
    leg at each of these ticks), `said` (what it says) or `talkers` (each talker it hears, unmixed, with its
    sourceId). `send` False: the frames stay here (a feed that only plays reports its count). A talker silent
    (peak below `quiet_peak`) for more than `quiet_frames` frames in a row is left out until it makes a sound."""

    feed_id: str
    leg_id: str
    kind: FeedKind
    send: bool = True
    quiet_peak: int = 0
    quiet_frames: int = 0

    def apply(self, engine: MediaEngine) -> None:
        feeds_of(engine).open(self)


@dataclass(frozen=True, slots=True)
class FeedClose:
    feed_id: str

    def apply(self, engine: MediaEngine) -> None:
        feeds_of(engine).close(self.feed_id)


@dataclass(frozen=True, slots=True)
class FeedPush:
    """Frames to play into a `heard` feed's leg, one per tick after those queued before."""

    feed_id: str
    frames: tuple[Samples, ...] = field(compare=False, repr=False)

    def apply(self, engine: MediaEngine) -> None:
        feeds_of(engine).push(self.feed_id, self.frames)


@dataclass(frozen=True, slots=True)
class FeedClear:
    """Drop what a feed has queued to play (counted as taken)."""

    feed_id: str

    def apply(self, engine: MediaEngine) -> None:
        feeds_of(engine).clear(self.feed_id)
