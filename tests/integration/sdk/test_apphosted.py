"""Application-hosted media end to end: a real node, real bot webhooks, and the SDK's LocalMediaSession.

Alice's bot is service-hosted (plays and records through the node); Bob's bot answers with app-hosted media and
handles the audio itself through an AudioSocket: it hears Alice's prompt (mixed and unmixed, tagged with her
sourceId), her DTMF and her speaking, and echoes the audio back, which Alice's recording captures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web

from opencomms.config import EgressConfig, MediaConfig
from opencomms.domain import results
from opencomms.media.wav import decode_wav, encode_wav
from opencomms.sdk.media import AudioFrame, AudioSocket, DominantSpeakerChanged, DtmfReceived, LocalMediaSession
from opencomms.testing.harness import app_target
from opencomms.wire.apphosted import UNAUTHORIZED_CLOSE, encode_control
from tests.integration.conftest import Platform, make_platform, node_config

FRAME = 320
SILENCE = bytes(640)


def speech() -> npt.NDArray[np.int16]:
    text = "one two three, application hosted media"
    wav = subprocess.run(["espeak-ng", "--stdout", "-s", "200", text], capture_output=True, check=True).stdout
    return np.array(decode_wav(wav))


def correlation(recorded: npt.NDArray[np.int16], source: npt.NDArray[np.int16]) -> tuple[float, int]:
    """Peak normalised cross-correlation of `source` inside `recorded` (1.0 = an exact copy) and its lag."""
    r, s = recorded.astype(np.float64), source.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(r.size + s.size)))
    xc = np.fft.irfft(np.fft.rfft(r, n) * np.conj(np.fft.rfft(s, n)), n)[: r.size]
    lag = int(np.argmax(xc))
    window = r[lag : lag + s.size]
    denom = np.sqrt(np.dot(window, window) * np.dot(s[: window.size], s[: window.size]))
    return (float(xc[lag] / denom) if denom else 0.0), lag


@dataclass
class Env:
    p: Platform
    session: LocalMediaSession
    prompt_url: str
    source: npt.NDArray[np.int16]

    async def call_bob(self, media_config: dict[str, Any]) -> tuple[str, str, int, Any]:
        """Alice calls Bob; Bob answers with `media_config`. Returns both call ids and the answer's status/body."""
        status, call = await self.p["alice"].client.create_call(
            self.p["alice"].bot.url, [app_target(self.p["bob"].app_id)]
        )
        assert status == 201, call
        rung = sum(1 for n in self.p["bob"].bot.notifications if n.change_type == "created")
        incoming = await self.p["bob"].bot.incoming(index=rung)
        body = {"acceptedModalities": ["audio"], "mediaConfig": media_config}
        status, data, _ = await self.p["bob"].client.request(
            "POST", f"/communications/calls/{incoming.call_id}/answer", body
        )
        return call["id"], incoming.call_id, status, data

    async def established(self, a_id: str, b_id: str) -> None:
        await self.p["alice"].bot.wait_state(a_id, "established")
        await self.p["bob"].bot.wait_state(b_id, "established")

    async def ended(self, bot: str, call_id: str, timeout: float = 5.0) -> dict[str, Any]:
        note = await self.p[bot].bot.wait_state(call_id, "terminated", timeout=timeout)
        info: dict[str, Any] = note.resource_data["resultInfo"]
        return info

    async def other_source_id(self, viewer: str, call_id: str) -> str:
        """The mediaStream sourceId of the other participant, as `viewer`'s roster shows it."""
        client = self.p[viewer].client
        _, call, _ = await client.request("GET", f"/communications/calls/{call_id}")
        status, data, _ = await client.request("GET", f"/communications/calls/{call_id}/participants")
        assert status == 200, data
        other = next(p for p in data["value"] if p["id"] != call["myParticipantId"])
        return str(other["mediaStreams"][0]["sourceId"])


@pytest.fixture(scope="module")
def source() -> npt.NDArray[np.int16]:
    return speech()


