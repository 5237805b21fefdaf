"""The stateful IVR answering real phone calls: a virtual caller dials its number over SIP/RTP and navigates.

A real node (TestPlatform), the IVR on the Calling SDK serving real HTTP, prompts spoken by espeak-ng or fetched
as WAV files, keys pressed as RFC 4733 events, the caller's voice recorded as voicemail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from examples.ivr.app import IvrBot, run_ivr
from examples.ivr.menu import load_menu

from opencomms.media.wav import decode_wav, encode_wav
from opencomms.testing.audio import contains, speechlike
from opencomms.testing.platform import TestBot, TestPlatform
from tests.examples.conftest import FileServer, set_webhook, settings_for

MENU = """
voice: en-us
key_timeout: 1
max_retries: 1
give_up: hangup
greeting: "Hi."
targets:
  operator: {application: "${OPERATOR}"}
voicemail:
  prompt: "Message."
  max_seconds: 20
  stop_tones: ["#"]
  max_silence: 5
  saved: "Saved."
messages:
  invalid: "Invalid."
  timeout: "Nothing?"
  too_many: "Sorry."
  goodbye: "Bye."
  transferring: "Hold."
menus:
  main:
    prompt: "Main."
    options:
      "1": {menu: sales}
      "0": {transfer: operator}
  sales:
    prompt: [{url: "${FILES}/chime.wav"}]
    options:
      "2": {voicemail: sales}
      "9": back
"""


def chime() -> np.ndarray:
    t = np.arange(int(0.6 * 16000)) / 16000
    return (np.sin(2 * np.pi * 660 * t) * 6000).astype(np.int16)


@dataclass
class Setup:
    ivr: IvrBot
    number: str
    operator: TestBot


@pytest.fixture
async def setup(platform: TestPlatform, files: FileServer, tmp_path: Path) -> AsyncIterator[Setup]:
    files.files["chime.wav"] = encode_wav(chime())
    operator = await platform.recording_bot("operator")
    creds = await platform.register_bot("ivr")
    config = load_menu(MENU, {"OPERATOR": operator.credentials.app_id, "FILES": files.url})
    async with run_ivr(config, settings_for(platform, creds), voicemail_dir=tmp_path) as ivr:
        set_webhook(platform, creds, ivr.callback_url)
        yield Setup(ivr, creds.number, operator)


async def test_submenu_wav_prompt_and_voicemail(platform: TestPlatform, files: FileServer, setup: Setup) -> None:
    async with platform.caller() as phone:
        call = await phone.dial(setup.number)
        await call.wait_answered()
        await call.wait_for_speech()  # "Hi. Main."
        await call.wait_for_silence(0.3)
        await call.press("1")
        await call.wait_for_speech()
        start = await call.wait_for_silence(0.3)
        heard = call.heard_audio(max(0.0, start - 1.5), start)
        assert contains(heard, chime(), min_score=0.8) > 0.8  # the WAV prompt, fetched by the node, was heard
        assert files.hits["chime.wav"] == 1  # prefetched at answer, then played from the node's cache
        await call.press("2")
        await call.wait_for_speech()  # "Message." and the beep
        await call.wait_for_silence(0.3)
        voice = speechlike(1.5)
        await call.play_wav(voice)
        await call.press("#")
        await call.wait_for_speech()  # "Saved. Bye."
        await call.wait_ended(timeout=10)
        assert call.ended_by == "far end"
    result = await setup.ivr.next_result()
    assert (result.outcome, result.keys) == ("voicemail:sales", "12")
    assert result.voicemail is not None and result.voicemail.parent.name == "sales"
    recorded = decode_wav(result.voicemail.read_bytes())
    assert contains(recorded, voice) > 0.8  # the caller's voice is in the saved message (piece by piece)
    assert setup.ivr.active_calls == 0


async def test_invalid_key_and_timeout_then_give_up(platform: TestPlatform, setup: Setup) -> None:
    async with platform.caller() as phone:
        call = await phone.dial(setup.number)
        await call.wait_answered()
        await call.wait_for_speech()
        await call.wait_for_silence(0.3)
        await call.press("7")  # not an option: "Invalid. Main."
        await call.wait_for_speech()
        await call.wait_for_silence(0.3)
        # no key: after key_timeout, max_retries (1) is exhausted: "Sorry. Bye." and the IVR hangs up
        await call.wait_ended(timeout=10)
    result = await setup.ivr.next_result()
    assert (result.outcome, result.keys) == ("gave up", "7")


async def test_transfer_to_the_operator_bot(platform: TestPlatform, setup: Setup) -> None:
    operator = setup.operator
    async with platform.caller() as phone:
        call = await phone.dial(setup.number)
        await call.wait_answered()
        await call.wait_for_speech()
        await call.press("0")  # barge-in: "Hold." then the transfer
        incoming = await operator.webhook.incoming(timeout=10)
        assert await operator.client.answer(incoming.call_id) == 202
        await operator.webhook.wait_state(incoming.call_id, "established")
        result = await setup.ivr.next_result()
        assert (result.outcome, result.keys) == ("transferred:operator", "0")
        # the caller now talks to the operator: a key the operator sends reaches the phone
        status, _, _ = await operator.client.request(
            "POST", f"/communications/calls/{incoming.call_id}/sendDtmfTones", {"tones": ["tone5"]}
        )
        assert status == 200
        assert await call.wait_for_tones(1) == "5"
        assert not call.ended
        await call.hang_up()
