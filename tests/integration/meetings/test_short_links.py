"""Teams' short join links on a real node: `/meet/{joinMeetingId}?p={passcode}` redirects to the meeting's
joinWebUrl (which stays in the /l/meetup-join anatomy), an unknown id or a wrong passcode is the same 404 and a
sweep of them is throttled, `$filter=JoinWebUrl eq` accepts the short form, and an SDK bot joins by the short link
(parse_join_url turns it into joinMeetingIdMeetingInfo)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from opencomms.sdk.meetings import parse_join_url
from opencomms.testing.platform import TestPlatform

from .test_live_meetings import MEMBER


@pytest.fixture
async def platform() -> AsyncIterator[TestPlatform]:
    async with TestPlatform() as p:
        yield p


async def test_a_short_link_redirects_to_the_join_url_and_a_bot_joins_by_it(platform: TestPlatform) -> None:
    meeting = await platform.create_meeting("Olga Organizer", subject="Short")
    assert "/l/meetup-join/" in meeting.join_web_url  # joinWebUrl keeps the anatomy parsers expect
    short = f"{platform.base_url}/meet/{meeting.join_meeting_id}?p={meeting.passcode}"
    async with aiohttp.ClientSession() as http:
        async with http.get(short, allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == meeting.join_web_url
        for wrong in (f"/meet/{meeting.join_meeting_id}?p=000", f"/meet/{meeting.join_meeting_id}", "/meet/99999999"):
            async with http.get(platform.base_url + wrong, allow_redirects=False) as resp:
                assert resp.status == 404, wrong  # the same answer: no oracle for ids or passcodes

    admin = await platform._meeting_admin_client()
    query = quote(f"JoinWebUrl eq '{short}'")
    status, found, _ = await admin.request("GET", f"/users/{meeting.organizer_id}/onlineMeetings?$filter={query}")
    assert status == 200 and [m["id"] for m in found["value"]] == [meeting.id]

    link = parse_join_url(short)
    assert (link.join_meeting_id, link.passcode) == (meeting.join_meeting_id, meeting.passcode)
    creds = await platform.register_bot("short", permissions=MEMBER)
    comms = await platform.calling_client(creds)
    call = await comms.join_meeting(join_web_url=short)
    await call.wait_state("established")
    assert call.info is not None and call.info.call_chain_id == meeting.id


async def test_sweeping_short_links_is_throttled(platform: TestPlatform) -> None:
    meeting = await platform.create_meeting("Olga Organizer")
    limit = platform.node.config.meetings.passcode_failures_per_minute
    async with aiohttp.ClientSession() as http:
        for n in range(limit):
            async with http.get(f"{platform.base_url}/meet/{10_000_000 + n}", allow_redirects=False) as resp:
                assert resp.status == 404
        url = f"{platform.base_url}/meet/{meeting.join_meeting_id}?p={meeting.passcode}"
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
