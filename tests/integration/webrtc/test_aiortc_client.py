"""A WebRTC client that is not a browser: aiortc (Python's WebRTC stack) calls an app-hosted bot through the edge with
the node's defaults (rtpengine relays, the node codes Opus). aiortc ignores the answer's `maxaveragebitrate` and
sends stereo fullband Opus of ~290 bytes a packet, more than a jitter-buffer slot holds: the bot must still hear its
tone, and aiortc must decode the bot's prompt from the node's Opus."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import aiortc
import numpy as np

from opencomms.sdk.media import AudioFrame, LocalMediaSession
from tests.integration.conftest import make_platform
from tests.integration.webrtc.support import answer_with_media, final_status, in_dialog, invite, ticket, webrtc_config
from tests.integration.webrtc.test_browser_call import bot_media, from_audio
from tests.unit.media.test_media_g722 import band_rms

BOB = "sip:support@bob.example"
TONE_HZ = 1000.0


async def test_aiortc_and_a_bot_hear_each_other_through_the_node_coding_opus() -> None:
    import aioice.ice
    from aiortc.mediastreams import AudioStreamTrack
    from av import AudioFrame as AvFrame

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # loopback only, no STUN

    class Tone(AudioStreamTrack):
        """A 1 kHz tone at 48 kHz, paced by aiortc's own silence track."""

        n = 0

        async def recv(self) -> AvFrame:
            frame = await super().recv()
            t = (np.arange(frame.samples) + self.n) / 48000
            self.n += frame.samples
            pcm = (8000 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16).reshape(1, -1)
            out = AvFrame.from_ndarray(pcm, format="s16", layout="mono")
            out.sample_rate, out.pts, out.time_base = 48000, frame.pts, frame.time_base
            return out

    received: list[Any] = []

    async def consume(track: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                received.append((await track.recv()).to_ndarray())

    config = webrtc_config()
    assert config.webrtc.opus_in_node  # the default under test
    async with make_platform(config, ("bob",)) as p, LocalMediaSession() as session:
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB, name="Aiortc Client")
        pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        pc.addTrack(Tone())
        pc.on("track", lambda track: asyncio.get_running_loop().create_task(consume(track)))
        try:
            await pc.setLocalDescription(await pc.createOffer())
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{issued['wsUrl']}?ticket={issued['ticket']}", protocols=("sip",))
                await ws.send_str(sent := invite(BOB, pc.localDescription.sdp))
                incoming = await p["bob"].bot.incoming(timeout=10)
                sock = await answer_with_media(p, "bob", incoming.call_id, session)
                status, ok = await final_status(ws, timeout=10)
                assert status == 200 and "opus/48000" in ok, ok
                await pc.setRemoteDescription(aiortc.RTCSessionDescription(ok.split("\r\n\r\n", 1)[1], "answer"))
                await ws.send_str(in_dialog(sent, ok, "ACK", 1))
                heard: list[AudioFrame] = []
                await asyncio.wait_for(bot_media(sock, heard, 50, after_audio=True), 20)
                assert p.node.sip is not None
                (leg,) = p.node.sip._by_key.values()
                assert leg.media is not None and leg.media.codec.name == "opus"  # relayed: the node codes it
                await ws.send_str(in_dialog(sent, ok, "BYE", 2))
                await p["bob"].bot.wait_state(incoming.call_id, "terminated", timeout=10)
        finally:
            await pc.close()
    pcm = np.concatenate([np.frombuffer(f.pcm, dtype="<i2") for f in from_audio(heard)[:50]])
    # the bot heard aiortc's tone: ~1300 RMS in band here (aiortc, sharing this test's event loop with the node,
    # sends ~10 packets a second; the node conceals the rest); 0 when its large packets were dropped as invalid
    assert band_rms(pcm, TONE_HZ - 100, TONE_HZ + 100) > 500
    got = np.concatenate([r.reshape(-1) for r in received[-25:]]) if len(received) >= 25 else np.zeros(1)
    assert np.sqrt(np.mean(got.astype(float) ** 2)) > 1000, len(received)  # and aiortc decoded the bot's prompt
