"""A silent browser costs next to nothing on its way in: the node answers a browser's Opus with `usedtx=1` (and
`maxplaybackrate=16000`, gateway/opus_fmtp.py), and Chromium then sends a comfort-noise update every 400 ms instead
of 50 packets a second while its microphone is silent, so rtpengine decodes and the node receives a few packets
where it used to get all of them. Counted by the node itself: the callRecord's packetUtilization of the browser's
stream, with `webrtc.browser_opus_dtx` on and off, the same silent microphone both times.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from opencomms.web.app import BUNDLE
from tests.integration.webrtc.browsers import build_bundles, microphone
from tests.integration.webrtc.calls import browser_calls_bob
from tests.integration.webrtc.support import webrtc_config
from tests.integration.webrtc.test_browser_call import bot_media

SECONDS = 6.0


@pytest.fixture(scope="module")
def bundle() -> Path:
    build_bundles()
    return BUNDLE


async def _packets_from_a_silent_browser(tmp_path: Path, dtx: bool) -> tuple[int, float]:
    """(RTP packets the node received from the browser, seconds the call was up) for a call with a silent mic."""
    mic = microphone(tmp_path / "silence.wav", np.zeros(16000 * 4, dtype=np.int16))
    async with browser_calls_bob(webrtc_config(browser_opus_dtx=dtx), mic, "Quiet Quentin") as call:
        start = asyncio.get_running_loop().time()
        await asyncio.wait_for(bot_media(call.sock, [], frames=int(SECONDS * 50)), timeout=30)
        up = asyncio.get_running_loop().time() - start
    streams = call.streams
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
    async with browser_calls_bob(webrtc_config(opus_in_node=opus_in_node), mic, "Quiet Quentin") as call:
        await asyncio.wait_for(bot_media(call.sock, [], frames=int(SECONDS * 50)), timeout=30)
        sip = call.p.node.sip
        assert sip is not None
        (leg,) = sip._by_key.values()
        dtx_frames = leg.rtp.stream.dtx_frames if leg.rtp.stream is not None else 0
    (inbound,) = [s for s in call.streams if s["streamId"] == "1"]
    ratio = float(inbound["averageRatioOfConcealedSamples"])
    print(f"silent browser (opus_in_node={opus_in_node}): concealed ratio {ratio}, DTX frames {dtx_frames}")
    assert dtx_frames > 50 and ratio < 0.2, (ratio, dtx_frames)
