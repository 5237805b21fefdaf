"""Retry policy for notification delivery: classify an attempt's result and compute the next attempt time.

Pure functions of their inputs (status, attempts, `now`, a random draw): no I/O, no clock, no logging.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


class Outcome(enum.Enum):
    """What the dispatcher does after one HTTP attempt."""

    DELIVERED = "delivered"
    """Any 2xx: the bot has the notification."""
    REDIRECT = "redirect"
    """301/302/307/308 with a Location: re-POST the same body there."""
    RETRY = "retry"
    """Timeout, connection error, 5xx, 408, 429: try again later, keeping the call's order."""
    DROP = "drop"
    """Any other 4xx (401/403 too), a 3xx without Location, anything else: retrying will not help."""


_REDIRECT_STATUSES = frozenset({301, 302, 307, 308})
_RETRY_4XX = frozenset({408, 429})


def classify(status: int | None, has_location: bool) -> Outcome:
    """Classify one attempt. `status` is None when no response arrived (network error or timeout)."""
    if status is None:
        return Outcome.RETRY
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in _REDIRECT_STATUSES:
        return Outcome.REDIRECT if has_location else Outcome.DROP
    if 500 <= status < 600 or status in _RETRY_4XX:
        return Outcome.RETRY
    # 303 (would turn the POST into a GET), other 3xx, other 4xx, 1xx and nonsense statuses.
    return Outcome.DROP


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); None if absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; be tolerant of a missing zone
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by age. All durations are seconds."""

    initial_delay: float = 0.5
    """Delay after the first failed attempt."""
    multiplier: float = 2.0
    """Growth factor of the delay per further failed attempt."""
    max_delay: float = 60.0
    """Upper bound of the computed backoff (a bot's Retry-After may ask for longer)."""
    max_attempts: int = 12
    """Give up once this many attempts have failed (the first attempt counts)."""
    max_age: float = 3600.0
    """Give up on a failed attempt made this long after the notification was created."""
    jitter: float = 0.2
    """Fraction of the delay taken off at random (0 = none), so that retries of many calls spread out."""

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_age < 0:
            raise ValueError("delays and max_age must be non-negative")
        if self.multiplier < 1.0:
            raise ValueError("multiplier must be >= 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")

    def next_delay(self, attempts: int, *, retry_after: float | None, rand: float) -> float:
        """Delay before the next attempt, after `attempts` (>= 1) failed attempts.

        `rand` is a uniform draw in [0, 1) supplied by the caller. The result is
        `min(max_delay, initial_delay * multiplier**(attempts-1)) * (1 - jitter*rand)`, raised to
        `retry_after` if the bot sent one (itself capped at `max_age`, so a silly header cannot park a call).
        """
        try:
            grown = self.initial_delay * self.multiplier ** max(attempts - 1, 0)
        except OverflowError:
            grown = math.inf
        base = min(self.max_delay, grown)
        delay = base * (1.0 - self.jitter * rand)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_age))
        return max(delay, 0.0)

    def should_give_up(self, attempts: int, created_at: float, now: float) -> bool:
        """True once `attempts` failed attempts exhaust the policy or the notification is max_age old."""
        return attempts >= self.max_attempts or now - created_at >= self.max_age
