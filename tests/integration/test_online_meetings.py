"""`onlineMeeting` resources on a real node: an app with OnlineMeetings.ReadWrite.All and an access policy creates,
finds, patches and deletes a user's meetings in Graph's JSON; the join link opens; the live side is told."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import pytest

from opencomms.config import MeetingsConfig
from opencomms.domain.meetings import MeetingInfo
from opencomms.domain.results import ResultInfo
from opencomms.meetings.service import MEETING_DELETED
from tests.integration.conftest import Platform, make_platform, node_config

PERMS = {"alice": ["OnlineMeetings.ReadWrite.All"], "bob": ["Calls.Initiate.All"]}


class FakeLive:
    def __init__(self) -> None:
        self.ended: list[tuple[str, ResultInfo]] = []
        self.changed: list[MeetingInfo] = []

    async def end_meeting(self, meeting_id: str, reason: ResultInfo) -> None:
        self.ended.append((meeting_id, reason))

    async def meeting_changed(self, info: MeetingInfo) -> None:
        self.changed.append(info)


@pytest.fixture
async def p() -> AsyncIterator[Platform]:
    config = node_config(meetings=MeetingsConfig(dial_in_number="+14255550100"))
    async with make_platform(config, names=("alice", "bob"), perms=PERMS) as platform:
        yield platform


async def test_create_get_find_patch_delete(p: Platform) -> None:
    node = p.node
    user = node.directory.create_user(p.tenant_id, "Heidi Steen", upn="heidi@contoso.example")
    alice = p["alice"].client
    body = {
        "subject": "User meeting",
        "startDateTime": "2030-07-12T14:30:34.2444915-07:00",
        "endDateTime": "2030-07-12T15:00:34.2464912-07:00",
        "joinMeetingIdSettings": {"isPasscodeRequired": True},
        "participants": {"attendees": [{"upn": "x@contoso.example", "role": "presenter"}]},
    }
    status, refused, _ = await alice.request("POST", f"/users/{user.id}/onlineMeetings", body)
    assert status == 403 and "access policy" in refused["error"]["message"]  # no policy yet
    node.meetings.policies.grant(p["alice"].app_id, user.id)
    live = FakeLive()
    node.meetings.live = live

    status, m, headers = await alice.request("POST", f"/users/{user.id}/onlineMeetings", body)
    assert status == 201, m
    assert headers["Location"].endswith(f"/users/{user.id}/onlineMeetings/{m['id']}")
    assert m["subject"] == "User meeting" and m["startDateTime"] == "2030-07-12T21:30:34.2444910Z"
    thread = m["chatInfo"]["threadId"]
    assert thread.startswith("19:meeting_") and thread.endswith("@thread.v2") and m["chatInfo"]["messageId"] == "0"
    url = urlsplit(m["joinWebUrl"])
    assert f"{url.scheme}://{url.netloc}" == node.public_url
    assert url.path == f"/l/meetup-join/{quote(thread, safe='')}/0"
    assert json.loads(unquote(url.query.removeprefix("context="))) == {"Tid": p.tenant_id, "Oid": user.id}
    settings = m["joinMeetingIdSettings"]
    assert settings["isPasscodeRequired"] and settings["joinMeetingId"].isdigit() and settings["passcode"].isdigit()
    audio = m["audioConferencing"]
    assert audio["tollNumber"] == "+14255550100" and audio["conferenceId"].isdigit() and audio["dialinUrl"]
    organizer = m["participants"]["organizer"]
    assert organizer["identity"]["user"]["id"] == user.id and organizer["upn"] == "heidi@contoso.example"
    assert m["participants"]["attendees"][0]["role"] == "presenter"
    assert m["lobbyBypassSettings"]["scope"] == "organization"

    status, got, _ = await alice.request("GET", f"/users/{user.id}/onlineMeetings/{m['id']}")
    assert status == 200 and got["joinWebUrl"] == m["joinWebUrl"]
    flt = quote(f"JoinWebUrl eq '{m['joinWebUrl']}'")
    status, found, _ = await alice.request("GET", f"/users/{user.id}/onlineMeetings?$filter={flt}")
    assert status == 200 and [x["id"] for x in found["value"]] == [m["id"]]
    flt = quote(f"joinMeetingIdSettings/joinMeetingId eq '{settings['joinMeetingId']}'")
    status, found, _ = await alice.request("GET", f"/users/{user.id}/onlineMeetings?$filter={flt}")
    assert status == 200 and [x["id"] for x in found["value"]] == [m["id"]]

    # the live side's lookups
    lookup = node.meetings.meetings
    info = lookup.by_thread(thread)
    assert info is not None and info.id == m["id"] and info.organizer_id == user.id
    assert lookup.by_join_id(settings["joinMeetingId"]) == info == lookup.by_conference_id(audio["conferenceId"])
    assert info.passcode == settings["passcode"] and info.roles == ()

    # the join link opens for a browser; an unknown one is 404
    async with aiohttp.ClientSession() as http:
        async with http.get(m["joinWebUrl"]) as resp:
            assert resp.status == 200 and "meeting exists" in await resp.text()
        async with http.get(f"{node.public_url}/l/meetup-join/19%3ameeting_nope%40thread.v2/0") as resp:
            assert resp.status == 404

    patch = {"subject": "Renamed", "lobbyBypassSettings": {"scope": "everyone", "isDialInBypassEnabled": True}}
    status, patched, _ = await alice.request("PATCH", f"/users/{user.id}/onlineMeetings/{m['id']}", patch)
    assert status == 200 and patched["subject"] == "Renamed" and patched["lobbyBypassSettings"]["scope"] == "everyone"
    assert live.changed[-1].lobby_scope == "everyone" and live.changed[-1].dial_in_bypass
    status, err, _ = await alice.request("PATCH", f"/users/{user.id}/onlineMeetings/{m['id']}", {"joinWebUrl": "x"})
    assert status == 400 and "joinWebUrl" in err["error"]["message"]

    status, _, _ = await alice.request("DELETE", f"/users/{user.id}/onlineMeetings/{m['id']}")
    assert status == 204 and live.ended == [(m["id"], MEETING_DELETED)]
    status, err, _ = await alice.request("GET", f"/users/{user.id}/onlineMeetings/{m['id']}")
    assert status == 404 and err["error"]["code"] == "itemNotFound"
    assert lookup.by_thread(thread) is None


async def test_create_or_get_and_bad_input(p: Platform) -> None:
    node = p.node
    user = node.directory.create_user(p.tenant_id, "Adele")
    other = node.directory.create_user(p.tenant_id, "Megan")
    node.meetings.policies.grant(p["alice"].app_id, None)  # tenant-wide
    alice, bob = p["alice"].client, p["bob"].client
    path = f"/users/{user.id}/onlineMeetings"
    status, first, _ = await alice.request("POST", f"{path}/createOrGet", {"externalId": "ext-1", "subject": "A"})
    assert status == 201
    status, again, _ = await alice.request("POST", f"{path}/createOrGet", {"externalId": "ext-1", "subject": "B"})
    assert status == 200 and again["id"] == first["id"] and again["subject"] == "A"
    status, err, _ = await alice.request("POST", f"{path}/createOrGet", {"subject": "no id"})
    assert status == 400 and "externalId" in err["error"]["message"]
    status, err, _ = await alice.request(
        "POST", path, {"startDateTime": "2030-01-01T10:00:00Z", "endDateTime": "2030-01-01T09:00:00Z"}
    )
    assert status == 400 and "endDateTime" in err["error"]["message"]
    status, err, _ = await alice.request("POST", path, {"lobbyBypassSettings": {"scope": "nobody"}})
    assert status == 400 and "lobbyBypassSettings.scope" in err["error"]["message"]
    status, err, _ = await alice.request("POST", path, {"joinMeetingIdSettings": {"passcode": "123"}})
    assert status == 400 and "passcode" in err["error"]["message"]
    # another organizer's meeting is not found through this user; bob lacks the permission; unknown user 404
    status, _, _ = await alice.request("GET", f"/users/{other.id}/onlineMeetings/{first['id']}")
    assert status == 404
    status, err, _ = await bob.request("POST", path, {})
    assert status == 403 and "OnlineMeetings.ReadWrite.All" in err["error"]["message"]
    status, _, _ = await alice.request("POST", "/users/3f2504e0-4f89-41d3-9a0c-0305e82c3301/onlineMeetings", {})
    assert status == 404
    status, err, _ = await alice.request("GET", path)
    assert status == 400 and "$filter" in err["error"]["message"]
    # /me needs a signed-in user
    status, err, _ = await alice.request("POST", "/me/onlineMeetings", {})
    assert status == 403 and "delegated" in err["error"]["message"]
    # createOrGet is not a meeting id
    status, _, headers = await alice.request("GET", f"{path}/createOrGet")
    assert status == 405 and headers["Allow"] == "POST"


async def test_a_failing_live_side_does_not_fail_the_request(p: Platform) -> None:
    class Broken(FakeLive):
        async def end_meeting(self, meeting_id: str, reason: ResultInfo) -> None:
            raise RuntimeError("live side down")

        async def meeting_changed(self, info: MeetingInfo) -> None:
            raise RuntimeError("live side down")

    user = p.node.directory.create_user(p.tenant_id, "Adele")
    p.node.meetings.policies.grant(p["alice"].app_id, user.id)
    p.node.meetings.live = Broken()
    path = f"/users/{user.id}/onlineMeetings"
    status, m, _ = await p["alice"].client.request("POST", path, {})
    assert status == 201
    status, _, _ = await p["alice"].client.request("PATCH", f"{path}/{m['id']}", {"subject": "x"})
    assert status == 200
    status, _, _ = await p["alice"].client.request("DELETE", f"{path}/{m['id']}")
    assert status == 204
    status, _, _ = await p["alice"].client.request("GET", f"{path}/{m['id']}")
    assert status == 404
