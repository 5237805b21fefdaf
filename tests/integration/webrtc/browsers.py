"""What the meeting page tests share: headless Debian Chromium (Playwright, the system binary) with a fake
microphone playing a 48 kHz WAV, a TestPlatform node with the WebRTC edge, a meeting and its joinWebUrl, and the
page's state read through `window.opencommsMeeting`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import orjson

from opencomms.config import MediaConfig, MeetingsConfig, NodeConfig
from opencomms.domain.meetings import MeetingInfo
from opencomms.media.resample import resample
from opencomms.media.wav import decode_wav
from opencomms.testing.platform import DIAL_IN_NUMBER, default_config
from opencomms.web.app import BUNDLE, MEETING_BUNDLE
from tests.integration.webrtc.support import webrtc_config

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[3]
OUTPUT = ROOT / "test-output" / "webrtc"
FRAME = 320
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",  # everything stays on 127.0.0.1
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
PAGE = "window.opencommsMeeting"


def build_bundles() -> None:
    """`make web` when a bundle is missing or older than the client's sources."""
    sources = (BUNDLE.parent.parent / "client" / "src").glob("*.js")
    newest = max((f.stat().st_mtime for f in sources), default=0.0)
    if not all(b.exists() and b.stat().st_mtime >= newest for b in (BUNDLE, MEETING_BUNDLE)):
        subprocess.run(["make", "-C", str(ROOT), "web"], check=True, capture_output=True, timeout=300)


def meeting_node(tmp: Path, **meetings: Any) -> NodeConfig:
    """A test node (TestPlatform's defaults: dial-in number, loopback) with the WebRTC edge and rtpengine."""
    base = webrtc_config(rtpengine_timeout=3.0)  # a busy machine: rtpengine may take a while to answer
    media = MediaConfig(
        recordings_dir=str(tmp), app_hosted_allow_private=("127.0.0.1",), app_hosted_connect_timeout=1.0
    )
    config = default_config(str(tmp))
    return dataclasses.replace(
        config,
        webrtc=base.webrtc,
        media=media,
        meetings=MeetingsConfig(dial_in_number=DIAL_IN_NUMBER, **meetings),
    )


def join_url(public_url: str, meeting: MeetingInfo) -> str:
    context = quote(orjson.dumps({"Tid": meeting.tenant_id, "Oid": meeting.organizer_id}).decode(), safe="")
    return f"{public_url}/l/meetup-join/{quote(meeting.thread_id, safe='')}/0?context={context}"


def speech(text: str, voice: str = "en") -> npt.NDArray[np.int16]:
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", "150", text], capture_output=True, check=True
    ).stdout
    return np.array(decode_wav(wav), dtype=np.int16)


def microphone(path: Path, pcm: npt.NDArray[np.int16]) -> Path:
    """The WAV Chromium's fake microphone plays (in a loop), at 48 kHz (it plays other rates at the wrong speed)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(resample(pcm, 16000, 48000).astype("<i2").tobytes())
    return path


def envelope(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """RMS per 20 ms frame (robust to codecs, resampling and the browser's audio processing)."""
    n = pcm.size // FRAME
    frames = pcm[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    return np.sqrt((frames**2).mean(axis=1))


def looped_correlation(heard: npt.NDArray[np.float64], source: npt.NDArray[np.float64]) -> float:
    """The highest Pearson correlation of `heard` with the looped `source`, over every phase of the loop."""
    looped = np.tile(source, heard.size // source.size + 2)
    return max(float(np.corrcoef(heard, looped[s : s + heard.size])[0, 1]) for s in range(source.size))


def _pearson(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else -1.0


def drifting_correlation(
    heard: npt.NDArray[np.float64], source: npt.NDArray[np.float64], window: int = 100, drift: int = 5
) -> float:
    """`looped_correlation` that follows a drifting lag: the best phase of the loop over the whole of `heard`, then
    for each `window` frames (2 s) of `heard` the best phase within `drift` frames (100 ms) of it (the node's jitter
    buffer and a loaded browser's capture shift the audio by a frame or more over seconds); the Pearson correlation
    of the whole of `heard` with the source so aligned."""
    n, size = heard.size, source.size
    looped = np.tile(source, n // size + 4)
    base = max(range(size), key=lambda s: _pearson(heard, looped[s : s + n])) + size
    aligned = np.empty(n)
    for w in range(0, n, window):
        seg = heard[w : w + window]
        best = max(range(base - drift, base + drift + 1), key=lambda s: _pearson(seg, looped[s + w : s + w + seg.size]))
        aligned[w : w + seg.size] = looped[best + w : best + w + seg.size]
    return _pearson(heard, aligned)


@contextlib.asynccontextmanager
async def chromium(pw: Any, mic: Path | None = None) -> AsyncIterator[Any]:
    args = [*ARGS, f"--use-file-for-fake-audio-capture={mic}"] if mic is not None else ARGS
    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    try:
        yield browser
    finally:
        await browser.close()


async def open_as_guest(browser: Any, url: str, name: str) -> Any:
    """A new tab at the joinWebUrl that joins as guest `name` (by keyboard: the name field, then Enter)."""
    page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone's screen
    page.on("console", lambda m: print(f"page[{name}]:", m.text) if m.type in ("error", "warning") else None)
    await page.goto(url)
    await page.get_by_label("Your name").fill(name)
    await page.get_by_label("Your name").press("Enter")
    return page


async def wait_page(page: Any, condition: str, timeout: float = 15.0) -> Any:
    """Wait until the JavaScript `condition` (with `m` = window.opencommsMeeting) is truthy; returns its value.
    (Checked every 50 ms through CDP: the page's CSP forbids the string evaluation of Playwright's wait_for_function.)
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        # while a navigation (the sign-in's redirect back) loads the next page, its script has not run yet: not yet
        try:
            value = await page_value(page, f"m !== undefined && ({condition})")
        except Exception as exc:  # playwright's Error while the page navigates
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
            value = None
        if value:
            return value
        if loop.time() > end:
            status = await page_value(page, "[m.status(), m.error()]")
            raise AssertionError(f"page never satisfied {condition!r} (status {status})")
        await asyncio.sleep(0.05)


async def page_value(page: Any, expression: str) -> Any:
    return await page.evaluate(f"(() => {{ const m = {PAGE}; return {expression}; }})()")


def participant(roster: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for entry in roster:
        identity = entry["info"]["identity"]
        for kind in ("guest", "user"):
            if identity.get(kind, {}).get("displayName") == name:
                return entry
    return None


async def screenshot(page: Any, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / name
    await page.screenshot(path=str(path), full_page=True)
    return path


def tone(freq: float, seconds: float, amplitude: int = 9000) -> npt.NDArray[np.int16]:
    t = np.arange(int(16000 * seconds)) / 16000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


__all__ = [
    "OUTPUT",
    "build_bundles",
    "chromium",
    "drifting_correlation",
    "envelope",
    "join_url",
    "looped_correlation",
    "meeting_node",
    "microphone",
    "open_as_guest",
    "page_value",
    "participant",
    "screenshot",
    "speech",
    "tone",
    "wait_page",
]
