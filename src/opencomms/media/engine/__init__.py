"""The node's media engine core: every leg's 20 ms of audio per tick, mixed, analysed and recorded in numpy batches.
A pure, clock-free step (`MediaEngine.tick(now)`) split by concern: `core` (MediaEngine: legs and the pipeline),
`events`, `inbound`, `player` (with `clips`), `tones`, `mixing`, `recorder`, `legs`. Importers use only the names
re-exported here; nothing in this package may read a clock, sleep, start threads or do I/O."""

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

__all__ = [
    "BatchTap",
    "EngineFull",
    "EngineStats",
    "MediaEngine",
    "MediaEvent",
    "OutOfBandKey",
    "PlayFinished",
    "RecordingFinished",
    "RecordingStarted",
    "SpeechStarted",
    "SpeechStopped",
    "Tap",
    "ToneDetected",
    "TonesFinished",
    "UnmixedTap",
]
