"""Issue 15's bad-input and overload cases replayed against a running node's live transcription: who may turn it
on (Calls.AccessMedia.All, own established calls only), more speech than the decoders serve reaches the bot as
`overloaded` transcripts (never silent loss), and a phone sending noise and music neither floods the bot with
captions nor stops the sentence said afterwards from being transcribed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from opencomms.speech.pool import Caption, PoolConfig, TranscriptionPool
from opencomms.speech.silero import SileroVad
from opencomms.speech.wer import word_error_rate
from opencomms.speech.whisper import Recognized
from opencomms.testing import TestPlatform
from opencomms.testing.platform import TestBot, default_config
from opencomms.testing.speech import synthesize

pytestmark = pytest.mark.slow

CALLS = "/communications/calls"
PAUSE = np.zeros(16_000, dtype=np.int16)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[TestPlatform]:
    async with TestPlatform(default_config(str(tmp_path))) as p:
        yield p


async def answered(platform: TestPlatform, bot: TestBot, number: str) -> tuple[Any, Any, str]:
    caller = platform.caller(number=number)
    await caller.start()
    call = await caller.dial(bot.number)
    incoming = await bot.webhook.incoming(timeout=10)
    assert await bot.client.answer(incoming.call_id) == 202
    await call.wait_answered()
    await bot.webhook.wait_state(incoming.call_id, "established")
    return caller, call, incoming.call_id


def transcripts(bot: TestBot, call_id: str) -> list[dict[str, Any]]:
    return [n.resource_data["transcript"] for n in bot.webhook.for_call(call_id) if "transcript" in n.resource_data]


async def test_only_the_call_s_own_bot_with_access_media_may_transcribe(platform: TestPlatform) -> None:
    bot = await platform.recording_bot("owner")
    other = await platform.recording_bot("other")
    limited = await platform.recording_bot("limited", permissions=("Calls.Initiate.All",))
    caller, _call, call_id = await answered(platform, bot, "+15550131")
    try:
        status, _, _ = await other.client.request("POST", f"{CALLS}/{call_id}/startTranscription", {})
        assert status == 404  # another application's call does not exist for it
        status, _, _ = await bot.client.request(
            "POST", f"{CALLS}/{'0' * 8}-0000-0000-0000-{'0' * 12}/startTranscription", {}
        )
        assert status == 404
        status, body, _ = await bot.client.request(
            "POST", f"{CALLS}/{call_id}/startTranscription", {"clientContext": 7}
        )
        assert status == 400, body
        caller2, _, limited_call = await answered(platform, limited, "+15550132")
        status, err, _ = await limited.client.request("POST", f"{CALLS}/{limited_call}/startTranscription", {})
        assert status == 403 and "Calls.AccessMedia.All" in err["error"]["message"]
        await caller2.__aexit__(None, None, None)
    finally:
        await caller.__aexit__(None, None, None)


class SlowRecognizer:
    """Decodes in three seconds per batch: the decoders are overwhelmed."""

    def transcribe(self, utterances: Sequence[npt.NDArray[np.int16]]) -> list[Recognized]:
        time.sleep(3.0)
        return [Recognized("words", 0.0) for _ in utterances]


async def test_speech_beyond_the_decoders_is_reported_overloaded_not_lost(platform: TestPlatform) -> None:
    transcription = platform.node.transcription
    assert transcription is not None

    def slow(deliver: Callable[[Caption], None]) -> TranscriptionPool:
        config = PoolConfig(max_batch=1, max_queued=1, max_wait=0.3)
        return TranscriptionPool(SlowRecognizer(), SileroVad(), deliver, config=config)

    transcription._make_pool = slow  # the node's path with a decoder too slow for the speech it gets
    bot = await platform.recording_bot("busy")
    caller, call, call_id = await answered(platform, bot, "+15550133")
    try:
        status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/startTranscription", {})
        assert status == 200
        short = synthesize("Yes, that is right.", "en-us+m3")
        for _ in range(4):
            await call.play_wav(np.concatenate([short, PAUSE[:9600]]))
        await call.play_wav(PAUSE)
        await bot.webhook.wait_for(lambda n: "transcript" in n.resource_data, count=4, timeout=20)
        got = transcripts(bot, call_id)
        statuses = [t["status"] for t in got]
        assert "overloaded" in statuses and "final" in statuses, statuses
        assert all(t["text"] == "" for t in got if t["status"] == "overloaded")
        assert all(t["endOffset"] > t["startOffset"] for t in got)  # the bot learns which span it missed
        assert [t["sequenceId"] for t in got] == list(range(1, len(got) + 1))
    finally:
        await caller.__aexit__(None, None, None)


async def test_noise_and_music_do_not_flood_captions_nor_stop_the_next_sentence(platform: TestPlatform) -> None:
    bot = await platform.recording_bot("scribe")
    caller, call, call_id = await answered(platform, bot, "+15550134")
    try:
        status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/startTranscription", {})
        assert status == 200
        rng = np.random.default_rng(3)
        noise = rng.normal(0, 4000, 4 * 16_000).clip(-32768, 32767).astype(np.int16)
        t = np.arange(4 * 16_000) / 16_000
        music = (6000 * np.sin(2 * np.pi * 330 * 2 ** (np.floor(t * 3) % 8 / 12) * t)).astype(np.int16)
        await call.play_wav(np.concatenate([noise, music, PAUSE]))
        sentence = "Please hold while I transfer you to a colleague."
        await call.play_wav(np.concatenate([synthesize(sentence, "en+f2"), PAUSE]))
        try:
            await bot.webhook.wait_for(
                lambda n: (  # the sentence came through (the exact words are test_wer's business)
                    "transcript" in n.resource_data
                    and word_error_rate([(sentence, n.resource_data["transcript"]["text"])]) <= 0.8
                    and "transfer" in n.resource_data["transcript"]["text"].lower()
                ),
                timeout=15,
            )
        except TimeoutError:
            raise AssertionError([t["text"] for t in transcripts(bot, call_id)]) from None
        assert len(transcripts(bot, call_id)) <= 3  # the sentence, and at most a word or two made of the noise
        transcription = platform.node.transcription
        assert transcription is not None and transcription.pool is not None and transcription.pool.queued == 0
    finally:
        await caller.__aexit__(None, None, None)
