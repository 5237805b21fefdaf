"""What the media engine reports: the frozen events `tick()` returns (MediaEvent), EngineStats, EngineFull, and the
Samples/Tap types shared by the engine's modules. Plain data only: must not hold engine state or logic, nor import
the engine's other modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ...domain.media import RecordStop

__all__ = [
    "BatchTap",
    "DominantSpeakerChanged",
    "EngineFull",
    "EngineStats",
    "MediaEvent",
    "MixPlayFinished",
    "MixRecordingFinished",
    "OutOfBandKey",
    "PlayFinished",
    "RecordingFinished",
    "RecordingStarted",
    "Samples",
    "SpeechStarted",
    "SpeechStopped",
    "TalkersTap",
    "Tap",
    "ToneDetected",
    "TonesFinished",
    "UnmixedTap",
]

Samples = npt.NDArray[np.int16]
Tap = Callable[[str, Samples, float], None]
"""A per-leg listener: called once per tick with (leg_id, a 320-sample int16 frame, frame time)."""
BatchTap = Callable[[npt.NDArray[np.int32], float], None]
"""A listener for many legs at once: called once per tick with (INPUT of every row in use, frame time)."""
UnmixedTap = Callable[[str, Samples, list[tuple[str, Samples]], float], None]
"""Like Tap, plus the OUTPUT of every other member of the leg's mix as (leg_id, frame) (application-hosted media)."""
TalkersTap = Callable[[str, Samples, list[tuple[str, int, Samples]], float], None]
"""Like Tap, plus the OUTPUT of each talker the leg hears as (leg_id, source_id, frame): in a conference the
mixed talkers of the tick but the leg itself, in a smaller mix every other member (application-hosted media)."""


class EngineFull(Exception):
    """Every row of the engine is in use: no leg can be added until one is removed."""


@dataclass(frozen=True, slots=True)
class ToneDetected:
    """A DTMF key heard on the leg's INPUT (every leg; the caller decides what it means): detected in-band, or
    sent out of band (RFC 4733) by another member of the leg's mix (`MediaEngine.push_key`). One per press."""

    leg_id: str
    key: str
    """'0'-'9', '*', '#', 'A'-'D'."""
    at: float
    """Estimated start of the tone (the event itself comes once the tone has lasted ~35 ms)."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """VAD turned active on the leg's INPUT (only for recording or watched legs)."""

    leg_id: str
    at: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """VAD turned inactive on the leg's INPUT (after its hangover; only for recording or watched legs)."""

    leg_id: str
    at: float


@dataclass(frozen=True, slots=True)
class PlayFinished:
    """A play() ended: `completed` when its last sample was output in the frame at `at`, else it was stopped."""

    leg_id: str
    tag: str
    completed: bool
    at: float


@dataclass(frozen=True, slots=True)
class TonesFinished:
    """A send_tones() ended: `completed` after its last tone's gap, else it was stopped."""

    leg_id: str
    tag: str
    completed: bool
    at: float


@dataclass(frozen=True, slots=True)
class OutOfBandKey:
    """A DTMF key another member of the leg's mix starts sending (send_tones), for a leg that takes DTMF out of
    band (`set_out_of_band_dtmf`): its sink sends it as an RFC 4733 event; the tone stays out of the leg's INPUT."""

    leg_id: str
    """The leg to deliver the key to (not the one sending it)."""
    key: str
    """'0'-'9', '*', '#', 'A'-'D', '!' (flash, which has no in-band form)."""
    duration_ms: int
    at: float
    """When the tone starts (within the frame of the tick that reports it)."""
    source: str
    """The leg sending the tones."""


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    """Capture of the leg's INPUT began with the frame at `at`."""

    leg_id: str
    tag: str
    at: float


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    """A recording ended; `samples` is what was captured (16 kHz mono, read-only)."""

    leg_id: str
    tag: str
    reason: RecordStop
    samples: Samples = field(compare=False, repr=False)
    speech_detected: bool
    at: float


@dataclass(frozen=True, slots=True)
class DominantSpeakerChanged:
    """The loudest talker of a conference changed (with hysteresis, at most once per `dominant_hold_ticks`), or
    the dominant speaker left the mix with nobody talking (`leg_id` None)."""

    mix_id: str
    leg_id: str | None
    source_id: int | None
    """The leg's `set_source_id` (the roster's mediaStreams sourceId), 0 if never set."""
    at: float


@dataclass(frozen=True, slots=True)
class MixPlayFinished:
    """A play_to_mix() ended: `completed` when its last sample went into the frame at `at`, else it was stopped."""

    mix_id: str
    tag: str
    completed: bool
    at: float


@dataclass(frozen=True, slots=True)
class MixRecordingFinished:
    """A record_mix() ended (MAX_DURATION or CANCELLED); `samples` is what the mix's listeners heard (16 kHz mono,
    read-only): the sum of its talkers and of what was played to it."""

    mix_id: str
    tag: str
    reason: RecordStop
    samples: Samples = field(compare=False, repr=False)
    at: float


@dataclass(frozen=True, slots=True)
class HeardFrames:
    """Not from `tick()` itself: what the app-hosted legs heard in one tick (media/taps.py), copies the loop may
    keep: (leg_id, heard frame, [(other leg, its sourceId or "", its frame)...], frame time) per tapped leg;
    `trimmed` counts frames from bots dropped since the last report (a full queue, a standing backlog)."""

    frames: tuple[tuple[str, Samples, list[tuple[str, str, Samples]], float], ...] = field(repr=False)
    trimmed: int = 0


@dataclass(frozen=True, slots=True)
class FedFrames:
    """Not from `tick()` itself: what the node-side feeds collected in one tick (media/feeds.py), copies the loop may
    keep: (feed_id, frame | ((talker leg, its sourceId or "", its frame), ...) | None, frame time, frames the
    feed has taken from its play queue so far) per feed."""

    frames: tuple[tuple[str, object, float, int], ...] = field(repr=False)


MediaEvent = (
    ToneDetected
    | SpeechStarted
    | SpeechStopped
    | PlayFinished
    | TonesFinished
    | OutOfBandKey
    | RecordingStarted
    | RecordingFinished
    | DominantSpeakerChanged
    | MixPlayFinished
    | MixRecordingFinished
    | HeardFrames
    | FedFrames
)
"""Everything `tick()` reports."""


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters of a MediaEngine (a snapshot)."""

    capacity: int
    legs: int
    rows: int
    """Rows processed per tick: one past the highest row in use."""
    mixes: int
    ticks: int
    playing: int
    """Legs with a prompt queued or playing."""
    recording: int
    """Legs with a recording waiting or capturing."""
    inbound_dropped: int
    """Inbound frames dropped because a leg's queue was full (the oldest goes)."""
    dsp_rows: int
    """Rows handed to the DTMF and VAD banks in the last tick."""
    tap_errors: int
    """Exceptions raised by listeners (counted, rarely logged, swallowed)."""
    clips: int
    """Distinct clip arrays held for queued or playing prompts."""
    listeners: int = 0
    """Listeners subscribed (per-leg and batch)."""
    listeners_dropped: int = 0
    """Listeners unsubscribed by the engine after failing too many ticks in a row."""
    keys_dropped: int = 0
    """RFC 4733 keys dropped because their leg had too many waiting to sound in-band (a flood)."""
