"""In-band DTMF sending: each leg's FIFO of tone runs, one generated frame a tick into its OUTPUT.
Owns the tone runs in progress, whether tones replace or add to OUTPUT, and where each run's keys start (for
legs that take DTMF out of band); must not detect tones (the DTMF bank does), nor touch the player, whose frames
still advance underneath."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..dtmf.tones import ToneSequencer, normalize_key
from ..frames import FRAME_SAMPLES, SAMPLE_RATE
from .events import MediaEvent, TonesFinished

if TYPE_CHECKING:
    from .legs import Leg

_N = FRAME_SAMPLES


@dataclass(slots=True, eq=False)
class ToneRun:
    """One send_tones() on a leg, with where its keys start (for legs that take them out of band)."""

    tag: str
    sequencer: ToneSequencer
    keys: str = ""
    tone_ms: int = 0
    period: int = 0
    """Samples from one key's start to the next's (tone + gap)."""
    position: int = 0
    """Samples produced so far."""
    announced: int = 0
    """Keys whose start has been reported."""
    told: frozenset[Leg] = frozenset()
    """Legs already told of these keys (an RFC 4733 key, see `keys`): their DTMF detector must not see them."""


@dataclass(frozen=True, slots=True)
class Sounding:
    """A leg's tone frame of this tick, and the keys starting in it as (key, duration_ms, start time)."""

    leg: Leg
    frame: npt.NDArray[np.int16]
    starts: list[tuple[str, int, float]]
    told: frozenset[Leg] = frozenset()
    """The legs the run's keys were already reported to (see ToneRun.told)."""


class ToneSender:
    """Every leg's tone runs. `legs` (an ordered set) holds the legs with runs queued, so the step costs nothing
    when no leg sends tones; `replace_output` says whether a tone frame replaces the leg's OUTPUT or adds to it."""

    def __init__(self, replace_output: bool) -> None:
        self.replace_output = replace_output
        self.legs: dict[Leg, None] = {}

    def send(
        self, leg: Leg, tag: str, keys: str, tone_ms: int, gap_ms: int, told: frozenset[Leg] = frozenset()
    ) -> None:
        """Queue `keys` (DtmfKeyError for a character that is not a key) after the leg's other runs; `told`: the
        legs already told of them (see ToneRun.told)."""
        sequencer = ToneSequencer(keys, tone_ms=tone_ms, gap_ms=gap_ms)
        period = SAMPLE_RATE * tone_ms // 1000 + SAMPLE_RATE * gap_ms // 1000  # as the sequencer lays them out
        keys = "".join(normalize_key(k) for k in keys)
        leg.tones.append(ToneRun(tag, sequencer, keys, tone_ms, period, told=told))
        self.legs[leg] = None

    def stop(self, leg: Leg, tag: str | None, pending: list[Callable[[float], MediaEvent]]) -> None:
        """Stop the leg's runs with `tag` (or all), adding TonesFinished(completed=False) for each to `pending`."""
        for item in [t for t in leg.tones if tag is None or t.tag == tag]:
            leg.tones.remove(item)
            pending.append(partial(TonesFinished, leg.id, item.tag, False))
        if not leg.tones:
            self.legs.pop(leg, None)

    def drop(self, leg: Leg) -> None:
        """Forget the leg's runs (it is being removed): no events."""
        leg.tones.clear()
        self.legs.pop(leg, None)

    def step(
        self, out: npt.NDArray[np.int32], now: float, events: list[MediaEvent], sounding: list[Sounding] | None = None
    ) -> None:
        """Write the next tone frame of every sending leg into `out`, finishing runs that end. With `sounding`,
        also append each sending leg's tone frame and the keys that start in it (see `Sounding`)."""
        done: list[Leg] = []
        for leg in self.legs:
            while leg.tones and leg.tones[0].sequencer.done:  # empty sequences finish without a frame
                events.append(TonesFinished(leg.id, leg.tones.popleft().tag, True, now))
            if not leg.tones:
                done.append(leg)
                continue
            item = leg.tones[0]
            frame = item.sequencer.next_frame()
            starts = _starts(item, now)  # always, so keys that start while no leg is out of band are not late
            if sounding is not None:
                sounding.append(Sounding(leg, frame, starts, item.told))
            item.position += _N
            if self.replace_output:
                out[leg.row] = frame
            else:
                out[leg.row] += frame
            if item.sequencer.done:
                leg.tones.popleft()
                events.append(TonesFinished(leg.id, item.tag, True, now))
                if not leg.tones:
                    done.append(leg)
        for leg in done:
            del self.legs[leg]


def _starts(run: ToneRun, now: float) -> list[tuple[str, int, float]]:
    """The run's keys that start in the frame beginning at sample `run.position` (time `now`), marked reported."""
    starts: list[tuple[str, int, float]] = []
    end = run.position + _N
    while run.announced < len(run.keys) and run.announced * run.period < end:
        offset = run.announced * run.period - run.position
        starts.append((run.keys[run.announced], run.tone_ms, now + max(0, offset) / SAMPLE_RATE))
        run.announced += 1
    return starts
