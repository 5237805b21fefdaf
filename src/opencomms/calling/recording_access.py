"""Throttling of failed recording downloads: token buckets charged only by failures, checked before any work.

A recording download names an id and presents a bearer token; a guesser tries many. Every failed attempt takes
one token from the bucket of its source address and one from the bucket of the recording id it named; while
either bucket is empty, further attempts from that address, or at that id, are refused with a wait (429 +
Retry-After) before the store is even read. Successful downloads cost nothing. Pure: takes `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FailureLimits:
    burst: float = 10.0
    """Failed attempts a source address (or a recording id) may make at once."""
    per_minute: float = 10.0
    """Failed attempts refilled per minute into each bucket."""
    max_keys: int = 100_000
    """Buckets kept at most (addresses plus ids); full buckets are dropped first, then the oldest."""

    def __post_init__(self) -> None:
        if not self.burst >= 1:
            raise ValueError("the failure burst must allow at least one attempt")
        if not self.per_minute > 0:
            raise ValueError("the failure refill rate must be a positive number per minute")
        if self.max_keys < 1:
            raise ValueError("max_keys must be at least 1")


class FailureLimiter:
    def __init__(self, limits: FailureLimits = FailureLimits()) -> None:
        self.limits = limits
        self._rate = limits.per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.limits.burst, now))
        return min(self.limits.burst, tokens + max(0.0, now - last) * self._rate)

    def wait(self, keys: tuple[str, ...], now: float) -> int | None:
        """Seconds to wait before any of `keys` may fail again (None: go ahead). Takes nothing."""
        worst = None
        for key in keys:
            level = self._level(key, now)
            if level < 1.0:
                seconds = max(1, math.ceil((1.0 - level) / self._rate))
                worst = seconds if worst is None else max(worst, seconds)
        return worst

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        """Charge one failed attempt to each of `keys`."""
        for key in keys:
            level = self._level(key, now)
            self._buckets.pop(key, None)  # re-inserted last: dict order is the eviction order
            self._buckets[key] = (max(0.0, level - 1.0), now)
        if len(self._buckets) > self.limits.max_keys:
            self._evict(now)

    def _evict(self, now: float) -> None:
        for key in [k for k in self._buckets if self._level(k, now) >= self.limits.burst]:
            del self._buckets[key]
        excess = len(self._buckets) - self.limits.max_keys
        for key in list(self._buckets)[: max(0, excess)]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
