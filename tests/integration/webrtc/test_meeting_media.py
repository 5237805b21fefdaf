"""Two browsers and a phone in one meeting with an app-hosted bot (issue 12's browser acceptance test).

Two headless Debian Chromium processes, each with a fake microphone playing its own sentence, open the meeting's
joinWebUrl and join as guests (the meeting lets everyone in); a VirtualCaller dials in. The app-hosted bot's
unmixed frames under each browser's roster sourceId follow that browser's WAV (energy envelope correlation, and
not the other's); the page shows who is speaking; the dial pad's keys reach a bot as toneInfo (RFC 4733 through
rtpengine); muted in their pages, both browsers then hear the bot's prompt (measured in the page on the received
track); closing a tab ends that participant for the bot and for the other page.

A screenshot of the meeting page is kept (gitignored) as `test-output/webrtc/meeting.png` at the repository root.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from playwright import async_api as playwright

from opencomms.domain.meetings import LobbyScope
from opencomms.sdk.media import AudioSocket, LocalMediaSession
from opencomms.testing.platform import TestPlatform
from tests.integration.meetings.test_live_meetings import MEMBER, join, wait_roster
from tests.integration.webrtc.browsers import (
    build_bundles,
    chromium,
    envelope,
    join_url,
    looped_correlation,
    meeting_node,
    microphone,
    open_as_guest,
    page_value,
    participant,
    screenshot,
    speech,
    tone,
    wait_page,
)

CALLS = "/communications/calls"
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
ANN = "one two three four five, the first browser speaks to the bot"
BEN = "seven, eight. nine! the second browser has something else entirely to say"


@pytest.fixture(scope="module", autouse=True)
def bundles() -> None:
    build_bundles()


def by_join_id(join_meeting_id: str, media_config: dict[str, Any] = SERVICE_HOSTED) -> dict[str, Any]:
    info = {"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": join_meeting_id}
    return {"requestedModalities": ["audio"], "mediaConfig": media_config, "meetingInfo": info}


async def unmixed(sock: AudioSocket, sources: tuple[str, ...], frames: int) -> dict[str, list[float]]:
    """Each source's energy per 20 ms in the bot's next `frames` frames, placed by the frames' timestamps (a frame
    the node could not deliver to a slow bot leaves a gap instead of shifting the rest; 0 where the node left the
    source out as silent)."""
    series: dict[str, list[float]] = {s: [0.0] * frames for s in sources}
    first = None
    while True:
        frame = await sock.receive(timeout=5)
        first = frame.timestamp if first is None else first
        index = (frame.timestamp - first) // 200_000
        if index >= frames:
            return series
        for u in frame.unmixed:
            if u.source_id in series:
                pcm = np.frombuffer(u.pcm, "<i2").astype(np.float64)
                series[u.source_id][index] = float(np.sqrt(np.mean(pcm**2)))


def everyone(roster: list[dict[str, Any]], names: tuple[str, ...]) -> bool:
    """The browsers `names` and a phone are in the roster."""
    phone = any("phone" in e["info"]["identity"] for e in roster)
    return phone and all(participant(roster, n) is not None for n in names)


def muted(roster: list[dict[str, Any]], name: str) -> bool:
    entry = participant(roster, name)
    return entry is not None and bool(entry["isMuted"])


async def prompt(sock: AudioSocket, seconds: float) -> None:
    pcm = tone(440.0, seconds).tobytes()
    for i in range(0, len(pcm), 640):
        await sock.send(pcm[i : i + 640])


@pytest.mark.parametrize("opus_in_node", [False, True], ids=["rtpengine-transcodes", "opus-in-node"])
async def test_two_browsers_and_a_phone_with_an_app_hosted_bot(tmp_path: Path, opus_in_node: bool) -> None:
    """With `webrtc.opus_in_node` the same meeting, rtpengine only relaying the browsers' Opus."""
    config = meeting_node(tmp_path)
    config = dataclasses.replace(config, webrtc=dataclasses.replace(config.webrtc, opus_in_node=opus_in_node))
    voices: dict[str, npt.NDArray[np.int16]] = {"Ann": speech(ANN), "Ben": speech(BEN, "en-us")}
    sources_env = {name: envelope(pcm) for name, pcm in voices.items()}
    mics = {name: microphone(tmp_path / f"{name}.wav", pcm) for name, pcm in voices.items()}
    async with (
        TestPlatform(config) as p,
        LocalMediaSession() as session,
        playwright.async_playwright() as pw,
        chromium(pw, mics["Ann"]) as chrome_ann,
        chromium(pw, mics["Ben"]) as chrome_ben,
    ):
        meeting = p.add_meeting(
            subject="Browsers and a phone",
            passcode=None,
            passcode_required=False,
            conference_id="271828",
            lobby_scope=LobbyScope.EVERYONE,
            dial_in_bypass=True,
        )
        host = await p.recording_bot("host", permissions=MEMBER)
        host_call = await join(host, by_join_id(meeting.join_meeting_id))
        status, _, _ = await host.client.request("POST", f"{CALLS}/{host_call}/subscribeToTone", {})
        assert status == 200
        listener = await p.recording_bot("listener", permissions=MEMBER)
        await join(listener, by_join_id(meeting.join_meeting_id, session.media_config("listener")))
        sock = await session.audio_socket("listener", timeout=10)

        url = join_url(p.node.public_url, meeting)
        ann, ben = await asyncio.gather(open_as_guest(chrome_ann, url, "Ann"), open_as_guest(chrome_ben, url, "Ben"))
        await asyncio.gather(*(wait_page(pg, "m.status() === 'in-meeting'") for pg in (ann, ben)))
        phone = p.caller(number="+15550123", display_name="Phone")
        await phone.start()
        try:
            call = await phone.dial_in(p.node.config.meetings.dial_in_number, meeting.conference_id)
            roster = await wait_roster(host, host_call, lambda es: everyone(es, ("Ann", "Ben")))
            # bots see browsers as guests with a sourceId, like phones
            entries = {n: participant(roster, n) or {} for n in ("Ann", "Ben")}
            assert all("guest" in e["info"]["identity"] for e in entries.values()), entries
            source = {n: str(e["mediaStreams"][0]["sourceId"]) for n, e in entries.items()}
            assert all(source.values()) and len(set(source.values())) == 2
            await wait_page(ann, "m.roster().length === 5")  # 2 bots, 2 browsers, the phone

            # each browser's unmixed frames follow its own WAV
            frames = max(e.size for e in sources_env.values()) + 50
            series = await unmixed(sock, tuple(source.values()), frames)
            scores = {
                (who, wav): looped_correlation(np.array(series[source[who]][25:]), sources_env[wav])
                for who in ("Ann", "Ben")
                for wav in ("Ann", "Ben")
            }
            print("envelope correlations (browser, wav):", {k: round(v, 2) for k, v in scores.items()})
            # about 0.9 for its own WAV and 0.25 for the other's here; lower when the machine is very busy
            for who, other in (("Ann", "Ben"), ("Ben", "Ann")):
                assert scores[(who, who)] > 0.5 and scores[(who, who)] > scores[(who, other)] + 0.15, scores

            # the page shows who is speaking (the engine's dominant speaker, one of the browsers)
            assert await wait_page(ann, "m.speaker()") in source.values()
            await screenshot(ann, "meeting.png")

            # the dial pad's keys reach a bot as toneInfo (RFC 4733 from the browser, through rtpengine)
            for key in ("4", "7", "#"):
                await ann.get_by_role("button", name=f"Dial {'pound' if key == '#' else key}").click()
            tones = await host.webhook.wait_for(
                lambda n: n.call_id == host_call and "toneInfo" in (n.resource_data or {}), count=3, timeout=10
            )
            assert [n.resource_data["toneInfo"]["tone"] for n in tones] == ["tone4", "tone7", "pound"]

            # both mute in their pages (the roster says so); the phone is quiet: each page hears the bot's prompt
            await asyncio.gather(
                ann.get_by_role("button", name="Mute").click(), ben.get_by_role("button", name="Mute").click()
            )
            await wait_roster(host, host_call, lambda es: all(muted(es, n) for n in ("Ann", "Ben")))
            await asyncio.gather(*(wait_page(pg, "m.level().recent < 0.01", timeout=10) for pg in (ann, ben)))
            await asyncio.gather(*(page_value(pg, "m.resetLevel()") for pg in (ann, ben)))
            sending = asyncio.create_task(prompt(sock, 2.0))
            await asyncio.gather(*(wait_page(pg, "m.level().rms > 0.05", timeout=10) for pg in (ann, ben)))
            await sending

            # closing a tab ends that participant: gone from the bot's roster and from the other page
            await ben.close()
            await wait_roster(host, host_call, lambda es: participant(es, "Ben") is None)
            await wait_page(ann, "!m.roster().some(p => p.name === 'Ben')")
            await call.hang_up()
        finally:
            await phone.close()
