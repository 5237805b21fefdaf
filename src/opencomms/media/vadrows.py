"""VadRows: the voice activity detector's per-row numbers (levels, noise floors, onset and hangover counts) for many
channels at once, one 20 ms frame per call.

Owns, per row, the minimum-statistics noise floor (8 sub-window minima and the current sub-window's), the run of
loud frames, the hangover count and the active flag. Must not know slots, configuration objects or results: the
VadBank (vad.py) holds those and hands this class plain numbers and the prefix of rows it processes.

This file is the reference, in numpy (`OPENCOMMS_COMPILED=0`). `vadrows.pyx` is the same class compiled with Cython
by `make compiled` (listed in _compiled/modules.txt): one pass per row with no temporaries, where the ~20 numpy calls
here cost more in per-call overhead than in arithmetic at a few hundred rows. Both give the same decisions, and the
same levels and floors up to the rounding of a float sum of squares and of log10.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .frames import DBFS_FLOOR, FULL_SCALE

__all__ = ["SUBWINDOWS", "VadRows"]

SUBWINDOWS = 8
"""The noise floor is the minimum over this many sub-windows (plus the current one)."""
_MEAN_SQUARE_0DBFS = FULL_SCALE * FULL_SCALE / 2.0


class VadRows:
    """Voice activity state of rows `[:n]` of `capacity` (row r's state only meets row r's frames; `reset(row)` when a
    row is handed to a new channel). Times are in frames: speech needs `onset` loud frames in a row, stays active
    `hangover` frames after the last loud one; the floor's window is `SUBWINDOWS` sub-windows of `sub_len` frames.
    Levels in dBFS: loud is `threshold` above the floor and above `min_speech`; the floor is at least `min_floor`."""

    def __init__(
        self,
        capacity: int,
        onset: int,
        hangover: int,
        sub_len: int,
        threshold: float,
        min_speech: float,
        min_floor: float,
    ) -> None:
        self.capacity = capacity
        self._onset = onset
        self._hangover = hangover
        self._sub_len = sub_len
        self._threshold = np.float32(threshold)
        self._min_speech = np.float32(min_speech)
        self._min_floor = np.float32(min_floor)
        self._frame_count = 0
        self._minima = np.full((SUBWINDOWS, capacity), np.inf, dtype=np.float32)
        self._current_min = np.full(capacity, np.inf, dtype=np.float32)
        self._loud_run = np.zeros(capacity, dtype=np.int32)
        self._hold = np.zeros(capacity, dtype=np.int32)
        self._active = np.zeros(capacity, dtype=np.bool_)

    def reset(self, row: int) -> None:
        """Fresh state for a row (no floor yet, inactive)."""
        self._minima[:, row] = np.inf
        self._current_min[row] = np.inf
        self._loud_run[row] = 0
        self._hold[row] = 0
        self._active[row] = False

    def process(
        self, x: npt.NDArray[np.float32], live: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """One frame `x[r]` for each row r < n = len(x) (`n <= capacity`); rows where not `live[r]` read inactive.
        Returns new arrays of n rows: active, changed (active differs from the previous frame), the frame's level
        (DBFS_FLOOR for digital silence) and the noise floor, in dBFS."""
        n = x.shape[0]
        if n > self.capacity:
            raise ValueError(f"{n} rows for a capacity of {self.capacity}")
        mean_square = np.einsum("ij,ij->i", x, x) / np.float32(x.shape[1] * _MEAN_SQUARE_0DBFS)
        with np.errstate(divide="ignore"):
            level = np.maximum(np.float32(10.0) * np.log10(mean_square), np.float32(DBFS_FLOOR))
        level = level.astype(np.float32, copy=False)

        # Minimum statistics: running minimum of this sub-window, plus the last 8 sub-windows' minima.
        current_min = self._current_min[:n]
        np.minimum(current_min, np.maximum(level, self._min_floor), out=current_min)
        floor = np.minimum(self._minima[:, :n].min(axis=0), current_min)
        self._frame_count += 1
        if self._frame_count % self._sub_len == 0:
            self._minima[:, :n] = np.roll(self._minima[:, :n], 1, axis=0)
            self._minima[0, :n] = current_min
            current_min.fill(np.inf)

        loud = (level > floor + self._threshold) & (level > self._min_speech)
        loud_run = np.where(loud, self._loud_run[:n] + 1, 0)
        onset = loud_run >= self._onset
        was = self._active[:n].copy()
        hold = np.where(onset, self._hangover, np.where(loud & was, self._hangover, self._hold[:n] - 1))
        active = (onset | (was & (hold >= 0))) & live[:n]
        self._loud_run[:n] = loud_run
        self._hold[:n] = np.maximum(hold, -1)
        self._active[:n] = active
        return active, active != was, level, floor
