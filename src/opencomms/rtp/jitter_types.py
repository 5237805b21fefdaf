"""The jitter buffer's settings (JitterConfig) and its LOST marker, shared by jitter.py (the reference) and its
Cython twin jitter.pyx: both import them from here, so `out is LOST` holds whichever JitterBuffer produced `out`,
and a JitterConfig pickled on one path unpickles on the other. Importers take them from `opencomms.rtp.jitter`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from opencomms._compiled.pickling import Reduced, reduce_frozen

__all__ = ["LOST", "JitterConfig", "Lost"]


class Lost(enum.Enum):
    """What `pop` returns when audio was expected at the playout point and none is there: conceal it."""

    LOST = "lost"


LOST = Lost.LOST


@dataclass(frozen=True, slots=True)
class JitterConfig:
    """Jitter buffer settings (times in ms of audio)."""

    min_delay_ms: float = 40.0
    """Lowest target delay: how long the first packet of a talkspurt waits before playout begins."""
    max_delay_ms: float = 200.0
    """Highest target delay, however bad the measured jitter."""
    capacity: int = 64
    """Most packets held. Overflow rule: the oldest packet is dropped and the playout point moves past it
    (latency beats completeness), counted in `overflow_dropped`."""
    clock_rate: int = 8000
    """RTP clock (samples per second; one payload byte per sample)."""
    frame_ms: int = 20
    """Size of the frames `pop` returns."""
    fill: int = 0xFF
    """Byte used for the missing samples of a partly received frame (codec silence: 0xFF μ-law, 0xD5 A-law)."""
    idle_after_frames: int = 5
    """Consecutive pops with nothing buffered (each reported LOST) before the stream counts as idle (silence
    suppression, hold, a dead peer): `pop` then returns None and the next packet starts a new talkspurt."""
    jump_ms: float = 1000.0
    """A packet further than this before the playout point or beyond the newest audio is a timestamp jump (the
    sender restarted its clock without a new SSRC): the stream continues from it right after the buffered audio,
    instead of counting it late or concealing the gap (counted in `jumps`)."""
    shrink_window_frames: int = 25
    """Pops over which the lowest buffer level is watched; if even that lowest level exceeds the target by a
    frame, one frame is dropped to cut the delay (at most one drop per window; the window shrinks to 5 pops while
    the excess is above 4 frames, so the delay left by a network stall is gone within a second or two)."""

    def __reduce__(self) -> Reduced:  # rebuilt through the constructor (see opencomms._compiled.pickling)
        return reduce_frozen(self)
