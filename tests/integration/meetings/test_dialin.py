"""Phones join meetings on a real node: a VirtualCaller dials the dial-in number, keys the conference id and the
passcode, appears in the bot's roster and hears the bot; three wrong passcodes end in a goodbye and a BYE;
hanging up mid-prompt leaves nothing behind; recording status and joins are announced to the phone."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from opencomms.config import TtsConfig
from opencomms.domain.meetings import LobbyScope
from opencomms.testing.platform import TestBot, TestPlatform, default_config
from tests.sipp.sipp import SCENARIO_DIR, run_sipp

from .test_live_meetings import MEMBER, by_chat, join, wait_roster

CALLS = "/communications/calls"


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[TestPlatform]:
    # These tests time the attendant's dialogue (keys during prompts, a SIPp phone that stays 6 s): espeak-ng
    # renders in milliseconds where piper's first render on a busy 2-core test host takes seconds. The piper
    # attendant is exercised by tests/examples/test_meeting_assistant.py (three phones dial in).
    config = default_config(str(tmp_path / "recordings"))
    async with TestPlatform(dataclasses.replace(config, tts=TtsConfig(engine="espeak"))) as p:
        yield p


def sip(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Roster entries that are not bots (a SIP caller without a number shows as a `user` with its SIP URI)."""
    return [e for e in entries if "application" not in e["info"]["identity"]]


def phones(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if "phone" in e["info"]["identity"]]


async def say(bot: TestBot, call_id: str, text: str) -> None:
    prompt = {"@odata.type": "#opencomms.textPrompt", "text": text, "voice": "en-us"}
    status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/playPrompt", {"prompts": [prompt]})
    assert status == 200


async def test_phone_dials_in_keys_id_and_passcode_joins_the_roster_and_hears_the_bot(platform: TestPlatform) -> None:
    meeting = platform.add_meeting(conference_id="424242", passcode="9876", dial_in_bypass=True)
    bot = await platform.recording_bot("host", permissions=MEMBER)
    call_id = await join(bot, by_chat(meeting))
    async with platform.caller(number="+15550111", display_name="Alice Phone") as caller:
        call = await caller.dial(platform.dial_in_number)
        await call.wait_answered()
        await call.wait_for_speech()  # the welcome prompt
        await call.press("424242#")
        await call.wait_for_silence(0.4)
        await call.wait_for_speech()  # "please enter the meeting passcode"
        await call.press("9876#", "inband")  # in-band keys work too
        roster = await wait_roster(bot, call_id, lambda entries: len(phones(entries)) == 1)
        phone = phones(roster)[0]
        assert phone["info"]["identity"]["phone"]["id"] == "+15550111"
        assert phone["isInLobby"] is False
        await call.wait_for_silence(0.6)
        await say(bot, call_id, "Hello from the meeting bot.")
        await call.wait_for_speech(timeout=10)  # the bot's prompt, through the meeting's mix
        await call.hang_up()
    await wait_roster(bot, call_id, lambda entries: not phones(entries))
    await asyncio.sleep(0.2)
    assert platform.node.sip is not None and platform.node.sip.ports.in_use == 0


async def test_three_wrong_passcodes_get_a_goodbye_and_a_bye(platform: TestPlatform) -> None:
    platform.add_meeting(conference_id="515151", passcode="1111")
    async with platform.caller() as caller:
        call = await caller.dial(platform.dial_in_number)
        await call.wait_answered()
        await call.press("515151#")
        for _ in range(3):
            await call.wait_for_silence(0.3)
            await call.press("2222#")
        await call.wait_ended(timeout=20)
        assert call.ended_by == "far end"
        assert call.heard_seconds > 1.0  # it heard the goodbye before the BYE
    node = platform.node
    assert node.dialin is not None and node.dialin.stats["refused"] == 1
    assert node.sip is not None and node.sip.active == 0 and node.sip.ports.in_use == 0
    assert node.calls.active_calls == 0


async def test_hanging_up_mid_prompt_leaves_no_call_port_or_task(platform: TestPlatform) -> None:
    platform.add_meeting(conference_id="616161", passcode="1")
    async with platform.caller() as caller:
        call = await caller.dial(platform.dial_in_number)
        await call.wait_answered()
        await call.wait_for_speech()
        await call.hang_up()
    node = platform.node
    assert node.dialin is not None and node.sip is not None
    for _ in range(50):
        if node.sip.ports.in_use == 0 and not node.dialin._tasks._tasks:
            break
        await asyncio.sleep(0.05)
    assert node.dialin.health()["attending"] == 0 and node.dialin.stats["abandoned"] == 1
    assert node.sip.active == 0 and node.sip.ports.in_use == 0
    assert not node.dialin._tasks._tasks
    assert node.calls.active_calls == 0


