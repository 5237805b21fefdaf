"""participants/invite on a real node: a phone through a SIPp trunk and another bot join the meeting when they
answer, the inviter gets inviteParticipantsOperation's outcome; more than five participants, replacesCallId and an
unreachable target are answered as Graph's clients expect."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from opencomms.config import SipConfig
from opencomms.domain import results
from opencomms.testing.platform import TestBot, TestPlatform, default_config
from tests.sipp.sipp import SippServer, free_port

from .test_live_meetings import MEMBER, by_chat, join, wait_roster

CALLS = "/communications/calls"
INVITER = (*MEMBER, "Calls.Initiate.All")


def phone(number: str) -> dict[str, Any]:
    return {"identity": {"phone": {"id": number}}}


async def invite(bot: TestBot, call_id: str, participants: list[dict[str, Any]]) -> tuple[int, Any]:
    status, body, _ = await bot.client.request(
        "POST", f"{CALLS}/{call_id}/participants/invite", {"participants": participants, "clientContext": "ctx"}
    )
    return status, body


async def outcome(bot: TestBot, op_id: str, timeout: float = 15.0) -> dict[str, Any]:
    found = await bot.webhook.wait_for(
        lambda n: n.resource_url.endswith(f"/operations/{op_id}") and n.change_type == "deleted", timeout=timeout
    )
    return dict(found[0].resource_data)


@pytest.fixture
async def platform(tmp_path: Any) -> AsyncIterator[TestPlatform]:
    async with TestPlatform() as p:
        yield p


async def test_a_phone_invited_through_the_trunk_joins_the_meeting(tmp_path: Any) -> None:
    port = free_port()
    base = default_config(str(tmp_path))
    sip = dataclasses.replace(
        base.sip, trunk_uri=f"sip:127.0.0.1:{port}", trunk_username="opencomms", trunk_password="trunk-secret"
    )
    assert isinstance(sip, SipConfig)
    sipp = SippServer("trunk_auth.xml", port=port, calls=1, timeout=20, extra_args=["-rtp_echo"])
    await asyncio.to_thread(sipp.start)
    try:
        async with TestPlatform(dataclasses.replace(base, sip=sip)) as platform:
            meeting = platform.add_meeting()
            bot = await platform.recording_bot("host", permissions=INVITER)
            call_id = await join(bot, by_chat(meeting))
            status, op = await invite(bot, call_id, [phone("+14255550123")])
            assert status == 200, op
            assert op["@odata.type"] == "#microsoft.graph.inviteParticipantsOperation"
            assert op["status"] == "running" and op["clientContext"] == "ctx"
            done = await outcome(bot, op["id"])
            assert done["status"] == "completed", done
            roster = await wait_roster(bot, call_id, lambda es: any("phone" in e["info"]["identity"] for e in es))
            numbers = [e["info"]["identity"]["phone"]["id"] for e in roster if "phone" in e["info"]["identity"]]
            assert numbers == ["+14255550123"]
            status, got, _ = await bot.client.request("GET", f"{CALLS}/{call_id}/operations/{op['id']}")
            assert status == 200 and got["status"] == "completed"
            await platform.node.live_meetings.end_meeting(meeting.id, results.MEETING_TIME_OVER)
            result = await asyncio.to_thread(sipp.wait, 10)
            assert result.ok, result.describe()  # answered, RTP echoed, then our BYE
    finally:
        await asyncio.to_thread(sipp.stop)


async def test_another_bot_invited_answers_and_joins(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=INVITER)
    guest = await platform.recording_bot("guest")
    call_id = await join(host, by_chat(meeting))
    target = {"identity": {"application": {"id": guest.credentials.app_id}}}
    status, op = await invite(host, call_id, [target])
    assert status == 200, op
    incoming = await guest.webhook.incoming()
    assert await guest.client.answer(incoming.call_id, guest.webhook.url) == 202
    done = await outcome(host, op["id"])
    assert done["status"] == "completed"
    await wait_roster(host, call_id, lambda es: sum("application" in e["info"]["identity"] for e in es) == 2)


async def test_an_unreachable_phone_fails_the_operation(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=INVITER)
    call_id = await join(host, by_chat(meeting))
    status, op = await invite(host, call_id, [phone("+14255550999")])  # no trunk configured
    assert status == 200, op
    done = await outcome(host, op["id"])
    assert done["status"] == "failed" and done["resultInfo"]["code"] == 480, done


async def test_six_participants_or_replaces_call_id_are_400(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=INVITER)
    call_id = await join(host, by_chat(meeting))
    status, body = await invite(host, call_id, [phone(f"+1425555010{i}") for i in range(6)])
    assert status == 400 and "at most 5" in body["error"]["message"], body
    replaces = {**phone("+14255550100"), "replacesCallId": call_id}
    status, body = await invite(host, call_id, [replaces])
    assert status == 400 and "replacesCallId" in body["error"]["message"], body
    other = await platform.recording_bot("other", permissions=("Calls.JoinGroupCall.All",))
    status, body = await invite(other, call_id, [phone("+14255550100")])
    assert status == 404  # not its call


async def test_replaces_call_id_moves_a_phone_call_into_the_meeting(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host = await platform.recording_bot("host", permissions=INVITER)
    async with platform.caller(number="+15550177") as caller:
        phone_call = await caller.dial(host.number)
        incoming = await host.webhook.incoming()
        p2p_id = incoming.call_id
        assert await host.client.answer(p2p_id, host.webhook.url) == 202
        await phone_call.wait_answered()
        meeting_call = await join(host, by_chat(meeting))
        status, op = await invite(host, meeting_call, [{**phone("+15550177"), "replacesCallId": p2p_id}])
        assert status == 200, op
        done = await outcome(host, op["id"])
        assert done["status"] == "completed", done
        ended = await host.webhook.wait_for(lambda n: n.resource_url.endswith(p2p_id) and n.change_type == "deleted")
        assert (ended[0].resource_data["resultInfo"]["code"], ended[0].resource_data["resultInfo"]["subcode"]) == (
            0,
            7015,
        )
        roster = await wait_roster(host, meeting_call, lambda es: any("phone" in e["info"]["identity"] for e in es))
        assert [e["info"]["identity"]["phone"]["id"] for e in roster if "phone" in e["info"]["identity"]] == [
            "+15550177"
        ]
        await phone_call.wait_for_silence(0.3)
        prompt = {"@odata.type": "#opencomms.textPrompt", "text": "You are in the meeting now.", "voice": "en-us"}
        status, _, _ = await host.client.request("POST", f"{CALLS}/{meeting_call}/playPrompt", {"prompts": [prompt]})
        assert status == 200
        await phone_call.wait_for_speech(timeout=10)  # the same SIP dialog and RTP hear the meeting
        assert not phone_call.ended
        await phone_call.hang_up()
        await wait_roster(host, meeting_call, lambda es: not any("phone" in e["info"]["identity"] for e in es))
    node = platform.node
    assert node.sip is not None and node.sip.active == 0
