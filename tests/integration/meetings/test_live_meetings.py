"""Live meetings on a real node: bots join by chatInfo or by joinMeetingId, rosters (classic and delta) with
sequence numbers, server mute, remove, the lobby, recording status, a deleted meeting, a bot left alone."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from opencomms.domain import results
from opencomms.domain.meetings import LobbyScope, MeetingInfo
from opencomms.testing.harness import Notification
from opencomms.testing.platform import TestBot, TestPlatform

MEMBER = ("Calls.JoinGroupCall.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All")
GUEST = ("Calls.JoinGroupCallAsGuest.All",)
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
CALLS = "/communications/calls"


@pytest.fixture
async def platform() -> AsyncIterator[TestPlatform]:
    async with TestPlatform() as p:
        yield p


def by_chat(meeting: MeetingInfo, **extra: Any) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.call",
        "requestedModalities": ["audio"],
        "mediaConfig": SERVICE_HOSTED,
        "chatInfo": {"@odata.type": "#microsoft.graph.chatInfo", "threadId": meeting.thread_id, "messageId": "0"},
        "meetingInfo": {
            "@odata.type": "#microsoft.graph.organizerMeetingInfo",
            "allowConversationWithoutHost": True,
            "organizer": {"user": {"id": meeting.organizer_id, "tenantId": meeting.tenant_id}},
        },
        "tenantId": meeting.tenant_id,
        **extra,
    }


def by_id(meeting: MeetingInfo, passcode: str | None, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
        "joinMeetingId": meeting.join_meeting_id,
    }
    if passcode is not None:
        info["passcode"] = passcode
    body = {"requestedModalities": ["audio"], "mediaConfig": SERVICE_HOSTED, "meetingInfo": info}
    return {**body, **extra}


async def join(bot: TestBot, body: dict[str, Any], *, state: str = "established") -> str:
    status, call, _ = await bot.client.request("POST", CALLS, body)
    assert status == 201, call
    assert call["state"] == "establishing" and call["targets"] == []
    await bot.webhook.wait_state(call["id"], state)
    return str(call["id"])


def rosters(bot: TestBot, call_id: str) -> list[Notification]:
    return [n for n in bot.webhook.for_call(call_id) if n.resource_url.endswith("/participants")]


async def wait_roster(bot: TestBot, call_id: str, check: Any) -> list[dict[str, Any]]:
    """The first roster notification of `call_id` whose entries satisfy `check`."""
    found = await bot.webhook.wait_for(
        lambda n: n.call_id == call_id and n.resource_url.endswith("/participants") and check(n.resource_data)
    )
    return list(found[0].resource_data)


async def guest_in_lobby(platform: TestPlatform) -> tuple[TestBot, TestBot, str, str, dict[str, Any]]:
    """A member bot in an organization-only meeting and a guest bot waiting in its lobby: (host, guest, host's
    call, guest's call, the guest's roster entry as the host sees it)."""
    meeting = platform.add_meeting(lobby_scope=LobbyScope.ORGANIZATION)
    host = await platform.recording_bot("host", permissions=MEMBER)
    guest = await platform.recording_bot("guest", permissions=GUEST)
    a = await join(host, by_chat(meeting))
    g = await join(guest, by_id(meeting, meeting.passcode), state="establishing")
    waiting = await wait_roster(host, a, lambda es: any(e["isInLobby"] for e in es))
    return host, guest, a, g, next(e for e in waiting if e["isInLobby"])


async def test_two_bots_join_by_chat_info_and_by_join_id_with_rosters_in_sequence(platform: TestPlatform) -> None:
    meeting = platform.add_meeting(subject="Standup")
    classic = await platform.recording_bot("classic", permissions=MEMBER)
    delta = await platform.recording_bot("delta", permissions=MEMBER)

    a = await join(classic, by_chat(meeting))
    status, err, _ = await delta.client.request("POST", CALLS, by_id(meeting, "wrong"))
    assert status == 403 and "passcode" in err["error"]["message"]
    status, err, _ = await delta.client.request("POST", CALLS, by_id(meeting, None))
    assert status == 400 and "passcode" in err["error"]["message"]
    options = {"callOptions": {"@odata.type": "#microsoft.graph.outgoingCallOptions", "isDeltaRosterEnabled": True}}
    b = await join(delta, by_id(meeting, meeting.passcode, **options))

    status, call, _ = await delta.client.request("GET", f"{CALLS}/{b}")
    assert call["callChainId"] == meeting.id and call["chatInfo"]["threadId"] == meeting.thread_id
    assert "passcode" not in call["meetingInfo"]

    full = await wait_roster(classic, a, lambda entries: len(entries) == 2)  # classic: the whole roster
    seqs = [e["rosterSequenceNumber"] for e in full]
    assert seqs == [1, 2] and all(e["recordingInfo"]["recordingStatus"] == "notRecording" for e in full)
    first = await wait_roster(delta, b, lambda entries: True)  # a new delta leg gets the whole roster once
    assert {e["rosterSequenceNumber"] for e in first} == {1, 2}

    assert await classic.client.hang_up(a) == 204
    left = await wait_roster(delta, b, lambda entries: any("removedState" in e for e in entries))
    assert len(left) == 1 and left[0]["rosterSequenceNumber"] == 3 and left[0]["removedState"]["reason"] == "left"
    numbers = [e["rosterSequenceNumber"] for n in rosters(delta, b) for e in n.resource_data]
    assert numbers == sorted(numbers) and numbers[-1] == 3  # in sequence order
    assert len(rosters(delta, b)) == 2  # the first whole roster, then only the change
    await asyncio.sleep(0.3)  # left alone in the meeting, the bot stays
    status, call, _ = await delta.client.request("GET", f"{CALLS}/{b}")
    assert status == 200 and call["state"] == "established"
    assert not [n for n in delta.webhook.for_call(b) if n.change_type == "deleted"]


async def test_server_mute_and_remove(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=MEMBER)
    other = await platform.recording_bot("other", permissions=MEMBER)
    a = await join(host, by_chat(meeting))
    b = await join(other, by_chat(meeting))
    status, parts, _ = await host.client.request("GET", f"{CALLS}/{a}/participants")
    target = next(
        p for p in parts["value"] if p["info"]["identity"].get("application", {}).get("id") == other.credentials.app_id
    )

    status, op, headers = await host.client.request("POST", f"{CALLS}/{a}/participants/{target['id']}/mute", {})
    assert status == 200 and op["@odata.type"] == "#microsoft.graph.muteParticipantOperation"
    assert op["status"] == "completed" and "location" in {k.lower() for k in headers}
    muted = await wait_roster(host, a, lambda es: any(e["id"] == target["id"] and e["isMuted"] for e in es))
    entry = next(e for e in muted if e["id"] == target["id"])
    assert entry["mediaStreams"][0]["serverMuted"] is True

    status, err, _ = await host.client.request("DELETE", f"{CALLS}/{a}/participants/{target['id']}")
    assert status == 403 and "remove_participant_apps" in err["error"]["message"]
    meetings = platform.node.live_meetings
    allowed = (host.credentials.app_id,)
    meetings.config = dataclasses.replace(meetings.config, remove_participant_apps=allowed)
    status, _, _ = await host.client.request("DELETE", f"{CALLS}/{a}/participants/{target['id']}")
    assert status == 204
    end = await other.webhook.wait_for(lambda n: n.call_id == b and n.change_type == "deleted")
    assert (end[0].resource_data["resultInfo"]["code"], end[0].resource_data["resultInfo"]["subcode"]) == (200, 5000)
    gone = await wait_roster(host, a, lambda es: len(es) == 1)
    assert gone[0]["info"]["identity"]["application"]["id"] == host.credentials.app_id


async def test_a_guest_waits_in_the_lobby_until_a_member_admits_it(platform: TestPlatform) -> None:
    host, guest, a, g, lobby = await guest_in_lobby(platform)
    assert "guest" in lobby["info"]["identity"]
    await asyncio.sleep(0.2)
    assert [n.state for n in guest.webhook.for_call(g)] == ["establishing"]  # nothing of the meeting yet
    assert not rosters(guest, g)

    status, err, _ = await guest.client.request("POST", f"{CALLS}/{g}/participants/admitAll", {})
    assert status == 400 and "establishing" in err["error"]["message"]  # in the lobby: not even established
    status, op, _ = await host.client.request("POST", f"{CALLS}/{a}/participants/{lobby['id']}/admit", {})
    assert status == 200 and op["@odata.type"] == "#opencomms.admitParticipantsOperation"
    await guest.webhook.wait_state(g, "established")
    admitted = await wait_roster(guest, g, lambda es: len(es) == 2)
    assert not any(e["isInLobby"] for e in admitted)
    status, err, _ = await guest.client.request("POST", f"{CALLS}/{g}/participants/admitAll", {})
    assert status == 403 and "JoinGroupCall" in err["error"]["message"]  # a guest has no organizer rights


async def test_recording_status_reaches_every_roster_entry_and_gates_recording(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=MEMBER)
    other = await platform.recording_bot("other", permissions=MEMBER)
    a = await join(host, by_chat(meeting))
    b = await join(other, by_chat(meeting))
    status, err, _ = await host.client.request("POST", f"{CALLS}/{a}/recordResponse", {"maxRecordDurationInSeconds": 5})
    assert status == 403 and "updateRecordingStatus" in err["error"]["message"]

    status, op, _ = await host.client.request("POST", f"{CALLS}/{a}/updateRecordingStatus", {"status": "recording"})
    assert status == 200 and op["@odata.type"] == "#microsoft.graph.updateRecordingStatusOperation"
    for bot, call_id in ((host, a), (other, b)):
        entries = await wait_roster(
            bot, call_id, lambda es: all(e["recordingInfo"]["recordingStatus"] == "recording" for e in es)
        )
        assert len(entries) == 2
        assert all(e["recordingInfo"]["initiator"]["application"]["id"] == host.credentials.app_id for e in entries)
    status, op, _ = await host.client.request("POST", f"{CALLS}/{a}/recordResponse", {"maxRecordDurationInSeconds": 5})
    assert status == 200 and op["status"] == "running"


async def test_deleting_the_meeting_ends_every_leg_with_the_same_result(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    bots = [await platform.recording_bot(f"b{i}", permissions=MEMBER) for i in range(3)]
    ids = [await join(bot, by_chat(meeting)) for bot in bots]
    ids.append(await join(bots[0], by_id(meeting, meeting.passcode)))  # the same bot joins twice: its own call id
    assert len(set(ids)) == 4

    await platform.node.live_meetings.end_meeting(meeting.id, results.ENDED_BY_DELETE)
    ends = []
    for bot, call_id in zip([*bots, bots[0]], ids, strict=True):
        found = await bot.webhook.wait_for(lambda n, c=call_id: n.call_id == c and n.change_type == "deleted")
        ends.append(found[0].resource_data["resultInfo"])
    assert all(e == ends[0] for e in ends) and ends[0]["subcode"] == 5001
    assert platform.node.calls.active_calls == 0 and platform.node.calls.active_conversations == 0


async def test_unknown_meeting_full_meeting_and_no_permission(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    bot = await platform.recording_bot("bot", permissions=MEMBER)
    caller = await platform.recording_bot("caller")  # Calls.Initiate.All only
    unknown = dataclasses.replace(meeting, thread_id="19:meeting_nope@thread.v2")
    status, _, _ = await bot.client.request("POST", CALLS, by_chat(unknown))
    assert status == 404
    status, err, _ = await caller.client.request("POST", CALLS, by_chat(meeting))
    assert status == 403 and "JoinGroupCall" in err["error"]["message"]

    meetings = platform.node.live_meetings
    meetings.config = dataclasses.replace(meetings.config, max_participants=1)
    await join(bot, by_chat(meeting))
    status, err, _ = await bot.client.request("POST", CALLS, by_chat(meeting))
    assert status == 403 and "maximum of 1 participants" in err["error"]["message"]
    assert platform.node.calls.active_calls == 1


async def test_the_meeting_ends_a_grace_after_its_end_time(platform: TestPlatform) -> None:
    grace = platform.node.live_meetings.config.end_grace
    meeting = platform.add_meeting(end=time.time() - grace + 0.5)
    bot = await platform.recording_bot("bot", permissions=MEMBER)
    call_id = await join(bot, by_chat(meeting))
    end = await bot.webhook.wait_for(lambda n: n.call_id == call_id and n.change_type == "deleted", timeout=3)
    assert end[0].resource_data["resultInfo"]["subcode"] == 5003
    status, err, _ = await bot.client.request("POST", CALLS, by_chat(meeting))
    assert status == 400 and "has ended" in err["error"]["message"]


async def test_hold_music_operations_finish_with_a_notification(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=MEMBER)
    others = [await platform.recording_bot(f"o{i}", permissions=MEMBER) for i in range(2)]
    a = await join(host, by_chat(meeting))
    for bot in others:
        await join(bot, by_chat(meeting))
    entries = await wait_roster(host, a, lambda es: len(es) == 3)
    first, second = (e["id"] for e in entries if e["info"]["identity"]["application"]["id"] != host.credentials.app_id)

    body = {"clientContext": "hold-1"}
    status, op, headers = await host.client.request("POST", f"{CALLS}/{a}/participants/{first}/startHoldMusic", body)
    assert status == 202 and op["@odata.type"] == "#microsoft.graph.startHoldMusicOperation"
    assert headers["Location"].endswith(f"/communications/calls/{a}/operations/{op['id']}")
    assert op["status"] == "running" and op["clientContext"] == "hold-1"
    done = await host.webhook.wait_for(lambda n: n.resource_url.endswith(f"/operations/{op['id']}"))
    assert done[0].change_type == "deleted" and done[0].resource_data["status"] == "completed"
    assert done[0].resource_data["@odata.id"].endswith(f"/operations/{op['id']}")
    status, got, _ = await host.client.request("GET", f"{CALLS}/{a}/operations/{op['id']}")  # a Graph operation
    assert status == 200 and got["@odata.type"] == "#microsoft.graph.startHoldMusicOperation"
    assert got["status"] == "completed" and got["clientContext"] == "hold-1" and got["resultInfo"]["code"] == 200
    status, _, _ = await others[0].client.request("GET", f"{CALLS}/{a}/operations/{op['id']}")
    assert status == 404  # another app's call
    status, err, _ = await host.client.request("POST", f"{CALLS}/{a}/participants/{second}/startHoldMusic", {})
    assert status == 400 and "one participant at a time" in err["error"]["message"]
    status, op, _ = await host.client.request("POST", f"{CALLS}/{a}/participants/{first}/stopHoldMusic", {})
    assert status == 202 and op["@odata.type"] == "#microsoft.graph.stopHoldMusicOperation"
    await host.webhook.wait_for(lambda n: n.resource_url.endswith(f"/operations/{op['id']}"))
    status, got, _ = await host.client.request("GET", f"{CALLS}/{a}/operations/{op['id']}")
    assert status == 200 and got["@odata.type"] == "#microsoft.graph.stopHoldMusicOperation"
    assert got["status"] == "completed"
    ops = platform.node.store.scan("operation")
    assert sum(1 for key, _ in ops if key.startswith(f"{a}/")) == 2
    status, _, _ = await host.client.request("POST", f"{CALLS}/{a}/participants/{second}/startHoldMusic", {})
    assert status == 202
    status, _, _ = await host.client.request("DELETE", f"{CALLS}/{a}")
    assert status == 204
    await host.webhook.wait_state(a, "terminated")
    assert not [key for key, _ in platform.node.store.scan("operation") if key.startswith(f"{a}/")]  # gone with it


async def test_mute_admit_and_recording_operations_are_readable(platform: TestPlatform) -> None:
    host, guest, a, g, lobby = await guest_in_lobby(platform)

    actions = (
        (f"participants/{lobby['id']}/admit", "#opencomms.admitParticipantsOperation", {"clientContext": "admit-1"}),
        ("participants/admitAll", "#opencomms.admitParticipantsOperation", {"clientContext": "all-1"}),
        (f"participants/{lobby['id']}/mute", "#microsoft.graph.muteParticipantOperation", {"clientContext": "m-1"}),
        ("updateRecordingStatus", "#microsoft.graph.updateRecordingStatusOperation", {"status": "recording"}),
    )
    ids = []
    for path, kind, body in actions:
        status, op, headers = await host.client.request("POST", f"{CALLS}/{a}/{path}", body)
        assert status == 200 and op["@odata.type"] == kind, (path, op)
        assert headers["Location"].endswith(f"/operations/{op['id']}")
        status, got, _ = await host.client.request("GET", f"{CALLS}/{a}/operations/{op['id']}")
        assert status == 200 and got == op, path  # the document the action answered: type, status, resultInfo
        assert got["status"] == "completed" and got["clientContext"] == body.get("clientContext")
        ids.append(op["id"])
    await guest.webhook.wait_state(g, "established")
    status, _, _ = await host.client.request("GET", f"{CALLS}/{a}/operations/not-an-operation")
    assert status == 404
    status, _, _ = await guest.client.request("GET", f"{CALLS}/{a}/operations/{ids[0]}")
    assert status == 404  # another app's call
    assert await host.client.hang_up(a) == 204
    await host.webhook.wait_state(a, "terminated")
    assert not [key for key, _ in platform.node.store.scan("operation") if key.startswith(f"{a}/")]  # gone with it
