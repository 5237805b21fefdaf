"""A phone offering G.722 is answered with G.722 and its call is wideband both ways; a PCMU phone stays at 8 kHz.

Each caller (real SIP/RTP on loopback against a running node) speaks a mix of 1 kHz and 6 kHz that the bot
records (recordResponse, 16 kHz WAV), and hears the bot's text-to-speech prompt: over G.722 the 6 kHz tone is in
the recording and the prompt's 4-8 kHz band reaches the caller; over PCMU neither can (G.711 carries 8 kHz audio).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import numpy as np

from opencomms.media.wav import decode_wav
from opencomms.rtp import G722, PCMU, Codec
from opencomms.testing import TestBot, TestPlatform

from ...unit.media.test_media_g722 import band_rms


def _mix(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (6000 * np.sin(2 * np.pi * 1000 * t) + 6000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16)


async def _action(bot: TestBot, call_id: str, name: str, body: Any) -> dict[str, Any]:
    status, op, _ = await bot.client.request("POST", f"/communications/calls/{call_id}/{name}", body)
    assert status == 200, op
    result: dict[str, Any] = op
    return result


async def _done(bot: TestBot, op_id: str) -> dict[str, Any]:
    found = await bot.webhook.wait_for(
        lambda n: n.resource_url.endswith(op_id) and n.change_type == "deleted", timeout=15
    )
    data: dict[str, Any] = found[0].resource_data
    return data


async def _call(platform: TestPlatform, bot: TestBot, codecs: tuple[Codec, ...], index: int) -> dict[str, float]:
    """One call: (codec, the recording's and the heard prompt's 4-8 kHz share of their 0.3-8 kHz energy)."""
    async with platform.caller(codecs=codecs) as caller:
        call = await caller.dial(bot.number)
        incoming = await bot.webhook.incoming(timeout=10, index=index)
        assert await bot.client.answer(incoming.call_id) == 202
        await call.wait_answered()
        await bot.webhook.wait_state(incoming.call_id, "established")
        prompt = {"@odata.type": "#opencomms.textPrompt", "text": "Six fishes chase seven sheep."}
        play = await _action(bot, incoming.call_id, "playPrompt", {"prompts": [prompt]})
        start = await call.wait_for_speech(timeout=30)  # text-to-speech is slow on a loaded machine
        end = await call.wait_for_silence(0.5)
        heard = call.heard_audio(start, end)
        assert (await _done(bot, play["id"]))["status"] == "completed"
        record = {"playBeep": False, "stopTones": ["#"], "maxRecordDurationInSeconds": 10}
        rec = await _action(bot, incoming.call_id, "recordResponse", record)
        await call.play_wav(_mix(1.5))
        await call.press("#")
        done = await _done(bot, rec["id"])
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                done["recordingLocation"], headers={"Authorization": f"Bearer {done['recordingAccessToken']}"}
            ) as resp,
        ):
            recording = decode_wav(await resp.read())
        assert await bot.client.hang_up(incoming.call_id) == 204
        await call.wait_ended()
        return {
            "g722": float(call.codec == "G722"),
            "recorded_1k": band_rms(recording, 800, 1200),
            "recorded_6k": band_rms(recording, 5800, 6200),
            "prompt_high": band_rms(heard, 4000, 8000) / max(band_rms(heard, 300, 8000), 1.0),
        }


async def test_g722_offer_is_answered_with_g722_and_carries_16khz_audio_both_ways() -> None:
    async with TestPlatform() as platform:
        bot = await platform.recording_bot("wideband")
        wide = await _call(platform, bot, (G722, PCMU), 0)
        narrow = await _call(platform, bot, (PCMU, G722), 1)  # the offerer's order decides: PCMU
        print("G.722:", wide, "PCMU:", narrow)
        assert wide["g722"] == 1.0 and narrow["g722"] == 0.0
        level = 6000 / np.sqrt(2)
        assert wide["recorded_1k"] > 0.5 * level and narrow["recorded_1k"] > 0.5 * level
        assert wide["recorded_6k"] > 0.5 * level  # the caller's 6 kHz tone reached the bot's recording
        assert narrow["recorded_6k"] < 0.05 * level  # what G.711 cannot carry
        assert wide["prompt_high"] > 0.05 and narrow["prompt_high"] < 0.01  # the prompt's sibilants, or not
        assert platform.node.calls.active_calls == 0
