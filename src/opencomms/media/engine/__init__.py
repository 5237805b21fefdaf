"""The node's media engine core: every leg's 20 ms of audio per tick, mixed, analysed and recorded in numpy batches.
A pure, clock-free step (`MediaEngine.tick(now)`) split by concern: `core` (MediaEngine: legs and the pipeline),
`events`, `inbound`, `player` (with `clips`), `tones`, `keys`, `mixing` (with `talkers`), `mixops`, `recorder`,
`listeners`, `legs`. Importers
use only the names re-exported here; nothing in this package may read a clock, sleep, start threads or do I/O."""

from .core import MediaEngine
from .events import (
    BatchTap,
    DominantSpeakerChanged,
    EngineFull,
    EngineStats,
    FedFrames,
    HeardFrames,
    MediaEvent,
    MixPlayFinished,
    MixRecordingFinished,
    OutOfBandKey,
    PlayFinished,
    RecordingFinished,
    RecordingStarted,
    SpeechStarted,
    SpeechStopped,
    TalkersTap,
    Tap,
    ToneDetected,
    TonesFinished,
    UnmixedTap,
)
from .events import Samples as Samples  # not public, but the pre-package module had it
from .listeners import Batch, Heard, HeardParts, HeardTalkers, Listener, Said, Subscription
from .talkers import TalkerConfig

__all__ = [
    "Batch",
    "BatchTap",
    "DominantSpeakerChanged",
    "EngineFull",
    "EngineStats",
    "FedFrames",
    "Heard",
    "HeardFrames",
    "HeardParts",
    "HeardTalkers",
    "Listener",
    "MediaEngine",
    "MediaEvent",
    "MixPlayFinished",
    "MixRecordingFinished",
    "OutOfBandKey",
    "PlayFinished",
    "RecordingFinished",
    "RecordingStarted",
    "Said",
    "SpeechStarted",
    "SpeechStopped",
    "Subscription",
    "TalkerConfig",
    "TalkersTap",
    "Tap",
    "ToneDetected",
    "TonesFinished",
    "UnmixedTap",
]