async def test_recording_status_and_entry_are_announced_to_the_phone(platform: TestPlatform) -> None:
    meeting = platform.add_meeting(
        conference_id="717171", passcode_required=False, passcode=None, dial_in_bypass=True, entry_exit_announced=True
    )
    bot = await platform.recording_bot("recorder", permissions=MEMBER)
    call_id = await join(bot, by_chat(meeting))
    async with platform.caller() as caller:
        call = await caller.dial(platform.dial_in_number)
        await call.wait_answered()
        await call.press("717171#")
        await wait_roster(bot, call_id, lambda entries: len(phones(entries)) == 1)
        await call.wait_for_silence(0.6)
        announcer = platform.node.announcer
        before = announcer.spoken
        status, _, _ = await bot.client.request(
            "POST", f"{CALLS}/{call_id}/updateRecordingStatus", {"status": "recording", "clientContext": "c"}
        )
        assert status == 200
        await call.wait_for_speech(timeout=10)  # "This meeting is now being recorded."
        assert announcer.spoken == before + 1
        await call.wait_for_silence(0.4)
        other = await platform.recording_bot("second", permissions=MEMBER)
        await join(other, by_chat(meeting))
        await call.wait_for_speech(timeout=10)  # "<bot> has joined."
        assert announcer.spoken == before + 2


async def test_a_softphone_user_joins_by_the_meetings_sip_address(platform: TestPlatform) -> None:
    node = platform.node
    assert node.sip is not None
    organizer = node.directory.create_user(platform.tenant_id, "Olga Organizer")
    node.sip.registrations.accounts.add(platform.tenant_id, "olga", "s3cret-pass", user_id=organizer.id)
    meeting = platform.add_meeting(organizer_id=organizer.id, lobby_scope=LobbyScope.ORGANIZER)
    bot = await platform.recording_bot("host", permissions=MEMBER)
    call_id = await join(bot, by_chat(meeting))
    host, port = platform.sip_address
    address = f"sip:meeting-{meeting.join_meeting_id}@{host}:{port}"
    async with platform.caller(credentials=("olga", "wrong")) as intruder:
        refused = await intruder.dial(address)
        await refused.wait_ended()
        assert refused.status == 401  # a second challenge: the credentials are wrong
    async with platform.caller(credentials=("olga", "s3cret-pass")) as softphone:
        call = await softphone.dial(address)
        await call.wait_answered()
        roster = await wait_roster(bot, call_id, lambda entries: any("user" in e["info"]["identity"] for e in entries))
        user = next(e for e in roster if "user" in e["info"]["identity"])
        assert user["info"]["identity"]["user"]["id"] == organizer.id
        assert user["isInLobby"] is False  # the organizer bypasses a lobby scoped to the organizer
        await say(bot, call_id, "Welcome, organizer.")
        await call.wait_for_speech(timeout=10)


async def test_an_unknown_meeting_address_is_404(platform: TestPlatform) -> None:
    host, port = platform.sip_address
    async with platform.caller() as caller:
        call = await caller.dial(f"sip:meeting-0000000000@{host}:{port}")
        await call.wait_ended()
        assert call.status == 404


