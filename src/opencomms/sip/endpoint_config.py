"""The SIP endpoint's configuration and the callback types of its transaction user.

Owns: `EndpointConfig` (addresses, ports, timers, parse limits, TCP bounds, methods and option tags, error-answer
rate) and the hook signatures (`RequestHandler`, `ProvisionalHandler`, `AdmitHook`, `EarlyAdmitHook`).
Must not: hold state or import the asyncio endpoint (only its type, for the handler signature).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opencomms.sip.message import HeaderItems, SipRequest, SipResponse
from opencomms.sip.parser import DEFAULT_LIMITS, ParseLimits
from opencomms.sip.transactions import TimerConfig

if TYPE_CHECKING:
    from opencomms.sip.handles import ServerTransactionHandle

__all__ = [
    "DEFAULT_METHODS",
    "Addr",
    "AdmitHook",
    "EarlyAdmitHook",
    "EndpointConfig",
    "ProvisionalHandler",
    "RequestHandler",
]

Addr = tuple[str, int]
RequestHandler = Callable[["ServerTransactionHandle", SipRequest, Addr], None]
ProvisionalHandler = Callable[[SipResponse], None]
AdmitHook = Callable[[SipRequest, Addr], "tuple[int, HeaderItems] | None"]
"""Asked before a new out-of-dialog INVITE starts a transaction: None lets it in; (status, headers) refuses it
with a stateless answer (RFC 3261 §8.2.7; e.g. 503 + Retry-After under overload): no transaction, no
retransmission, no state, so a flood costs one datagram out per datagram in."""
EarlyAdmitHook = Callable[[str], "tuple[int, HeaderItems] | None"]
"""Asked with the source host before a datagram or frame that starts with `INVITE ` is parsed: a refusal is sent
from the raw bytes (`sip.early`) when the INVITE is a new one, without parsing it (a flood's cheapest path)."""

DEFAULT_METHODS = frozenset(
    {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY", "MESSAGE", "SUBSCRIBE"}
)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """How a `SipEndpoint` listens, times its transactions and bounds hostile input."""

    host: str = "127.0.0.1"
    """Address to bind."""
    udp_port: int | None = 5060
    """UDP port (0: any free port; None: no UDP)."""
    tcp_port: int | None = 5060
    """TCP port (0: any free port; None: no TCP)."""
    advertised_host: str | None = None
    """Host written in Via and Contact (e.g. the public address); default: the bound address."""
    timers: TimerConfig = field(default_factory=TimerConfig)
    limits: ParseLimits = DEFAULT_LIMITS
    trying_delay: float | None = 0.2
    """An INVITE gets 100 Trying after this long if the user has not answered (RFC 3261 §17.2.1)."""
    max_transactions: int = 20_000
    """Beyond this, new requests get a stateless 503."""
    max_tcp_connections: int = 1024
    max_tcp_write_buffer: int = 1 << 20
    tcp_connect_timeout: float = 5.0
    tcp_idle_timeout: float = 300.0
    """Seconds a TCP connection may stay silent (no bytes either way) before it is closed, unless a confirmed
    dialog's peer is that address (0: never)."""
    user_agent: str | None = "opencomms"
    allowed_methods: frozenset[str] = DEFAULT_METHODS
    supported: frozenset[str] = frozenset()
    """Option tags we implement; a request that Requires anything else gets 420 (RFC 3261 §8.2.2.3)."""
    resolve_timeout: float = 2.0
    """Seconds a next hop's host name (Contact, Record-Route, Request-URI, maddr) may take to resolve; beyond,
    `resolve` raises OSError as for an unknown name."""
    error_rate: float = 20.0
    """Stateless error answers per second and source address (beyond: dropped), with `error_burst`."""
    error_burst: float = 40.0