@pytest.fixture
async def env(tmp_path: Any, source: npt.NDArray[np.int16]) -> AsyncIterator[Env]:
    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=encode_wav(source), content_type="audio/wav")

    app = web.Application()
    app.router.add_get("/speech.wav", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    media = MediaConfig(
        fetch_allow_private=("127.0.0.1",),
        app_hosted_allow_private=("127.0.0.1",),
        app_hosted_connect_timeout=1.0,
        recordings_dir=str(tmp_path / "rec"),
    )
    try:
        async with (
            make_platform(node_config(media=media), names=("alice", "bob")) as p,
            LocalMediaSession(reconnect_grace=3.0) as session,
        ):
            yield Env(p, session, f"http://127.0.0.1:{port}/speech.wav", source)
    finally:
        await runner.cleanup()


def pcm(frames: list[AudioFrame]) -> npt.NDArray[np.int16]:
    return np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2").astype(np.int16)


async def echo(sock: AudioSocket, received: list[AudioFrame], delay_frames: int) -> None:
    """Send back what was heard `delay_frames` earlier, one frame per frame received (paced by the node)."""
    async for frame in sock:
        received.append(frame)
        back = received[-delay_frames - 1].pcm if len(received) > delay_frames else SILENCE
        await sock.send(back)


async def test_echo_round_trip_with_unmixed_dtmf_and_dominant_speaker(env: Env) -> None:
    a_id, b_id, status, _ = await env.call_bob(env.session.media_config("bob-1"))
    assert status == 202
    await env.established(a_id, b_id)
    sock = await env.session.audio_socket("bob-1", timeout=5)
    assert sock.call_id == b_id
    alice_msi = await env.other_source_id("bob", b_id)

    # service-hosted operations are refused on an app-hosted call, as Graph does
    status, err, _ = await env.p["bob"].client.request("POST", f"/communications/calls/{b_id}/subscribeToTone", {})
    assert status == 400 and "app-hosted" in err["error"]["message"]

    prompt_frames = env.source.size // FRAME + 1
    received: list[AudioFrame] = []
    echoing = asyncio.create_task(echo(sock, received, delay_frames=prompt_frames + 10))
    status, rec, _ = await env.p["alice"].client.request(
        "POST",
        f"/communications/calls/{a_id}/recordResponse",
        {
            "prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": env.prompt_url}}],
            "playBeep": False,
            "maxRecordDurationInSeconds": 6,
            "initialSilenceTimeoutInSeconds": 3,
            "maxSilenceTimeoutInSeconds": 1,
        },
    )
    assert status == 200, rec
    found = await env.p["alice"].bot.wait_for(
        lambda n: n.resource_url.endswith(f"/operations/{rec['id']}") and n.change_type == "deleted", timeout=15
    )
    done = found[0].resource_data
    assert done["status"] == "completed", done

    # Bob heard Alice's prompt, mixed and unmixed under her sourceId, paced 20 ms apart
    heard, lag = correlation(pcm(received), env.source)
    assert heard > 0.9, heard
    tagged = [f for f in received if f.unmixed]
    assert tagged and all(f.unmixed[0].source_id == alice_msi for f in tagged)
    unmixed = np.frombuffer(b"".join(f.unmixed[0].pcm for f in tagged), dtype="<i2")
    assert correlation(unmixed.astype(np.int16), env.source)[0] > 0.9
    steps = np.diff([f.timestamp for f in received]) / 200_000  # 100 ns ticks, 20 ms apart (a late tick skips)
    assert (np.abs(steps - np.round(steps)) < 1e-4).all() and (steps >= 1).all() and np.median(steps) == 1

    # ... and Alice's recording is her prompt, echoed back
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {done['recordingAccessToken']}"}
        async with http.get(done["recordingLocation"], headers=headers) as resp:
            assert resp.status == 200
            recording = decode_wav(await resp.read())
    echoed, _ = correlation(np.array(recording), env.source)
    assert echoed > 0.9, echoed

    # Alice's speech made her the dominant speaker; her DTMF reaches Bob's socket as events
    events: list[Any] = []

    async def collect() -> None:
        async for event in sock.events():
            events.append(event)
            if isinstance(event, DtmfReceived) and event.key == "#":
                return

    collecting = asyncio.create_task(collect())
    status, _, _ = await env.p["alice"].client.request(
        "POST", f"/communications/calls/{a_id}/sendDtmfTones", {"tones": ["tone4", "pound"]}
    )
    assert status == 200
    await asyncio.wait_for(collecting, 5)
    assert [e.key for e in events if isinstance(e, DtmfReceived)] == ["4", "#"]
    assert [e.tone for e in events if isinstance(e, DtmfReceived)] == ["tone4", "pound"]
    speakers = [e for e in events if isinstance(e, DominantSpeakerChanged)]
    assert speakers and speakers[0].source_id == alice_msi

    # hanging up says bye: the socket's iteration ends
    assert await env.p["alice"].client.hang_up(a_id) == 204
    assert (await env.ended("bob", b_id))["code"] == 200
    await asyncio.wait_for(echoing, 5)
    assert sock.closed and lag >= 0


