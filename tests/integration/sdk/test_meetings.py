"""Meetings through the SDK on a real node: a meeting created with `POST /users/{id}/onlineMeetings`, bots joined by
joinWebUrl and by joinMeetingId, roster events (classic and delta), participant control, a deleted meeting."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from opencomms.meetings.service import MEETING_DELETED
from opencomms.sdk import (
    ClientCredentials,
    CommsClient,
    GraphError,
    JoinUrlError,
    Participant,
    RosterChange,
    application_target,
    parse_join_url,
)
from opencomms.sdk.calling import Call, CommunicationsClient
from opencomms.testing.platform import TestPlatform

MEMBER = ("Calls.JoinGroupCall.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All")
GUEST = ("Calls.JoinGroupCallAsGuest.All",)


@pytest.fixture
async def platform() -> AsyncIterator[TestPlatform]:
    async with TestPlatform() as p:
        yield p


async def bot(platform: TestPlatform, name: str, permissions: tuple[str, ...] = MEMBER) -> CommunicationsClient:
    creds = await platform.register_bot(name, permissions=permissions)
    return await platform.calling_client(creds)


def others(call: Call, comms: CommunicationsClient) -> list[Participant]:
    return [p for p in call.participants if p.app_id != comms.app_id]


async def test_create_join_by_url_and_by_id_then_delete_ends_both_legs_alike(platform: TestPlatform) -> None:
    node = platform.node
    user = node.directory.create_user(platform.tenant_id, "Heidi Steen")
    organizer_app = await platform.register_bot("scheduler", permissions=("OnlineMeetings.ReadWrite.All",))
    node.meetings.policies.grant(organizer_app.app_id, user.id)
    creds = ClientCredentials(platform.base_url, platform.tenant_id, organizer_app.app_id, organizer_app.secret)
    async with CommsClient(platform.base_url, creds) as scheduler:
        meeting = await scheduler.create_online_meeting(user.id, subject="Chain", passcode_required=True)
        assert meeting.subject == "Chain" and meeting.organizer_id == user.id and meeting.passcode_required
        link = parse_join_url(meeting.join_web_url)
        assert (link.thread_id, link.organizer_id, link.tenant_id) == (meeting.thread_id, user.id, platform.tenant_id)
        found = await scheduler.find_online_meeting(user.id, join_web_url=meeting.join_web_url)
        assert found is not None and found.id == meeting.id

        a, b = await bot(platform, "by-url"), await bot(platform, "by-id")
        joined: list[str] = []
        a.on_participant_joined(lambda call, p: joined.append(p.app_id or ""))
        by_url = await a.join_meeting(join_web_url=meeting.join_web_url, delta_roster=True)
        await by_url.wait_state("established")
        assert by_url.delta_roster is True and by_url.info is not None and by_url.info.call_chain_id == meeting.id
        with pytest.raises(GraphError) as wrong:
            await b.join_meeting(join_meeting_id=meeting.join_meeting_id or "", passcode="nope")
        assert wrong.value.status == 403
        by_id = await b.join_meeting(join_meeting_id=meeting.join_meeting_id or "", passcode=meeting.passcode)
        await by_id.wait_state("established")
        await by_url.wait_roster(lambda ps: len(ps) == 2)
        await by_id.wait_roster(lambda ps: len(ps) == 2)
        await a.join()
        assert joined == [a.app_id, b.app_id]

        await scheduler.delete_online_meeting(user.id, meeting.id)
        ends = [await c.wait_terminated() for c in (by_url, by_id)]
        assert ends[0] is not None and ends[0] == ends[1]
        assert (ends[0].code, ends[0].subcode) == (MEETING_DELETED.code, MEETING_DELETED.subcode)
        assert node.calls.active_calls == 0
        with pytest.raises(GraphError) as gone:
            await scheduler.get_online_meeting(user.id, meeting.id)
        assert gone.value.status == 404 and gone.value.code == "itemNotFound"


async def test_participant_control_and_roster_events(platform: TestPlatform) -> None:
    meeting = await platform.create_meeting("Megan Bowen", subject="Control")
    host, other = await bot(platform, "host"), await bot(platform, "other")
    changes: list[RosterChange] = []
    left: list[str] = []
    host.on_roster_changed(lambda call, change: changes.append(change))
    host.on_participant_left(lambda call, p: left.append(p.id))

    with pytest.raises(JoinUrlError):
        await host.join_meeting(join_web_url="https://example.com/not-a-meeting")
    a = await host.join_meeting(join_web_url=meeting.join_web_url)  # classic rosters
    await a.wait_state("established")
    b = await other.join_meeting(join_meeting_id=meeting.join_meeting_id, passcode=meeting.passcode, delta_roster=True)
    await b.wait_state("established")
    roster = await a.wait_roster(lambda ps: len(ps) == 2)
    target = others(a, host)[0]
    assert target.app_id == other.app_id and [p.sequence for p in roster] == [1, 2]

    op = await a.mute_participant(target.id)
    assert op.status == "completed"
    await a.wait_roster(lambda ps: any(p.id == target.id and p.server_muted and p.is_muted for p in ps))
    await b.wait_roster(lambda ps: any(p.app_id == other.app_id and p.is_muted for p in ps))  # by delta

    await a.update_recording_status("recording")
    for call in (a, b):
        await call.wait_roster(lambda ps: len(ps) == 2 and all(p.recording_status == "recording" for p in ps))

    started = await a.start_hold_music(target.id)
    assert started.status == "completed" and started.type == "startHoldMusicOperation"
    assert (await a.stop_hold_music(target.id)).status == "completed"

    with pytest.raises(GraphError) as refused:
        await a.remove_participant(target.id)
    assert refused.value.status == 403
    meetings = platform.node.live_meetings
    meetings.config = dataclasses.replace(meetings.config, remove_participant_apps=(host.app_id,))
    await a.remove_participant(target.id)
    end = await b.wait_terminated()
    assert end is not None and (end.code, end.subcode) == (200, 5000)
    await a.wait_roster(lambda ps: len(ps) == 1)
    await host.join()
    assert left == [target.id]
    assert [p.app_id for c in changes for p in c.added] == [host.app_id, other.app_id]
    assert any(p.id == target.id for c in changes for p in c.updated)
    await a.hang_up()


async def test_a_guest_is_admitted_from_the_lobby(platform: TestPlatform) -> None:
    lobby = {"scope": "organization", "isDialInBypassEnabled": False}
    meeting = await platform.create_meeting(subject="Lobby", lobbyBypassSettings=lobby)
    host, guest = await bot(platform, "host"), await bot(platform, "guest", GUEST)
    a = await host.join_meeting(join_web_url=meeting.join_web_url)
    await a.wait_state("established")
    g = await guest.join_meeting(join_meeting_id=meeting.join_meeting_id, passcode=meeting.passcode)
    waiting = await a.wait_roster(lambda ps: any(p.is_in_lobby for p in ps))
    assert g.state == "establishing"
    one = next(p for p in waiting if p.is_in_lobby)
    assert one.kind == "guest"
    op = await a.admit(one.id)
    assert op.type == "admitParticipantsOperation"
    await g.wait_state("established")
    await g.wait_roster(lambda ps: len(ps) == 2 and not any(p.is_in_lobby for p in ps))
    assert (await a.admit_all()).status == "completed"  # nobody left waiting: still fine
    await asyncio.gather(a.hang_up(), g.hang_up())


async def test_a_bot_invites_another_bot_into_the_meeting(platform: TestPlatform) -> None:
    meeting = await platform.create_meeting(subject="Invite")
    host = await bot(platform, "host", (*MEMBER, "Calls.Initiate.All"))
    guest = await bot(platform, "invitee")

    @guest.on_incoming_call
    async def answer(call: Call) -> None:
        await call.answer()

    a = await host.join_meeting(join_web_url=meeting.join_web_url)
    await a.wait_state("established")
    op = await a.invite([application_target(guest.app_id)])
    assert op.type == "inviteParticipantsOperation" and op.status == "completed"
    await a.wait_roster(lambda ps: any(p.app_id == guest.app_id for p in ps))
    with pytest.raises(GraphError) as too_many:
        await a.invite([application_target(guest.app_id)] * 6)
    assert too_many.value.status == 400
    invited = next(iter(guest.calls.values()))
    assert invited.state == "established"
    await a.hang_up()
