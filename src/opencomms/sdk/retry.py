"""Retry policy of the REST client, pure: which answers are retried, and after how long.

429 (throttled) and 503 (unavailable) mean the request was not carried out, so it is safe to repeat any of
them, POSTs included. Retry-After is honoured when present, else an exponential backoff applies; either way
the wait is bounded, and a Retry-After beyond the bound is not waited for at all (the error goes to the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    """Retries after the first attempt (0 disables retrying)."""
    base_delay: float = 0.5
    """Backoff without Retry-After: base_delay * 2**attempt, up to max_delay."""
    max_delay: float = 30.0
    """Longest single wait; a larger Retry-After ends the retries."""
    retry_network_errors: bool = True
    """Also retry connection failures of idempotent requests (GET, DELETE)."""

    def delay(self, attempt: int, status: int | None, retry_after: float | None, *, idempotent: bool) -> float | None:
        """Seconds to wait before retry number `attempt + 1` (attempt counts from 0), or None: do not retry.

        `status` is None for a network error (no answer).
        """
        if attempt >= self.max_retries:
            return None
        if status is None:
            if not (idempotent and self.retry_network_errors):
                return None
        elif status not in RETRYABLE_STATUSES:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_delay else None
        return float(min(self.max_delay, self.base_delay * (2**attempt)))
