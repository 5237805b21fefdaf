"""Admission of new inbound SIP calls: an overloaded node answers 503 with Retry-After instead of growing.

Two rules, checked for every INVITE that would start a call, before any port, leg or notification exists:
the node's concurrent SIP calls stay below `max_calls`, and each source address may start at most
`rate_per_source` calls per second (token bucket, `burst_per_source` at once), so one flooding peer cannot take
the capacity of every other. The refusal says when to come back (RFC 3261 §21.5.4, Retry-After in seconds).
Pure: time comes in as `now`; memory is bounded (an LRU of `max_sources` buckets).
Must not: answer SIP itself, or know about calls beyond the count it is given.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

__all__ = ["Admission", "AdmissionConfig", "Refusal", "RefusalReason"]


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    max_calls: int = 1000
    """Concurrent SIP calls (ringing or answered) beyond which new ones are refused."""
    rate_per_source: float = 500.0
    """New calls per second one source address may start, sustained (0: no per-source limit)."""
    burst_per_source: float = 1000.0
    """New calls one source address may start at once (the bucket's size)."""
    full_retry_after: int = 5
    """Retry-After, in seconds, when the node is full."""
    max_retry_after: int = 60
    """Upper bound of any Retry-After."""
    max_sources: int = 4096
    """Source addresses remembered (least recently seen are forgotten first: they refill anyway)."""

    def __post_init__(self) -> None:
        if self.max_calls < 0 or self.rate_per_source < 0 or self.max_sources < 1:
            raise ValueError("max_calls and rate_per_source must be >= 0, max_sources >= 1")
        if self.rate_per_source and self.burst_per_source < 1:
            raise ValueError("burst_per_source must be >= 1 when rate_per_source is set")
        if not 1 <= self.full_retry_after <= self.max_retry_after:
            raise ValueError("need 1 <= full_retry_after <= max_retry_after")


class RefusalReason(Enum):
    FULL = "full"
    """The node has `max_calls` calls."""
    RATE = "rate"
    """The source started calls faster than `rate_per_source` allows."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer 503 Service Unavailable with `Retry-After: retry_after`."""

    reason: RefusalReason
    retry_after: int
    status: int = 503

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("Retry-After", str(self.retry_after))]


class Admission:
    """Decides whether a new call from `source` may start now. `stats` counts admitted and refused calls."""

    def __init__(self, config: AdmissionConfig | None = None) -> None:
        self.config = config or AdmissionConfig()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (tokens, last seen)
        self.stats: dict[str, int] = {"admitted": 0, "refused_full": 0, "refused_rate": 0}

    def admit(self, source: str, active_calls: int, now: float) -> Refusal | None:
        """None to let the call in (it then takes one token of `source`), else the refusal to answer."""
        cfg = self.config
        if active_calls >= cfg.max_calls:
            self.stats["refused_full"] += 1
            return Refusal(RefusalReason.FULL, cfg.full_retry_after)
        if cfg.rate_per_source > 0:
            tokens, last = self._buckets.pop(source, (cfg.burst_per_source, now))
            tokens = min(cfg.burst_per_source, tokens + max(0.0, now - last) * cfg.rate_per_source)
            if tokens < 1.0:
                self._remember(source, tokens, now)
                self.stats["refused_rate"] += 1
                wait = math.ceil((1.0 - tokens) / cfg.rate_per_source)
                return Refusal(RefusalReason.RATE, min(cfg.max_retry_after, max(1, wait)))
            self._remember(source, tokens - 1.0, now)
        self.stats["admitted"] += 1
        return None

    def _remember(self, source: str, tokens: float, now: float) -> None:
        self._buckets[source] = (tokens, now)
        while len(self._buckets) > self.config.max_sources:
            self._buckets.popitem(last=False)

    @property
    def sources(self) -> int:
        """Source addresses currently remembered."""
        return len(self._buckets)
