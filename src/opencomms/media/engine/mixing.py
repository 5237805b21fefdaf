"""Mixes (conversations): which rows hear which, and the INPUT step that sums the other members' OUTPUT.
Owns the mix of each row, mix ids and the cached topology; must not produce OUTPUT or know what legs do
(the topology and the mixing step are plain functions over arrays)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_SAMPLES

if TYPE_CHECKING:
    from .legs import Leg

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


def topology(mix: npt.NDArray[np.int64]) -> Topology:
    """Group the rows of the prefix by mix (`mix[row]`, -1 for none), then the mixes by size."""
    n = mix.size
    rows = np.flatnonzero(mix >= 0)
    order = np.argsort(mix[rows], kind="stable")
    rows, keys = rows[order], mix[rows][order]
    first = np.ones(rows.size, dtype=np.bool_)
    first[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, rows.size))
    groups: list[npt.NDArray[np.intp]] = []
    pairs = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    covered = 0
    for size in np.unique(sizes).tolist():
        if size < 2:
            continue
        members = rows[starts[sizes == size][:, None] + np.arange(size)]
        covered += members.size
        if size == 2:
            pairs = (members[:, 0].copy(), members[:, 1].copy())
        else:
            groups.append(members)
    low, high = np.minimum(*pairs), np.maximum(*pairs)
    adjacent = covered == n == 2 * low.size and bool(
        (np.sort(low) == np.arange(0, n, 2)).all() and (high - low == 1).all()
    )
    return Topology(pairs, adjacent, groups, covered < n)


Exclusions = list[tuple[int, npt.NDArray[np.int16]]]
"""(row, frame): take `frame` (part of another member's OUTPUT, e.g. its DTMF tone) out of that row's INPUT."""


def mix(
    topo: Topology, out: npt.NDArray[np.int32], inp: npt.NDArray[np.int32], exclude: Exclusions | None = None
) -> None:
    """INPUT of every row: the sum of the other members' OUTPUT, minus the `exclude` frames of its row, clipped
    to int16 range (silence for a row in no mix or alone in one)."""
    if topo.silent:
        inp.fill(0)
    if topo.adjacent_pairs:
        pairs_in, pairs_out = inp.reshape(-1, 2, _N), out.reshape(-1, 2, _N)
        pairs_in[:, 0] = pairs_out[:, 1]
        pairs_in[:, 1] = pairs_out[:, 0]
    elif topo.pairs[0].size:
        a, b = topo.pairs
        inp[a] = out[b]
        inp[b] = out[a]
    for members in topo.groups:
        contributions = out[members]
        totals = contributions.sum(axis=1, dtype=np.int32)
        inp[members] = totals[:, None, :] - contributions
    for row, frame in exclude or ():
        inp[row] -= frame
    np.clip(inp, _INT16_MIN, _INT16_MAX, out=inp)


class Mixes:
    """Mix ids (conversation ids) mapped to small reused integers, each row's mix (`-1`: none) and the topology
    of the prefix, cached until a leg joins, leaves, is added or removed."""

    def __init__(self, capacity: int) -> None:
        self._row_mix = np.full(capacity, -1, dtype=np.int64)
        self._index: dict[str, int] = {}
        self._size: dict[str, int] = {}
        self._members: dict[str, dict[Leg, None]] = {}
        self._free: list[int] = []
        self._topology: Topology | None = None

    def __len__(self) -> int:
        return len(self._index)

    def reset(self, row: int) -> None:
        """A newly added row, in no mix."""
        self._row_mix[row] = -1
        self._topology = None

    def rows_changed(self) -> None:
        """The prefix changed (a row was removed): recompute the topology at the next step."""
        self._topology = None

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
                self._free.append(self._index.pop(leg.mix))
        leg.mix = mix_id
        if mix_id is None:
            self._row_mix[leg.row] = -1
        else:
            if mix_id not in self._index:
                self._index[mix_id] = self._free.pop() if self._free else len(self._index)
                self._size[mix_id] = 0
                self._members[mix_id] = {}
            self._size[mix_id] += 1
            self._members[mix_id][leg] = None
            self._row_mix[leg.row] = self._index[mix_id]
        self._topology = None

    def members(self, mix_id: str) -> list[Leg]:
        """The legs in mix `mix_id`, in joining order (empty for an unknown mix)."""
        return list(self._members.get(mix_id, ()))

    def step(self, out: npt.NDArray[np.int32], inp: npt.NDArray[np.int32], exclude: Exclusions | None = None) -> None:
        """INPUT of the prefix's rows from their OUTPUT (see `mix`)."""
        if self._topology is None:
            self._topology = topology(self._row_mix[: out.shape[0]])
        mix(self._topology, out, inp, exclude)
