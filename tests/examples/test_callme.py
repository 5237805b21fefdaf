"""The call-me bot calling another bot through a real node: it speaks the code, the callee confirms or declines.

The callee is a test bot (a real webhook and client): it answers, records what it hears (the mix of the call,
so exactly what the call-me bot played) and presses keys with sendDtmfTones, as a person on a phone would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from examples.callme.bot import CallMeResult, call_me, callme_client, code_prompt

from opencomms.media.wav import decode_wav
from opencomms.sdk import application_target
from opencomms.testing.audio import find_signal
from opencomms.testing.platform import TestBot, TestPlatform
from tests.examples.conftest import prompt_loaded, settings_for, spoken_by


async def _action(phone: TestBot, call_id: str, name: str, body: Any) -> dict[str, Any]:
    status, data, _ = await phone.client.request("POST", f"/communications/calls/{call_id}/{name}", body)
    assert status == 200, data
    result: dict[str, Any] = data
    return result


async def _answer(phone: TestBot) -> str:
    incoming = await phone.webhook.incoming(timeout=10)
    assert await phone.client.answer(incoming.call_id) == 202
    await phone.webhook.wait_state(incoming.call_id, "established")
    return incoming.call_id


async def _start(platform: TestPlatform, **options: Any) -> tuple[TestBot, asyncio.Task[CallMeResult], Any]:
    phone = await platform.recording_bot("phone")
    creds = await platform.register_bot("callme")
    client = callme_client(settings_for(platform, creds))
    comms = await client.__aenter__()
    task = asyncio.create_task(call_me(comms, application_target(phone.credentials.app_id), **options))
    return phone, task, client


async def test_speaks_the_code_and_the_callee_confirms(platform: TestPlatform) -> None:
    phone, task, client = await _start(platform, code="4711", key_timeout=5)
    try:
        call_id = await _answer(phone)
        # the prompt plays once rendered (piper's first render takes a moment)
        await prompt_loaded(platform, code_prompt("4711")[0]["text"])
        rec = await _action(
            phone,
            call_id,
            "recordResponse",
            {"playBeep": False, "maxRecordDurationInSeconds": 3, "initialSilenceTimeoutInSeconds": 5},
        )
        done = await phone.webhook.wait_for(
            lambda n: n.resource_url.endswith(rec["id"]) and n.change_type == "deleted", timeout=10
        )
        info = done[0].resource_data
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                info["recordingLocation"], headers={"Authorization": f"Bearer {info['recordingAccessToken']}"}
            ) as resp,
        ):
            heard = decode_wav(await resp.read())
        # what the callee heard is the node's text-to-speech of the code prompt, from its start
        spoken = await spoken_by(platform, code_prompt("4711")[0]["text"])
        match = find_signal(heard, spoken)
        assert match.score > 0.9 and abs(match.offset) < 1.0, match
        await _action(phone, call_id, "sendDtmfTones", {"tones": ["tone1"]})  # while the prompt still plays
        result = await asyncio.wait_for(task, 15)
        assert (result.outcome, result.code, result.keys, result.confirmed) == ("confirmed", "4711", "1", True)
        await phone.webhook.wait_for(lambda n: n.call_id == call_id and n.change_type == "deleted", timeout=10)
    finally:
        task.cancel()
        await client.__aexit__(None, None, None)


async def test_invalid_key_then_decline(platform: TestPlatform) -> None:
    phone, task, client = await _start(platform, key_timeout=5)
    try:
        call_id = await _answer(phone)
        await asyncio.sleep(0.5)
        await _action(phone, call_id, "sendDtmfTones", {"tones": ["tone5"]})
        await asyncio.sleep(0.5)
        await _action(phone, call_id, "sendDtmfTones", {"tones": ["tone2"]})
        result = await asyncio.wait_for(task, 15)
        assert (result.outcome, result.keys, result.confirmed) == ("declined", "52", False)
        assert len(result.code) == 6 and result.code.isdigit()
    finally:
        task.cancel()
        await client.__aexit__(None, None, None)


async def test_callee_rejects(platform: TestPlatform) -> None:
    phone, task, client = await _start(platform)
    try:
        incoming = await phone.webhook.incoming(timeout=10)
        status, _, _ = await phone.client.request(
            "POST", f"/communications/calls/{incoming.call_id}/reject", {"reason": "busy"}
        )
        assert status == 202
        result = await asyncio.wait_for(task, 10)
        assert result.outcome == "not answered" and not result.confirmed
    finally:
        task.cancel()
        await client.__aexit__(None, None, None)
