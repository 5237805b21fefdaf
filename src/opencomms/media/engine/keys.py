"""DTMF keys received out of band (RFC 4733, decoded by the RTP bank on the engine thread) turned into engine
events in the tick they arrive: ToneDetected for the legs that hear the sender in-band, the stop of their
recordings, and the in-band tone the other members still need to hear, hidden from the detectors of the legs
already told (so a press is reported once, never re-detected). Owns the keys pushed since the last flush; must
not decode RTP or run the DTMF detector."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..dtmf.tones import KEYS
from .events import MediaEvent, ToneDetected

if TYPE_CHECKING:
    from .legs import Leg
    from .mixing import Mixes
    from .recorder import Recorder
    from .tones import Sounding, ToneSender

TAG = "rfc4733"
"""Tag of the tone runs that play received keys in-band (their TonesFinished events carry it)."""
TONE_MS = 100
"""How long a received key sounds in-band (the event's duration is not known when it starts)."""
MAX_QUEUED = 16
"""Received keys of one leg waiting to sound in-band (1.6 s) beyond which more are dropped: a peer sending events
faster than they can be played (a flood) is not reported key by key, nor queued without bound."""


class ReceivedKeys:
    """Keys pushed by `MediaEngine.push_key`, reported by `flush` at the end of a tick."""

    def __init__(self, mixes: Mixes, recorder: Recorder, tones: ToneSender) -> None:
        self._mixes = mixes
        self._recorder = recorder
        self._tones = tones
        self.pending: list[tuple[Leg, str, float]] = []
        self.dropped = 0
        """Keys dropped because their leg had MAX_QUEUED waiting."""

    def push(self, leg: Leg, key: str, at: float) -> None:
        key = key.upper()
        if len(key) == 1 and key in KEYS:
            self.pending.append((leg, key, at))

    def flush(self, legs: dict[str, Leg], now: float, events: list[MediaEvent]) -> None:
        """Report the pending keys (see MediaEngine.push_key); `legs`: the engine's legs, to skip removed ones."""
        pending, self.pending = self.pending, []
        for leg, key, at in pending:
            if legs.get(leg.id) is not leg or leg.mix is None or leg.muted:
                continue
            if sum(1 for run in leg.tones if run.tag == TAG) >= MAX_QUEUED:
                self.dropped += 1
                continue
            told: list[Leg] = []
            for other in self._mixes.members(leg.mix):
                if other is leg or other.out_of_band_dtmf:
                    continue
                events.append(ToneDetected(other.id, key, at))
                self._recorder.key(other, key, at, now, events)
                told.append(other)
            self._tones.send(leg, TAG, key, TONE_MS, 0, frozenset(told))

    @staticmethod
    def hide(sounding: list[Sounding], x: npt.NDArray[np.float32]) -> None:
        """Take the tone frames of runs already reported out of the detector input `x` (by DSP channel) of the legs
        told that are analysed (what they hear is unchanged)."""
        for item in sounding:
            if not item.told:
                continue
            mix = item.leg.mix
            if mix is None or item.leg.muted:
                continue
            for other in item.told:
                if other.mix == mix and not other.out_of_band_dtmf and other.dsp >= 0:
                    x[other.dsp] -= item.frame
