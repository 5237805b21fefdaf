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
SENTENCE = "Please send the quarterly report to the finance team by Friday."


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
        assert word_error_rate([(SENTENCE, transcript["text"])]) <= 0.2, transcript["text"]
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
        assert await bot.client.hang_up(call_id) == 204
    assert platform.node.transcription is not None and platform.node.transcription.active == 0
