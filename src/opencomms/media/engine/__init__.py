"""The node's media engine core: every leg's 20 ms of audio per tick, mixed, analysed and recorded in numpy batches.
A pure, clock-free step (`MediaEngine.tick(now)`) split by concern: `core` (MediaEngine: legs and the pipeline),
`events`, `inbound`, `player` (with `clips`), `tones`, `keys`, `mixing`, `recorder`, `listeners`, `legs`. Importers
use only the names re-exported here; nothing in this package may read a clock, sleep, start threads or do I/O."""

from .core import MediaEngine
from .events import (
    BatchTap,
    EngineFull,
    EngineStats,
    MediaEvent,
    OutOfBandKey,
    PlayFinished,
    RecordingFinished,
    RecordingStarted,
    SpeechStarted,
    SpeechStopped,
    Tap,
    ToneDetected,
    TonesFinished,
    UnmixedTap,
)
from .events import Samples as Samples  # not public, but the pre-package module had it
from .listeners import Batch, Heard, HeardParts, Listener, Said, Subscription

__all__ = [
    "Batch",
    "BatchTap",
    "EngineFull",
    "EngineStats",
    "Heard",
    "HeardParts",
    "Listener",
    "MediaEngine",
    "MediaEvent",
    "OutOfBandKey",
    "PlayFinished",
    "RecordingFinished",
    "RecordingStarted",
    "Said",
    "SpeechStarted",
    "SpeechStopped",
    "Subscription",
    "Tap",
    "ToneDetected",
    "TonesFinished",
    "UnmixedTap",
]
