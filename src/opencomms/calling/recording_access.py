"""Throttling of failed recording downloads: token buckets charged only by failures, checked before any work.

A recording download names an id and presents a bearer token; a guesser tries many. Every failed attempt takes
one token from the bucket of its source address and one from the bucket of the recording id it named; while
either bucket is empty, further attempts from that address, or at that id, are refused with a wait (429 +
Retry-After) before the store is even read. Successful downloads cost nothing. Pure: takes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

from opencomms.ratelimit import KeyedTokenBucket, retry_after


@dataclass(frozen=True, slots=True)
class FailureLimits:
    burst: float = 10.0
    """Failed attempts a source address (or a recording id) may make at once."""
    per_minute: float = 10.0
    """Failed attempts refilled per minute into each bucket."""
    max_keys: int = 100_000
    """Buckets kept at most (addresses plus ids); the least recently charged are dropped first (they refill)."""

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
        self._buckets = KeyedTokenBucket(limits.per_minute / 60.0, limits.burst, limits.max_keys)

    def wait(self, keys: tuple[str, ...], now: float) -> int | None:
        """Seconds to wait before any of `keys` may fail again (None: go ahead). Takes nothing."""
        waits = [w for w in (self._buckets.wait(key, now) for key in keys) if w is not None]
        return retry_after(max(waits)) if waits else None

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        """Charge one failed attempt to each of `keys`."""
        for key in keys:
            self._buckets.charge(key, now)

    def __len__(self) -> int:
        return len(self._buckets)
