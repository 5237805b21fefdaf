"""Per-application token buckets for request throttling (Graph answers 429 with Retry-After). Pure: takes `now`."""

from __future__ import annotations

from dataclasses import dataclass

from opencomms.ratelimit import KeyedTokenBucket, retry_after


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    rate: float = 3333.0
    """Requests per second refilled into each app's bucket (Graph: 50 000 per 15 s per app and tenant)."""
    burst: float = 5000.0
    """Bucket size: how many requests an idle app may send at once."""
    enabled: bool = True
    """False: no throttling at all."""
    max_apps: int = 65536
    """Applications whose bucket is remembered (the least recently seen are forgotten first: they refill)."""

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("throttle rate must be a positive number of requests per second")
        if not self.burst >= 1:
            raise ValueError("throttle burst must allow at least one request")
        if self.max_apps < 1:
            raise ValueError("throttle max_apps must be at least 1")


class Throttle:
    def __init__(self, config: ThrottleConfig) -> None:
        self.config = config
        self._buckets = KeyedTokenBucket(config.rate, config.burst, config.max_apps)

    def check(self, key: str, now: float) -> int | None:
        """Take one token for `key`. Returns None if allowed, else the seconds to wait (Retry-After)."""
        if not self.config.enabled:
            return None
        wait = self._buckets.take(key, now)
        return None if wait is None else retry_after(wait)
