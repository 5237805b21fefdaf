"""One leg of the engine: its row and the per-leg state hanging off it (plays, tone runs, recording, mix).
Owns the Leg record only; must not do any audio work or touch the per-row arrays (the steps and the core do)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .player import Play
    from .recorder import Recording
    from .tones import ToneRun


@dataclass(slots=True, eq=False)
class Leg:
    """A leg in the engine (hashed by identity: the steps keep ordered sets of legs as dict keys)."""

    id: str
    row: int
    mix: str | None = None
    muted: bool = False
    """Muted by itself or by the server: its OUTPUT reaches no mix."""
    self_muted: bool = False
    server_muted: bool = False
    plays: deque[Play] = field(default_factory=deque)
    tones: deque[ToneRun] = field(default_factory=deque)
    recording: Recording | None = None
    watch_speech: bool = False
    out_of_band_dtmf: bool = False
    analysed: bool = True
    """Wanted in the DTMF and VAD banks (MediaEngine.set_analysed); a recording or watch_speech also puts it there."""
    dsp: int = -1
    """The leg's channel in the DTMF and VAD banks (-1: none)."""

    def reports_speech(self) -> bool:
        """Whether the leg's speech changes become events: it is watched, or capturing a recording."""
        return self.watch_speech or (self.recording is not None and self.recording.started)
