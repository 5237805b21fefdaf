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

from opencomms.rtp.opus import available
from opencomms.sdk.media import AudioFrame
from opencomms.web.app import BUNDLE
from tests.integration.webrtc.browsers import build_bundles, drifting_correlation, envelope, microphone
from tests.integration.webrtc.calls import browser_calls_bob
from tests.integration.webrtc.support import webrtc_config
from tests.integration.webrtc.test_browser_call import bot_media, from_audio, timeline
from tests.integration.webrtc.test_wideband import _mic
from tests.unit.media.test_media_g722 import band_rms

pytestmark = pytest.mark.skipif(not available(), reason="libopus0 not installed")


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
    async with browser_calls_bob(_config(), mic, "Olga Opus") as call:
        heard: list[AudioFrame] = []
        await asyncio.wait_for(
            bot_media(call.sock, heard, frames=400, after_audio=True), timeout=45
        )  # 8 s: the loop, twice
        level = await call.page.evaluate("window.opencommsCall.level()")
        codecs = await call.page.evaluate("window.opencommsCall.codecs()")
        sip = call.p.node.sip
        assert sip is not None
        (leg,) = sip._by_key.values()
        assert leg.relayed and leg.media is not None and leg.media.codec.name == "opus"
        encodes = getattr(getattr(sip.bank, "_opus", None), "encodes", 0)
    streams = call.streams
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
