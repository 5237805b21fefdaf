"""Hold music on a real node: startHoldMusic plays music (the built-in loop, or the customPrompt) to the held phone
only, which no longer hears the meeting, and the meeting does not hear the music; stopHoldMusic brings the phone
back; a phone waiting in the lobby hears hold music after the "please wait" prompt until it is admitted."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opencomms.config import MediaConfig
from opencomms.media.wav import encode_wav
from opencomms.testing.caller import VirtualCall, VirtualCaller
from opencomms.testing.platform import TestBot, TestPlatform, default_config
from tests.integration.test_media_ops import PromptServer

from .test_dialin import phones
from .test_live_meetings import MEMBER, by_chat, join, wait_roster

CALLS = "/communications/calls"
RATE = 16000
MEETING_TONE = 1800.0
"""What a phone in the meeting plays: above every note of the built-in music (and its harmonics)."""
CUSTOM_TONE = 2400.0


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[TestPlatform]:
    config = default_config(str(tmp_path))
    media = MediaConfig(recordings_dir=str(tmp_path), fetch_allow_private=("127.0.0.1",), fetch_timeout=2.0)
    async with TestPlatform(dataclasses.replace(config, media=media)) as p:
        yield p


def tone(freq: float, seconds: float) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(int(RATE * seconds)) / RATE
    return (9000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(samples: np.ndarray[Any, Any]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


def share(samples: np.ndarray[Any, Any], freq: float) -> float:
    """Fraction of the audio's energy within 60 Hz of `freq`."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    bins = np.fft.rfftfreq(samples.size, 1 / RATE)
    total = float(spectrum.sum()) or 1.0
    return float(spectrum[np.abs(bins - freq) < 60].sum()) / total


async def two_phones_in_a_meeting(
    platform: TestPlatform, callers: list[VirtualCaller]
) -> tuple[TestBot, str, list[VirtualCall], dict[str, str]]:
    """A meeting with a bot and two dial-in phones (`callers`, started here), all quiet."""
    meeting = platform.add_meeting(conference_id="313131", passcode=None, passcode_required=False, dial_in_bypass=True)
    host = await platform.recording_bot("host", permissions=MEMBER)
    call_id = await join(host, by_chat(meeting))
    callers.extend(platform.caller(number=n) for n in ("+15550301", "+15550302"))
    for caller in callers:
        await caller.start()
    calls = list(await asyncio.gather(*(c.dial_in(platform.dial_in_number, "313131") for c in callers)))
    roster = await wait_roster(host, call_id, lambda es: len(phones(es)) == 2)
    ids = {e["info"]["identity"]["phone"]["id"]: e["id"] for e in phones(roster)}
    await asyncio.gather(*(c.wait_for_silence(1.0) for c in calls))  # the attendant's last prompt is over
    return host, call_id, calls, ids


async def test_a_held_phone_hears_music_alone_and_the_meeting_hears_neither(platform: TestPlatform) -> None:
    callers: list[VirtualCaller] = []
    host, call_id, (a, b), ids = await two_phones_in_a_meeting(platform, callers)
    try:
        url = f"{CALLS}/{call_id}/participants/{ids['+15550301']}"
        status, _, _ = await host.client.request("POST", f"{url}/startHoldMusic", {})
        assert status == 202
        await a.wait_for_speech(timeout=5)  # the music
        await b.play_wav(tone(MEETING_TONE, 2.0), rate=RATE, wait=False)
        held, meeting = await asyncio.gather(a.hear(1.5), b.hear(1.5))
        assert rms(held) > 500 and share(held, MEETING_TONE) < 0.02  # music, not the meeting
        assert rms(meeting) < 200  # b hears neither the music nor a

        status, _, _ = await host.client.request("POST", f"{url}/stopHoldMusic", {})
        assert status == 202
        await asyncio.gather(a.wait_for_silence(0.4, timeout=5), b.wait_for_silence(0.4, timeout=5))
        await b.play_wav(tone(MEETING_TONE, 1.5), rate=RATE, wait=False)
        await a.wait_for_speech(timeout=5)
        back = await a.hear(0.6)
        assert share(back, MEETING_TONE) > 0.5  # back in the meeting
        assert platform.node.hold_music.held == 0
    finally:
        for caller in callers:
            await caller.close()


async def test_the_custom_prompt_is_the_hold_music_and_goes_with_a_phone_that_hangs_up(platform: TestPlatform) -> None:
    server = PromptServer(files={"hold.wav": encode_wav(tone(CUSTOM_TONE, 1.0))})
    await server.start()
    callers: list[VirtualCaller] = []
    host, call_id, (a, b), ids = await two_phones_in_a_meeting(platform, callers)
    try:
        base = int(platform.node.engine.stats()["engine_legs"])
        info = {"@odata.type": "#microsoft.graph.mediaInfo", "uri": f"{server.url}/hold.wav"}
        body = {"customPrompt": {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": info}}
        url = f"{CALLS}/{call_id}/participants/{ids['+15550301']}"
        status, _, _ = await host.client.request("POST", f"{url}/startHoldMusic", body)
        assert status == 202
        await a.wait_for_speech(timeout=5)
        held = await a.hear(2.5)  # the 1 s prompt, looped
        assert share(held, CUSTOM_TONE) > 0.5 and rms(held[-RATE // 2 :]) > 500
        assert rms(await b.hear(1.0)) < 200
        assert server.hits == {"hold.wav": 1}
        assert int(platform.node.engine.stats()["engine_legs"]) == base + 1  # the music leg
        await a.hang_up()
        for _ in range(100):
            if int(platform.node.engine.stats()["engine_legs"]) == base - 1:
                break
            await asyncio.sleep(0.05)
        assert int(platform.node.engine.stats()["engine_legs"]) == base - 1  # the phone and its music are gone
        assert platform.node.hold_music.held == 0
    finally:
        for caller in callers:
            await caller.close()
        assert server.runner is not None
        await server.runner.cleanup()


async def test_a_lobby_phone_hears_hold_music_after_the_wait_prompt_until_admitted(platform: TestPlatform) -> None:
    meeting = platform.add_meeting(conference_id="323232", passcode=None, passcode_required=False)
    host = await platform.recording_bot("host", permissions=MEMBER)
    call_id = await join(host, by_chat(meeting))
    async with platform.caller(number="+15550303") as caller:
        call = await caller.dial_in(platform.dial_in_number, "323232")
        roster = await wait_roster(host, call_id, lambda es: any(e["isInLobby"] for e in phones(es)))
        await call.wait_for_silence(0.3)
        await call.wait_for_speech()  # "please wait ..." and then the music, without a pause
        heard = await call.hear(7.0)
        assert rms(heard[-2 * RATE :]) > 500, "no hold music after the prompt"
        pid = phones(roster)[0]["id"]
        status, _, _ = await host.client.request("POST", f"{CALLS}/{call_id}/participants/{pid}/admit", {})
        assert status == 200
        await call.wait_for_silence(0.5, timeout=5)  # admitted: the music stops
