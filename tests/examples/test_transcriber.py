"""The live meeting transcriber in a real meeting on a real node: it joins by the joinWebUrl, sets the recording
status (the phone hears it announced), and writes who said what: a phone that dialed in (its display name) and a
bot participant speaking a text prompt, each line under the right speaker. The organizer's transcript has the
same lines (the node kept it because the status was `recording`)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from examples.transcriber.bot import clock, run_transcriber, speaker

from opencomms.config import MediaConfig, SpeechConfig
from opencomms.media.wav import decode_wav
from opencomms.sdk import text_prompt
from opencomms.testing.platform import TestPlatform, default_config
from tests.examples.conftest import settings_for

pytestmark = pytest.mark.slow

MEMBER = ("Calls.JoinGroupCall.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All")


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[TestPlatform]:
    base = default_config(str(tmp_path))
    config = dataclasses.replace(
        base,
        speech=SpeechConfig(enabled=True),
        media=MediaConfig(recordings_dir=str(tmp_path)),
        meetings=dataclasses.replace(base.meetings, transcript_grace=0.2),
    )
    async with TestPlatform(config) as p:
        yield p


def speak(text: str, voice: str) -> npt.NDArray[np.int16]:
    """A sentence in an espeak-ng voice the node's prompts do not use."""
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, text], capture_output=True, check=True).stdout
    return decode_wav(wav)


def test_helpers() -> None:
    assert clock("PT75.4S") == "00:01:15" and clock("PT1H2M3S") == "01:02:03" and clock("x") == "--:--:--"
    assert speaker({"phone": {"id": "+1555", "displayName": "Alice"}}) == "Alice"
    assert speaker({"application": {"id": "app"}}) == "app"


async def test_writes_each_speaker_s_words_under_their_name(platform: TestPlatform, tmp_path: Path) -> None:
    meeting = await platform.create_meeting(
        lobbyBypassSettings={"scope": "everyone", "isDialInBypassEnabled": True},
        joinMeetingIdSettings={"isPasscodeRequired": False},
    )
    creds = await platform.register_bot("scribe", permissions=MEMBER, display_name="Scribe")
    out = tmp_path / "meeting.txt"
    async with platform.caller(number="+15550101", display_name="Alice") as alice:
        phone = await alice.dial_in(platform.dial_in_number, meeting.conference_id)
        await phone.wait_for_silence(0.5)
        async with run_transcriber(settings_for(platform, creds), meeting.join_web_url, out) as bot:
            bob_creds = await platform.register_bot("bob", permissions=MEMBER, display_name="Bob")
            bob = await platform.calling_client(bob_creds)
            bob_call = await bob.join_meeting(join_meeting_id=meeting.join_meeting_id, passcode=meeting.passcode)
            await bob_call.wait_state("established")
            await phone.wait_for_silence(0.5)  # the recording announcement is over

            sentence = "Please hold while I transfer you to a colleague."
            await phone.play_wav(speak(sentence, "en+f2"))
            await phone.play_wav(np.zeros(16000, dtype=np.int16))
            await bot.wait_lines(1)
            await bob_call.play_prompt([text_prompt("Remember to lock the door when you leave.", "en-us+m3")])
            lines = await bot.wait_lines(2)

    assert [line.speaker for line in lines] == ["Alice", "Bob"], lines
    assert "transfer" in lines[0].text.lower() and "door" in lines[1].text.lower()  # accuracy: test_wer
    written = out.read_text().splitlines()
    assert written == [str(line) for line in lines] and written[0].startswith("[00:00:")

    store = platform.node.meeting_artifacts.artifacts  # the organizer's copy, kept while recording
    for _ in range(50):  # saved transcript_grace after the recording stopped
        if found := store.list(meeting.id, "transcript"):
            break
        await asyncio.sleep(0.05)
    [transcript] = found
    vtt = (store.content(transcript) or b"").decode()
    assert f"<v Alice>{lines[0].text}</v>" in vtt and f"<v Bob>{lines[1].text}</v>" in vtt
