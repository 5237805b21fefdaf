"""DTMF: key tables and tone synthesis, batched in-band detection, and RFC 4733 telephone events.

Re-exports the public surface of tones, detector and rfc4733; holds no logic of its own.
"""

from __future__ import annotations

from .config import DtmfDetectorConfig
from .detector import DtmfDetector, DtmfDetectorBank, DtmfKeyDetected, detect_keys
from .rfc4733 import (
    OutgoingTelephoneEvent,
    TelephoneEvent,
    TelephoneEventEnded,
    TelephoneEventError,
    TelephoneEventReceiver,
    TelephoneEventSender,
    TelephoneEventStarted,
)
from .tones import (
    FLASH_KEY,
    KEYS,
    DtmfKeyError,
    ToneSequencer,
    event_code,
    generate_dtmf,
    key_for_event,
    key_frequencies,
)

__all__ = [
    "FLASH_KEY",
    "KEYS",
    "DtmfDetector",
    "DtmfDetectorBank",
    "DtmfDetectorConfig",
    "DtmfKeyDetected",
    "DtmfKeyError",
    "OutgoingTelephoneEvent",
    "TelephoneEvent",
    "TelephoneEventEnded",
    "TelephoneEventError",
    "TelephoneEventReceiver",
    "TelephoneEventSender",
    "TelephoneEventStarted",
    "ToneSequencer",
    "detect_keys",
    "event_code",
    "generate_dtmf",
    "key_for_event",
    "key_frequencies",
]
