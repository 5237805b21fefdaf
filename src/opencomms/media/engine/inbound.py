"""The far-end audio queued for each leg's OUTPUT: a bounded ring of frames per row, moved out one frame a tick.
Owns the ring, its heads, lengths and drop count; must not know legs by id, mixes, players or the clock."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_SAMPLES
from .events import Samples
from .kernels import queue_pop, queue_push

_N = FRAME_SAMPLES


class InboundQueues:
    """`(capacity, frames, 320)` int16 ring: each row's oldest frame goes into OUTPUT at the next tick. A full
    queue drops its oldest frame (counted in `dropped`)."""

    def __init__(self, capacity: int, frames: int) -> None:
        self._frames = frames
        self._ring = np.zeros((capacity, frames, _N), dtype=np.int16)
        self._head = np.zeros(capacity, dtype=np.int64)
        self._qlen = np.zeros(capacity, dtype=np.int64)
        self._queued = 0
        self.dropped = 0
        """Frames dropped because their row's queue was full."""

    def reset(self, row: int) -> None:
        """An empty queue for a newly added row."""
        self._head[row] = 0
        self._qlen[row] = 0

    def clear(self, row: int) -> None:
        """Drop whatever the row (being removed) still has queued."""
        self._queued -= int(self._qlen[row])
        self._qlen[row] = 0

    def push(self, row: int, frame: Samples) -> None:
        """Queue one frame (int16, 320 samples) for the row, dropping its oldest when the queue is full."""
        if frame.shape != (_N,) or frame.dtype != np.int16:
            raise ValueError(f"expected an int16 ({_N},) frame, got {frame.dtype} {frame.shape}")
        q = self._frames
        length, head = int(self._qlen[row]), int(self._head[row])
        self._ring[row, (head + length) % q] = frame
        if length == q:  # wrote over the oldest: the queue now starts one later
            self._head[row] = (head + 1) % q
            self.dropped += 1
        else:
            self._qlen[row] = length + 1
            self._queued += 1

    def push_rows(self, rows: npt.NDArray[np.intp], frames: npt.NDArray[np.int16]) -> None:
        """`push` for distinct rows at once (`frames`: one `(len(rows), 320)` int16 frame per row)."""
        if rows.size == 0:
            return
        dropped = queue_push(self._ring, self._head, self._qlen, rows, frames)
        self.dropped += dropped
        self._queued += rows.size - dropped

    def step(self, out: npt.NDArray[np.int32], n: int) -> bool:
        """Move each queued row's oldest frame into `out` (the prefix `[:n]`); whether any row had one."""
        if not self._queued:
            return False
        self._queued -= queue_pop(self._ring, self._head, self._qlen, out[:n])
        return True
