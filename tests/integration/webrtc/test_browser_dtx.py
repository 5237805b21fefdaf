"""A silent browser costs next to nothing on its way in: the node answers a browser's Opus with `usedtx=1` (and
`maxplaybackrate=16000`, gateway/opus_fmtp.py), and Chromium then sends a comfort-noise update every 400 ms instead
of 50 packets a second while its microphone is silent, so rtpengine decodes and the node receives a few packets
where it used to get all of them. Counted by the node itself: the callRecord's packetUtilization of the browser's
stream, with `webrtc.browser_opus_dtx` on and off, the same silent microphone both times.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright import async_api as playwright

from opencomms.sdk.media import AudioFrame, LocalMediaSession
from opencomms.web.app import BUNDLE
from tests.integration.conftest import ALL_CALL_PERMISSIONS, make_platform
from tests.integration.webrtc.browsers import build_bundles, chromium, microphone
from tests.integration.webrtc.support import answer_with_media, ticket, webrtc_config
from tests.integration.webrtc.test_browser_call import bot_media

BOB = "sip:support@bob.example"
SECONDS = 6.0


@pytest.fixture(scope="module")
def bundle() -> Path:
    build_bundles()
    return BUNDLE


async def _packets_from_a_silent_browser(tmp_path: Path, dtx: bool) -> tuple[int, float]:
    """(RTP packets the node received from the browser, seconds the call was up) for a call with a silent mic."""
    mic = microphone(tmp_path / "silence.wav", np.zeros(16000 * 4, dtype=np.int16))
    perms = {"bob": [*ALL_CALL_PERMISSIONS, "CallRecords.Read.All"]}
    async with (
        make_platform(webrtc_config(browser_opus_dtx=dtx), ("bob",), perms) as p,
        LocalMediaSession() as session,
        playwright.async_playwright() as pw,
    ):
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB, name="Quiet Quentin")
        assert issued["status"] == 201, issued
        async with chromium(pw, mic) as browser:
            page = await browser.new_page()
            await page.goto(f"{p.node.public_url}{issued['callUrl']}")
            await page.get_by_role("button", name="Call").click()
            incoming = await p["bob"].bot.incoming(timeout=15)
            sock = await answer_with_media(p, "bob", incoming.call_id, session)
            heard: list[AudioFrame] = []
            start = asyncio.get_running_loop().time()
            await asyncio.wait_for(bot_media(sock, heard, frames=int(SECONDS * 50)), timeout=30)
            up = asyncio.get_running_loop().time() - start
            await page.get_by_role("button", name="Hang up").click()
            await p["bob"].bot.wait_state(incoming.call_id, "terminated", timeout=10)
        chain = incoming.resource_data["callChainId"]
        query = "?$expand=sessions($expand=segments)"
        status, record, _ = await p["bob"].client.request("GET", f"/communications/callRecords/{chain}{query}")
        assert status == 200, record
    streams: list[dict[str, Any]] = [
        s for ses in record["sessions"] for seg in ses["segments"] for m in seg["media"] for s in m["streams"]
    ]
    inbound = [s for s in streams if s["streamId"] == "1"]  # the browser's audio as the node received it
    assert inbound, streams
    return sum(int(s["packetUtilization"]) for s in inbound), up


async def test_a_silent_browser_sends_almost_nothing_when_the_answer_asks_for_dtx(tmp_path: Path, bundle: Path) -> None:
    quiet, up = await _packets_from_a_silent_browser(tmp_path, dtx=True)
    full, full_up = await _packets_from_a_silent_browser(tmp_path, dtx=False)
    print(f"silent browser: {quiet} packets in {up:.1f} s with usedtx=1, {full} in {full_up:.1f} s without")
    assert full > 40 * full_up  # without DTX: 50 packets a second, silence or not
    assert quiet < 0.25 * full  # with it: a comfort-noise update every 400 ms (plus the first packets)


@pytest.mark.parametrize("opus_in_node", [False, True], ids=["rtpengine-transcodes", "opus-in-node"])
async def test_a_silent_browsers_dtx_gaps_count_as_silence_not_concealment(
    tmp_path: Path, bundle: Path, opus_in_node: bool
) -> None:
    """The gaps between a silent browser's comfort-noise updates end with the next sequence number: nothing was
    lost, so the callRecord's averageRatioOfConcealedSamples stays near 0 (it was about 0.67)."""
    mic = microphone(tmp_path / "silence.wav", np.zeros(16000 * 4, dtype=np.int16))
    perms = {"bob": [*ALL_CALL_PERMISSIONS, "CallRecords.Read.All"]}
    async with (
        make_platform(webrtc_config(opus_in_node=opus_in_node), ("bob",), perms) as p,
        LocalMediaSession() as session,
        playwright.async_playwright() as pw,
    ):
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB, name="Quiet Quentin")
        async with chromium(pw, mic) as browser:
            page = await browser.new_page()
            await page.goto(f"{p.node.public_url}{issued['callUrl']}")
            await page.get_by_role("button", name="Call").click()
            incoming = await p["bob"].bot.incoming(timeout=15)
            sock = await answer_with_media(p, "bob", incoming.call_id, session)
            await asyncio.wait_for(bot_media(sock, [], frames=int(SECONDS * 50)), timeout=30)
            assert p.node.sip is not None
            (leg,) = p.node.sip._by_key.values()
            dtx_frames = leg.rtp.stream.dtx_frames if leg.rtp.stream is not None else 0
            await page.get_by_role("button", name="Hang up").click()
            await p["bob"].bot.wait_state(incoming.call_id, "terminated", timeout=10)
        chain = incoming.resource_data["callChainId"]
        query = "?$expand=sessions($expand=segments)"
        status, record, _ = await p["bob"].client.request("GET", f"/communications/callRecords/{chain}{query}")
        assert status == 200, record
    (inbound,) = [
        s
        for ses in record["sessions"]
        for seg in ses["segments"]
        for m in seg["media"]
        for s in m["streams"]
        if s["streamId"] == "1"
    ]
    ratio = float(inbound["averageRatioOfConcealedSamples"])
    print(f"silent browser (opus_in_node={opus_in_node}): concealed ratio {ratio}, DTX frames {dtx_frames}")
    assert dtx_frames > 50 and ratio < 0.2, (ratio, dtx_frames)
