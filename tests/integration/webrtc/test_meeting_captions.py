"""Live captions on the web client's meeting page (headless Debian Chromium): a guest in a meeting that a bot
records and transcribes sees each utterance as a caption, the speaker's name and words, in a polite live region,
from the same captions the bot gets as notifications; at most the last four lines stay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from playwright import async_api as playwright

from opencomms.config import SpeechConfig
from opencomms.domain.meetings import LobbyScope
from opencomms.speech.wer import word_error_rate
from opencomms.testing.platform import TestPlatform
from tests.integration.meetings.test_live_meetings import MEMBER, join
from tests.integration.webrtc.browsers import (
    build_bundles,
    chromium,
    join_url,
    meeting_node,
    microphone,
    open_as_guest,
    page_value,
    screenshot,
    wait_page,
)
from tests.integration.webrtc.test_meeting_page import CALLS, by_join_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def bundles() -> None:
    build_bundles()


async def test_a_guest_sees_live_captions_with_the_speaker_s_name(tmp_path: Path) -> None:
    config = dataclasses.replace(meeting_node(tmp_path), speech=SpeechConfig(enabled=True))
    async with TestPlatform(config) as p, playwright.async_playwright() as pw:
        meeting = p.add_meeting(
            subject="Captioned", passcode=None, passcode_required=False, lobby_scope=LobbyScope.EVERYONE
        )
        scribe = await p.recording_bot("scribe", permissions=MEMBER)
        bob = await p.recording_bot("bob", permissions=MEMBER)
        scribe_call = await join(scribe, by_join_id(meeting.join_meeting_id))
        bob_call = await join(bob, by_join_id(meeting.join_meeting_id))
        quiet = microphone(tmp_path / "quiet.wav", np.zeros(16000, dtype=np.int16))  # the guest says nothing
        async with chromium(pw, quiet) as browser:
            page = await open_as_guest(browser, join_url(p.node.public_url, meeting), "Gail Guest")
            await wait_page(page, "m.status() === 'in-meeting'")
            assert not await page.locator("#captions").is_visible()  # nothing transcribed yet

            recording = {"status": "recording", "clientContext": "rec"}
            url = f"{CALLS}/{scribe_call}/updateRecordingStatus"
            status, _, _ = await scribe.client.request("POST", url, recording)
            assert status == 200
            status, _, _ = await scribe.client.request("POST", f"{CALLS}/{scribe_call}/startTranscription", {})
            assert status == 200

            text = "Remember to lock the door when you leave the building."
            prompt = {"@odata.type": "#opencomms.textPrompt", "text": text, "voice": "en-us+m3"}
            status, _, _ = await bob.client.request("POST", f"{CALLS}/{bob_call}/playPrompt", {"prompts": [prompt]})
            assert status == 200
            found = await scribe.webhook.wait_for(lambda n: "transcript" in n.resource_data, timeout=20)
            transcript = found[0].resource_data["transcript"]
            await wait_page(page, "m.captions().length >= 1", timeout=10)
            [caption] = await page_value(page, "m.captions()")
            assert caption == {"speaker": "Bob", "text": transcript["text"]}  # what the bot got, under Bob's name
            assert word_error_rate([(text, caption["text"])]) <= 0.2
            captions = page.locator("#captions")
            assert await captions.is_visible() and await captions.get_attribute("aria-live") == "polite"
            assert "Bob:" in await captions.inner_text()
            await screenshot(page, "captions.png")
