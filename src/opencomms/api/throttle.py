"""Per-application token buckets for request throttling (Graph answers 429 with Retry-After). Pure: takes `now`."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    rate: float = 3333.0
    """Requests per second refilled into each app's bucket (Graph: 50 000 per 15 s per app and tenant)."""
    burst: float = 5000.0
    """Bucket size: how many requests an idle app may send at once."""
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("throttle rate must be a positive number of requests per second")
        if not self.burst >= 1:
            raise ValueError("throttle burst must allow at least one request")


class Throttle:
    def __init__(self, config: ThrottleConfig) -> None:
        self.config = config
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str, now: float) -> int | None:
        """Take one token for `key`. Returns None if allowed, else the seconds to wait (Retry-After)."""
        if not self.config.enabled:
            return None
        tokens, last = self._buckets.get(key, (self.config.burst, now))
        elapsed = max(0.0, now - last)  # a wall clock stepping back must not drain the bucket
        tokens = min(self.config.burst, tokens + elapsed * self.config.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.config.rate))
