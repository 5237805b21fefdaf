"""The meeting assistant in a real meeting on a real node: it joins by the meeting's joinWebUrl, greets each joiner
by name (what a participant records of the meeting is the node's speech of the greeting), mutes a participant on
a keypad request and leaves when asked.

First with SDK bots that join like people would and press keys with sendDtmfTones (in-band, through the meeting's
mix); then with three virtual phones that dial the meeting's audioConferencing number, key the conference id at
the node's attendant, are greeted (each phone hears it), and press the requests on their keypads."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from examples.meeting_assistant.assistant import greeting, main, run_assistant
from examples.meeting_assistant.commands import KeyCommands, Leave, Mute

from opencomms.media.wav import decode_wav
from opencomms.sdk.calling import Call, CommunicationsClient
from opencomms.testing.audio import contains, find_signal
from opencomms.testing.platform import TestMeeting, TestPlatform
from tests.examples.conftest import settings_for, spoken_by

MEMBER = ("Calls.JoinGroupCall.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All")


async def participant(platform: TestPlatform, meeting: TestMeeting, name: str) -> tuple[CommunicationsClient, Call]:
    creds = await platform.register_bot(name.lower(), permissions=MEMBER, display_name=name)
    comms = await platform.calling_client(creds)
    call = await comms.join_meeting(join_meeting_id=meeting.join_meeting_id, passcode=meeting.passcode)
    await call.wait_state("established")
    return comms, call


async def test_greets_each_joiner_mutes_on_request_and_leaves_when_asked(platform: TestPlatform) -> None:
    meeting = await platform.create_meeting("Adele Vance", subject="Weekly sync")
    creds = await platform.register_bot("assistant", permissions=MEMBER, display_name="Meeting Assistant")
    async with run_assistant(settings_for(platform, creds), meeting.join_web_url) as assistant:
        assert assistant.call is not None and assistant.call.state == "established"
        alice, a = await participant(platform, meeting, "Alice")
        assert (await assistant.wait_event("greeted", "Alice")).seat == 1

        # Alice records the meeting while Bob joins: she hears the assistant greet him
        await a.update_recording_status("recording")
        record = asyncio.create_task(
            a.record_response(play_beep=False, max_record_duration=4, initial_silence_timeout=5, max_silence_timeout=2)
        )
        await asyncio.sleep(0.2)
        _, b = await participant(platform, meeting, "Bob")
        assert (await assistant.wait_event("greeted", "Bob")).seat == 2
        heard = decode_wav(await a.download_recording(await asyncio.wait_for(record, 15)))
        spoken = await spoken_by(platform, greeting("Bob", 2))
        match = find_signal(heard, spoken)
        assert match.score > 0.9, match

        # Bob asks the assistant to mute participant 1 (Alice); then participant 9, who does not exist
        await b.send_dtmf_tones("*61#")
        assert (await assistant.wait_event("muted")).name == "Alice"
        await a.wait_roster(lambda ps: any(p.app_id == alice.app_id and p.server_muted for p in ps))
        await b.send_dtmf_tones("*69#")
        assert (await assistant.wait_event("refused")).seat == 9

        # and dismisses it: it says goodbye and leaves; the meeting goes on
        await b.send_dtmf_tones("*0")
        await assistant.wait_event("left")
        assert assistant.call.terminated.is_set()
        await a.wait_roster(lambda ps: len(ps) == 2 and not any(p.app_id == creds.app_id for p in ps))
        assert a.state == b.state == "established"
        assert [e.kind for e in assistant.events] == ["joined", "greeted", "greeted", "muted", "refused", "left"]


async def test_three_phones_dial_in_are_greeted_and_one_has_another_muted_then_dismisses_it(
    platform: TestPlatform,
) -> None:
    lobby = {"scope": "everyone", "isDialInBypassEnabled": True}
    meeting = await platform.create_meeting("Adele Vance", subject="Phones", lobbyBypassSettings=lobby)
    assert meeting.dial_in_number == platform.dial_in_number and meeting.conference_id
    passcode = meeting.passcode if meeting.raw["joinMeetingIdSettings"].get("isPasscodeRequired") else None
    creds = await platform.register_bot("assistant", permissions=MEMBER, display_name="Meeting Assistant")
    names = {"Carol": "+15550101", "Dave": "+15550102", "Erin": "+15550103"}
    async with run_assistant(settings_for(platform, creds), meeting.join_web_url) as assistant, AsyncExitStack() as s:
        callers = [await s.enter_async_context(platform.caller(number=n, display_name=k)) for k, n in names.items()]
        phones = await asyncio.gather(
            *(c.dial_in(meeting.dial_in_number, meeting.conference_id, passcode) for c in callers)
        )
        greeted = {n: (await assistant.wait_event("greeted", n, timeout=40)).seat for n in names}
        assert sorted(greeted.values()) == [1, 2, 3]
        last = next(n for n, seat in greeted.items() if seat == 3)  # every phone was in the meeting for it
        spoken = await spoken_by(platform, greeting(last, 3))
        heard = [contains(p.heard_audio(), spoken, min_score=0.8) for p in phones]
        assert min(heard) > 0.8, heard

        carol, _, erin = phones
        await carol.press(f"*6{greeted['Dave']}#")  # Carol asks for Dave to be muted (RFC 4733 keys)
        assert (await assistant.wait_event("muted", timeout=20)).name == "Dave"
        assert assistant.call is not None
        muted = await assistant.call.wait_roster(
            lambda ps: any(p.display_name == "Dave" and p.server_muted for p in ps)
        )
        assert [p.display_name for p in muted if p.is_muted] == ["Dave"]
        await erin.press("*0", "inband")  # Erin dismisses it (in-band keys)
        await assistant.wait_event("left", timeout=20)
        assert not any(p.ended for p in phones)  # the phones stay in the meeting
    assert await platform.delete_meeting(meeting) == 204
    for phone in phones:
        await phone.wait_ended(timeout=10)


def test_keypad_requests() -> None:
    keys = KeyCommands()
    assert [keys.press(k) for k in "*62#"] == [None, None, None, Mute(2)]
    assert [keys.press(k) for k in "5*0"] == [None, None, Leave()]  # keys outside a request are ignored
    assert [keys.press(k) for k in "*6*12#"] == [None, None, None, None, None, None]  # '*' starts over: *12# no
    assert [keys.press(k) for k in "*612#"][-1] == Mute(12)
    assert [keys.press(k) for k in "*61234#"][-1] is None and keys.pending == ""  # at most 3 digits
    assert [keys.press(k) for k in "*6#"][-1] is None and [keys.press(k) for k in "*9"][-1] is None


def test_command_line_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("OPENCOMMS_URL", "BOT_TENANT", "BOT_APP_ID", "BOT_SECRET", "MEETING_JOIN_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as no_url:
        main([])
    assert no_url.value.code == 2 and "--join-url" in capsys.readouterr().err
    with pytest.raises(SystemExit) as no_settings:
        main(["--join-url", "https://x/l/meetup-join/t/0?context={}"])
    assert no_settings.value.code == 2 and "BOT_SECRET" in capsys.readouterr().err
