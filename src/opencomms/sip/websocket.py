"""SIP over WebSocket (RFC 7118) as a transport of the endpoint: the table of open WebSocket connections.

A WebSocket connection is accepted, authenticated and read by the HTTP edge that serves it (gateway/wsedge.py);
it is attached here under its peer address, and from then on it is a transport like TCP: each WebSocket message
is one SIP message (RFC 7118 §5.3, so no stream framing), requests arrive from `Destination("ws", host, port)`
(or "wss"), and whatever the endpoint sends to that destination goes back over the same connection. A browser's
Via and Contact name an unresolvable `*.invalid` host: responses follow the connection (reliable transport), and
in-dialog requests to it go to the dialog's `peer`, never to a resolved Contact.

Owns: the peer -> connection table, its cap, and a `grant` per connection (what its credential allows; the gateway
reads it). Must not: do WebSocket framing or HTTP (the edge does), parse SIP, or raise from `send`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opencomms.sip.destination import Destination

log = logging.getLogger("opencomms.sip.transport")

__all__ = ["WS_TRANSPORTS", "WsConnection", "WsTransport"]

Addr = tuple[str, int]
WS_TRANSPORTS = frozenset({"ws", "wss"})


@dataclass(eq=False, slots=True)
class WsConnection:
    """One attached WebSocket: how to send a text message on it, and what its credential allows."""

    peer: Addr
    transport: str
    send_text: Callable[[str], bool]
    """Queues one message; False when the connection cannot take it (closed, or not reading)."""
    grant: Any = None


class WsTransport:
    """The WebSocket connections of one endpoint. `kind` is "ws"; the edge says per connection whether it is
    "ws" or "wss" (TLS), which is the transport a peer's Via must carry and ours names."""

    kind = "ws"

    def __init__(self, on_message: Callable[[bytes, Destination], None], *, max_connections: int = 1024) -> None:
        self.on_message = on_message
        self.max_connections = max_connections
        self._conns: dict[Addr, WsConnection] = {}
        self.local_addr: Addr = ("0.0.0.0", 0)
        self.open = False
        """Whether the edge serving the WebSockets listens (for /readyz)."""
        self.rejected = 0

    @property
    def listening(self) -> bool:
        return self.open

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def attach(self, connection: WsConnection) -> bool:
        """Register an accepted connection; False (refuse it) when the cap is reached."""
        if len(self._conns) >= self.max_connections and connection.peer not in self._conns:
            self.rejected += 1
            return False
        self._conns[connection.peer] = connection
        return True

    def detach(self, connection: WsConnection) -> None:
        if self._conns.get(connection.peer) is connection:
            del self._conns[connection.peer]

    def connection(self, peer: Addr) -> WsConnection | None:
        return self._conns.get(peer)

    def received(self, connection: WsConnection, data: bytes) -> None:
        try:
            self.on_message(data, Destination(connection.transport, *connection.peer))
        except Exception:
            log.exception("SIP WebSocket message handler failed")

    def send(self, data: bytes, addr: Addr) -> bool:
        conn = self._conns.get(addr)
        if conn is None:
            return False
        try:
            return conn.send_text(data.decode("utf-8", "replace"))
        except Exception:
            log.exception("SIP WebSocket send failed")
            return False
