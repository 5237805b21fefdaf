"""Per-application token buckets for request throttling (Graph answers 429 with Retry-After). Pure: takes `now`.

Its settings are `opencomms.config.ThrottleConfig` (the node's `[throttle]` section)."""

from __future__ import annotations

from opencomms.config import ThrottleConfig
from opencomms.ratelimit import KeyedTokenBucket, retry_after

__all__ = ["Throttle", "ThrottleConfig"]


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
