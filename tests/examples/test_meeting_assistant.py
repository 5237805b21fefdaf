"""The meeting assistant in a real meeting on a real node: it joins by the meeting's joinWebUrl, greets each joiner
by name (what a participant records of the meeting is the node's speech of the greeting), mutes a participant on
a keypad request and leaves when asked.

The participants are SDK bots that join like people would and press keys with sendDtmfTones (in-band, through the
meeting's mix, exactly as a phone's keys reach the assistant)."""

from __future__ import annotations

import asyncio

import pytest
from examples.meeting_assistant.assistant import greeting, main, run_assistant
from examples.meeting_assistant.commands import KeyCommands, Leave, Mute

from opencomms.media.tts import Tts
from opencomms.media.wav import decode_wav
from opencomms.sdk.calling import Call, CommunicationsClient
from opencomms.testing.audio import find_signal
from opencomms.testing.platform import TestMeeting, TestPlatform
from tests.examples.conftest import settings_for

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
        spoken = await Tts().synthesize(greeting("Bob", 2), "en-us", None)
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
