"""Engine commands as data: what the event loop asks of the media engine, one frozen, picklable dataclass per
operation, each run on the engine's side by `apply(engine)`.

Owns the command vocabulary and how each maps onto MediaEngine methods. A command holds plain values only (leg,
mix and tag strings, numbers, clip arrays that are never mutated afterwards), so the same command runs on the
engine thread of this process or, pickled, in a media process (`opencomms.mediahost`). Must not hold views the
loop keeps changing, asyncio objects, sockets or callables; must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .core import MediaEngine
from .events import EngineFull, Samples

__all__ = [
    "AddLeg",
    "ConnectLeg",
    "DialInSetup",
    "EngineCommand",
    "HoldMusicStart",
    "HoldMusicStop",
    "InThread",
    "Play",
    "PlayToMix",
    "Record",
    "RecordMix",
    "RemoveLeg",
    "SendTones",
    "SetMuted",
    "SetServerMuted",
    "StopMixRecording",
    "StopOperation",
    "StopPlay",
]

log = logging.getLogger("opencomms.media")

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")


class EngineCommand(Protocol[T_co]):
    """Anything the engine's driver runs before a tick: `apply(engine)` on the engine's own thread."""

    def apply(self, engine: MediaEngine) -> T_co: ...


@dataclass(frozen=True, slots=True)
class InThread(Generic[T]):
    """A closure run on the engine's thread, for listeners that hand frames to this process's own workers (live
    transcription, media streams). It cannot cross to a media process: `MediaProcess.call` refuses it, and the
    features that use it check `EnginePort.shares_process` first and refuse with a clear error."""

    fn: Callable[[MediaEngine], T]

    def apply(self, engine: MediaEngine) -> T:
        return self.fn(engine)


@dataclass(frozen=True, slots=True)
class AddLeg:
    """Add leg `leg_id` (EngineFull when full, ValueError if it exists)."""

    leg_id: str

    def apply(self, engine: MediaEngine) -> None:
        engine.add_leg(self.leg_id)


@dataclass(frozen=True, slots=True)
class RemoveLeg:
    """Remove the legs (unknown ones are ignored)."""

    leg_ids: tuple[str, ...]

    def apply(self, engine: MediaEngine) -> None:
        for leg_id in self.leg_ids:
            engine.remove_leg(leg_id)


@dataclass(frozen=True, slots=True)
class ConnectLeg:
    """A call's leg joins its conversation's mix: added first unless already in the engine (a dial-in phone's leg
    is there since the attendant answered it), with the roster's source id and its mute state. `analysed`: whether
    its INPUT goes through the DTMF and VAD detectors (not for a phone's own leg: no one gets its events)."""

    leg_id: str
    mix_id: str
    source_id: int
    muted: bool
    analysed: bool = True

    def apply(self, engine: MediaEngine) -> None:
        if not engine.has_leg(self.leg_id):
            engine.add_leg(self.leg_id, analysed=self.analysed)
        else:
            engine.set_analysed(self.leg_id, self.analysed)
        engine.join(self.leg_id, self.mix_id)
        engine.set_source_id(self.leg_id, self.source_id)
        if self.muted:
            engine.set_muted(self.leg_id, True)


@dataclass(frozen=True, slots=True)
class SetMuted:
    leg_id: str
    muted: bool

    def apply(self, engine: MediaEngine) -> None:
        engine.set_muted(self.leg_id, self.muted)


@dataclass(frozen=True, slots=True)
class SetServerMuted:
    leg_id: str
    muted: bool

    def apply(self, engine: MediaEngine) -> None:
        engine.set_server_muted(self.leg_id, self.muted)


@dataclass(frozen=True, slots=True)
class Play:
    """Queue clips on a leg's player; with `if_present`, nothing happens when the leg is gone."""

    leg_id: str
    tag: str
    clips: tuple[Samples, ...] = field(compare=False, repr=False)
    if_present: bool = False

    def apply(self, engine: MediaEngine) -> None:
        if self.if_present and not engine.has_leg(self.leg_id):
            return
        engine.play(self.leg_id, self.tag, self.clips)


@dataclass(frozen=True, slots=True)
class StopPlay:
    """Stop the leg's plays with `tag` (None: all)."""

    leg_id: str
    tag: str | None = None

    def apply(self, engine: MediaEngine) -> None:
        engine.stop_play(self.leg_id, self.tag)


@dataclass(frozen=True, slots=True)
class StopOperation:
    """Stop a media operation's play and recording (both tagged with the operation id)."""

    leg_id: str
    tag: str

    def apply(self, engine: MediaEngine) -> None:
        engine.stop_play(self.leg_id, self.tag)
        engine.stop_recording(self.leg_id, self.tag)


@dataclass(frozen=True, slots=True)
class Record:
    """recordResponse: its prompts (if any) and then the recording, both tagged `tag`."""

    leg_id: str
    tag: str
    clips: tuple[Samples, ...] = field(compare=False, repr=False)
    max_seconds: float
    initial_silence_seconds: float
    max_silence_seconds: float
    stop_keys: str

    def apply(self, engine: MediaEngine) -> None:
        if self.clips:
            engine.play(self.leg_id, self.tag, self.clips)
        engine.record(
            self.leg_id,
            self.tag,
            max_seconds=self.max_seconds,
            initial_silence_seconds=self.initial_silence_seconds,
            max_silence_seconds=self.max_silence_seconds,
            stop_keys=self.stop_keys,
            after_play=self.tag if self.clips else None,
        )


@dataclass(frozen=True, slots=True)
class SendTones:
    leg_id: str
    tag: str
    keys: str
    tone_ms: int
    gap_ms: int

    def apply(self, engine: MediaEngine) -> None:
        engine.send_tones(self.leg_id, self.tag, self.keys, tone_ms=self.tone_ms, gap_ms=self.gap_ms)


@dataclass(frozen=True, slots=True)
class PlayToMix:
    """Play clips to every member of a mix (announcements)."""

    mix_id: str
    tag: str
    clips: tuple[Samples, ...] = field(compare=False, repr=False)

    def apply(self, engine: MediaEngine) -> None:
        engine.play_to_mix(self.mix_id, self.tag, self.clips)


@dataclass(frozen=True, slots=True)
class RecordMix:
    """Record a whole mix (a meeting's recording): MixRecordingFinished(tag) when it stops or is full."""

    mix_id: str
    tag: str
    max_seconds: float

    def apply(self, engine: MediaEngine) -> None:
        engine.record_mix(self.mix_id, self.tag, max_seconds=self.max_seconds)


@dataclass(frozen=True, slots=True)
class StopMixRecording:
    """Finish a mix's recording `tag` (MixRecordingFinished CANCELLED with what was captured)."""

    mix_id: str
    tag: str

    def apply(self, engine: MediaEngine) -> None:
        engine.stop_mix_recording(self.mix_id, self.tag)


@dataclass(frozen=True, slots=True)
class HoldMusicStart:
    """A held leg leaves its mix for a mix of its own with a music leg playing `clips`."""

    leg_id: str
    music_id: str
    tag: str
    clips: tuple[Samples, ...] = field(compare=False, repr=False)

    def apply(self, engine: MediaEngine) -> None:
        if not engine.has_leg(self.leg_id):
            return
        try:
            engine.add_leg(self.music_id, analysed=False)  # it hears nothing
        except EngineFull:
            log.warning("no hold music: the media engine is full", extra={"call_id": self.leg_id})
            return
        engine.join(self.music_id, self.music_id)
        engine.join(self.leg_id, self.music_id)
        engine.play(self.music_id, self.tag, self.clips)


@dataclass(frozen=True, slots=True)
class HoldMusicStop:
    """The music leg goes; the held leg rejoins mix `rejoin` (None: stays out of every mix)."""

    leg_id: str
    music_id: str
    rejoin: str | None

    def apply(self, engine: MediaEngine) -> None:
        if engine.has_leg(self.music_id):
            engine.remove_leg(self.music_id)
        if self.rejoin is not None and engine.has_leg(self.leg_id):
            engine.join(self.leg_id, self.rejoin)


@dataclass(frozen=True, slots=True)
class DialInSetup:
    """A dial-in phone's leg and the attendant's voice leg, both in the attendant's mix (all or nothing)."""

    leg_id: str
    voice_id: str
    mix_id: str

    def apply(self, engine: MediaEngine) -> None:
        engine.add_leg(self.leg_id, analysed=False)  # the voice hears the phone's keys; the phone hears prompts
        try:
            engine.add_leg(self.voice_id)
        except Exception:
            engine.remove_leg(self.leg_id)
            raise
        engine.join(self.leg_id, self.mix_id)
        engine.join(self.voice_id, self.mix_id)
