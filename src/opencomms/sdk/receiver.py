"""NotificationReceiver: the bot's callback endpoint as a pure ASGI app (serve it with any ASGI server).

Per POST: the bearer token is validated first (401/403 when refused, see `jwks`), then the body is read
(bounded) and parsed; duplicates are dropped (locally, and across workers through `shared_dedupe`, e.g.
RedisCallState); the notifications are queued for the handler (in order per call, see `ordering`) and the node
gets 202 at once, so a slow handler never delays or re-sends deliveries.

Several workers behind one URL: pass `ack_after_handling=True`. The 202 then goes out only once the handler
finished (503 if it raised, so the node retries), and since the node keeps one delivery in flight per call,
a call's notifications are handled in order even when consecutive ones reach different workers. A delivery
is claimed in `shared_dedupe` for `claim_hold` seconds while a worker handles it; a retry meanwhile gets 503
(Retry-After: 1), so if that worker was killed, another one takes the delivery once the claim lapses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import aiohttp

from opencomms.sdk.errors import CallbackAuthError
from opencomms.sdk.jwks import DEFAULT_CALLBACK_ISSUER, CallbackValidator, JwksCache
from opencomms.sdk.notifications import Notification, NotificationError, parse_notifications
from opencomms.sdk.ordering import CallSequencer, Deduper, Handler

log = logging.getLogger("opencomms.sdk")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DELIVERY_HEADER = b"opencomms-delivery-id"


class SharedDedupe(Protocol):
    """Delivery ids claimed across workers (RedisCallState implements it)."""

    async def seen(self, delivery_id: str) -> bool: ...

    async def claim(self, delivery_id: str, *, hold: float = ...) -> str: ...

    async def done(self, delivery_id: str) -> None: ...

    async def forget(self, delivery_id: str) -> None: ...


async def _ignore(_: Notification) -> None:
    return None


class NotificationReceiver:
    """ASGI app receiving the node's commsNotifications for one application (any path, POST only)."""

    def __init__(
        self,
        *,
        app_id: str | Iterable[str],
        jwks_url: str,
        handler: Handler | None = None,
        issuer: str = DEFAULT_CALLBACK_ISSUER,
        tenants: Iterable[str] | None = None,
        max_body: int = 1 << 20,
        session: aiohttp.ClientSession | None = None,
        dedupe: Deduper | None = None,
        shared_dedupe: SharedDedupe | None = None,
        ack_after_handling: bool = False,
        claim_hold: float = 10.0,
    ) -> None:
        self.jwks = JwksCache(jwks_url, session=session)
        self.validator = CallbackValidator(self.jwks, app_id=app_id, issuer=issuer, tenants=tenants)
        self.sequencer = CallSequencer(handler or _ignore, dedupe=dedupe)
        self.max_body = max_body
        self.shared_dedupe = shared_dedupe
        self.ack_after_handling = ack_after_handling
        self.claim_hold = claim_hold
        self._inflight: set[str] = set()
        self.accepted = 0
        """Deliveries answered 202."""
        self.refused = 0
        """Deliveries answered 4xx."""

    @property
    def handler(self) -> Handler:
        return self.sequencer.handler

    @handler.setter
    def handler(self, handler: Handler) -> None:
        self.sequencer.handler = handler

    @property
    def duplicates(self) -> int:
        return self.sequencer.duplicates

    async def join(self) -> None:
        """Wait until every accepted notification has been handled."""
        await self.sequencer.join()

    async def aclose(self) -> None:
        await self.sequencer.close()
        await self.jwks.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, detail = await self._handle(scope, receive)
        if status >= 400:
            self.refused += 1
        else:
            self.accepted += 1
        body = json.dumps({"error": detail}).encode() if detail else b""
        headers = [(b"content-length", str(len(body)).encode()), *self._extra(status)]
        if body:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _extra(status: int) -> list[tuple[bytes, bytes]]:
        if status == 401:
            return [(b"www-authenticate", b'Bearer error="invalid_token"')]
        if status == 405:
            return [(b"allow", b"POST")]
        if status == 503:
            return [(b"retry-after", b"1")]
        return []

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, str]:
        if scope.get("method") != "POST":
            return 405, "POST only"
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        try:
            claims = await self.validator.validate(headers.get(b"authorization", b"").decode("latin-1"))
        except CallbackAuthError as exc:
            log.info("notification refused: %s", exc.reason)
            return exc.status, exc.reason
        body = await self._body(receive)
        if body is None:
            return 413, "body too large"
        delivery_id = headers.get(DELIVERY_HEADER, b"").decode("latin-1")
        try:
            notes = parse_notifications(json.loads(body), delivery_id=delivery_id, tenant_id=claims.get("tid"))
        except (ValueError, NotificationError) as exc:
            return 400, f"not a commsNotifications body: {exc}"[:200]
        if self.ack_after_handling:
            return await self._handle_now(delivery_id, notes)
        if self.sequencer.dedupe.seen(delivery_id) or (
            self.shared_dedupe is not None and delivery_id and await self.shared_dedupe.seen(delivery_id)
        ):
            self.sequencer.duplicates += 1
            return 202, ""
        self.sequencer.submit("", notes)  # deduplicated above
        return 202, ""

    async def _handle_now(self, delivery_id: str, notes: list[Notification]) -> tuple[int, str]:
        """ack_after_handling: handle, then answer (202 done or duplicate, 503 failed or handled elsewhere now)."""
        if delivery_id in self._inflight:
            return 503, "being handled"
        if delivery_id and delivery_id in self.sequencer.dedupe:
            self.sequencer.duplicates += 1
            return 202, ""
        shared = self.shared_dedupe if delivery_id else None
        if shared is not None:
            claim = await shared.claim(delivery_id, hold=self.claim_hold)
            if claim == "done":
                self.sequencer.duplicates += 1
                return 202, ""
            if claim != "new":
                return 503, "being handled by another worker"
        self._inflight.add(delivery_id)
        try:
            for note in notes:
                await self.sequencer.handler(note)
        except Exception:
            log.exception("notification handler failed; asking the node to retry")
            if shared is not None:
                await shared.forget(delivery_id)
            return 503, "handler failed"
        finally:
            self._inflight.discard(delivery_id)
        self.sequencer.dedupe.seen(delivery_id)
        if shared is not None:
            await shared.done(delivery_id)
        return 202, ""

    async def _body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
