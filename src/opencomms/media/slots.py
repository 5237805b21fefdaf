"""Slot bookkeeping for batched processors: a fixed capacity of rows, each either free or in use.

Owns which row of an `(capacity, samples)` batch belongs to a live channel; it must not hold any
signal-processing state itself (the banks reset their own per-row state when a slot is handed out).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BankFullError", "SlotTable"]


class BankFullError(RuntimeError):
    """Every slot of a fixed-capacity bank is in use."""


class SlotTable:
    """Fixed-capacity allocator: `add()` hands out the lowest free row, `remove(row)` frees it.

    Because the lowest free row is always taken, rows in use stay packed at the front and `end` (one past the
    highest row in use) is a tight bound: a batch processor may be handed just the prefix `[:n]` of its rows,
    for any `end <= n <= capacity`.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._active = np.zeros(capacity, dtype=np.bool_)
        self._end = 0

    @property
    def active(self) -> npt.NDArray[np.bool_]:
        """Read-only mask of rows in use."""
        view = self._active.view()
        view.flags.writeable = False
        return view

    @property
    def count(self) -> int:
        """Rows in use."""
        return int(np.count_nonzero(self._active))

    @property
    def end(self) -> int:
        """One past the highest row in use (0 when none is): the shortest prefix holding every live row."""
        return self._end

    def add(self) -> int:
        """Claim the lowest free row; raises BankFullError when none is left."""
        row = int(np.argmin(self._active))  # the first free row, without building the list of all of them
        if self._active[row]:
            raise BankFullError(f"all {self.capacity} slots are in use")
        self._active[row] = True
        self._end = max(self._end, row + 1)
        return row

    def remove(self, row: int) -> None:
        """Free a row; raises KeyError if it is not in use."""
        if not 0 <= row < self.capacity or not self._active[row]:
            raise KeyError(f"slot {row} is not in use")
        self._active[row] = False
        if row + 1 == self._end:
            used = np.flatnonzero(self._active[:row])
            self._end = int(used[-1]) + 1 if used.size else 0

    def check_prefix(self, rows: int) -> None:
        """Raise ValueError unless a batch of `rows` rows covers every row in use (`end <= rows <= capacity`)."""
        if not self._end <= rows <= self.capacity:
            raise ValueError(f"expected between {self._end} and {self.capacity} rows, got {rows}")
