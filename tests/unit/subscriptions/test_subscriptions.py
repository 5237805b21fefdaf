"""Subscriptions without a network: Graph's rules for a callRecords subscription (resource, changeType, lifetime,
clientState), ownership, renewal, and the change notification each live subscription of the tenant gets (none once
expired, and the expired one is deleted)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from opencomms.domain.errors import BadRequest, NotFound
from opencomms.store.memory import MemoryStore
from opencomms.subscriptions import model
from opencomms.subscriptions.service import SubscriptionService

NOW = 1_800_000_000.0


class FakeDispatcher:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def submit(self, **entry: Any) -> None:
        self.sent.append(entry)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield


def body(minutes: float = 60, **extra: Any) -> dict[str, Any]:
    return {
        "changeType": "created",
        "notificationUrl": "https://analytics.example/notify",
        "resource": "/communications/callRecords",
        "expirationDateTime": model.iso(NOW + minutes * 60),
        "clientState": "state-1",
        **extra,
    }


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"resource": "/communications/calls"}, "not supported"),
        ({"changeType": "updated"}, "changeType"),
        ({"changeType": "created,deleted"}, "changeType"),
        ({"notificationUrl": "ftp://x/y"}, "http"),
        ({"clientState": "x" * 129}, "128"),
        ({"expirationDateTime": "tomorrow"}, "ISO 8601"),
    ],
)
def test_bad_subscriptions_are_refused(change: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        model.parse_create(body(**change), sub_id="s", tenant_id="t", app_id="a", now=NOW)


def test_lifetime_is_graphs_for_call_records() -> None:
    ok = model.parse_create(body(minutes=4230), sub_id="s", tenant_id="t", app_id="a", now=NOW)
    assert ok.expires_at == NOW + 4230 * 60 and ok.resource == "/communications/callRecords"
    for minutes in (4231, -1):
        with pytest.raises(BadRequest):
            model.parse_create(body(minutes=minutes), sub_id="s", tenant_id="t", app_id="a", now=NOW)


async def test_notifications_go_to_live_subscriptions_of_the_tenant_only() -> None:
    clock = [NOW]
    dispatcher = FakeDispatcher()
    service = SubscriptionService(MemoryStore(), dispatcher, egress=None, clock=lambda: clock[0])  # type: ignore[arg-type]

    async def no_handshake(url: str) -> None:
        return None

    service.validate = no_handshake  # type: ignore[method-assign]
    mine = await service.create("t1", "app1", body(minutes=10))
    short = await service.create("t1", "app1", body(minutes=1))
    await service.create("t2", "app2", body())
    with pytest.raises(NotFound):
        service.get("t1", "app2", mine.id)  # another application's
    assert [s.id for s in service.list("t1", "app1")] == sorted([mine.id, short.id])

    clock[0] = NOW + 120  # `short` has expired
    service.record_created("t1", "rec-1")
    (sent,) = dispatcher.sent
    assert sent["url"] == "https://analytics.example/notify" and sent["app_id"] == "app1"
    (change,) = orjson.loads(sent["body"])["value"]
    assert change == {
        "subscriptionId": mine.id,
        "clientState": "state-1",
        "changeType": "created",
        "resource": "communications/callRecords/rec-1",
        "subscriptionExpirationDateTime": model.iso(NOW + 600),
        "tenantId": "t1",
        "resourceData": {
            "oDataType": "#microsoft.graph.callRecord",
            "@odata.type": "#microsoft.graph.callRecord",
            "@odata.id": "communications/callRecords/rec-1",
            "id": "rec-1",
        },
    }
    assert service.store.get(model.KIND, short.id) is None  # the expired one was deleted
    with pytest.raises(NotFound):
        service.get("t1", "app1", short.id)

    renewed = await service.update("t1", "app1", mine.id, {"expirationDateTime": model.iso(clock[0] + 4000 * 60)})
    assert renewed.expires_at == clock[0] + 4000 * 60
    clock[0] += 3000 * 60
    dispatcher.sent.clear()
    service.record_created("t1", "rec-2")
    assert len(dispatcher.sent) == 1  # still live thanks to the renewal
    service.delete("t1", "app1", mine.id)
    dispatcher.sent.clear()
    service.record_created("t1", "rec-3")
    assert dispatcher.sent == []


async def test_meeting_transcripts_and_recordings_notify_only_their_own_subscribers() -> None:
    dispatcher = FakeDispatcher()
    service = SubscriptionService(MemoryStore(), dispatcher, egress=None, clock=lambda: NOW)  # type: ignore[arg-type]

    async def no_handshake(url: str) -> None:
        return None

    service.validate = no_handshake  # type: ignore[method-assign]
    transcripts = await service.create("t1", "app1", body(resource="communications/onlineMeetings/getAllTranscripts"))
    assert transcripts.resource == "/communications/onlineMeetings/getAllTranscripts"
    await service.create("t1", "app1", body())  # callRecords: not told of transcripts
    service.artifact_created("t1", "transcript", "m-1", "tr-1")
    service.artifact_created("t1", "recording", "m-1", "rec-1")  # nobody subscribed to recordings
    service.artifact_created("t2", "transcript", "m-2", "tr-2")  # another tenant's
    (sent,) = dispatcher.sent
    (change,) = orjson.loads(sent["body"])["value"]
    assert change["subscriptionId"] == transcripts.id
    assert change["resource"] == "communications/onlineMeetings('m-1')/transcripts('tr-1')"
    assert change["resourceData"]["@odata.type"] == "#microsoft.graph.callTranscript"
    assert change["resourceData"]["id"] == "tr-1"
    dispatcher.sent.clear()
    service.record_created("t1", "r")
    assert len(dispatcher.sent) == 1  # the callRecords subscription only