async def test_dropped_socket_is_reconnected_once(env: Env) -> None:
    a_id, b_id, status, _ = await env.call_bob(env.session.media_config("bob-2"))
    assert status == 202
    await env.established(a_id, b_id)
    sock = await env.session.audio_socket("bob-2", timeout=5)
    await sock.receive(timeout=2)
    assert sock._ws is not None
    await sock._ws.close(code=1011)  # the transport drops (not a bye)
    for _ in range(100):
        if sock.stats.connections == 2:
            break
        await asyncio.sleep(0.02)
    assert sock.stats.connections == 2 and env.p.node.app_hosted.stats.reconnects == 1
    frame = await sock.receive(timeout=2)
    assert len(frame.pcm) == 640 and not sock.closed
    await sock.send(SILENCE)

    # the bot's endpoint crashes (no bye): the reconnection fails and the call ends, media lost
    runner = env.session._runner
    assert runner is not None
    await runner.cleanup()
    env.session._runner = None
    info = await env.ended("bob", b_id)
    assert (info["code"], info["subcode"]) == (results.APP_MEDIA_LOST.code, results.APP_MEDIA_LOST.subcode)
    assert (await env.ended("alice", a_id))["subcode"] == results.REMOTE_HUNG_UP.subcode


async def test_never_connecting_ends_the_call(env: Env) -> None:
    config = env.session.media_config("bob-3")
    blob = json.loads(config["blob"])
    blob["url"] = "ws://127.0.0.1:9/nobody-listens"
    a_id, b_id, status, _ = await env.call_bob({**config, "blob": json.dumps(blob)})
    assert status == 202
    await env.established(a_id, b_id)
    info = await env.ended("bob", b_id, timeout=5)
    assert (info["code"], info["subcode"]) == (410, results.APP_MEDIA_UNREACHABLE.subcode)
    assert info["message"] == results.APP_MEDIA_UNREACHABLE.message


