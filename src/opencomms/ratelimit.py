"""One keyed token bucket for every rate limit of the node: the API throttle per application, SIP admission per
source address, failed recording downloads, failed client secrets, call creates per minute and SIP error answers.

Each key has a bucket of `burst` tokens refilled at `rate` tokens per second. `take` spends tokens if there are
enough and otherwise says how many seconds to wait (retry-after style); `wait` asks the same without spending;
`charge` spends whatever is there (a failure that already happened); `give_back` refunds a reservation.
Memory is bounded: at most `max_keys` buckets are kept, the least recently used forgotten first (a forgotten
bucket comes back full, which is what an idle one would have become anyway).

Pure: time comes in as `now` (any monotonic-ish clock in seconds); a clock stepping back refills nothing and
drains nothing. Must not: sleep, read a clock, or know what its keys mean.
"""

from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["KeyedTokenBucket", "retry_after"]


def retry_after(wait: float) -> int:
    """A wait in seconds as a Retry-After header value: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


class KeyedTokenBucket:
    """Token buckets by key: `burst` tokens each, refilled at `rate` per second, at most `max_keys` kept (LRU)."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        if not rate > 0:
            raise ValueError("a token bucket's rate must be a positive number of tokens per second")
        if not burst > 0:
            raise ValueError("a token bucket's burst must be positive")
        if max_keys < 1:
            raise ValueError("a token bucket must keep at least one key")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at), LRU order

    def level(self, key: str, now: float) -> float:
        """Tokens `key` has at `now` (changes nothing)."""
        state = self._buckets.get(key)
        if state is None:
            return self.burst
        tokens, last = state
        return min(self.burst, tokens + max(0.0, now - last) * self.rate)

    def wait(self, key: str, now: float, cost: float = 1.0) -> float | None:
        """Seconds until `key` has `cost` tokens (None: it has them now). Changes nothing."""
        tokens = self.level(key, now)
        return None if tokens >= cost else (cost - tokens) / self.rate

    def take(self, key: str, now: float, cost: float = 1.0) -> float | None:
        """Spend `cost` tokens of `key` and return None, or spend nothing and return the seconds to wait."""
        tokens = self.level(key, now)
        if tokens >= cost:
            self._store(key, tokens - cost, now)
            return None
        self._store(key, tokens, now)
        return (cost - tokens) / self.rate

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        """`take` as a yes/no."""
        return self.take(key, now, cost) is None

    def charge(self, key: str, now: float, cost: float = 1.0) -> None:
        """Spend `cost` tokens of `key` whatever it has (never below zero): a cost already incurred."""
        self._store(key, max(0.0, self.level(key, now) - cost), now)

    def give_back(self, key: str, cost: float = 1.0) -> None:
        """Refund `cost` tokens to `key` (up to `burst`), e.g. a reservation that turned out free."""
        state = self._buckets.get(key)
        if state is not None:
            self._buckets[key] = (min(self.burst, state[0] + cost), state[1])

    def forget(self, key: str) -> None:
        """Drop `key`'s bucket (it comes back full)."""
        self._buckets.pop(key, None)

    def _store(self, key: str, tokens: float, now: float) -> None:
        buckets = self._buckets
        buckets[key] = (tokens, now)
        buckets.move_to_end(key)
        while len(buckets) > self.max_keys:
            buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets
