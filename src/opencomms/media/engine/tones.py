"""In-band DTMF sending: each leg's FIFO of tone runs, one generated frame a tick into its OUTPUT.
Owns the tone runs in progress and whether tones replace or add to OUTPUT; must not detect tones (the DTMF
bank does), nor touch the player, whose frames still advance underneath."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..dtmf.tones import ToneSequencer
from .events import MediaEvent, TonesFinished

if TYPE_CHECKING:
    from .legs import Leg


@dataclass(slots=True, eq=False)
class ToneRun:
    """One send_tones() on a leg."""

    tag: str
    sequencer: ToneSequencer


class ToneSender:
    """Every leg's tone runs. `legs` (an ordered set) holds the legs with runs queued, so the step costs nothing
    when no leg sends tones; `replace_output` says whether a tone frame replaces the leg's OUTPUT or adds to it."""

    def __init__(self, replace_output: bool) -> None:
        self.replace_output = replace_output
        self.legs: dict[Leg, None] = {}

    def send(self, leg: Leg, tag: str, keys: str, tone_ms: int, gap_ms: int) -> None:
        """Queue `keys` (DtmfKeyError for a character that is not a key) after the leg's other runs."""
        sequencer = ToneSequencer(keys, tone_ms=tone_ms, gap_ms=gap_ms)
        leg.tones.append(ToneRun(tag, sequencer))
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

    def step(self, out: npt.NDArray[np.int32], now: float, events: list[MediaEvent]) -> None:
        """Write the next tone frame of every sending leg into `out`, finishing runs that end."""
        done: list[Leg] = []
        for leg in self.legs:
            while leg.tones and leg.tones[0].sequencer.done:  # empty sequences finish without a frame
                events.append(TonesFinished(leg.id, leg.tones.popleft().tag, True, now))
            if not leg.tones:
                done.append(leg)
                continue
            item = leg.tones[0]
            if self.replace_output:
                out[leg.row] = item.sequencer.next_frame()
            else:
                out[leg.row] += item.sequencer.next_frame()
            if item.sequencer.done:
                leg.tones.popleft()
                events.append(TonesFinished(leg.id, item.tag, True, now))
                if not leg.tones:
                    done.append(leg)
        for leg in done:
            del self.legs[leg]