async def test_wrong_secret_is_rejected(env: Env) -> None:
    config = env.session.media_config("bob-4")
    blob = json.loads(config["blob"])
    blob["secret"] = "x" * 43
    _, b_id, status, _ = await env.call_bob({**config, "blob": json.dumps(blob)})
    assert status == 202
    info = await env.ended("bob", b_id, timeout=5)
    assert info["subcode"] == results.APP_MEDIA_UNREACHABLE.subcode
    assert env.session.rejected >= 1 and not env.session.socket("bob-4").connected
    await env.session.release("bob-4")
    with pytest.raises(KeyError):
        env.session.socket("bob-4")

    # the same check for any client: no hello, or a wrong secret, is closed with 4401
    async with aiohttp.ClientSession() as http, http.ws_connect(env.session.url) as ws:
        await ws.send_str(encode_control("hello", v=1, key="bob-4", secret="y" * 43, callId="c", sourceId="1"))
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == UNAUTHORIZED_CLOSE


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        ("not json", "not JSON"),
        (json.dumps({"v": 1, "url": "http://127.0.0.1:1/media", "key": "k", "secret": "s" * 43}), "ws://"),
        (json.dumps({"v": 1, "url": "ws://u:p@127.0.0.1:1/media", "key": "k", "secret": "s" * 43}), "credentials"),
        (json.dumps({"v": 1, "url": "ws://127.0.0.1:1/media", "key": "k", "secret": "short"}), "secret"),
        (json.dumps({"v": 1, "url": "ws://127.0.0.1:1/" + "a" * 3000, "key": "k", "secret": "s" * 43}), "longer"),
    ],
)
async def test_bad_blob_is_a_400(env: Env, blob: str, why: str) -> None:
    config = {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": blob}
    _, _, status, data = await env.call_bob(config)
    assert status == 400 and data["error"]["code"] == "invalidRequest"
    assert why in data["error"]["message"] and "mediaConfig.blob" in data["error"]["message"]
    status, data = await env.p["alice"].client.create_call(
        env.p["alice"].bot.url, [app_target(env.p["bob"].app_id)], mediaConfig=config
    )
    assert status == 400, data


async def test_private_endpoint_refused_unless_allowed(env: Env) -> None:
    # The bots stay reachable on 127.0.0.1; the media endpoint on another loopback address, or on a loopback name
    # (::1 is not allowed), is refused.
    media = dataclasses.replace(env.p.node.config.media, app_hosted_allow_private=())
    strict_config = node_config(media=media, egress=EgressConfig(allow=("127.0.0.1",)))
    async with make_platform(strict_config, names=("alice", "bob")) as strict:
        other = Env(strict, env.session, env.prompt_url, env.source)
        for host in ("127.0.0.2", "localhost"):  # an IP literal, and a loopback name
            config = env.session.media_config(f"bob-5-{host}")
            blob = json.loads(config["blob"])
            blob["url"] = blob["url"].replace("127.0.0.1", host)
            _, b_id, status, _ = await other.call_bob({**config, "blob": json.dumps(blob)})
            assert status == 202
            info = await other.ended("bob", b_id, timeout=5)
            assert info["subcode"] == results.APP_MEDIA_UNREACHABLE.subcode
            assert not env.session.socket(f"bob-5-{host}").connected
        assert strict.node.app_hosted.stats.refused == 2 and strict.node.app_hosted.stats.connections == 0


async def test_a_bot_that_places_the_call_with_app_hosted_media(env: Env) -> None:
    status, call = await env.p["bob"].client.create_call(
        env.p["bob"].bot.url, [app_target(env.p["alice"].app_id)], mediaConfig=env.session.media_config("bob-out")
    )
    assert status == 201 and call["mediaConfig"]["@odata.type"] == "#microsoft.graph.appHostedMediaConfig"
    incoming = await env.p["alice"].bot.incoming()
    assert await env.p["alice"].client.answer(incoming.call_id) == 202
    sock = await env.session.audio_socket("bob-out", timeout=5)
    _, roster, _ = await env.p["bob"].client.request("GET", f"/communications/calls/{call['id']}/participants")
    mine = next(p for p in roster["value"] if p["id"] == call["myParticipantId"])
    assert sock.call_id == call["id"] and sock.source_id == mine["mediaStreams"][0]["sourceId"]
    prompt = {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": env.prompt_url}}
    status, _, _ = await env.p["alice"].client.request(
        "POST", f"/communications/calls/{incoming.call_id}/playPrompt", {"prompts": [prompt]}
    )
    assert status == 200
    frames = [await sock.receive(timeout=2) for _ in range(env.source.size // FRAME + 25)]
    assert correlation(pcm(frames), env.source)[0] > 0.9
    await sock.close()  # the bot stops its media on purpose: no reconnection, the call goes on
    await asyncio.sleep(0.3)
    assert env.p.node.app_hosted.stats.reconnects == 0 and env.p.node.calls.calls.get(call["id"]) is not None
    assert await env.p["bob"].client.hang_up(call["id"]) == 204
