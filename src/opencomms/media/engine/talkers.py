"""Talker selection for conferences: which members of a large mix are mixed this tick (the K loudest active ones)
and who dominates it. Owns the per-row speech level and hangover, and per mix the talkers and the dominant speaker
with their hysteresis; must not mix audio (mixing.py sums what this module picks) nor know legs or ids.

Per tick and per large mix (whole-array work over the members, Python only over the K talkers):

- **Level.** Each member's OUTPUT energy this tick, in dBFS; a smoothed level ranks talkers (it rises half-way
  to a louder tick at once, and falls by `release_db` per tick when quieter). A member is *active* while its
  instantaneous level exceeded `threshold_db` within the last `hangover_ticks` ticks (and it is not muted).
- **Talkers** (at most K). A talker that is no longer active (or left the mix) leaves; free places go to the
  loudest active members; then the loudest non-talker replaces the quietest talker only if it is louder by
  `switch_margin_db` (so speakers do not flicker when several talk at once).
- **Dominant speaker.** The loudest talker, changed only when the current one is no longer a talker or another
  talker is louder by `switch_margin_db`, and at most once per `dominant_hold_ticks` (a dominant speaker who
  leaves the talkers with nobody else talking stays dominant, as in Teams; one who leaves the mix does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_SAMPLES

__all__ = ["MixTalkers", "TalkerConfig", "Talkers"]

_FULL_SCALE_DB = 20.0 * float(np.log10(32768.0))
FLOOR_DB = -100.0


@dataclass(frozen=True, slots=True)
class TalkerConfig:
    """How the engine mixes large conferences (see the module docstring)."""

    talkers: int = 3
    """K: members mixed at once in a large mix (the loudest active ones)."""
    select_above: int = 4
    """Mixes with more members than this are mixed from their K loudest talkers; smaller ones mix everyone."""
    threshold_db: float = -45.0
    """Instantaneous level (dBFS) above which a member counts as talking."""
    hangover_ticks: int = 15
    """Ticks (20 ms) a member stays active after its level last exceeded the threshold."""
    release_db: float = 1.0
    """How fast a member's level falls when it goes quiet, dB per tick (it rises halfway to a louder level at
    once): a pause between words does not cost a talker its place."""
    switch_margin_db: float = 6.0
    """How much louder a member must be to take a talker's place, or the dominant speaker's."""
    dominant_hold_ticks: int = 25
    """Fewest ticks between two dominant-speaker changes of one mix (rate limit)."""

    def __post_init__(self) -> None:
        if self.talkers < 1 or self.select_above < 1 or self.hangover_ticks < 1 or self.dominant_hold_ticks < 0:
            raise ValueError("talkers, select_above and hangover_ticks must be positive")


@dataclass(slots=True)
class MixTalkers:
    """One large mix's selection state."""

    rows: list[int] = field(default_factory=list)
    """This tick's talkers, by row (sorted)."""
    dominant: int = -1
    """The dominant speaker's row, -1 for none."""
    changed_at: int = -(10**9)
    """Tick of the last dominant-speaker change."""


class Talkers:
    """Speech levels of every row and the selection state of every large mix (by mix index)."""

    def __init__(self, capacity: int, config: TalkerConfig | None = None) -> None:
        self.config = config or TalkerConfig()
        self.level = np.full(capacity, FLOOR_DB, dtype=np.float32)
        """Smoothed level of each row's OUTPUT, dBFS (rows of large mixes only; others stay at the floor)."""
        self.hang = np.zeros(capacity, dtype=np.int32)
        """Ticks left until the row stops counting as active."""
        self.mixes: dict[int, MixTalkers] = {}
        self.tick = 0

    def reset(self, row: int) -> None:
        """A row was added or removed: silent, inactive."""
        self.level[row] = FLOOR_DB
        self.hang[row] = 0

    def forget(self, live: set[int]) -> None:
        """Drop the state of mixes no longer large (after a topology change)."""
        for index in [i for i in self.mixes if i not in live]:
            del self.mixes[index]

    def select(
        self,
        index: int,
        members: npt.NDArray[np.intp],
        out: npt.NDArray[np.int32],
        muted: npt.NDArray[np.bool_],
    ) -> tuple[MixTalkers, bool]:
        """Update the levels of `members` (rows of mix `index`, ascending) from this tick's OUTPUT and pick the
        talkers. Returns the mix's state and whether its dominant speaker changed."""
        cfg = self.config
        frames = out[members].astype(np.float32)
        energy = np.einsum("ij,ij->i", frames, frames) / FRAME_SAMPLES
        db = 10.0 * np.log10(energy + 1e-3) - _FULL_SCALE_DB
        silenced = muted[members]
        db[silenced] = FLOOR_DB
        level = self.level[members]
        level = np.where(db > level, level + 0.5 * (db - level), np.maximum(db, level - cfg.release_db))
        level[silenced] = FLOOR_DB
        self.level[members] = level
        hang = self.hang[members]
        hang = np.where(db > cfg.threshold_db, cfg.hangover_ticks, np.maximum(hang - 1, 0))
        hang[silenced] = 0
        self.hang[members] = hang
        active = hang > 0

        state = self.mixes.get(index)
        if state is None:
            state = self.mixes[index] = MixTalkers()
        current = self._positions(members, state.rows)
        current = current[active[current]]  # the talkers still in the mix and active stay
        gone = state.dominant >= 0 and self._positions(members, [state.dominant]).size == 0
        if gone:
            state.dominant = -1
        ranked = np.where(active, level, -np.inf)
        ranked[current] = -np.inf  # the remaining candidates
        need = cfg.talkers - current.size
        if need > 0:
            order = np.argpartition(-ranked, need - 1)[:need] if need < ranked.size else np.arange(ranked.size)
            picked = order[np.isfinite(ranked[order])]
            current = np.concatenate([current, picked])
            ranked[picked] = -np.inf
        elif current.size:
            best = int(np.argmax(ranked))
            if np.isfinite(ranked[best]):
                weakest = int(np.argmin(level[current]))
                if ranked[best] > level[current[weakest]] + cfg.switch_margin_db:
                    current[weakest] = best
        current.sort()
        state.rows = members[current].tolist()
        return state, self._dominant(state, members, current, level) or gone

    @staticmethod
    def _positions(members: npt.NDArray[np.intp], rows: list[int]) -> npt.NDArray[np.intp]:
        """Positions in `members` of those of `rows` that are members."""
        if not rows:
            return np.zeros(0, dtype=np.intp)
        wanted = np.asarray(rows, dtype=np.intp)
        where = members.searchsorted(wanted)
        inside = where < members.size
        inside[inside] = members[where[inside]] == wanted[inside]
        return where[inside]

    def _dominant(
        self,
        state: MixTalkers,
        members: npt.NDArray[np.intp],
        current: npt.NDArray[np.intp],
        level: npt.NDArray[np.float32],
    ) -> bool:
        cfg = self.config
        if current.size == 0 or (state.dominant >= 0 and self.tick - state.changed_at < cfg.dominant_hold_ticks):
            return False
        loudest = int(current[int(np.argmax(level[current]))])
        candidate = int(members[loudest])
        if candidate == state.dominant:
            return False
        if state.dominant in state.rows:
            where = int(members.searchsorted(state.dominant))
            if level[loudest] <= level[where] + cfg.switch_margin_db:
                return False
        state.dominant = candidate
        state.changed_at = self.tick
        return True
