"""Twilio-format media streams end to end: a phone (VirtualCaller, real SIP/RTP) calls a bot, the bot asks the node to
stream the call to a WebSocket, and the WebSocket side runs Pipecat's own TwilioFrameSerializer: it deserializes
the caller's audio and keys, serializes audio back that the phone hears, gets its mark echoed once that audio has
played, empties the queue with `clear`, and receives `stop` when the phone hangs up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from aiohttp import WSMsgType, web

from opencomms.testing import TestBot, TestPlatform

pipecat_twilio = pytest.importorskip("pipecat.serializers.twilio")
frames = pytest.importorskip("pipecat.frames.frames")
TwilioFrameSerializer = pipecat_twilio.TwilioFrameSerializer

RATE = 16000


def tone(freq: float, seconds: float, level: float = 8000.0) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(round(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def level_at(audio: np.ndarray[Any, Any], freq: float) -> float:
    """Amplitude of `freq` in `audio` (16 kHz), from the FFT."""
    x = audio.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    bins = np.fft.rfftfreq(x.size, 1 / RATE)
    band = (bins > freq - 30) & (bins < freq + 30)
    return float(spectrum[band].max() / (x.size / 4))


@dataclass
class PipecatBot:
    """The WebSocket side, as a Pipecat pipeline's transport would run it: the first messages (`connected`,
    `start`) read as Pipecat's runner reads them, everything else through TwilioFrameSerializer."""

    events: list[dict[str, Any]] = field(default_factory=list)
    heard: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    serializer: Any = None
    ws: web.WebSocketResponse | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                break
            message = json.loads(msg.data)
            self.events.append(message)
            if message["event"] == "start":
                start = message["start"]
                params = TwilioFrameSerializer.InputParams(sample_rate=RATE, auto_hang_up=False)
                self.serializer = TwilioFrameSerializer(start["streamSid"], start["callSid"], params=params)
                await self.serializer.setup(SimpleNamespace(audio_in_sample_rate=RATE))
                self.started.set()
            elif self.serializer is not None:
                frame = await self.serializer.deserialize(msg.data)
                if isinstance(frame, frames.InputAudioRawFrame):
                    assert frame.sample_rate == RATE
                    self.heard.append(frame.audio)
                elif isinstance(frame, frames.InputDTMFFrame):
                    self.keys.append(str(frame.button.value))
            self.changed.set()
        return ws

    async def send(self, frame: Any) -> None:
        data = await self.serializer.serialize(frame)
        assert data is not None and self.ws is not None
        await self.ws.send_str(data)

    async def say(self, audio: np.ndarray[Any, Any]) -> None:
        """Send audio as a Pipecat output transport does: 20 ms audio frames through the serializer."""
        assert self.ws is not None
        for start in range(0, audio.size, 320):
            chunk = audio[start : start + 320].tobytes()
            frame = frames.OutputAudioRawFrame(audio=chunk, sample_rate=RATE, num_channels=1)
            data = await self.serializer.serialize(frame)
            if data is not None:  # the serializer's resampler holds the first few milliseconds back
                await self.ws.send_str(data)

    async def mark(self, name: str) -> None:
        sid = self.serializer._stream_sid
        message = {"event": "mark", "streamSid": sid, "mark": {"name": name}}
        await self.send(frames.OutputTransportMessageUrgentFrame(message=message))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    async def wait(self, check: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    def heard_audio(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        return np.frombuffer(b"".join(self.heard), dtype=np.int16)


@asynccontextmanager
async def ws_server(bot: PipecatBot) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/stream", bot.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}/stream"
    finally:
        await runner.cleanup()


async def answered_call(platform: TestPlatform, bot: TestBot, caller: Any) -> tuple[Any, str]:
    call = await caller.dial(bot.number)
    incoming = await bot.webhook.incoming(timeout=10)
    assert await bot.client.answer(incoming.call_id) == 202
    await call.wait_answered()
    await bot.webhook.wait_state(incoming.call_id, "established")
    return call, incoming.call_id


async def start_stream(bot: TestBot, call_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, op, _ = await bot.client.request("POST", f"/communications/calls/{call_id}/startMediaStream", body)
    return status, op


async def test_pipecat_serializer_hears_the_caller_and_the_caller_hears_it_back() -> None:
    async with TestPlatform() as platform:
        bot = await platform.recording_bot("agent")
        ai = PipecatBot()
        async with ws_server(ai) as url, platform.caller(number="+15550123") as caller:
            call, call_id = await answered_call(platform, bot, caller)
            status, op = await start_stream(bot, call_id, {"url": url, "customParameters": {"lang": "en"}})
            assert status == 200 and op["status"] == "running" and op["streamSid"].startswith("MZ"), op
            await asyncio.wait_for(ai.started.wait(), 10)
            done = await bot.webhook.wait_for(
                lambda n: n.resource_url.endswith(op["id"]) and n.change_type == "deleted"
            )
            assert (
                done[0].resource_data["status"] == "completed" and done[0].resource_data["streamSid"] == op["streamSid"]
            )
            connected, start = ai.events[0], ai.events[1]
            assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
            assert start["start"]["callSid"] == call_id and start["streamSid"] == op["streamSid"]
            assert start["start"]["customParameters"] == {"lang": "en"} and start["start"]["tracks"] == ["inbound"]
            assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}

            # the caller speaks (a 600 Hz tone): Pipecat's serializer gets it as 16 kHz PCM
            await call.play_wav(tone(600, 1.0), wait=True)
            await ai.wait(lambda: level_at(ai.heard_audio()[-RATE // 2 :], 600) > 1000)
            await ai.wait(lambda: len(ai.of("media")) > 60)
            media = ai.of("media")
            assert all(len(m["media"]["payload"]) == 216 for m in media[:5])  # base64 of 160 µ-law bytes: 20 ms
            assert [int(m["sequenceNumber"]) for m in ai.events[1:6]] == [1, 2, 3, 4, 5]
            assert [int(m["media"]["chunk"]) for m in media[:3]] == [1, 2, 3]
            assert int(media[50]["media"]["timestamp"]) - int(media[0]["media"]["timestamp"]) == pytest.approx(
                1000, abs=60
            )

            # the bot speaks back through the serializer (a 1 kHz tone), then a mark: the caller hears the tone
            # and the mark comes back once it has played
            sent_at = asyncio.get_running_loop().time()
            await ai.say(tone(1000, 1.0))
            await ai.mark("greeting-done")
            await call.wait_for_speech(timeout=10)
            heard = await call.hear(0.6)
            assert level_at(heard, 1000) > 1000, level_at(heard, 1000)
            await ai.wait(lambda: bool(ai.of("mark")))
            assert ai.of("mark")[0]["mark"] == {"name": "greeting-done"}
            assert asyncio.get_running_loop().time() - sent_at > 0.8  # echoed after the audio played, not on arrival

            # keys pressed on the phone reach Pipecat as InputDTMFFrame
            await call.press("5#")
            await ai.wait(lambda: len(ai.keys) >= 2)
            assert ai.keys == ["5", "#"] and ai.of("dtmf")[0]["dtmf"] == {"track": "inbound_track", "digit": "5"}

            # clear: queued audio is dropped and its mark echoed at once
            await ai.say(tone(1000, 5.0))
            await ai.mark("long-answer")
            await asyncio.sleep(0.3)
            await ai.send(frames.InterruptionFrame())  # Pipecat serializes an interruption as `clear`
            await ai.wait(lambda: len(ai.of("mark")) == 2, timeout=2.0)
            await call.wait_for_silence(0.5, timeout=3.0)

            # the phone hangs up: the stream gets `stop`
            await call.hang_up()
            await ai.wait(lambda: bool(ai.of("stop")))
            assert ai.of("stop")[0]["stop"]["callSid"] == call_id
        assert platform.node.media_streams.active == 0


async def test_stop_media_stream_and_refusals() -> None:
    async with TestPlatform() as platform:
        bot = await platform.recording_bot("agent")
        ai = PipecatBot()
        async with ws_server(ai) as url, platform.caller() as caller:
            call, call_id = await answered_call(platform, bot, caller)
            status, error = await start_stream(bot, call_id, {"url": "https://not-a-websocket.example/"})
            assert status == 400 and "ws://" in error["error"]["message"]
            status, op = await start_stream(bot, call_id, {"url": url, "track": "both"})
            assert status == 200
            status, error = await start_stream(bot, call_id, {"url": url})
            assert status == 403 and error["error"]["code"] == "quotaLimitReached"  # one stream per call
            await asyncio.wait_for(ai.started.wait(), 10)
            await ai.wait(lambda: {m["media"]["track"] for m in ai.of("media")} == {"inbound", "outbound"})
            status, _, _ = await bot.client.request(
                "POST", f"/communications/calls/{call_id}/stopMediaStream", {"streamSid": op["streamSid"]}
            )
            assert status == 200
            await ai.wait(lambda: bool(ai.of("stop")))
            assert platform.node.media_streams.active == 0
            status, _, _ = await bot.client.request(
                "POST", f"/communications/calls/{call_id}/stopMediaStream", {"streamSid": op["streamSid"]}
            )
            assert status == 404
            await call.hang_up()


async def test_a_meeting_participants_own_audio_is_streamed() -> None:
    """In a meeting, `participantId` streams that participant's own (unmixed) audio: here another bot speaking a
    text prompt, while a third participant, heard in the streaming bot's mix, is not in the stream."""
    from tests.integration.meetings.test_live_meetings import MEMBER, by_chat, join, wait_roster

    async with TestPlatform() as platform:
        meeting = platform.add_meeting(passcode=None, passcode_required=False)
        listener = await platform.recording_bot("listener", permissions=MEMBER)
        speaker = await platform.recording_bot("speaker", permissions=MEMBER)
        listener_call = await join(listener, by_chat(meeting))
        speaker_call = await join(speaker, by_chat(meeting))
        other = await platform.recording_bot("other", permissions=MEMBER)
        other_call = await join(other, by_chat(meeting))

        def is_speaker(entry: dict[str, Any]) -> bool:
            return bool(entry["info"]["identity"].get("application", {}).get("id") == speaker.credentials.app_id)

        roster = await wait_roster(listener, listener_call, lambda entries: any(map(is_speaker, entries)))
        pid = next(e["id"] for e in roster if is_speaker(e))
        ai = PipecatBot()
        async with ws_server(ai) as url:
            status, op = await start_stream(listener, listener_call, {"url": url, "participantId": pid})
            assert status == 200, op
            await asyncio.wait_for(ai.started.wait(), 10)
            await ai.wait(lambda: len(ai.heard) > 10)
            own = {"@odata.type": "#opencomms.textPrompt", "text": "This is someone else."}
            status, played, _ = await other.client.request(
                "POST", f"/communications/calls/{other_call}/playPrompt", {"prompts": [own]}
            )
            assert status == 200
            await other.webhook.wait_for(
                lambda n: n.resource_url.endswith(played["id"]) and n.change_type == "deleted", timeout=15
            )
            assert np.abs(ai.heard_audio()).max() < 200  # a third participant is in the listener's mix, not the stream
            prompt = {"@odata.type": "#opencomms.textPrompt", "text": "Hello everyone, this is the speaker."}
            status, _, _ = await speaker.client.request(
                "POST", f"/communications/calls/{speaker_call}/playPrompt", {"prompts": [prompt]}
            )
            assert status == 200
            await ai.wait(lambda: np.abs(ai.heard_audio()).max() > 2000, timeout=15)
            status, error = await start_stream(listener, listener_call, {"url": url, "participantId": "nobody"})
            assert status in (403, 404), error  # one stream per call, or no such participant
