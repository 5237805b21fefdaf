"""Live transcription on a real node: a bot turns it on for its call, a VirtualCaller (SIP, G.711) speaks a
sentence synthesized by an espeak-ng voice the prompts do not use, and the bot receives the sentence as an
`#opencomms.transcript` attributed to the caller; in a meeting it starts only once the recording status is
`recording` and stops when the status leaves it."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opencomms.config import MediaConfig, SpeechConfig
from opencomms.media.wav import decode_wav
from opencomms.speech.wer import word_error_rate
from opencomms.testing import TestPlatform
from opencomms.testing.harness import Notification
from opencomms.testing.platform import TestBot, default_config

pytestmark = pytest.mark.slow

CALLS = "/communications/calls"
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
MEMBER = ("Calls.JoinGroupCall.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All")
SILENCE = np.zeros(16000, dtype=np.int16)
SENTENCE = "Could you call me back when you get this message?"


def speak(text: str, voice: str) -> Any:
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, text], capture_output=True, check=True).stdout
    return decode_wav(wav)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[TestPlatform]:
    config = dataclasses.replace(default_config(str(tmp_path)), speech=SpeechConfig(enabled=True))
    config = dataclasses.replace(config, media=MediaConfig(recordings_dir=str(tmp_path)))
    async with TestPlatform(config) as p:
        yield p


def transcripts(bot: TestBot, call_id: str) -> list[dict[str, Any]]:
    return [n.resource_data["transcript"] for n in bot.webhook.for_call(call_id) if "transcript" in n.resource_data]


def transcription_state(n: Notification) -> str | None:
    info = n.resource_data.get("transcription") if isinstance(n.resource_data, dict) else None
    return info.get("state") if isinstance(info, dict) else None


async def test_a_caller_s_sentence_reaches_the_bot_as_a_transcript(platform: TestPlatform) -> None:
    bot = await platform.recording_bot("scribe")
    async with platform.caller(number="+15550123") as caller:
        call = await caller.dial(bot.number)
        incoming = await bot.webhook.incoming(timeout=10)
        call_id = incoming.call_id
        assert await bot.client.answer(call_id) == 202
        await call.wait_answered()
        await bot.webhook.wait_state(call_id, "established")

        status, op, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/startTranscription", {})
        assert status == 200 and op["@odata.type"] == "#opencomms.startTranscriptionOperation", op
        await bot.webhook.wait_for(lambda n: n.call_id == call_id and transcription_state(n) == "active")

        await call.play_wav(speak(SENTENCE, "en-us+m3"))
        await call.play_wav(SILENCE)  # the pause that ends the utterance
        found = await bot.webhook.wait_for(lambda n: "transcript" in n.resource_data, timeout=10)
        transcript = found[0].resource_data["transcript"]
        assert transcript["@odata.type"] == "#opencomms.transcript" and transcript["isFinal"] is True
        assert transcript["status"] == "final"
        assert word_error_rate([(SENTENCE, transcript["text"])]) <= 0.25, transcript["text"]
        assert transcript["identity"]["phone"]["id"] == "+15550123"
        assert transcript["participantId"] and transcript["participantId"] != incoming.resource_data.get(
            "myParticipantId"
        )
        assert transcript["startOffset"].startswith("PT") and transcript["sequenceId"] == 1

        status, op, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/stopTranscription", {})
        assert status == 200 and op["@odata.type"] == "#opencomms.stopTranscriptionOperation"
        await bot.webhook.wait_for(lambda n: n.call_id == call_id and transcription_state(n) == "inactive")
        await call.play_wav(speak("This sentence is not transcribed.", "en+f2"))
        await call.play_wav(SILENCE)
        assert len(transcripts(bot, call_id)) == 1
        health = platform.node.health()["transcription"]
        assert health["captions"] == 1 and health["overloaded"] == 0 and health["pool"]["queued"] == 0
        assert await bot.client.hang_up(call_id) == 204
    assert platform.node.transcription is not None and platform.node.transcription.active == 0


async def dial_in(platform: TestPlatform, number: str, conference_id: str) -> Any:
    caller = platform.caller(number=number, display_name=f"Phone {number[-2:]}")
    await caller.start()
    call = await caller.dial_in(platform.dial_in_number, conference_id)
    return caller, call


async def test_three_phones_in_a_meeting_each_transcript_names_its_speaker(platform: TestPlatform) -> None:
    meeting = platform.add_meeting(conference_id="737373", passcode=None, passcode_required=False, dial_in_bypass=True)
    bot = await platform.recording_bot("notes", permissions=MEMBER)
    join = {
        "requestedModalities": ["audio"],
        "mediaConfig": SERVICE_HOSTED,
        "meetingInfo": {
            "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
            "joinMeetingId": meeting.join_meeting_id,
        },
    }
    status, created, _ = await bot.client.request("POST", CALLS, join)
    assert status == 201, created
    call_id = created["id"]
    await bot.webhook.wait_state(call_id, "established")

    status, err, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/startTranscription", {})
    assert status == 403 and "recording" in err["error"]["message"]  # Graph's rule for media that is kept
    recording = {"clientContext": "c", "status": "recording"}
    status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/updateRecordingStatus", recording)
    assert status == 200
    status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/startTranscription", {})
    assert status == 200

    lines = {  # espeak-ng's formant voices through G.711 are hard for tiny.en: sentences it gets right
        "+15550101": ("Turn left at the bank and walk past the post office.", "en-us+m3"),
        "+15550102": ("Please hold while I transfer you to a colleague.", "en+f2"),
        "+15550103": ("Can you confirm the time of my appointment?", "en-us+f3"),
    }
    callers, calls = [], {}
    try:
        for number in lines:
            caller, call = await dial_in(platform, number, meeting.conference_id)
            callers.append(caller)
            calls[number] = call
        for call in calls.values():
            await call.wait_for_silence(0.5)  # the attendant and the recording announcement are over
        for number, (text, voice) in lines.items():  # one after the other, as people take turns
            await calls[number].play_wav(speak(text, voice))
            await calls[number].play_wav(SILENCE)
        await bot.webhook.wait_for(lambda n: "transcript" in n.resource_data, count=3, timeout=15)
        got = transcripts(bot, call_id)
        by_phone = {t["identity"]["phone"]["id"]: t for t in got}
        assert set(by_phone) == set(lines), got
        for number, (text, _) in lines.items():  # each speaker's own words (test_wer measures the accuracy)
            said = by_phone[number]["text"].lower()
            assert text.split()[-1].strip(".?").lower() in said, by_phone[number]
        assert len({t["participantId"] for t in got}) == 3
        assert [t["sequenceId"] for t in got] == [1, 2, 3]

        stop = {"clientContext": "c", "status": "notRecording"}
        status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/updateRecordingStatus", stop)
        assert status == 200
        await bot.webhook.wait_for(lambda n: n.call_id == call_id and transcription_state(n) == "inactive")
    finally:
        for caller in callers:
            await caller.__aexit__(None, None, None)


def join_body(meeting: Any) -> dict[str, Any]:
    return {
        "requestedModalities": ["audio"],
        "mediaConfig": SERVICE_HOSTED,
        "meetingInfo": {
            "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
            "joinMeetingId": meeting.join_meeting_id,
            "passcode": meeting.passcode,
        },
    }


async def joined(bot: TestBot, meeting: Any) -> str:
    status, created, _ = await bot.client.request("POST", CALLS, join_body(meeting))
    assert status == 201, created
    await bot.webhook.wait_state(created["id"], "established")
    return str(created["id"])


async def test_the_meeting_setting_turns_transcription_on_with_recording_or_forbids_it(platform: TestPlatform) -> None:
    recording = {"status": "recording"}
    closed = await platform.create_meeting(allowTranscription=False)  # a real onlineMeeting, Graph's setting
    bot = await platform.recording_bot("notes", permissions=MEMBER)
    call_id = await joined(bot, closed)
    status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/updateRecordingStatus", recording)
    assert status == 200
    status, err, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/startTranscription", {})
    assert status == 403 and "allowTranscription" in err["error"]["message"]

    meeting = platform.add_meeting(allow_transcription=True)
    scribe = await platform.recording_bot("scribe", permissions=MEMBER)
    speaker = await platform.recording_bot("speaker", permissions=MEMBER)
    scribe_call = await joined(scribe, meeting)
    speaker_call = await joined(speaker, meeting)
    status, _, _ = await scribe.client.request("POST", f"{CALLS}/{scribe_call}/updateRecordingStatus", recording)
    assert status == 200  # the meeting's setting turns transcription on for the bot that records
    await scribe.webhook.wait_for(lambda n: n.call_id == scribe_call and transcription_state(n) == "active")
    assert not [n for n in speaker.webhook.for_call(speaker_call) if transcription_state(n)]

    text = "Remember to lock the door when you leave the building."
    prompt = {"@odata.type": "#opencomms.textPrompt", "text": text, "voice": "en-us+m3"}
    status, _, _ = await speaker.client.request("POST", f"{CALLS}/{speaker_call}/playPrompt", {"prompts": [prompt]})
    assert status == 200
    found = await scribe.webhook.wait_for(lambda n: "transcript" in n.resource_data, timeout=15)
    transcript = found[0].resource_data["transcript"]
    assert word_error_rate([(text, transcript["text"])]) <= 0.2, transcript
    assert transcript["identity"]["application"]["id"] == speaker.credentials.app_id
