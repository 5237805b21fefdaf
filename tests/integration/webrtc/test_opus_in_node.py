"""`webrtc.opus_in_node`: rtpengine only relays a browser's Opus (ICE, DTLS-SRTP <-> plain RTP, no transcoding) and
the node's RTP bank codes it at 16 kHz itself. Headless Chromium calls an app-hosted bot: the leg toward the node is
Opus (call record `audioCodec`), the bot's unmixed frames follow the browser's WAV with its 6 kHz bursts intact
(wideband end to end), and the page hears the bot's 440 Hz prompt on its received track (the node's Opus). The
meeting scenario with the option on is `test_meeting_media.py` (parametrized)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest
from playwright import async_api as playwright

from opencomms.rtp.opus import available
from opencomms.sdk.media import AudioFrame, LocalMediaSession
from opencomms.web.app import BUNDLE
from tests.integration.conftest import ALL_CALL_PERMISSIONS, make_platform
from tests.integration.webrtc.browsers import build_bundles, chromium, drifting_correlation, envelope, microphone
from tests.integration.webrtc.support import answer_with_media, ticket, webrtc_config
from tests.integration.webrtc.test_browser_call import bot_media, from_audio, timeline
from tests.integration.webrtc.test_wideband import _mic
from tests.unit.media.test_media_g722 import band_rms

pytestmark = pytest.mark.skipif(not available(), reason="libopus0 not installed")

BOB = "sip:support@bob.example"
RECORDS = "/communications/callRecords"


@pytest.fixture(scope="module")
def bundle() -> Path:
    build_bundles()
    return BUNDLE


def _config() -> Any:
    config = webrtc_config(opus_in_node=True)
    low = random.randrange(30000, 38000, 2)
    return dataclasses.replace(config, sip=dataclasses.replace(config.sip, rtp_port_min=low, rtp_port_max=low + 998))


async def test_a_browser_and_a_bot_hear_each_other_with_opus_coded_by_the_node(tmp_path: Path, bundle: Path) -> None:
    mic = microphone(tmp_path / "mic.wav", _mic())
    perms = {"bob": [*ALL_CALL_PERMISSIONS, "CallRecords.Read.All"]}
    async with (
        make_platform(_config(), ("bob",), perms) as p,
        LocalMediaSession() as session,
        playwright.async_playwright() as pw,
    ):
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB, name="Olga Opus")
        assert issued["status"] == 201, issued
        async with chromium(pw, mic) as browser:
            page = await browser.new_page()
            await page.goto(f"{p.node.public_url}{issued['callUrl']}")
            await page.get_by_role("button", name="Call").click()
            incoming = await p["bob"].bot.incoming(timeout=15)
            sock = await answer_with_media(p, "bob", incoming.call_id, session)
            heard: list[AudioFrame] = []
            await asyncio.wait_for(
                bot_media(sock, heard, frames=400, after_audio=True), timeout=45
            )  # 8 s: the loop, twice
            level = await page.evaluate("window.opencommsCall.level()")
            codecs = await page.evaluate("window.opencommsCall.codecs()")
            assert p.node.sip is not None
            (leg,) = p.node.sip._by_key.values()
            assert leg.relayed and leg.media is not None and leg.media.codec.name == "opus"
            bank = p.node.sip.bank
            encodes = getattr(getattr(bank, "_opus", None), "encodes", 0)
            await page.get_by_role("button", name="Hang up").click()
            await p["bob"].bot.wait_state(incoming.call_id, "terminated", timeout=10)
        chain = incoming.resource_data["callChainId"]
        status, record, _ = await p["bob"].client.request(
            "GET", f"{RECORDS}/{chain}?$expand=sessions($expand=segments)"
        )
        assert status == 200, record
    streams = [s for ses in record["sessions"] for seg in ses["segments"] for m in seg["media"] for s in m["streams"]]
    pcm = timeline(from_audio(heard))[8000:]
    correlation = drifting_correlation(envelope(pcm), envelope(_mic()))
    result = {
        "node_codecs": {s["audioCodec"] for s in streams},
        "all": band_rms(pcm, 100, 8000),
        "tone": band_rms(pcm, 5800, 6200),
        "correlation": correlation,
        "page_level": level,
        "encodes": encodes,
        "waited_frames": len(heard) - len(from_audio(heard)),  # zeros before the browser's media flowed
    }
    print("opus in the node:", result)
    assert "audio/opus" in codecs, codecs
    assert result["node_codecs"] == {"opus"}, result
    assert result["all"] > 300 and correlation > 0.6, result  # the bot heard the browser's WAV
    assert result["tone"] > 0.2 * result["all"], result  # its 6 kHz bursts: wideband Opus, no 8 kHz step
    assert level["rms"] > 0.05, level  # the page heard the bot's prompt, encoded by the node
    assert encodes > 100, result
