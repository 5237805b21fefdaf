"""A browser calls a bot: headless Debian Chromium (Playwright, the system binary, a fake microphone playing a WAV)
opens the node's /web/call page with a ticket, clicks Call; JsSIP reaches the node over SIP-over-WebSocket, its
media (ICE, DTLS-SRTP, Opus) goes through the node's rtpengine and arrives as plain G.722 at an app-hosted bot. The
bot hears the browser's WAV (energy envelope correlated with the file's), the page hears the bot's prompt (measured
in the page with a WebAudio AnalyserNode on the received track), the page hangs up and the bot's call ends.

A screenshot of the call page is kept in `test-output/webrtc/` at the repository root (gitignored): call.png.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from playwright import async_api as playwright

from opencomms.sdk.media import AudioFrame, AudioSocket, LocalMediaSession
from opencomms.web.app import BUNDLE
from tests.integration.conftest import make_platform
from tests.integration.webrtc import browsers
from tests.integration.webrtc.browsers import (
    OUTPUT,
    build_bundles,
    chromium,
    drifting_correlation,
    envelope,
    microphone,
)
from tests.integration.webrtc.support import answer_with_media, ticket, webrtc_config

BOB = "sip:support@bob.example"
FRAME = 320


def timeline(frames: list[AudioFrame]) -> npt.NDArray[np.int16]:
    """The frames' audio placed by their timestamps: a frame the node could not deliver to a slow bot (a busy
    machine) leaves 20 ms of silence instead of shifting everything after it."""
    first = frames[0].timestamp
    slots = (frames[-1].timestamp - first) // 200_000 + 1
    out = np.zeros(slots * FRAME, dtype=np.int16)
    for f in frames:
        at = (f.timestamp - first) // 200_000 * FRAME
        out[at : at + FRAME] = np.frombuffer(f.pcm, dtype="<i2")
    return out


AUDIBLE = 300
"""Peak of a frame that carries the browser's audio (before its ICE and DTLS complete the bot hears zeros)."""


def _audible(frame: AudioFrame) -> bool:
    return int(np.abs(np.frombuffer(frame.pcm, dtype="<i2")).max(initial=0)) > AUDIBLE


def from_audio(frames: list[AudioFrame]) -> list[AudioFrame]:
    """`frames` from the first one carrying the browser's audio: the window a test measures."""
    return next((frames[k:] for k, f in enumerate(frames) if _audible(f)), [])


async def bot_media(sock: AudioSocket, heard: list[AudioFrame], frames: int, *, after_audio: bool = False) -> None:
    """Keep what the browser says; answer every frame with a frame of a 440 Hz prompt (paced by the node). Returns
    after `frames` frames, counted from the first audible one with `after_audio` (the browser's media starts once
    its ICE and DTLS complete: a second or more after the answer on a loaded machine)."""
    t = np.arange(FRAME) / 16000.0
    n = 0
    start = None if after_audio else 0
    async for frame in sock:
        heard.append(frame)
        tone = (9000 * np.sin(2 * np.pi * 440 * (t + n * FRAME / 16000.0))).astype("<i2")
        await sock.send(tone.tobytes())
        n += 1
        if start is None and _audible(frame):
            start = len(heard) - 1
        if start is not None and len(heard) - start >= frames:
            return


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The JsSIP bundle, built by `make web` when it is missing or stale."""
    build_bundles()
    return BUNDLE


@pytest.fixture(scope="module")
def speech() -> npt.NDArray[np.int16]:
    return browsers.speech("one two three four five, the browser speaks to the bot")


async def test_browser_calls_an_app_hosted_bot_through_rtpengine(
    tmp_path: Path, bundle: Path, speech: npt.NDArray[np.int16]
) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    source = envelope(speech)
    mic = microphone(tmp_path / "mic.wav", speech)

    async with (
        make_platform(webrtc_config(), ("bob",)) as p,
        LocalMediaSession() as session,
        playwright.async_playwright() as pw,
    ):
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB, name="Wendy Web")
        assert issued["status"] == 201, issued
        async with chromium(pw, mic) as browser:
            page = await browser.new_page()
            page.on("console", lambda m: print("page:", m.text))
            await page.goto(f"{p.node.public_url}{issued['callUrl']}")
            await page.get_by_role("button", name="Call").click()

            incoming = await p["bob"].bot.incoming(timeout=15)
            caller: dict[str, Any] = incoming.resource_data["source"]["identity"]
            assert caller["guest"]["displayName"] == "Wendy Web", caller  # the ticket's name, not From's
            sock = await answer_with_media(p, "bob", incoming.call_id, session)
            heard: list[AudioFrame] = []
            await asyncio.wait_for(bot_media(sock, heard, frames=source.size + 150, after_audio=True), timeout=45)

            assert await page.evaluate("window.opencommsCall.status()") == "in-call"
            level = await page.evaluate("window.opencommsCall.level()")
            codecs = await page.evaluate("window.opencommsCall.codecs()")
            join_ms = await page.evaluate("window.opencommsCall.joinMs()")
            print(f"click to first audio heard in the page: {join_ms:.0f} ms (the bot answers over REST meanwhile)")
            await page.screenshot(path=str(OUTPUT / "call.png"), full_page=True)

            await page.get_by_role("button", name="Hang up").click()
            await p["bob"].bot.wait_state(incoming.call_id, "terminated", timeout=10)

    # the bot heard the browser's microphone (the WAV, looped): its energy envelope follows the file's
    pcm = timeline(from_audio(heard))  # from the browser's first audio (its ICE and DTLS take a while when loaded)
    correlation = drifting_correlation(envelope(pcm)[25:], source)  # the first half second: the call settling
    assert correlation > 0.6, correlation  # about 0.85 here; another sentence scores about 0.25
    # the page heard the bot's prompt through rtpengine (Opus on the browser's side)
    assert level["rms"] > 0.05, level
    assert 0 < join_ms < 5000, join_ms
    assert "audio/opus" in codecs, codecs
    assert (OUTPUT / "call.png").stat().st_size > 1000
