"""Roster deltas of a large meeting share POSTs per webhook (issue 17 (d)): once `roster_batch_min` listening legs
of a meeting share an app and callback URL, a roster change reaches them in POSTs of at most `roster_batch`
notifications, each with its own call's resourceUrl and the same delta; fewer legs get one POST each."""

from __future__ import annotations

from dataclasses import asdict

import orjson

from opencomms.calling.meetings import JOIN, InMemoryMeetings, LiveMeetingService
from opencomms.calling.service import Caller, CallService
from opencomms.calling.views import view_of
from opencomms.config import MeetingsConfig
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.meetings import LobbyScope, MeetingInfo
from opencomms.store import MemoryStore
from opencomms.store.base import OutboxEntry
from opencomms.wire import calls as wire


class Sink:
    def __init__(self) -> None:
        self.entries: list[OutboxEntry] = []

    def release(self, entries: list[OutboxEntry]) -> None:
        self.entries.extend(entries)

    def submit(self, **kwargs: object) -> None:
        raise AssertionError("meeting rosters are written with the unit of work")


def phone(n: int) -> LegSpec:
    identity = {"phone": {"id": f"+1555000{n:04d}"}}
    return LegSpec(f"phone-{n}", LegKind.SIP, f"p-phone-{n}", "9", identity, external=f"sip-{n}")


async def meeting_with_bots(config: MeetingsConfig, bots: int) -> tuple[LiveMeetingService, Sink, MeetingInfo]:
    store = MemoryStore()
    directory = Directory(store)
    tenant = directory.create_tenant("t")
    app, _ = directory.create_app(tenant.id, "bot", permissions=[JOIN], callback_url="http://127.0.0.1:9/bot")
    sink = Sink()
    thread = "19:m1@thread.v2"
    scope = LobbyScope.EVERYONE
    meeting = MeetingInfo("m1", tenant.id, "org", "Org", thread, join_meeting_id="1", passcode="p", lobby_scope=scope)
    meetings = LiveMeetingService(CallService(store, directory, sink), InMemoryMeetings([meeting]), config)
    caller = Caller(tenant.id, app.id, frozenset({JOIN}))
    body = {
        "callbackUri": "http://127.0.0.1:9/bot",
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "meetingInfo": {"joinMeetingId": "1", "passcode": "p"},
        "callOptions": {"isDeltaRosterEnabled": True},
    }
    for _ in range(bots):
        await meetings.join(caller, wire.create_call(body))
    sink.entries.clear()
    return meetings, sink, meeting


def rosters(entries: list[OutboxEntry]) -> list[list[dict[str, object]]]:
    return [orjson.loads(e.body)["value"] for e in entries if b"/participants" in e.body]


async def test_a_change_reaches_many_legs_on_one_webhook_in_shared_posts() -> None:
    meetings, sink, meeting = await meeting_with_bots(MeetingsConfig(roster_batch_min=4, roster_batch=3), 7)
    await meetings.join_external(meeting.id, phone(1))
    posts = [e for e in sink.entries if b"/participants" in e.body]
    assert [len(items) for items in rosters(posts)] == [3, 3, 1]  # 7 legs: 3 POSTs, in one lane
    assert {e.order_key for e in posts} == {f"{meeting.id}/rosters/{posts[0].app_id}/http://127.0.0.1:9/bot"}
    items = [item for value in rosters(posts) for item in value]
    urls = {item["resourceUrl"] for item in items}
    assert len(urls) == 7 and all(str(u).startswith("/communications/calls/") for u in urls)
    assert all(item["resourceData"] == items[0]["resourceData"] for item in items)  # the same delta
    assert [p["id"] for p in items[0]["resourceData"]] == ["p-phone-1"]  # type: ignore[index]


async def test_fewer_legs_than_the_minimum_get_one_post_each() -> None:
    meetings, sink, meeting = await meeting_with_bots(MeetingsConfig(roster_batch_min=8), 7)
    await meetings.join_external(meeting.id, phone(1))
    posts = [e for e in sink.entries if b"/participants" in e.body]
    assert [len(items) for items in rosters(posts)] == [1] * 7
    assert len({e.order_key for e in posts}) == 7  # each on its call's own lane, as before
    off, sink, meeting = await meeting_with_bots(MeetingsConfig(roster_batch_min=0), 20)
    await off.join_external(meeting.id, phone(2))
    assert [len(items) for items in rosters(sink.entries)] == [1] * 20


async def test_leg_views_refreshed_by_changed_legs_match_the_conversation() -> None:
    meetings, _, meeting = await meeting_with_bots(MeetingsConfig(), 5)
    calls = meetings.calls
    bots = list(calls.core.views.calls)
    await meetings.join_external(meeting.id, phone(1))
    await calls.mute(bots[1], True)
    await calls.move_callback(bots[2], "http://127.0.0.1:9/moved")
    await calls.execute(meeting.id, c.KeepAlive(bots[3]), now=5000.0)
    conv = calls.core.ledger.cached(meeting.id)
    assert conv is not None and set(calls.core.views.calls) == set(conv.legs)
    for leg_id, leg in conv.legs.items():  # each view is what a full refresh would make of its leg
        assert asdict(calls.core.views.calls[leg_id]) == asdict(view_of(conv.id, conv.tenant_id, leg))
    view = calls.core.views.calls
    assert view[bots[1]].muted and view[bots[2]].callback_uri == "http://127.0.0.1:9/moved"
    assert view[bots[3]].keepalive_deadline == conv.legs[bots[3]].keepalive_deadline
