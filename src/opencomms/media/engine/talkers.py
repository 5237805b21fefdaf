"""Talker selection for conferences: which members of a large mix are mixed this tick (the K loudest active ones)
and who dominates it. Owns the per-row speech level, hangover and talker flag, and per mix index the dominant
speaker with its last change; must not mix audio (mixing.py sums what this module picks) nor know legs or ids.

Per tick, for all the conferences of one size at once (whole-array work over a `(mixes, size)` matrix of rows; no
Python per member nor per mix):

- **Level.** Each member's OUTPUT energy this tick, in dBFS; a smoothed level ranks talkers (it rises half-way
  to a louder tick at once, and falls by `release_db` per tick when quieter). A member is *active* while its
  instantaneous level exceeded `threshold_db` within the last `hangover_ticks` ticks (and it is not muted).
- **Talkers** (at most K). A talker that is no longer active (or left the mix) leaves; free places go to the
  loudest active members; then the loudest non-talker replaces the quietest talker only if it is louder by
  `switch_margin_db` (so speakers do not flicker when several talk at once).
- **Dominant speaker.** The loudest talker, changed only when the current one is no longer a talker or another
  talker is louder by `switch_margin_db`, and at most once per `dominant_hold_ticks` (a dominant speaker who
  stops talking with nobody else talking stays dominant, as in Teams; one who leaves the mix does not: none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_SAMPLES

__all__ = ["Selection", "TalkerConfig", "Talkers"]

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
    """How fast a member's level falls when it goes quiet, dB per tick (it rises half-way to a louder level at
    once): a pause between words does not cost a talker its place."""
    switch_margin_db: float = 6.0
    """How much louder a member must be to take a talker's place, or the dominant speaker's."""
    dominant_hold_ticks: int = 25
    """Fewest ticks between two dominant-speaker changes of one mix (rate limit)."""

    def __post_init__(self) -> None:
        if self.talkers < 1 or self.select_above < 1 or self.hangover_ticks < 1 or self.dominant_hold_ticks < 0:
            raise ValueError("talkers, select_above and hangover_ticks must be positive")


@dataclass(frozen=True, slots=True)
class Selection:
    """This tick's talkers of `(mixes, size)` conferences: `rows[m, j]` is a talker of mix m where `valid[m, j]`
    (at most K per mix, in row order), and the mixes whose dominant speaker changed."""

    rows: npt.NDArray[np.intp]
    valid: npt.NDArray[np.bool_]
    changed: npt.NDArray[np.bool_]


class Talkers:
    """Speech levels and talker flags of every row, and the dominant speaker of every mix index."""

    def __init__(self, capacity: int, config: TalkerConfig | None = None) -> None:
        self.config = config or TalkerConfig()
        self.level = np.full(capacity, FLOOR_DB, dtype=np.float32)
        """Smoothed level of each row's OUTPUT, dBFS (rows of conferences only; others stay at the floor)."""
        self.hang = np.zeros(capacity, dtype=np.int32)
        """Ticks left until the row stops counting as active."""
        self.talking = np.zeros(capacity, dtype=np.bool_)
        """Whether the row was mixed as a talker in the last tick."""
        self.dominant = np.full(capacity, -1, dtype=np.intp)
        """Per mix index: the dominant speaker's row (-1: none)."""
        self.changed_at = np.full(capacity, -(1 << 30), dtype=np.int64)
        """Per mix index: the tick of the last dominant-speaker change."""
        self.tick = 0
        self._scratch = np.empty((0, FRAME_SAMPLES), dtype=np.float32)

    def _energy(self, out: npt.NDArray[np.int32], flat: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """Sum of squares of each row `flat` of `out`. Computed for the prefix up to the last of them in a float32
        scratch kept between ticks: a gather and a cast of every member's frame made two large temporaries each
        tick, whose fresh pages (allocations above malloc's mmap threshold) cost more than the arithmetic."""
        if not flat.size:
            return np.zeros(0, dtype=np.float32)
        rows = int(flat.max()) + 1
        if self._scratch.shape[0] < rows:
            self._scratch = np.empty((max(rows, 2 * self._scratch.shape[0]), FRAME_SAMPLES), dtype=np.float32)
        frames = self._scratch[:rows]
        np.copyto(frames, out[:rows], casting="unsafe")
        energy: npt.NDArray[np.float32] = np.einsum("ij,ij->i", frames, frames)[flat]
        return energy

    def reset(self, row: int) -> None:
        """A row was added or removed: silent, inactive, not a talker."""
        self.level[row] = FLOOR_DB
        self.hang[row] = 0
        self.talking[row] = False

    def forget(self, index: int) -> None:
        """Mix index `index` is no longer a conference (or no longer exists)."""
        self.dominant[index] = -1
        self.changed_at[index] = -(1 << 30)

    def select(
        self,
        indices: npt.NDArray[np.intp],
        members: npt.NDArray[np.intp],
        out: npt.NDArray[np.int32],
        muted: npt.NDArray[np.bool_] | None,
        row_mix: npt.NDArray[np.int64],
    ) -> Selection:
        """Update the levels of `members` (`(mixes, size)` rows of the mixes `indices`, ascending per mix) from
        this tick's OUTPUT, pick each mix's talkers and dominant speaker. `row_mix`: each row's mix index."""
        cfg = self.config
        count, size = members.shape
        flat = members.ravel()
        db = 10.0 * np.log10(self._energy(out, flat) / FRAME_SAMPLES + 1e-3) - _FULL_SCALE_DB
        level = self.level[flat]
        level = np.where(db > level, level + 0.5 * (db - level), np.maximum(db, level - cfg.release_db))
        hang = np.where(db > cfg.threshold_db, cfg.hangover_ticks, np.maximum(self.hang[flat] - 1, 0))
        if muted is not None:
            silenced = muted[flat]
            level[silenced] = FLOOR_DB
            hang[silenced] = 0
        self.level[flat] = level
        self.hang[flat] = hang
        active = (hang > 0).reshape(count, size)
        level = level.reshape(count, size)

        talk = self.talking[flat].reshape(count, size) & active  # talkers still active stay
        ranked = np.where(active & ~talk, level, -np.inf)  # the candidates
        need = cfg.talkers - talk.sum(axis=1)
        order = np.argsort(-ranked, axis=1)
        rank = np.argsort(order, axis=1)
        talk |= (rank < need[:, None]) & np.isfinite(ranked)  # free places: the loudest candidates
        every = np.arange(count)
        full = need <= 0
        if full.any():  # a much louder candidate replaces the quietest talker
            best = order[:, 0]
            best_level = ranked[every, best]
            weak = np.where(talk, level, np.inf)
            weakest = np.argmin(weak, axis=1)
            swap = full & (best_level > weak[every, weakest] + cfg.switch_margin_db)
            if swap.any():
                talk[every[swap], weakest[swap]] = False
                talk[every[swap], best[swap]] = True
        self.talking[flat] = talk.ravel()

        changed = self._dominant(indices, members, talk, level, row_mix)
        keep = min(cfg.talkers, size)
        pos = np.argsort(~talk, axis=1, kind="stable")[:, :keep]
        return Selection(members[every[:, None], pos], talk[every[:, None], pos], changed)

    def _dominant(
        self,
        indices: npt.NDArray[np.intp],
        members: npt.NDArray[np.intp],
        talk: npt.NDArray[np.bool_],
        level: npt.NDArray[np.float32],
        row_mix: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        cfg = self.config
        every = np.arange(indices.size)
        current = self.dominant[indices]
        has = current >= 0
        safe = np.where(has, current, 0)
        gone = has & (row_mix[safe] != indices)  # the dominant speaker left the mix
        current = np.where(gone, -1, current)
        has &= ~gone
        heard = np.where(talk, level, -np.inf)
        loudest = np.argmax(heard, axis=1)
        loudest_level = heard[every, loudest]
        candidate = members[every, loudest]
        held = has & (self.tick - self.changed_at[indices] < cfg.dominant_hold_ticks)
        beaten = ~(has & self.talking[safe]) | (loudest_level > self.level[safe] + cfg.switch_margin_db)
        change = np.isfinite(loudest_level) & (candidate != current) & ~held & beaten
        self.dominant[indices] = np.where(change, candidate, current)
        self.changed_at[indices[change]] = self.tick
        result: npt.NDArray[np.bool_] = change | gone
        return result
