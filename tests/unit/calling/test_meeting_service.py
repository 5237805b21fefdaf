"""LiveMeetingService without HTTP: a gateway's leg (a phone dialling in) joins through `join_external` under the
meeting's lobby settings, an unknown or ended meeting refuses it, and a lobby leg sees only itself."""

from __future__ import annotations

import dataclasses

import pytest

from opencomms.calling.invitations import new_source_id
from opencomms.calling.meetings import InMemoryMeetings, LiveMeetingService, joiner_of
from opencomms.calling.service import CallService
from opencomms.config import MeetingsConfig
from opencomms.directory import Directory
from opencomms.domain import results
from opencomms.domain.calls import CallState
from opencomms.domain.errors import InvalidState, NotFound
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.meeting_rules import JoinerKind
from opencomms.domain.meetings import MeetingInfo
from opencomms.notify.dispatcher import Dispatcher
from opencomms.store import MemoryStore

NOW = 1_000_000.0


def phone(n: int) -> LegSpec:
    identity = {"phone": {"id": f"+1555000{n:04d}"}}
    return LegSpec(f"leg-{n}", LegKind.SIP, f"p-{n}", new_source_id(), identity, external=f"sip-{n}")


@pytest.fixture
def setup() -> tuple[CallService, LiveMeetingService, InMemoryMeetings, MeetingInfo]:
    store = MemoryStore()
    calls = CallService(store, Directory(store), Dispatcher(store, sign=lambda a, t: "token"), clock=lambda: NOW)
    info = MeetingInfo("m1", "t1", "org", "Org", "19:m1@thread.v2", end=NOW + 60)
    lookup = InMemoryMeetings([info])
    meetings = LiveMeetingService(calls, lookup, MeetingsConfig(end_grace=30), clock=lambda: NOW)
    return calls, meetings, lookup, info


async def test_a_phone_waits_in_the_lobby_unless_dial_in_bypass(setup: tuple) -> None:
    calls, meetings, lookup, info = setup
    await meetings.join_external("m1", phone(1))
    conv = await calls.conversation("m1")
    assert conv is not None and conv.leg("leg-1").in_lobby and conv.leg("leg-1").state is CallState.ESTABLISHING
    assert [p.id for p in conv.participants_for("leg-1")] == ["p-1"]
    lookup.add(dataclasses.replace(info, dial_in_bypass=True))
    await meetings.join_external("m1", phone(2))
    assert conv.leg("leg-2").state is CallState.ESTABLISHED
    assert conv.next_deadline() is not None and conv.meeting is not None and conv.meeting.ends_at == NOW + 90


async def test_unknown_or_ended_meetings_refuse_a_phone(setup: tuple) -> None:
    calls, meetings, lookup, info = setup
    with pytest.raises(NotFound):
        await meetings.join_external("nope", phone(1))
    lookup.add(dataclasses.replace(info, end=NOW - 31))
    with pytest.raises(InvalidState):
        await meetings.join_external("m1", phone(1))
    assert calls.active_conversations == 0


async def test_end_meeting_and_meeting_changed_reach_the_live_conversation(setup: tuple) -> None:
    calls, meetings, lookup, info = setup
    await meetings.end_meeting("m1", results.ENDED_BY_DELETE)  # not live: nothing happens
    lookup.add(dataclasses.replace(info, dial_in_bypass=True))
    await meetings.join_external("m1", phone(1))
    await meetings.meeting_changed(dataclasses.replace(info, end=NOW + 600))
    conv = await calls.conversation("m1")
    assert conv is not None and conv.meeting is not None and conv.meeting.ends_at == NOW + 630
    await meetings.end_meeting("m1", results.ENDED_BY_DELETE)
    assert await calls.conversation("m1") is None and calls.active_calls == 0


def test_a_leg_is_the_joiner_it_joined_as() -> None:
    user = {"user": {"id": "u1"}}
    assert joiner_of(LegKind.BOT, "member", {}) == (JoinerKind.MEMBER, "")
    assert joiner_of(LegKind.BOT, "guest", {}) == (JoinerKind.GUEST, "")
    assert joiner_of(LegKind.SIP, "phone", {"user": {"id": "sip:x@y"}}) == (JoinerKind.PHONE, "")  # dialled in
    assert joiner_of(LegKind.SIP, "user", user) == (JoinerKind.USER, "u1")
    assert joiner_of(LegKind.SIP, "", user) == (JoinerKind.GUEST, "")  # unknown: the strictest
