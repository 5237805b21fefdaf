"""Engine listeners: any number of subscribers per leg and per kind, called on the engine thread once per tick.
Owns the subscriptions (by handle), the shared int16 frames handed to them, and their isolation: a listener that
raises is counted (FaultLog) and, after `max_failures` failures in a row, unsubscribed; the others still run.
Must not produce or mix audio, nor know what listeners do with it (the RTP bank, app-hosted sockets, recorders).

Kinds (the listener objects are frozen; `MediaEngine.subscribe(listener) -> Subscription`):

- `Heard(leg_id, fn)`: what the leg hears (its INPUT, the mix), `fn(leg_id, frame, now)`.
- `Said(leg_id, fn)`: what the leg says (its own OUTPUT, unmixed: far end + prompts + tones; silence while muted),
  `fn(leg_id, frame, now)`.
- `HeardParts(leg_id, fn)`: what the leg hears and, part by part, what every other member of its mix says,
  `fn(leg_id, heard, [(other_id, said), ...], now)` (application-hosted media).
- `HeardTalkers(leg_id, fn)`: what the leg hears and the talkers it hears, each unmixed with its sourceId,
  `fn(leg_id, heard, [(other_id, source_id, said), ...], now)`: in a conference only the K mixed talkers (so a
  bot in a meeting of 1000 costs what the talkers cost), in a smaller mix every other member.
- `Batch(fn)`: every row's INPUT in one `(rows, 320)` int32 array, `fn(inp, now)` (the RTP bank; rows by
  `MediaEngine.leg_key`).

Frames are read-only views of the engine's buffers, shared by every listener of the tick and valid only during
the call: a listener that keeps one copies it. Each leg's frame is converted to int16 once per tick, whatever
the number of its listeners; legs without listeners cost nothing. Per-leg listeners run first (in the order
they subscribed), then batch listeners. A listener may subscribe or unsubscribe (itself or others) while it
runs: an unsubscribed listener is not called again, even later in the same tick; a new one is called from the next
tick. Removing a leg ends its subscriptions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..faults import FaultLog
from ..frames import FRAME_SAMPLES
from .events import BatchTap, TalkersTap, Tap, UnmixedTap

if TYPE_CHECKING:
    from .legs import Leg
    from .mixing import Mixes

__all__ = ["Batch", "Heard", "HeardParts", "HeardTalkers", "Listener", "Listeners", "Said", "Subscription"]

log = logging.getLogger("opencomms.media")

_N = FRAME_SAMPLES
MAX_FAILURES = 25
"""Failures in a row (half a second of ticks) after which a listener is unsubscribed."""


@dataclass(frozen=True, slots=True)
class Heard:
    """What leg `leg_id` hears: `fn(leg_id, frame, now)` with its 320-sample int16 INPUT (read-only)."""

    leg_id: str
    fn: Tap


@dataclass(frozen=True, slots=True)
class Said:
    """What leg `leg_id` says: `fn(leg_id, frame, now)` with its own OUTPUT, clipped to int16 (read-only)."""

    leg_id: str
    fn: Tap


@dataclass(frozen=True, slots=True)
class HeardParts:
    """What leg `leg_id` hears, and what each other member of its mix says: `fn(leg_id, heard, parts, now)`."""

    leg_id: str
    fn: UnmixedTap


@dataclass(frozen=True, slots=True)
class HeardTalkers:
    """What leg `leg_id` hears, and each talker it hears unmixed: `fn(leg_id, heard, talkers, now)`, `talkers` a
    list of (leg_id, source_id, frame) (see the module docstring)."""

    leg_id: str
    fn: TalkersTap


@dataclass(frozen=True, slots=True)
class Batch:
    """Every row's INPUT at once: `fn(inp, now)`, `inp` a read-only `(rows, 320)` int32 array in int16 range."""

    fn: BatchTap


Listener = Heard | Said | HeardParts | HeardTalkers | Batch


class Subscription:
    """The handle of one subscribed listener (pass it to `MediaEngine.unsubscribe`). Engine-thread state."""

    __slots__ = ("active", "errors", "failures", "leg", "listener")

    def __init__(self, listener: Listener, leg: Leg | None) -> None:
        self.listener = listener
        self.leg = leg
        self.active = True
        """False once unsubscribed: by its owner, because its leg was removed, or after repeated failures."""
        self.failures = 0
        """Failures in a row (reset by a call that returns)."""
        self.errors = 0
        """Failures in all."""

    def __repr__(self) -> str:
        return f"Subscription({type(self.listener).__name__}, leg={getattr(self.listener, 'leg_id', None)!r})"


