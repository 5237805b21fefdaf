"""Who a browser's SIP-over-WebSocket connection speaks for: per-join tickets and the grant a connection holds.

A WebSocket to `/sip/ws` is never open: it carries either a per-join ticket (issued to an application for one
target, redeemed once, short-lived) or a signed-in user's delegated access token (auth/signin.py). Either becomes
a `WebGrant` attached to the connection; an INVITE on that connection may only reach what its grant allows
(`allows`), and the caller identity the bot sees is the grant's, not what the browser wrote in From.

Owns: ticket issue/redeem in one node's memory (pure: `now` is an input; bounded), the `TicketBook` interface (a
cluster keeps tickets in Redis: gateway/webjoin_redis.py, so that any node redeems what another issued), the grant
and its target rule. Must not: do I/O, validate tokens (the edge asks TokenService), or know SIP transactions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["TicketBook", "WebGrant", "WebJoinTickets", "ice_servers", "normalize_target", "turn_credentials"]

MAX_TICKET = 64
"""Longest ticket string looked up (ours are 32 characters); longer ones are refused without a lookup."""


def normalize_target(target: str) -> str:
    """`sip:user@host` in lower case, without port, parameters or display name (how instances are addressed)."""
    text = target.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    text = text.split(";", 1)[0].split("?", 1)[0].lower()
    if text.startswith("sips:"):
        text = "sip:" + text[5:]
    if not text.startswith("sip:") or "@" not in text:
        return ""
    user, _, host = text[4:].partition("@")
    host = host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    return f"sip:{user}@{host}" if user and host else ""


@dataclass(frozen=True, slots=True)
class WebGrant:
    """What one WebSocket connection may do."""

    tenant_id: str
    display_name: str
    target: str | None = None
    """The one SIP address (normalized) a ticket allows; None: any address of `tenant_id` (a signed-in user)."""
    user_id: str | None = None
    """The signed-in user (a delegated token); None: a guest holding a ticket."""
    app_id: str | None = None
    """The application that issued the ticket."""

    def allows(self, target: str) -> bool:
        return self.target is None or normalize_target(target) == self.target


class TicketBook(Protocol):
    """Where per-join tickets live: issued once, redeemed once, within `ttl` seconds."""

    ttl: float

    def issue(self, grant: WebGrant, now: float) -> str: ...

    def redeem(self, ticket: str, now: float) -> WebGrant | None: ...


@dataclass(frozen=True, slots=True)
class _Ticket:
    grant: WebGrant
    expires: float


class WebJoinTickets:
    """Opaque, single-use tickets, kept in memory (this node redeems what it issued), at most `capacity`."""

    def __init__(self, ttl: float = 300.0, capacity: int = 10_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._tickets: dict[str, _Ticket] = {}

    def __len__(self) -> int:
        return len(self._tickets)

    def issue(self, grant: WebGrant, now: float) -> str:
        self._expire(now)
        if len(self._tickets) >= self.capacity:  # the oldest goes: a flood of issues cannot grow memory
            del self._tickets[next(iter(self._tickets))]
        ticket = secrets.token_urlsafe(24)
        self._tickets[ticket] = _Ticket(grant, now + self.ttl)
        return ticket

    def redeem(self, ticket: str, now: float) -> WebGrant | None:
        """The ticket's grant, once; None for an unknown, used or expired ticket."""
        found = self._tickets.pop(ticket, None) if 0 < len(ticket) <= MAX_TICKET else None
        if found is None or found.expires <= now:
            return None
        return found.grant

    def _expire(self, now: float) -> None:
        while self._tickets:  # issued in order with one lifetime: the oldest expire first
            first = next(iter(self._tickets))
            if self._tickets[first].expires > now:
                return
            del self._tickets[first]


def turn_credentials(secret: bytes, now: float, ttl: float, tag: str) -> tuple[str, str]:
    """Time-limited TURN credentials as coturn checks them with `use-auth-secret` (the TURN REST API scheme):
    username "<expiry>:<tag>", password base64(HMAC-SHA1(secret, username))."""
    username = f"{int(now + ttl)}:{tag}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(urls: Sequence[str], secret: bytes | None, now: float, ttl: float, tag: str) -> list[dict[str, Any]]:
    """The RTCPeerConnection `iceServers` for a browser: STUN URLs as they are, TURN URLs with credentials."""
    stun = [u for u in urls if u.startswith(("stun:", "stuns:"))]
    turn = [u for u in urls if u.startswith(("turn:", "turns:"))]
    servers: list[dict[str, Any]] = [{"urls": stun}] if stun else []
    if turn and secret:
        username, credential = turn_credentials(secret, now, ttl, tag)
        servers.append({"urls": turn, "username": username, "credential": credential})
    return servers
