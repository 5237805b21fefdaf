"""Wideband from a browser to a bot with `webrtc.opus_in_node = false`: Chromium's Opus reaches the node as G.722
(rtpengine transcodes Opus <-> G.722,
the node's engine runs at 16 kHz), so what the browser's microphone has above 4 kHz reaches the bot's unmixed frames;
G.711 (8 kHz) would cut it all. The leg's codec toward the node is visible in the call record (`audioCodec`), the
browser's side stays Opus, and with `webrtc.node_codecs = ["PCMU"]` the same microphone arrives narrowed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest

from opencomms.rtp import G722, PCMU
from opencomms.sdk.media import AudioFrame
from opencomms.testing import VirtualCaller
from opencomms.web.app import BUNDLE
from tests.integration.conftest import make_platform
from tests.integration.webrtc import browsers
from tests.integration.webrtc.browsers import build_bundles, drifting_correlation, envelope, microphone
from tests.integration.webrtc.calls import BOB, browser_calls_bob
from tests.integration.webrtc.support import final_status, invite, ticket, webrtc_config
from tests.integration.webrtc.test_browser_call import bot_media, from_audio, timeline
from tests.unit.media.test_media_g722 import band_rms


@pytest.fixture(scope="module")
def bundle() -> Path:
    build_bundles()
    return BUNDLE


def _mic() -> npt.NDArray[np.int16]:
    """Speech, then bursts of a 6 kHz tone (bursts: the browser's noise suppression damps a steady tone)."""
    words = browsers.speech("six sharp fricatives, she sells sea shells")
    bursts = [np.concatenate([browsers.tone(6000.0, 0.3, 8000), np.zeros(4800, dtype=np.int16)]) for _ in range(4)]
    return np.concatenate([words, *bursts])


def _config(node_codecs: tuple[str, ...]) -> Any:
    config = webrtc_config(node_codecs=node_codecs, opus_in_node=False)  # rtpengine transcodes (not the default)
    low = random.randrange(30000, 38000, 2)  # away from the default range other nodes on this machine may hold
    return dataclasses.replace(config, sip=dataclasses.replace(config.sip, rtp_port_min=low, rtp_port_max=low + 998))


async def _browser_call(tmp_path: Path, node_codecs: tuple[str, ...]) -> dict[str, Any]:
    mic = microphone(tmp_path / f"mic-{node_codecs[0]}.wav", _mic())
    async with browser_calls_bob(_config(node_codecs), mic, "Wendy Wideband") as call:
        heard: list[AudioFrame] = []
        await asyncio.wait_for(
            bot_media(call.sock, heard, frames=400, after_audio=True), timeout=45
        )  # 8 s: the loop, twice
        codecs = await call.page.evaluate("window.opencommsCall.codecs()")
    streams = call.streams
    pcm = timeline(from_audio(heard))[8000:]  # past the call settling
    return {
        "browser_codecs": codecs,
        "node_codecs": {s["audioCodec"] for s in streams},
        "high": band_rms(pcm, 4000, 8000),
        "tone": band_rms(pcm, 5800, 6200),
        "all": band_rms(pcm, 100, 8000),
        "correlation": drifting_correlation(envelope(pcm), envelope(_mic())),  # the browser's WAV, as in the bot
        "waited_frames": len(heard) - len(from_audio(heard)),  # zeros before the browser's media flowed
    }


async def test_a_browsers_opus_reaches_the_bot_as_wideband_g722(tmp_path: Path, bundle: Path) -> None:
    wide = await _browser_call(tmp_path, ("G722", "PCMU"))
    narrow = await _browser_call(tmp_path, ("PCMU",))
    print("G.722 toward the node:", wide, "\nPCMU toward the node:", narrow)
    assert wide["node_codecs"] == {"g722"} and narrow["node_codecs"] == {"pcmu"}
    assert "audio/opus" in wide["browser_codecs"] and "audio/opus" in narrow["browser_codecs"]
    assert wide["all"] > 300 and narrow["all"] > 300  # the bot heard the browser both times
    assert wide["correlation"] > 0.6, wide  # its WAV: about 0.8 (PCMU about 0.4: the tone bursts are lost)
    assert wide["tone"] > 0.2 * wide["all"]  # the 6 kHz bursts survived Opus -> G.722 -> 16 kHz engine
    assert narrow["high"] < 0.02 * narrow["all"]  # G.711 leaves nothing above 4 kHz


async def test_phones_kept_narrow_by_our_order_while_browsers_stay_wideband() -> None:
    """`sip.prefer_our_codec_order` with PCMU first: a phone offering G722 first gets PCMU, a browser's leg (whose
    offer rtpengine makes from `webrtc.node_codecs`) still gets G.722."""
    config = _config(("G722", "PCMU"))
    sip = dataclasses.replace(config.sip, codecs=("PCMU", "PCMA", "G722"), prefer_our_codec_order=True)
    async with make_platform(dataclasses.replace(config, sip=sip), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB, phone_number="+14255550177")
        issued = await ticket(p, "bob", BOB, name="Wendy Web")
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{issued['wsUrl']}?ticket={issued['ticket']}", protocols=("sip",))
            await ws.send_str(invite(BOB))
            incoming = await p["bob"].bot.incoming(timeout=10)
            assert await p["bob"].client.answer(incoming.call_id) == 202
            status, ok = await final_status(ws)
            assert status == 200 and "opus/48000" in ok, ok
            assert p.node.sip is not None
            (browser,) = p.node.sip._by_key.values()
            assert browser.relayed and browser.media is not None and browser.media.codec.name == "G722"
            async with VirtualCaller(("127.0.0.1", p.node.sip.port), codecs=(G722, PCMU)) as caller:
                call = await caller.dial("+14255550177")
                phone_in = await p["bob"].bot.incoming(timeout=10, index=1)
                assert await p["bob"].client.answer(phone_in.call_id) == 202
                await call.wait_answered()
                assert call.codec == "PCMU"
                await call.hang_up()
            await ws.close()
