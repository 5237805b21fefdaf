"""Attacks on live meetings, replayed against a running node: guessing or omitting a passcode, joining another
tenant's meeting, a guest admitting itself or others, removing without the tenant's permission, reading the
passcode back, acting on another bot's call, and a bot that asks for more than its permission gives."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from opencomms.testing.platform import TestPlatform
from tests.integration.meetings.test_live_meetings import GUEST, MEMBER, by_chat, by_id, join, wait_roster

CALLS = "/communications/calls"


@pytest.fixture
async def platform() -> AsyncIterator[TestPlatform]:
    async with TestPlatform() as p:
        yield p


async def test_passcodes_are_checked_every_time_and_never_echoed(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    bot = await platform.recording_bot("bot", permissions=MEMBER)
    for guess in ("", "0", meeting.passcode + "x", (meeting.passcode or "").upper() + "!"):
        status, err, _ = await bot.client.request("POST", CALLS, by_id(meeting, guess))
        assert status in (400, 403), (guess, status)
        assert meeting.passcode not in str(err)
    assert platform.node.calls.active_calls == 0
    call_id = await join(bot, by_id(meeting, meeting.passcode))
    _, call, _ = await bot.client.request("GET", f"{CALLS}/{call_id}")
    assert meeting.passcode not in str(call)
    assert all(meeting.passcode not in str(n.resource_data) for n in bot.webhook.notifications)


async def test_another_tenants_meeting_cannot_be_joined(platform: TestPlatform) -> None:
    other = platform.node.directory.create_tenant("Fabrikam", "fabrikam.example")
    meeting = platform.add_meeting(tenant_id=other.id)
    bot = await platform.recording_bot("bot", permissions=MEMBER)
    body = by_chat(meeting)
    del body["tenantId"]
    status, _, _ = await bot.client.request("POST", CALLS, body)
    assert status == 404  # not found: whether another tenant has such a meeting is not told
    status, _, _ = await bot.client.request("POST", CALLS, by_id(meeting, meeting.passcode))
    assert status == 404
    status, err, _ = await bot.client.request("POST", CALLS, by_chat(meeting))  # tenantId names the other tenant
    assert status == 403 and "own tenant" in err["error"]["message"]
    assert platform.node.calls.active_calls == 0


async def test_the_organizer_must_match_the_thread(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    bot = await platform.recording_bot("bot", permissions=MEMBER)
    body = by_chat(meeting)
    body["meetingInfo"]["organizer"]["user"]["id"] = "5a1b2c3d-0000-4000-8000-000000000000"
    status, _, _ = await bot.client.request("POST", CALLS, body)
    assert status == 404


async def test_a_guest_cannot_leave_the_lobby_by_itself_nor_act_on_others(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=MEMBER)
    guest = await platform.recording_bot("guest", permissions=GUEST)
    a = await join(host, by_chat(meeting))
    g = await join(guest, by_id(meeting, meeting.passcode), state="establishing")
    entries = await wait_roster(host, a, lambda es: any(e["isInLobby"] for e in es))
    me = next(e for e in entries if e["isInLobby"])["id"]
    host_pid = next(e for e in entries if not e["isInLobby"])["id"]
    for path in (f"participants/{me}/admit", "participants/admitAll", f"participants/{host_pid}/mute"):
        status, _, _ = await guest.client.request("POST", f"{CALLS}/{g}/{path}", {})
        assert status == 400, path  # a lobby leg is not established: it can do nothing to the meeting
    status, _, _ = await guest.client.request("POST", f"{CALLS}/{g}/updateRecordingStatus", {"status": "recording"})
    assert status == 403  # a guest app has no Calls.JoinGroupCall.All
    for path in (f"participants/{me}/admit", "participants/admitAll", f"participants/{host_pid}/mute"):
        status, _, _ = await guest.client.request("POST", f"{CALLS}/{a}/{path}", {})
        assert status == 404, path  # the host's call is not the guest's
    status, _, _ = await guest.client.request("DELETE", f"{CALLS}/{a}/participants/{host_pid}")
    assert status == 404
    _, call, _ = await guest.client.request("GET", f"{CALLS}/{g}")
    assert call["state"] == "establishing"


async def test_remove_needs_the_tenant_setting_even_for_a_member(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=MEMBER)
    other = await platform.recording_bot("other", permissions=MEMBER)
    a = await join(host, by_chat(meeting))
    await join(other, by_chat(meeting))
    entries = await wait_roster(host, a, lambda es: len(es) == 2)
    for entry in entries:
        status, _, _ = await host.client.request("DELETE", f"{CALLS}/{a}/participants/{entry['id']}")
        assert status == 403
    assert platform.node.calls.active_calls == 2


async def test_passcode_guessing_is_throttled_per_application(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    guesser = await platform.recording_bot("guesser", permissions=MEMBER)
    honest = await platform.recording_bot("honest", permissions=MEMBER)
    limit = platform.node.live_meetings.config.passcode_failures_per_minute
    statuses = []
    for i in range(limit + 2):
        status, _, headers = await guesser.client.request("POST", CALLS, by_id(meeting, f"guess{i}"))
        statuses.append(status)
    assert statuses[:limit] == [403] * limit and statuses[limit:] == [429, 429]
    assert int(headers["Retry-After"]) >= 1
    status, _, _ = await guesser.client.request("POST", CALLS, by_id(meeting, meeting.passcode))
    assert status == 429  # even the right one, until the bucket refills
    await join(honest, by_id(meeting, meeting.passcode))  # another application is not locked out
