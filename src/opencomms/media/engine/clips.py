"""The clip bank: every distinct prompt clip queued on any leg, stored once, padded and viewed as frames.
Owns the clip arrays, their slots and reference counts; must not know legs, plays or the tick (the player does)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_SAMPLES
from .events import Samples

_N = FRAME_SAMPLES


class ClipBank:
    """The distinct clip arrays queued anywhere, each stored once, zero-padded by one frame so a frame starting
    anywhere in the clip can be read whole. `windows(slot)[p]` is the frame starting at sample p (a strided
    view: gathering frames for many legs copies whole rows). Keyed by the identity of the caller's array (held,
    so the id stays unique) and reference-counted by queued plays."""

    def __init__(self) -> None:
        self._slot_of: dict[int, int] = {}
        self._source: list[Samples | None] = []
        self._padded: list[Samples] = []
        self._windows: list[npt.NDArray[np.int16]] = []
        self._refs: list[int] = []
        self._free: list[int] = []
        self.lengths = np.zeros(16, dtype=np.int64)
        """Samples in each slot's clip (indexed by slot; grows as slots are added)."""

    def __len__(self) -> int:
        return len(self._slot_of)

    def acquire(self, clip: Samples) -> int:
        """The clip's slot, storing it on first use; each call takes one reference."""
        slot = self._slot_of.get(id(clip))
        if slot is not None:
            self._refs[slot] += 1
            return slot
        padded = np.zeros(clip.size + _N, dtype=np.int16)
        padded[: clip.size] = clip
        step = padded.strides[0]
        windows = np.lib.stride_tricks.as_strided(padded, (clip.size + 1, _N), (step, step), writeable=False)
        if self._free:
            slot = self._free.pop()
            self._source[slot], self._padded[slot], self._windows[slot], self._refs[slot] = clip, padded, windows, 1
        else:
            slot = len(self._padded)
            self._source.append(clip)
            self._padded.append(padded)
            self._windows.append(windows)
            self._refs.append(1)
            if slot >= self.lengths.size:
                self.lengths = np.concatenate([self.lengths, np.zeros(self.lengths.size, dtype=np.int64)])
        self.lengths[slot] = clip.size
        self._slot_of[id(clip)] = slot
        return slot

    def release(self, slot: int) -> None:
        """Drop one reference; the slot is freed (and its arrays let go) with the last."""
        self._refs[slot] -= 1
        if self._refs[slot] == 0:
            source = self._source[slot]
            assert source is not None
            del self._slot_of[id(source)]
            self._source[slot] = None
            self._padded[slot] = self._windows[slot] = np.zeros(0, dtype=np.int16)
            self._free.append(slot)

    def padded(self, slot: int) -> Samples:
        return self._padded[slot]

    def windows(self, slot: int) -> npt.NDArray[np.int16]:
        return self._windows[slot]

    @property
    def all_windows(self) -> list[npt.NDArray[np.int16]]:
        """`windows(slot)` of every slot, indexed by slot (a free slot's is empty); read-only use."""
        return self._windows
