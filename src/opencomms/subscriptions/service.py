"""Subscriptions to change notifications: create (after Graph's validation handshake), read, renew, delete, and the
notifications themselves, sent through the node's durable dispatcher when a call record is complete.

The handshake: before a subscription exists, its `notificationUrl` gets `POST ?validationToken=<token>` and must
answer 200 with the token as `text/plain` within `validation_timeout` (10 s, as Graph); otherwise the creator gets
400. The URL is judged by the node's egress policy first (and every connection again), like every callback.
Subscriptions belong to the application that created them: another application (or tenant) sees 404.
An expired subscription gets nothing and is deleted the next time a notification would have gone to it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from opencomms.domain.errors import BadRequest, NotFound, QuotaExceeded
from opencomms.domain.ids import new_id
from opencomms.net.egress import EgressPolicy, refusal
from opencomms.notify.dispatcher import Dispatcher
from opencomms.store.base import Store
from opencomms.subscriptions.model import (
    ALL_RECORDINGS,
    ALL_TRANSCRIPTS,
    CALL_RECORDS,
    KIND,
    Subscription,
    notification,
    parse_create,
    parse_update,
)

__all__ = ["SubscriptionService"]

log = logging.getLogger("opencomms.subscriptions")

MAX_PER_APP = 100
"""Live subscriptions one application may hold (each call record is one notification per subscription)."""

_FAILED = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK and the validation "
    "token as text/plain to the validation request within {timeout:g} seconds."
)


class SubscriptionService:
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        *,
        egress: EgressPolicy | None,
        clock: Callable[[], float] = time.time,
        validation_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.egress = egress
        self.clock = clock
        self.validation_timeout = validation_timeout
        self._subs: dict[str, Subscription] | None = None
        self.sent = 0
        """Notifications handed to the dispatcher."""

    # -- the cache ---------------------------------------------------------------------------------------------
    def _all(self) -> dict[str, Subscription]:
        if self._subs is None:
            self._subs = {key: Subscription.from_doc(doc) for key, doc in self.store.scan(KIND)}
        return self._subs

    def _put(self, sub: Subscription) -> None:
        self.store.put(KIND, sub.id, sub.to_doc())
        self._all()[sub.id] = sub

    def _owned(self, tenant_id: str, app_id: str, sub_id: str) -> Subscription:
        sub = self._all().get(sub_id.strip().lower())
        if sub is None or sub.tenant_id != tenant_id or sub.app_id != app_id or sub.expires_at <= self.clock():
            raise NotFound(f"No subscription with id {sub_id!r}.")
        return sub

    # -- the API -----------------------------------------------------------------------------------------------
    async def create(self, tenant_id: str, app_id: str, body: Any) -> Subscription:
        sub = parse_create(body, sub_id=new_id(), tenant_id=tenant_id, app_id=app_id, now=self.clock())
        if len(self.list(tenant_id, app_id)) >= MAX_PER_APP:
            raise QuotaExceeded(f"An application may hold at most {MAX_PER_APP} subscriptions; delete unused ones.")
        await self.validate(sub.notification_url)
        self._put(sub)
        log.info("subscription created", extra={"subscription_id": sub.id, "app_id": app_id})
        return sub

    def get(self, tenant_id: str, app_id: str, sub_id: str) -> Subscription:
        return self._owned(tenant_id, app_id, sub_id)

    def list(self, tenant_id: str, app_id: str) -> list[Subscription]:
        now = self.clock()
        return sorted(
            (s for s in self._all().values() if s.tenant_id == tenant_id and s.app_id == app_id and s.expires_at > now),
            key=lambda s: s.id,
        )

    async def update(self, tenant_id: str, app_id: str, sub_id: str, body: Any) -> Subscription:
        sub = self._owned(tenant_id, app_id, sub_id)
        renewed = parse_update(sub, body, self.clock())
        if renewed.notification_url != sub.notification_url:
            await self.validate(renewed.notification_url)
        self._put(renewed)
        return renewed

    def delete(self, tenant_id: str, app_id: str, sub_id: str) -> None:
        sub = self._owned(tenant_id, app_id, sub_id)
        self.store.delete(KIND, sub.id)
        self._all().pop(sub.id, None)

    async def validate(self, url: str) -> None:
        """Graph's validation handshake with `url`; BadRequest unless it echoes the token in time."""
        token = secrets.token_urlsafe(24)
        failed = _FAILED.format(timeout=self.validation_timeout)
        try:
            target = url
            kwargs: dict[str, Any] = {"trust_env": False}
            if self.egress is not None:
                target = str(await self.egress.check_url_resolved(url))
                kwargs.update(connector=self.egress.connector(), trace_configs=[self.egress.trace_config()])
            timeout = aiohttp.ClientTimeout(total=self.validation_timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout, **kwargs) as http,
                http.post(
                    target,
                    params={"validationToken": token},
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                    allow_redirects=False,
                ) as resp,
            ):
                text = (await resp.content.read(4096)).decode("utf-8", "replace")
                if resp.status != 200 or text.strip() != token:
                    raise BadRequest(f"{failed} (it answered {resp.status}).")
        except BadRequest:
            raise
        except Exception as exc:
            refused = refusal(exc)
            if refused is not None:
                raise BadRequest(f"'notificationUrl' is not an allowed destination: {refused}.") from None
            if isinstance(exc, TimeoutError | aiohttp.ClientError | OSError | ValueError):
                raise BadRequest(f"{failed} ({type(exc).__name__}).") from None
            raise

    # -- notifications ----------------------------------------------------------------------------------------
    def record_created(self, tenant_id: str, record_id: str) -> None:
        """Notify the tenant's live callRecords subscriptions of a new record (durably, through the dispatcher);
        delete the expired ones. Runs inside the caller's dispatcher transaction when there is one."""
        self._created(tenant_id, CALL_RECORDS, record_id, None, "#microsoft.graph.callRecord")

    def artifact_created(self, tenant_id: str, kind: str, meeting_id: str, artifact_id: str) -> None:
        """A meeting's transcript (`kind` "transcript") or recording is ready: notify the tenant's getAllTranscripts
        (getAllRecordings) subscriptions, with Graph's resource path of the new item."""
        collection, subscribed, odata = (
            ("transcripts", ALL_TRANSCRIPTS, "#microsoft.graph.callTranscript")
            if kind == "transcript"
            else ("recordings", ALL_RECORDINGS, "#microsoft.graph.callRecording")
        )
        resource = f"communications/onlineMeetings('{meeting_id}')/{collection}('{artifact_id}')"
        with self.dispatcher.transaction():
            self._created(tenant_id, subscribed, artifact_id, resource, odata)

    def _created(self, tenant_id: str, subscribed: str, item_id: str, resource: str | None, odata: str) -> None:
        subs = self._all()
        if not subs:
            return
        now = self.clock()
        for sub in list(subs.values()):
            if sub.tenant_id != tenant_id or sub.resource.strip("/") != subscribed:
                continue
            if sub.expires_at <= now:
                self.store.delete(KIND, sub.id)
                subs.pop(sub.id, None)
                continue
            body = orjson.dumps(notification(sub, item_id, resource, odata))
            self.dispatcher.submit(
                order_key=f"subscription:{sub.id}",
                app_id=sub.app_id,
                tenant_id=tenant_id,
                url=sub.notification_url,
                body=body,
            )
            self.sent += 1
