"""Who holds the node's HTTP connections: counts per source address and in total, the admission rule at accept,
and the counters `/healthz` reports. Pure bookkeeping: no sockets, no clock; the HTTP protocol
(`api/protocol.py`) asks it at accept and tells it at close.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = ["ConnectionBook", "HttpCounters", "Refusal", "default_max_connections", "source_key"]

Refusal = Literal["total", "source"]
C = TypeVar("C")

MAX_AUTO_CONNECTIONS = 16384
"""Ceiling of the automatic total connection cap (the other half of the descriptors serve RTP, SIP, stores...)."""


def default_max_connections(configured: int, descriptor_limit: int) -> int:
    """The total cap: the configured value, or (0) half the descriptor limit, at most MAX_AUTO_CONNECTIONS."""
    if configured > 0:
        return configured
    return max(16, min(MAX_AUTO_CONNECTIONS, descriptor_limit // 2))


def source_key(host: str) -> str:
    """What counts as one source: an IPv4 address, or an IPv6 /64 (one subscriber's prefix: an attacker holding
    one has 2**64 addresses); IPv4-mapped IPv6 counts as its IPv4 address. Anything else is taken as is."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


@dataclass(slots=True)
class HttpCounters:
    """What the HTTP limits refused since start (reported in /healthz)."""

    refused_total_cap: int = 0
    refused_per_source: int = 0
    evicted_for_fairness: int = 0
    url_too_long: int = 0
    headers_too_large: int = 0
    body_too_large: int = 0
    header_timeouts: int = 0
    body_timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class ConnectionBook(Generic[C]):
    """Open connections per source address and in total, against their caps (a cap of 0 disables it).

    When the total cap is reached, a newcomer may take the place of an idle connection of the source that holds
    the most (fair shares: a few busy sources cannot lock everyone else out), if that source holds at least two
    more than the newcomer's.
    """

    def __init__(self, max_total: int, max_per_source: int) -> None:
        if max_total < 0 or max_per_source < 0:
            raise ValueError("connection caps must not be negative")
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.total = 0
        self._per_source: dict[str, dict[C, None]] = {}  # insertion-ordered: oldest first

    def admit(self, source: str, conn: C) -> Refusal | None:
        """Count `conn` from `source`, or say which cap refuses it (then nothing is counted)."""
        held = self._per_source.get(source)
        count = 0 if held is None else len(held)
        if self.max_per_source and count >= self.max_per_source:
            return "source"
        if self.max_total and self.total >= self.max_total:
            return "total"
        if held is None:
            held = self._per_source[source] = {}
        held[conn] = None
        self.total += 1
        return None

    def release(self, source: str, conn: C) -> bool:
        """Forget `conn`; False if it was not counted (released twice, or never admitted)."""
        held = self._per_source.get(source)
        if held is None or conn not in held:
            return False
        del held[conn]
        if not held:
            del self._per_source[source]
        self.total -= 1
        return True

    def victim(self, source: str, idle: Callable[[C], bool]) -> C | None:
        """An idle connection to give up for a newcomer from `source` when the total cap is reached: the oldest
        idle one of the source holding the most, if it holds at least two more than `source`. Not released here."""
        if not self._per_source:
            return None
        biggest = max(self._per_source, key=lambda s: len(self._per_source[s]))
        if len(self._per_source[biggest]) < self.held_by(source) + 2:
            return None
        return next((c for c in self._per_source[biggest] if idle(c)), None)

    def held_by(self, source: str) -> int:
        held = self._per_source.get(source)
        return 0 if held is None else len(held)

    @property
    def sources(self) -> int:
        return len(self._per_source)
