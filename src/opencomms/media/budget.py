"""MemoryBudget: one node-wide count of the bytes prompt audio holds outside the prompt cache.

Prompt downloads and decodes in flight (reserved by the PromptLibrary at their upper bound before they start, then
shrunk to the decoded size) and the decoded audio queued media operations hold (MediaService) take bytes from one
budget; a load or hold that would exceed it is refused instead of allocating. The prompt cache has its own LRU
bound (`media.prompt_cache_mb`) beside it. Pure bookkeeping: no I/O, no locks (used from the event loop only).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BudgetStats", "MemoryBudget", "Reservation", "heap_trimmer"]


@dataclass(frozen=True, slots=True)
class BudgetStats:
    held: int
    """Bytes reserved now."""
    peak: int
    """Most bytes ever reserved at once."""
    limit: int
    """The budget (0: unlimited, only counted)."""
    refused: int
    """Reservations refused because they would have exceeded the limit."""


class MemoryBudget:
    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("a memory budget must not be negative (0: unlimited)")
        self.limit = limit
        self.held = 0
        self.peak = 0
        self.refused = 0

    @property
    def stats(self) -> BudgetStats:
        return BudgetStats(self.held, self.peak, self.limit, self.refused)

    def fits(self, nbytes: int, *, share: float = 1.0) -> bool:
        """Whether `nbytes` would fit within `share` of the limit now (nothing reserved)."""
        return not self.limit or self.held + nbytes <= self.limit * share

    def try_take(self, nbytes: int, *, share: float = 1.0) -> bool:
        """Reserve `nbytes` if they fit within `share` of the limit (always, when unlimited); False and nothing
        reserved otherwise."""
        if nbytes < 0:
            raise ValueError("cannot take a negative number of bytes")
        if not self.fits(nbytes, share=share):
            self.refused += 1
            return False
        self.held += nbytes
        self.peak = max(self.peak, self.held)
        return True

    def give_back(self, nbytes: int) -> None:
        self.held = max(0, self.held - nbytes)

    def reserve(self, nbytes: int, *, share: float = 1.0) -> Reservation | None:
        """A reservation of `nbytes` that can be resized (within the same `share`) and released once, or None when
        they do not fit."""
        return Reservation(self, nbytes, share) if self.try_take(nbytes, share=share) else None


class Reservation:
    """Bytes taken from a budget; `release()` is idempotent."""

    __slots__ = ("_budget", "nbytes", "share")

    def __init__(self, budget: MemoryBudget, nbytes: int, share: float = 1.0) -> None:
        self._budget: MemoryBudget | None = budget
        self.nbytes = nbytes
        self.share = share

    def resize(self, nbytes: int) -> bool:
        """Grow or shrink to `nbytes`; False (and unchanged) when growing does not fit or it was released."""
        budget = self._budget
        if budget is None:
            return False
        if nbytes > self.nbytes:
            if not budget.try_take(nbytes - self.nbytes, share=self.share):
                return False
        else:
            budget.give_back(self.nbytes - nbytes)
        self.nbytes = nbytes
        return True

    def detach(self) -> Reservation:
        """Move these bytes to a new reservation (for whoever outlives the current holder); this one holds none."""
        moved = Reservation.__new__(Reservation)
        moved._budget, moved.nbytes, moved.share = self._budget, self.nbytes, self.share
        self._budget, self.nbytes = None, 0
        return moved

    def release(self) -> None:
        if self._budget is not None:
            self._budget.give_back(self.nbytes)
            self._budget = None
            self.nbytes = 0


@functools.cache
def heap_trimmer() -> Callable[[], None] | None:
    """glibc's `malloc_trim(0)`, which hands free heap pages back to the OS (None where there is no glibc).

    Large arrays freed after glibc raised its dynamic mmap threshold stay in the heap: without a trim, audio that
    was released (the budget says 0) still counts in the process's RSS until the heap is reused."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = None if libc is None else libc.malloc_trim
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)

    return run
