"""The bot-testing kit end to end: a TestPlatform, a real bot webhook and a VirtualCaller on real SIP/RTP.

The bot answers with service-hosted media, speaks a text-to-speech prompt, sends and receives DTMF and records
the caller; the caller hears the prompt, recognises the tones, presses keys both ways, plays a WAV that must be
found in the recording, and sees the bot hang up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from opencomms.media.wav import decode_wav, encode_wav
from opencomms.testing import (
    CallFailed,
    RecordingBot,
    TestBot,
    TestPlatform,
    contains,
    find_signal,
    speechlike,
)


async def _action(bot: TestBot, call_id: str, name: str, body: Any) -> dict[str, Any]:
    status, op, _ = await bot.client.request("POST", f"/communications/calls/{call_id}/{name}", body)
    assert status == 200, op
    result: dict[str, Any] = op
    return result


async def _operation_done(bot: TestBot, op_id: str, timeout: float = 15.0) -> dict[str, Any]:
    found = await bot.webhook.wait_for(
        lambda n: n.resource_url.endswith(op_id) and n.change_type == "deleted", timeout=timeout
    )
    data: dict[str, Any] = found[0].resource_data
    return data


def _tones(bot: TestBot) -> list[str]:
    return [n.resource_data["toneInfo"]["tone"] for n in bot.webhook.notifications if n.resource_data.get("toneInfo")]


async def test_caller_hears_the_prompt_and_tones_is_recorded_and_the_bot_hangs_up(tmp_path: Path) -> None:
    async with TestPlatform() as platform:
        bot = await platform.recording_bot("reception")
        async with platform.caller(number="+15550123") as caller:
            call = await caller.dial(bot.number)
            incoming = await bot.webhook.incoming(timeout=10)
            assert incoming.resource_data["source"]["identity"]["phone"]["id"] == "+15550123"
            assert await bot.client.answer(incoming.call_id) == 202
            await call.wait_answered()
            assert call.status == 200
            call_id = incoming.call_id
            await bot.webhook.wait_state(call_id, "established")

            quiet = await call.hear(0.2)  # nothing is playing yet
            assert quiet.size == 3200 and np.abs(quiet).max() < 100
            await _action(bot, call_id, "subscribeToTone", {})
            prompt = {"@odata.type": "#opencomms.textPrompt", "text": "Welcome to Contoso. Press one for sales."}
            play = await _action(bot, call_id, "playPrompt", {"prompts": [prompt]})
            start = await call.wait_for_speech(timeout=10)
            end = await call.wait_for_silence(0.5)
            assert end - start > 1.0, call.speech
            prompt_audio = call.heard_audio(start, end).astype(np.float64)
            assert np.sqrt(np.mean(prompt_audio**2)) > 500  # the prompt itself, 16 kHz PCM
            assert (await _operation_done(bot, play["id"]))["status"] == "completed"

            await _action(bot, call_id, "sendDtmfTones", {"tones": ["tone4", "tone2"]})
            assert await call.wait_for_tones(2) == "42"

            await call.press("12", method="rfc4733")
            await call.press("#", method="inband")
            await bot.webhook.wait_for(lambda n: bool(n.resource_data.get("toneInfo")), count=3)
            assert _tones(bot) == ["tone1", "tone2", "pound"]

            record = {
                "playBeep": False,
                "stopTones": ["#"],
                "maxRecordDurationInSeconds": 20,
                "initialSilenceTimeoutInSeconds": 5,
                "maxSilenceTimeoutInSeconds": 5,
            }
            rec = await _action(bot, call_id, "recordResponse", record)
            voice = speechlike(1.5)
            wav = tmp_path / "voice.wav"
            wav.write_bytes(encode_wav(voice))
            assert await call.play_wav(wav) == pytest.approx(1.5, abs=0.01)
            await call.press("#")
            done = await _operation_done(bot, rec["id"])
            assert done["completionReason"] == "stopToneDetected", done
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    done["recordingLocation"], headers={"Authorization": f"Bearer {done['recordingAccessToken']}"}
                ) as resp,
            ):
                recording = decode_wav(await resp.read())
            # the recording holds what the caller said (a jitter buffer may slip a 20 ms frame: compare pieces)
            assert contains(recording, voice) > 0.8, find_signal(recording, voice)

            assert await bot.client.hang_up(call_id) == 204
            await call.wait_ended()
            assert call.ended_by == "far end"
            assert any(entry.what == "← BYE" for entry in call.timeline)
            assert call.rtp_stats.packets_lost == 0
        assert platform.node.calls.active_calls == 0


async def test_caller_hangs_up_unknown_number_rejected_and_cancelled_calls() -> None:
    async with TestPlatform() as platform:
        creds = await platform.register_bot("desk", sip_user="desk")  # a bot registered before its webhook runs
        assert creds.sip_uri == "sip:desk@127.0.0.1" and creds.number.startswith("+1425555")
        async with (
            RecordingBot(app_id=creds.app_id, jwks_url=platform.jwks_url, issuer=platform.issuer) as webhook,
            platform.client(creds) as client,
            platform.caller() as caller,
        ):
            platform.set_webhook(creds, webhook.url)
            call = await caller.dial(f"{creds.sip_uri}:{platform.sip_address[1]}")  # by SIP URI
            first = await webhook.incoming(timeout=10)
            await client.answer(first.call_id)
            await call.wait_answered()
            await call.hang_up()
            assert call.ended and call.ended_by == "caller"
            gone = await webhook.wait_for(lambda n: n.change_type == "deleted" and n.call_id == first.call_id)
            assert gone[0].resource_data["resultInfo"]["code"] == 200

            unknown = await caller.dial("+19995550000")
            with pytest.raises(CallFailed) as failed:
                await unknown.wait_answered()
            assert failed.value.status == 404 and unknown.ended

            busy = await caller.dial(creds.number)  # by number
            second = await webhook.incoming(timeout=10, index=1)
            status, _, _ = await client.request(
                "POST", f"/communications/calls/{second.call_id}/reject", {"reason": "busy"}
            )
            assert status == 202
            with pytest.raises(CallFailed) as failed:
                await busy.wait_answered()
            assert failed.value.status == 486

            ringing = await caller.dial(creds.number)
            third = await webhook.incoming(timeout=10, index=2)
            await ringing.hang_up()
            assert ringing.ended and ringing.status == 487
            await webhook.wait_for(lambda n: n.change_type == "deleted" and n.call_id == third.call_id)
        assert platform.node.calls.active_calls == 0
