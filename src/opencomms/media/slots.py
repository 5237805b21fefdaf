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
    """Fixed-capacity allocator: `add()` hands out the lowest free row, `remove(row)` frees it."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._active = np.zeros(capacity, dtype=np.bool_)

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

    def add(self) -> int:
        """Claim the lowest free row; raises BankFullError when none is left."""
        free = np.flatnonzero(~self._active)
        if free.size == 0:
            raise BankFullError(f"all {self.capacity} slots are in use")
        row = int(free[0])
        self._active[row] = True
        return row

    def remove(self, row: int) -> None:
        """Free a row; raises KeyError if it is not in use."""
        if not 0 <= row < self.capacity or not self._active[row]:
            raise KeyError(f"slot {row} is not in use")
        self._active[row] = False
