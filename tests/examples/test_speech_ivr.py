"""The speech-driven IVR on a real node: a phone hears "say sales or support", first says something else (asked
again), then asks for technical support (an espeak-ng voice, through G.711) and is transferred to the support
bot; the sales bot never rings. The word matcher alone: one department or none."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from examples.speech_ivr.bot import route, run_speech_ivr

from opencomms.config import SpeechConfig
from opencomms.media.wav import decode_wav
from opencomms.testing.platform import TestPlatform, default_config
from tests.examples.conftest import set_webhook, settings_for

SILENCE = np.zeros(16000, dtype=np.int16)


def speak(text: str, voice: str = "en-us+m3") -> npt.NDArray[np.int16]:
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, text], capture_output=True, check=True).stdout
    return decode_wav(wav)


def test_route_names_one_department_or_none() -> None:
    assert route("Support, please.") == "support"
    assert route("I'd like to talk to Sales") == "sales"
    assert route("sales or support") is None  # both: ask again
    assert route("What's the weather like?") is None
    assert route("") is None


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[TestPlatform]:
    config = dataclasses.replace(default_config(str(tmp_path)), speech=SpeechConfig(enabled=True))
    async with TestPlatform(config) as p:
        yield p


@pytest.mark.slow
async def test_a_caller_who_says_support_reaches_support(platform: TestPlatform) -> None:
    sales = await platform.recording_bot("sales")
    support = await platform.recording_bot("support")
    creds = await platform.register_bot("ivr")
    departments = {"sales": sales.credentials.app_id, "support": support.credentials.app_id}
    async with run_speech_ivr(settings_for(platform, creds), departments) as running:
        set_webhook(platform, creds, running.callback_url)
        ivr = running.ivr
        async with platform.caller(number="+15550177") as phone:
            call = await phone.dial(creds.number)
            await call.wait_answered()
            await call.wait_for_speech()
            await call.wait_for_silence(0.5)  # the question is over
            await call.play_wav(speak("What time is it?"))
            await call.play_wav(SILENCE)
            missed = await ivr.wait_outcome("missed")
            assert route(missed.detail) is None
            await call.wait_for_speech()  # "Sorry ..." and the question again
            await call.wait_for_silence(0.5)
            await call.play_wav(speak("I need technical support.", "en+f2"))
            await call.play_wav(SILENCE)
            routed = await ivr.wait_outcome("routed")
            assert routed.detail == "support"
            incoming = await support.webhook.incoming(timeout=15)
            assert await support.client.answer(incoming.call_id) == 202
            await support.webhook.wait_state(incoming.call_id, "established", timeout=10)
            assert not sales.webhook.notifications  # the sales bot never rang
            assert not call.ended
