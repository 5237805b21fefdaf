"""Per-join tickets in Redis, for a cluster: a ticket one node issued is redeemed by whichever node the browser's
WebSocket reaches, exactly once.

Layout (under the store's key prefix): `webticket:<sha256 of the ticket>` -> the grant as JSON, with a Redis expiry
of the ticket's lifetime. Only the digest is a key, so reading Redis (a dump, a replica, MONITOR) yields no usable
ticket. Redeeming is one GETDEL (Redis >= 6.2): atomic, so two nodes racing on one ticket cannot both win.

Owns: the ticket keys, the grant's JSON form, Redis faults on these paths (issue raises StoreUnavailable: the page
gets 503; redeem answers None: the WebSocket is refused, never let in). Must not: decide who may get a ticket
(web/app.py, web/meeting.py) or know WebSockets.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

import orjson
import redis
import redis.exceptions as rx

from opencomms.gateway.webjoin import MAX_TICKET, WebGrant
from opencomms.store import redis_common as rc

__all__ = ["RedisWebJoinTickets"]

log = logging.getLogger("opencomms.webrtc")

_FAULTS = (rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError, rx.ReadOnlyError, OSError)


class RedisWebJoinTickets:
    """The TicketBook of a node whose store is Redis (`target`: the store's URL, prefix and timeout)."""

    def __init__(self, target: rc.RedisTarget, ttl: float = 300.0, *, client: redis.Redis | None = None) -> None:
        rc.check_url(target.url)
        self.ttl = ttl
        self.target = target
        self._where = rc.redacted(target.url)
        self._redis = client or redis.Redis.from_url(
            target.url, socket_timeout=target.timeout, socket_connect_timeout=target.timeout
        )
        self.failures = 0
        """Redis errors on issue or redeem (each one refused a ticket or a WebSocket)."""

    def _key(self, ticket: str) -> str:
        return self.target.key("webticket", hashlib.sha256(ticket.encode()).hexdigest())

    def issue(self, grant: WebGrant, now: float) -> str:
        ticket = secrets.token_urlsafe(24)
        doc = {
            "tenant": grant.tenant_id,
            "name": grant.display_name,
            "target": grant.target,
            "user": grant.user_id,
            "app": grant.app_id,
            "expires": now + self.ttl,
        }
        try:
            self._redis.set(self._key(ticket), orjson.dumps(doc), px=max(1, int(self.ttl * 1000)))
        except _FAULTS as exc:
            self.failures += 1
            raise rc.unavailable(exc, self._where) from exc
        return ticket

    def redeem(self, ticket: str, now: float) -> WebGrant | None:
        """The ticket's grant, once across the cluster; None for an unknown, used or expired ticket, and when Redis
        cannot be asked (the WebSocket is refused, logged)."""
        if not 0 < len(ticket) <= MAX_TICKET:
            return None
        try:
            raw: Any = self._redis.getdel(self._key(ticket))
        except (*_FAULTS, rx.ResponseError) as exc:
            self.failures += 1
            log.warning("web join ticket not redeemed: %s", rc.unavailable(exc, self._where))
            return None
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
            grant = WebGrant(
                str(doc["tenant"]),
                str(doc["name"]),
                _optional(doc.get("target")),
                _optional(doc.get("user")),
                _optional(doc.get("app")),
            )
            expires = float(doc["expires"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("web join ticket with an unreadable grant refused")
            return None
        return grant if expires > now else None

    def close(self) -> None:
        try:
            self._redis.close()
        except Exception as exc:  # closing a client whose server is gone must not stop the node's shutdown
            log.debug("closing the ticket client: %s", exc)


def _optional(value: object) -> str | None:
    return None if value is None else str(value)
