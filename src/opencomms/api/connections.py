"""Who holds the node's HTTP connections: counts per source address and in total, the admission rule at accept,
and the counters `/healthz` reports. Pure bookkeeping: no sockets, no clock; the HTTP protocol
(`api/protocol.py`) asks it at accept and tells it at close.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

__all__ = ["ConnectionBook", "HttpCounters", "Refusal", "default_max_connections"]

Refusal = Literal["total", "source"]

MAX_AUTO_CONNECTIONS = 16384
"""Ceiling of the automatic total connection cap (the other half of the descriptors serve RTP, SIP, stores...)."""


def default_max_connections(configured: int, descriptor_limit: int) -> int:
    """The total cap: the configured value, or (0) half the descriptor limit, at most MAX_AUTO_CONNECTIONS."""
    if configured > 0:
        return configured
    return max(16, min(MAX_AUTO_CONNECTIONS, descriptor_limit // 2))


@dataclass(slots=True)
class HttpCounters:
    """What the HTTP limits refused since start (reported in /healthz)."""

    refused_total_cap: int = 0
    refused_per_source: int = 0
    url_too_long: int = 0
    headers_too_large: int = 0
    body_too_large: int = 0
    header_timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class ConnectionBook:
    """Open connections per source address and in total, against their caps (a cap of 0 disables it)."""

    def __init__(self, max_total: int, max_per_source: int) -> None:
        if max_total < 0 or max_per_source < 0:
            raise ValueError("connection caps must not be negative")
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.total = 0
        self._per_source: dict[str, int] = {}

    def admit(self, source: str) -> Refusal | None:
        """Count a new connection from `source`, or say which cap refuses it (then nothing is counted)."""
        if self.max_total and self.total >= self.max_total:
            return "total"
        held = self._per_source.get(source, 0)
        if self.max_per_source and held >= self.max_per_source:
            return "source"
        self._per_source[source] = held + 1
        self.total += 1
        return None

    def release(self, source: str) -> None:
        """Forget one admitted connection from `source` (idempotence is the caller's: release once per admit)."""
        held = self._per_source.get(source, 0)
        if held <= 1:
            self._per_source.pop(source, None)
        else:
            self._per_source[source] = held - 1
        if held:
            self.total -= 1

    def held_by(self, source: str) -> int:
        return self._per_source.get(source, 0)

    @property
    def sources(self) -> int:
        return len(self._per_source)
