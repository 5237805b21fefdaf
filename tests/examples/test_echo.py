"""The echo bot on application-hosted media: a phone speaks and hears itself back; '#' ends the call.

Real node with its media engine, the call's audio carried to the bot's WebSocket (LocalMediaSession) and back,
the phone on real SIP/RTP (G.711).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import AsyncIterator

import pytest
from examples.echo.bot import run_echo

from opencomms.testing.audio import contains, find_signal, speechlike
from opencomms.testing.platform import TestPlatform, default_config
from tests.examples.conftest import set_webhook, settings_for


@pytest.fixture
async def platform() -> AsyncIterator[TestPlatform]:
    with tempfile.TemporaryDirectory() as tmp:
        config = default_config(tmp)
        media = dataclasses.replace(config.media, app_hosted_allow_private=("127.0.0.1",))
        async with TestPlatform(dataclasses.replace(config, media=media)) as p:
            yield p


async def test_caller_hears_itself_and_hangs_up_with_pound(platform: TestPlatform) -> None:
    creds = await platform.register_bot("echo")
    async with run_echo(settings_for(platform, creds)) as bot:
        set_webhook(platform, creds, bot.callback_url)
        async with platform.caller() as phone:
            call = await phone.dial(creds.number)
            await call.wait_answered()
            await call.hear(0.3)
            voice = speechlike(1.5)
            start = call.heard_seconds
            await call.play_wav(voice)
            await call.wait_for_silence(0.4, timeout=5)
            heard = call.heard_audio(start)
            match = find_signal(heard, voice)
            # the caller's own voice came back, within a second. It crossed G.711 twice and two jitter buffers
            # that may slip a frame on a loaded machine: compare 60 ms pieces, each allowed to shift 0.5 s.
            assert contains(heard, voice, piece=0.06, slip=0.5, min_score=0.7) > 0.8, match
            assert 0.0 < match.offset < 1.0, match
            # the bot hangs up as soon as it hears '#', possibly before the key's last RTP packets are sent
            pressing = asyncio.create_task(call.press("#"))
            await call.wait_ended(timeout=5)
            await asyncio.gather(pressing, return_exceptions=True)
            assert call.ended_by == "far end"
        assert bot.stats.calls == 1 and bot.stats.frames_echoed >= 75 and bot.stats.frames_dropped == 0