async def settled(check: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check()


def engine_legs(platform: TestPlatform) -> int:
    return int(platform.node.engine.stats()["engine_legs"])


async def test_a_phone_waits_in_the_lobby_until_admitted_and_leaves_nothing_when_it_hangs_up(
    platform: TestPlatform,
) -> None:
    meeting = platform.add_meeting(conference_id="818181", passcode="55", dial_in_bypass=False)
    bot = await platform.recording_bot("host", permissions=MEMBER)
    call_id = await join(bot, by_chat(meeting))
    await settled(lambda: engine_legs(platform) == 1)  # the bot's leg (the engine adds it at its next tick)
    base = engine_legs(platform)
    async with platform.caller() as caller:
        first = await caller.dial_in(platform.dial_in_number, "818181", "55")
        roster = await wait_roster(bot, call_id, lambda entries: len(phones(entries)) == 1)
        waiting = phones(roster)[0]
        assert waiting["isInLobby"] is True
        await first.wait_for_silence(0.3)
        await first.wait_for_speech()  # "please wait, someone in the meeting will let you in soon"
        status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/participants/{waiting['id']}/admit", {})
        assert status == 200
        await wait_roster(bot, call_id, lambda entries: any(not e["isInLobby"] for e in phones(entries)))
        await settled(lambda: engine_legs(platform) == base + 1)  # the attendant's voice is gone, the phone stays
        await first.wait_for_silence(0.4)
        await say(bot, call_id, "Welcome in.")
        await first.wait_for_speech(timeout=10)
        second = await caller.dial_in(platform.dial_in_number, "818181", "55", method="inband")
        await wait_roster(bot, call_id, lambda entries: any(e["isInLobby"] for e in phones(entries)))
        await second.hang_up()
        await wait_roster(bot, call_id, lambda entries: len(phones(entries)) == 1)
    sip_gateway = platform.node.sip
    assert sip_gateway is not None
    await settled(lambda: engine_legs(platform) == base and sip_gateway.ports.in_use == 0)  # no phone or voice left
    assert platform.node.dialin is not None and platform.node.dialin.health()["attending"] == 0


async def test_a_sipp_phone_keys_the_conference_id_as_rfc4733_events_and_joins(
    platform: TestPlatform, tmp_path: Path
) -> None:
    """SIPp as the phone: node_uac_dtmf_rtp.xml plays '12#' as telephone-events (dtmf_12hash.pcap), here with a
    longer stay after the keys so that it is in the meeting when the bot looks."""
    meeting = platform.add_meeting(conference_id="12", passcode=None, passcode_required=False, dial_in_bypass=True)
    bot = await platform.recording_bot("host", permissions=MEMBER)
    call_id = await join(bot, by_chat(meeting))
    text = (SCENARIO_DIR / "node_uac_dtmf_rtp.xml").read_text()
    scenario = tmp_path / "dialin_dtmf.xml"
    scenario.write_text(text.replace('<pause milliseconds="1500"/>', '<pause milliseconds="6000"/>'))
    shutil.copy(SCENARIO_DIR / "dtmf_12hash.pcap", tmp_path / "dtmf_12hash.pcap")
    assert platform.node.sip is not None
    task = asyncio.create_task(
        asyncio.to_thread(
            run_sipp,
            scenario,
            "127.0.0.1",
            platform.node.sip.port,
            service=platform.dial_in_number,
            call_duration_ms=1500,
            timeout=20,
        )
    )
    found = await bot.webhook.wait_for(
        lambda n: n.call_id == call_id and n.resource_url.endswith("/participants") and len(sip(n.resource_data)) == 1,
        timeout=15,  # the welcome prompt, 1.5 s, the keys, "you are joining the meeting now"
    )
    caller = sip(list(found[0].resource_data))[0]
    assert caller["isInLobby"] is False and caller["info"]["identity"]["user"]["id"].startswith("sip:sipp@")
    result = await task
    assert result.ok, result.describe()
    await wait_roster(bot, call_id, lambda entries: not sip(entries))  # its BYE took it out


async def test_a_phone_dials_into_a_meeting_created_over_rest_with_its_audio_conferencing(
    platform: TestPlatform,
) -> None:
    node = platform.node
    organizer = node.directory.create_user(platform.tenant_id, "Heidi Steen", upn="heidi@contoso.example")
    bot = await platform.recording_bot("organizer", permissions=(*MEMBER, "OnlineMeetings.ReadWrite.All"))
    node.meetings.policies.grant(bot.credentials.app_id, organizer.id)
    body = {"subject": "Dial-in", "lobbyBypassSettings": {"scope": "everyone", "isDialInBypassEnabled": True}}
    status, meeting, _ = await bot.client.request("POST", f"/users/{organizer.id}/onlineMeetings", body)
    assert status == 201, meeting
    audio = meeting["audioConferencing"]
    assert audio["tollNumber"] == platform.dial_in_number
    settings = meeting["joinMeetingIdSettings"]
    join_body = {
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "meetingInfo": {
            "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
            "joinMeetingId": settings["joinMeetingId"],
            "passcode": settings["passcode"],
        },
    }
    call_id = await join(bot, join_body)
    async with platform.caller(number="+15550123") as caller:
        passcode = settings["passcode"] if settings.get("isPasscodeRequired") else None
        await caller.dial_in(audio["tollNumber"], audio["conferenceId"], passcode)
        roster = await wait_roster(bot, call_id, lambda entries: len(phones(entries)) == 1)
        assert phones(roster)[0]["info"]["identity"]["phone"]["id"] == "+15550123"
