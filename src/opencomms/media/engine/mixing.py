"""Mixes (conversations): which rows hear which, and the INPUT step that sums the other members' OUTPUT.
Owns the mix of each row, mix ids, the cached topology, the talker selection of large mixes (`talkers`) and the
per-tick mix totals others ask for; must not produce OUTPUT or know what legs do (the topology and the mixing
step are plain functions over arrays).

A mix of more than `TalkerConfig.select_above` members is a *conference*: each tick only its K loudest active
members (`talkers.Talkers`) are summed, once; every member hears that sum minus its own contribution (a member
that is not a talker hears the whole sum). Its cost is O(members) array work plus O(K) Python, whatever its size.
A frame fed to a whole mix (a prompt played to a meeting) is added to every member's INPUT."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_SAMPLES
from .kernels import clip16, pairs

if TYPE_CHECKING:
    from .legs import Leg

from .talkers import Selection, TalkerConfig, Talkers

_N = FRAME_SAMPLES
_INT16_MIN, _INT16_MAX = -32768, 32767


@dataclass(frozen=True, slots=True)
class Topology:
    """The cached shape of every conversation: which rows hear which, grouped by mix size so each size is a
    few whole-array operations. Recomputed only after join/leave/add/remove."""

    pairs: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]
    """Mixes of two (the usual call): row a[i] hears b[i] and b[i] hears a[i]."""
    adjacent_pairs: bool
    """Every row of the prefix is in a pair with its neighbour (0-1, 2-3, ...): no gather needed."""
    groups: list[npt.NDArray[np.intp]]
    """Larger mixes, one `(mixes, size)` array of rows per size."""
    silent: bool
    """Some rows are in no mix (or alone in one): they hear silence."""
    conferences: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = dataclass_field(default_factory=list)
    """Mixes of more than `select_above` members, mixed from their talkers, one entry per size: the mix indices
    `(mixes,)` and their rows `(mixes, size)`, ascending per mix."""


def topology(mix: npt.NDArray[np.int64], select_above: int = 1 << 30) -> Topology:
    """Group the rows of the prefix by mix (`mix[row]`, -1 for none), then the mixes by size (those larger than
    `select_above` one by one, as conferences)."""
    n = mix.size
    rows = np.flatnonzero(mix >= 0)
    order = np.argsort(mix[rows], kind="stable")
    rows, keys = rows[order], mix[rows][order]
    first = np.ones(rows.size, dtype=np.bool_)
    first[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, rows.size))
    groups: list[npt.NDArray[np.intp]] = []
    conferences: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = []
    pairs = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    covered = 0
    for size in np.unique(sizes).tolist():
        if size < 2:
            continue
        members = rows[starts[sizes == size][:, None] + np.arange(size)]
        covered += members.size
        if size > select_above:
            conferences.append((keys[starts[sizes == size]].astype(np.intp), members))
            continue
        if size == 2:
            pairs = (members[:, 0].copy(), members[:, 1].copy())
        else:
            groups.append(members)
    low, high = np.minimum(*pairs), np.maximum(*pairs)
    adjacent = covered == n == 2 * low.size and bool(
        (np.sort(low) == np.arange(0, n, 2)).all() and (high - low == 1).all()
    )
    return Topology(pairs, adjacent, groups, covered < n, conferences)


Exclusions = list[tuple[int, int, npt.NDArray[np.int16]]]
"""(row, sender row, frame): take `frame` (part of the sender's OUTPUT, e.g. its DTMF tone) out of that row's INPUT
(when the row hears the sender: in a conference, only while the sender is a talker)."""


def mix(
    topo: Topology, out: npt.NDArray[np.int32], inp: npt.NDArray[np.int32], exclude: Exclusions | None = None
) -> None:
    """INPUT of every row in a pair or small group: the sum of the other members' OUTPUT, minus the `exclude`
    frames of its row, clipped to int16 range (silence for a row in no mix or alone in one). Conferences are
    left to `Mixes.step`; call this directly only for a topology without them."""
    _mix_small(topo, out, inp, clip=False)
    for row, _sender, frame in exclude or ():
        inp[row] -= frame
    clip16(inp)


def _mix_small(topo: Topology, out: npt.NDArray[np.int32], inp: npt.NDArray[np.int32], clip: bool) -> bool:
    """INPUT of the rows in pairs and small groups (silence for the others), the pairs clipped when `clip`; whether
    that left all of `inp` clipped (only pairs, or none)."""
    if topo.silent:
        inp.fill(0)
    if topo.pairs[0].size:
        pairs(out, inp, *topo.pairs, topo.adjacent_pairs, clip)
    for members in topo.groups:
        contributions = out[members]
        totals = contributions.sum(axis=1, dtype=np.int32)
        inp[members] = totals[:, None, :] - contributions
    return clip and not topo.groups


class Mixes:
    """Mix ids (conversation ids) mapped to small reused integers, each row's mix (`-1`: none) and the topology
    of the prefix, cached until a leg joins, leaves, is added or removed."""

    def __init__(self, capacity: int, talkers: TalkerConfig | None = None) -> None:
        self.talkers = Talkers(capacity, talkers)
        self._row_mix = np.full(capacity, -1, dtype=np.int64)
        self._ids: dict[int, str] = {}
        self._index: dict[str, int] = {}
        self._size: dict[str, int] = {}
        self._members: dict[str, dict[Leg, None]] = {}
        self._free: list[int] = []
        self._topology: Topology | None = None
        self._want_count: dict[str, int] = {}
        self._rows_of: dict[str, npt.NDArray[np.intp]] = {}
        self._wanted: dict[str, None] = {}
        self.totals: dict[str, npt.NDArray[np.int32]] = {}
        """This tick's total of each mix in `want` (what a member that is not a talker hears), int16 range."""
        self._selections: list[Selection] = []
        self._where: dict[int, tuple[int, int]] = {}  # conference mix index -> (size group, position)
        self._in_conference = np.zeros(capacity, dtype=np.bool_)
        self._said = np.empty((0, _N), dtype=np.int32)
        self.dominant: list[tuple[str, int]] = []
        """This tick's dominant-speaker changes: (mix id, row or -1 for none)."""

    def __len__(self) -> int:
        return len(self._index)

    def _changed(self) -> None:
        self._topology = None
        self._rows_of.clear()

    def reset(self, row: int) -> None:
        """A newly added row (or one being freed), in no mix."""
        self._row_mix[row] = -1
        self.talkers.reset(row)
        self._changed()

    def want(self, mix_id: str, on: bool) -> None:
        """Whether `totals` must hold this mix's total every tick (a recorder or a listener of the whole mix);
        counted: each `want(.., True)` needs its `want(.., False)`."""
        if on:
            self._wanted[mix_id] = None
            self._want_count[mix_id] = self._want_count.get(mix_id, 0) + 1
        elif mix_id in self._want_count:
            self._want_count[mix_id] -= 1
            if self._want_count[mix_id] <= 0:
                del self._want_count[mix_id]
                self._wanted.pop(mix_id, None)

    def index(self, mix_id: str) -> int:
        """The integer of a mix id (-1 when the mix has no member)."""
        return self._index.get(mix_id, -1)

    def rows_changed(self) -> None:
        """The prefix changed (a row was removed): recompute the topology at the next step."""
        self._changed()

    def join(self, leg: Leg, mix_id: str | None) -> None:
        """Put the leg in mix `mix_id`, leaving its current one; None leaves every mix."""
        if leg.mix == mix_id:
            return
        if leg.mix is not None:
            self._size[leg.mix] -= 1
            self._members[leg.mix].pop(leg, None)
            if self._size[leg.mix] == 0:
                del self._size[leg.mix]
                del self._members[leg.mix]
                index = self._index.pop(leg.mix)
                del self._ids[index]
                self._free.append(index)
        leg.mix = mix_id
        self.talkers.reset(leg.row)  # a talker of another mix starts as a listener
        if mix_id is None:
            self._row_mix[leg.row] = -1
        else:
            if mix_id not in self._index:
                self._index[mix_id] = self._free.pop() if self._free else len(self._index)
                self._ids[self._index[mix_id]] = mix_id
                self._size[mix_id] = 0
                self._members[mix_id] = {}
            self._size[mix_id] += 1
            self._members[mix_id][leg] = None
            self._row_mix[leg.row] = self._index[mix_id]
        self._changed()

    def members(self, mix_id: str) -> list[Leg]:
        """The legs in mix `mix_id`, in joining order (empty for an unknown mix)."""
        return list(self._members.get(mix_id, ()))

    def rows(self, mix_id: str, n: int) -> npt.NDArray[np.intp]:
        """The rows of mix `mix_id` within the prefix `[:n]` (ascending; cached until the topology changes)."""
        rows = self._rows_of.get(mix_id)
        if rows is None:
            index = self._index.get(mix_id, -1)
            rows = np.zeros(0, dtype=np.intp) if index < 0 else np.flatnonzero(self._row_mix[:n] == index)
            self._rows_of[mix_id] = rows
        return rows

    def is_conference(self, mix_id: str | None) -> bool:
        """Whether the mix is mixed from its talkers."""
        return mix_id is not None and self._size.get(mix_id, 0) > self.talkers.config.select_above

    def talkers_of(self, mix_id: str) -> list[int]:
        """The rows mixed as talkers of conference `mix_id` in the last tick (empty for another mix)."""
        where = self._where.get(self._index.get(mix_id, -1))
        if where is None or where[0] >= len(self._selections):
            return []
        sel = self._selections[where[0]]
        rows: list[int] = sel.rows[where[1]][sel.valid[where[1]]].tolist()
        return rows

    def step(
        self,
        out: npt.NDArray[np.int32],
        inp: npt.NDArray[np.int32],
        exclude: Exclusions | None = None,
        *,
        muted: npt.NDArray[np.bool_] | None = None,
        fed: dict[str, npt.NDArray[np.int32]] | None = None,
    ) -> None:
        """INPUT of the prefix's rows from their OUTPUT (see `mix`), conferences from their talkers (`muted`: the
        rows whose OUTPUT must not count as speech), plus the `fed` frame of a mix for each of its members; then
        the totals wanted (`want`), the talkers and the dominant-speaker changes of this tick."""
        n = out.shape[0]
        talkers = self.talkers
        if self._topology is None:
            old = set(self._where)
            self._topology = topology(self._row_mix[:n], talkers.config.select_above)
            self._rows_of.clear()
            self._where = {}
            self._in_conference[:] = False
            for group, (indices, members) in enumerate(self._topology.conferences):
                self._where.update({index: (group, pos) for pos, index in enumerate(indices.tolist())})
                self._in_conference[members.ravel()] = True
            for index in old.difference(self._where):
                talkers.forget(index)
        topo = self._topology
        # The usual tick (two-party calls, nothing added to INPUT afterwards): the pairs are clipped as they are
        # mixed, in one pass, and no clip of the whole INPUT is left to do.
        clipped = _mix_small(topo, out, inp, clip=not exclude and not fed and not topo.conferences)
        self.totals = {}
        self.dominant = []
        talkers.tick += 1
        self._selections = []
        for indices, members in topo.conferences:
            sel = talkers.select(indices, members, out, muted, self._row_mix)
            self._selections.append(sel)
            total = self._conference(sel, members, out, inp)
            for pos in np.flatnonzero(sel.changed).tolist():
                index = int(indices[pos])
                self.dominant.append((self._ids[index], int(talkers.dominant[index])))
            if self._wanted:
                for mix_id in self._wanted:
                    where = self._where.get(self._index.get(mix_id, -1))
                    if where is not None and self._selections[where[0]] is sel:
                        self.totals[mix_id] = total[where[1]]
        for row, sender, tone in exclude or ():
            if not self._in_conference[row] or talkers.talking[sender]:  # a conference hears only its talkers
                inp[row] -= tone
        for mix_id, frame in (fed or {}).items():
            rows = self.rows(mix_id, n)
            if rows.size:
                inp[rows] += frame
        for mix_id in self._wanted:
            if mix_id in self.totals or mix_id not in self._index:
                continue
            self.totals[mix_id] = out[self.rows(mix_id, n)].sum(axis=0, dtype=np.int32)
        for mix_id, total in self.totals.items():
            if fed and mix_id in fed:
                total = total + fed[mix_id]
            self.totals[mix_id] = np.clip(total, _INT16_MIN, _INT16_MAX).astype(np.int32, copy=False)
        if not clipped:
            clip16(inp)

    def _conference(
        self, sel: Selection, members: npt.NDArray[np.intp], out: npt.NDArray[np.int32], inp: npt.NDArray[np.int32]
    ) -> npt.NDArray[np.int32]:
        """Every member hears its mix's talkers' sum minus its own part; returns the sums `(mixes, 320)`. The talkers'
        frames are gathered into a scratch kept between ticks (no large temporary per tick); the places of a mix
        with fewer than K talkers hold zeros, so subtracting them from their (distinct) rows changes nothing."""
        count, keep = sel.rows.shape
        if self._said.shape[0] < count * keep:
            self._said = np.empty((max(count * keep, 2 * self._said.shape[0]), _N), dtype=np.int32)
        said = self._said[: count * keep].reshape(count, keep, _N)
        np.take(out, sel.rows, axis=0, out=said, mode="clip")  # rows are in range: "clip" writes without a copy
        said *= sel.valid[:, :, None]
        total: npt.NDArray[np.int32] = said.sum(axis=1, dtype=np.int32)
        inp[members] = total[:, None, :]
        inp[sel.rows] -= said
        return total