class Listeners:
    """Every subscription of one engine, and the per-tick step that calls them."""

    def __init__(
        self,
        capacity: int,
        mixes: Mixes,
        *,
        max_failures: int = MAX_FAILURES,
        by_row: list[Leg | None] | None = None,
        sources: npt.NDArray[np.int64] | None = None,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be positive")
        self.max_failures = max_failures
        self._mixes = mixes
        self._by_row: list[Leg | None] = by_row if by_row is not None else [None] * capacity
        self._sources = sources if sources is not None else np.zeros(capacity, dtype=np.int64)
        self._by_leg: dict[Leg, list[Subscription]] = {}
        self._batch: list[Subscription] = []
        self._heard = np.zeros((capacity, _N), dtype=np.int16)
        self._said = np.zeros((capacity, _N), dtype=np.int16)
        self._heard_ro = _readonly(self._heard)
        self._said_ro = _readonly(self._said)
        # Cached per change (not per tick): the per-leg subscriptions in call order, the rows whose INPUT and
        # OUTPUT must be converted, and the legs whose mix members' OUTPUT must be (HeardParts).
        self._calls: tuple[Subscription, ...] = ()
        self._batch_calls: tuple[Subscription, ...] = ()
        self._heard_rows = np.zeros(0, dtype=np.intp)
        self._said_rows = np.zeros(0, dtype=np.intp)
        self._parts_legs: tuple[Leg, ...] = ()
        self.faults = FaultLog(log, "media listener failed")
        self.dropped = 0
        """Listeners unsubscribed after `max_failures` failures in a row."""

    def __len__(self) -> int:
        return len(self._calls) + len(self._batch_calls)

    def add(self, listener: Listener, leg: Leg | None) -> Subscription:
        """Subscribe `listener` (`leg`: its leg, None for Batch)."""
        sub = Subscription(listener, leg)
        if leg is None:
            self._batch.append(sub)
        else:
            self._by_leg.setdefault(leg, []).append(sub)
        self._rebuild()
        return sub

    def remove(self, sub: Subscription) -> None:
        """Unsubscribe (idempotent)."""
        if not sub.active:
            return
        sub.active = False
        if sub.leg is None:
            self._batch.remove(sub)
        else:
            subs = self._by_leg.get(sub.leg)
            if subs is not None:
                subs.remove(sub)
                if not subs:
                    del self._by_leg[sub.leg]
        self._rebuild()

    def drop_leg(self, leg: Leg) -> None:
        """The leg is being removed: end its subscriptions."""
        subs = self._by_leg.pop(leg, None)
        if subs is None:
            return
        for sub in subs:
            sub.active = False
        self._rebuild()

    def _rebuild(self) -> None:
        self._calls = tuple(sub for subs in self._by_leg.values() for sub in subs)
        self._batch_calls = tuple(self._batch)
        heard = {s.leg.row for s in self._calls if s.leg is not None and not isinstance(s.listener, Said)}
        said = {s.leg.row for s in self._calls if s.leg is not None and isinstance(s.listener, Said)}
        self._heard_rows = np.array(sorted(heard), dtype=np.intp)
        self._said_rows = np.array(sorted(said), dtype=np.intp)
        self._parts_legs = tuple(
            dict.fromkeys(
                s.leg for s in self._calls if s.leg is not None and isinstance(s.listener, HeardParts | HeardTalkers)
            )
        )

    # -- the tick ------------------------------------------------------------------------------------------

    def step(self, inp: npt.NDArray[np.int32], out: npt.NDArray[np.int32], now: float) -> None:
        """Call every listener with this tick's frames (`inp`/`out`: the engine's INPUT/OUTPUT prefix)."""
        if self._calls:
            self._per_leg(inp, out, now)
        if self._batch_calls:
            view = inp.view()
            view.flags.writeable = False
            for sub in self._batch_calls:
                if not sub.active:
                    continue
                listener = sub.listener
                assert isinstance(listener, Batch)
                try:
                    listener.fn(view, now)
                except Exception as exc:
                    self._failed(sub, exc)
                else:
                    sub.failures = 0

    def _per_leg(self, inp: npt.NDArray[np.int32], out: npt.NDArray[np.int32], now: float) -> None:
        rows = self._heard_rows
        if rows.size:
            self._heard[rows] = inp[rows]  # INPUT is already within int16 range
        parts: dict[Leg, list[Leg]] = {}
        said = self._said_rows
        if self._parts_legs:
            mixes = self._mixes
            by_row = self._by_row
            extra: set[int] = set()
            for owner in self._parts_legs:
                if owner.mix is None:
                    mates = []
                elif mixes.is_conference(owner.mix):
                    talking = mixes.talkers_of(owner.mix)
                    mates = [o for row in talking if (o := by_row[row]) is not None and o is not owner]
                else:
                    mates = [o for o in mixes.members(owner.mix) if o is not owner]
                parts[owner] = mates
                extra.update(o.row for o in mates)
            if extra:
                extra.update(said.tolist())
                said = np.fromiter(extra, dtype=np.intp, count=len(extra))
        if said.size:
            self._said[said] = np.clip(out[said], -32768, 32767)
        heard_ro, said_ro = self._heard_ro, self._said_ro
        for sub in self._calls:
            if not sub.active:
                continue
            listener, leg = sub.listener, sub.leg
            assert leg is not None
            try:
                if isinstance(listener, Heard):
                    listener.fn(leg.id, heard_ro[leg.row], now)
                elif isinstance(listener, Said):
                    listener.fn(leg.id, said_ro[leg.row], now)
                elif isinstance(listener, HeardParts):
                    unmixed = [(o.id, said_ro[o.row]) for o in parts.get(leg, ())]
                    listener.fn(leg.id, heard_ro[leg.row], unmixed, now)
                elif isinstance(listener, HeardTalkers):
                    sources = self._sources
                    talkers = [(o.id, int(sources[o.row]), said_ro[o.row]) for o in parts.get(leg, ())]
                    listener.fn(leg.id, heard_ro[leg.row], talkers, now)
            except Exception as exc:
                self._failed(sub, exc)
            else:
                sub.failures = 0

    def _failed(self, sub: Subscription, exc: Exception) -> None:
        sub.failures += 1
        sub.errors += 1
        leg_id = sub.leg.id if sub.leg is not None else None
        kind = type(sub.listener).__name__
        self.faults.record(f"{kind}: {type(exc).__name__}", exc, call_id=leg_id)
        if sub.failures >= self.max_failures:
            self.dropped += 1
            log.warning("media listener unsubscribed after %d failed ticks", sub.failures, extra={"call_id": leg_id})
            self.remove(sub)


def _readonly(array: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    view = array.view()
    view.flags.writeable = False
    return view
