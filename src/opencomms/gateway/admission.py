"""Admission of new inbound SIP calls: an overloaded node answers 503 with Retry-After instead of growing, and one
flooding source cannot take the capacity every other caller needs.

Rules, checked in this order for every INVITE that would start a call, before any port, leg or notification:
1. FULL: the node's concurrent calls (plus admitted calls not started yet) stay below `max_calls`.
2. SHARE: one source address holds at most `source_share` of `max_calls` (ringing and answered calls together).
3. RINGING: one source holds at most `ringing_share` of `max_calls` ringing calls: calls to a bot that never
   answers count against the source that made them until they end, so 100 INVITE/s to a silent bot fill that
   source's share, not the node.
4. RESERVED: the last `reserved_share` of `max_calls` is kept for quiet sources, those holding fewer than
   `quiet_source_calls` calls: however many sources flood, a quiet caller still finds room.
5. RATE: each source may start at most `rate_per_source` calls per second (token bucket of `burst_per_source`).
A refusal says when to come back (RFC 3261 §21.5.4, Retry-After in seconds).

The caller tells the policy what became of an admitted call: `started` (a call now exists and rings), `answered`,
`ended`, or `abandoned` (refused later, e.g. 404); an admitted call never reported either way stops counting
after `pending_ttl` seconds. Pure: time comes in as `now`; memory is bounded (an LRU of `max_sources` buckets,
plus one entry per source that holds calls).
Must not: answer SIP itself, or know about calls beyond the counts it is given and told.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from opencomms.ratelimit import KeyedTokenBucket, retry_after

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
    """Retry-After, in seconds, when the node (or the source's share of it) is full."""
    max_retry_after: int = 60
    """Upper bound of any Retry-After."""
    max_sources: int = 4096
    """Source addresses whose rate bucket is remembered (least recently seen are forgotten first: they refill)."""
    source_share: float = 0.5
    """Largest fraction of max_calls one source address may hold (1.0: no per-source cap, e.g. one trunk)."""
    ringing_share: float = 0.25
    """Largest fraction of max_calls one source address may hold ringing (not answered yet)."""
    reserved_share: float = 0.1
    """Fraction of max_calls only quiet sources (fewer than quiet_source_calls calls) may take."""
    quiet_source_calls: int = 8
    """A source holding fewer calls than this is quiet: it may use the reserved capacity."""
    pending_ttl: float = 5.0
    """Seconds an admitted call counts against its source before it is reported started or abandoned."""

    def __post_init__(self) -> None:
        if self.max_calls < 0 or self.rate_per_source < 0 or self.max_sources < 1:
            raise ValueError("max_calls and rate_per_source must be >= 0, max_sources >= 1")
        if self.rate_per_source and self.burst_per_source < 1:
            raise ValueError("burst_per_source must be >= 1 when rate_per_source is set")
        if not 1 <= self.full_retry_after <= self.max_retry_after:
            raise ValueError("need 1 <= full_retry_after <= max_retry_after")
        if not (0 < self.source_share <= 1 and 0 < self.ringing_share <= 1 and 0 <= self.reserved_share < 1):
            raise ValueError("need 0 < source_share <= 1, 0 < ringing_share <= 1 and 0 <= reserved_share < 1")
        if self.quiet_source_calls < 0 or self.pending_ttl <= 0:
            raise ValueError("need quiet_source_calls >= 0 and pending_ttl > 0")

    @property
    def source_cap(self) -> int:
        """Calls one source may hold."""
        return max(1, math.floor(self.max_calls * self.source_share))

    @property
    def ringing_cap(self) -> int:
        """Ringing calls one source may hold."""
        return max(1, math.floor(self.max_calls * self.ringing_share))

    @property
    def reserved(self) -> int:
        """Calls kept for quiet sources."""
        return math.ceil(self.max_calls * self.reserved_share)


class RefusalReason(Enum):
    FULL = "full"
    """The node has `max_calls` calls."""
    SHARE = "share"
    """The source holds its share of the node (all its calls, or its ringing ones)."""
    RESERVED = "reserved"
    """Only the reserved capacity is left, and the source is not quiet."""
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


@dataclass(slots=True)
class _Holding:
    """What one source holds now."""

    ringing: int = 0
    answered: int = 0
    pending: deque[float] = field(default_factory=deque)
    """When each admitted-but-not-started call was admitted (oldest first)."""

    @property
    def calls(self) -> int:
        return self.ringing + self.answered + len(self.pending)

    @property
    def unanswered(self) -> int:
        return self.ringing + len(self.pending)


class Admission:
    """Decides whether a new call from `source` may start now. `stats` counts admitted and refused calls."""

    def __init__(self, config: AdmissionConfig | None = None) -> None:
        self.config = config or AdmissionConfig()
        self._buckets = (
            KeyedTokenBucket(self.config.rate_per_source, self.config.burst_per_source, self.config.max_sources)
            if self.config.rate_per_source > 0
            else None
        )
        self._held: dict[str, _Holding] = {}
        self._pending = 0
        self._swept = 0.0
        self.stats: dict[str, int] = {
            "admitted": 0,
            "refused_full": 0,
            "refused_share": 0,
            "refused_reserved": 0,
            "refused_rate": 0,
        }

    def admit(self, source: str, active_calls: int, now: float) -> Refusal | None:
        """None to let the call in (it then counts against `source` until reported, and takes one of its
        tokens), else the refusal to answer. `active_calls`: the calls the node has (started ones)."""
        cfg = self.config
        if self._pending and now - self._swept > cfg.pending_ttl:
            self._sweep(now)
        held = self._held.get(source)
        if held is not None and held.pending:
            self._expire(source, held, now)
            held = self._held.get(source)
        total = active_calls + self._pending
        if total >= cfg.max_calls:
            return self._refuse(RefusalReason.FULL, cfg.full_retry_after)
        if held is not None and (held.calls >= cfg.source_cap or held.unanswered >= cfg.ringing_cap):
            return self._refuse(RefusalReason.SHARE, cfg.full_retry_after)
        mine = held.calls if held is not None else 0
        if total >= cfg.max_calls - cfg.reserved and mine >= cfg.quiet_source_calls:
            return self._refuse(RefusalReason.RESERVED, cfg.full_retry_after)
        if self._buckets is not None:
            wait = self._buckets.take(source, now)
            if wait is not None:
                return self._refuse(RefusalReason.RATE, min(cfg.max_retry_after, retry_after(wait)))
        if held is None:
            held = self._held[source] = _Holding()
        held.pending.append(now)
        self._pending += 1
        self.stats["admitted"] += 1
        return None

    def would_refuse(self, source: str, active_calls: int, now: float) -> Refusal | None:
        """The refusal `admit` would give a call from `source` now, changing nothing (a cheap early check; None
        also when only `admit` can tell)."""
        cfg = self.config
        if self._pending and now - self._swept > cfg.pending_ttl:
            return None  # let admit() expire stale admissions and decide
        held = self._held.get(source)
        total = active_calls + self._pending
        if total >= cfg.max_calls:
            return Refusal(RefusalReason.FULL, cfg.full_retry_after)
        mine = 0
        if held is not None:
            if held.pending and now - held.pending[0] > cfg.pending_ttl:
                return None
            if held.calls >= cfg.source_cap or held.unanswered >= cfg.ringing_cap:
                return Refusal(RefusalReason.SHARE, cfg.full_retry_after)
            mine = held.calls
        if total >= cfg.max_calls - cfg.reserved and mine >= cfg.quiet_source_calls:
            return Refusal(RefusalReason.RESERVED, cfg.full_retry_after)
        wait = self._buckets.wait(source, now) if self._buckets is not None else None
        if wait is not None:
            return Refusal(RefusalReason.RATE, min(cfg.max_retry_after, retry_after(wait)))
        return None

    # -- what became of an admitted call

    def started(self, source: str) -> None:
        """An admitted call from `source` now exists and rings."""
        held = self._held.get(source)
        if held is None:
            held = self._held[source] = _Holding()
        elif held.pending:
            held.pending.popleft()
            self._pending -= 1
        held.ringing += 1

    def abandoned(self, source: str) -> None:
        """An admitted call from `source` was refused later (no call was started)."""
        held = self._held.get(source)
        if held is not None and held.pending:
            held.pending.popleft()
            self._pending -= 1
            self._forget_if_empty(source, held)

    def answered(self, source: str) -> None:
        """A started call from `source` was answered (it no longer counts as ringing)."""
        held = self._held.get(source)
        if held is not None and held.ringing > 0:
            held.ringing -= 1
            held.answered += 1

    def ended(self, source: str, *, answered: bool) -> None:
        """A started call from `source` ended (`answered`: whether `answered` was reported for it)."""
        held = self._held.get(source)
        if held is None:
            return
        if answered and held.answered > 0:
            held.answered -= 1
        elif not answered and held.ringing > 0:
            held.ringing -= 1
        self._forget_if_empty(source, held)

    def held(self, source: str) -> tuple[int, int]:
        """(ringing or pending, answered) calls `source` holds now."""
        h = self._held.get(source)
        return (0, 0) if h is None else (h.unanswered, h.answered)

    # -- internals

    def _refuse(self, reason: RefusalReason, retry_after: int) -> Refusal:
        self.stats[f"refused_{reason.value}"] += 1
        return Refusal(reason, retry_after)

    def _sweep(self, now: float) -> None:
        """Expire the stale admitted-but-never-reported calls of every source (at most once per pending_ttl)."""
        self._swept = now
        for source, held in list(self._held.items()):
            if held.pending:
                self._expire(source, held, now)

    def _expire(self, source: str, held: _Holding, now: float) -> None:
        limit = now - self.config.pending_ttl
        while held.pending and held.pending[0] < limit:
            held.pending.popleft()
            self._pending -= 1
        self._forget_if_empty(source, held)

    def _forget_if_empty(self, source: str, held: _Holding) -> None:
        if held.calls == 0:
            self._held.pop(source, None)

    @property
    def sources(self) -> int:
        """Source addresses whose rate bucket is remembered."""
        return 0 if self._buckets is None else len(self._buckets)

    @property
    def holders(self) -> int:
        """Source addresses holding calls now."""
        return len(self._held)
