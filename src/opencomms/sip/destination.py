"""Where a SIP message goes: a transport, a host (IP literal) and a port, and the RFC 3261 §18.2.2 / RFC 3581 rule
for the address a response goes back to.

Must not: resolve names, open sockets or know about transactions (transports and transactions both use it).
"""

from __future__ import annotations

from dataclasses import dataclass

from opencomms.sip.message import SipRequest

__all__ = ["Destination", "response_destination"]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send: transport ("udp", "tcp", "ws", "wss"), host (IP literal) and port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @classmethod
    def udp(cls, host: str, port: int) -> Destination:
        return cls("udp", host, port)

    @classmethod
    def tcp(cls, host: str, port: int) -> Destination:
        return cls("tcp", host, port)


def response_destination(request: SipRequest, source: Destination) -> Destination:
    """Where responses to `request` go (RFC 3261 §18.2.2, RFC 3581): back over the same connection on a reliable
    transport; on UDP to the source address (the `received` address) and the rport or sent-by port."""
    if source.reliable:
        return source
    via = request.top_via
    port = via.rport or (source.port if via.wants_rport else via.port or 5060)
    return Destination(source.transport, source.host, port)
