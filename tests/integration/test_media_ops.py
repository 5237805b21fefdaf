"""Service-hosted media over the REST API, bot to bot: prompts, DTMF, recording, cancel, mute, SSRF, bad WAVs.

A real node with its media engine thread, real bot webhooks, and a real HTTP server on loopback serving the
prompt files (loopback is allowed for prompts only through the node's allow list, as in development).
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web

from opencomms.config import MediaConfig
from opencomms.domain.media import PromptSpec
from opencomms.media.wav import decode_wav, encode_wav
from opencomms.testing import GraphClient, running_node
from opencomms.testing.harness import Notification, app_target
from tests.integration.conftest import Platform, make_platform, node_config

RATE = 16_000
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}


def speech(text: str = "please leave a message after the tone") -> npt.NDArray[np.int16]:
    wav = subprocess.run(["espeak-ng", "--stdout", "-s", "190", text], capture_output=True, check=True).stdout
    return np.array(decode_wav(wav))


def tone(seconds: float, freq: float = 440.0, rate: int = RATE, level: float = 8000.0) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * level).astype(np.int16)


@dataclass
class PromptServer:
    """Serves prompt files over real HTTP and counts the requests per path."""

    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    runner: web.AppRunner | None = None
    url: str = ""
    host: str = "127.0.0.1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.host}:{port}"

    async def _serve(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="audio/wav")


@dataclass
class Media:
    p: Platform
    prompts: PromptServer
    sources: dict[str, npt.NDArray[np.int16]]

    def prompt(self, name: str, resource_id: str | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"@odata.type": "#microsoft.graph.mediaInfo", "uri": f"{self.prompts.url}/{name}"}
        if resource_id:
            info["resourceId"] = resource_id
        return {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": info}

    async def action(self, bot: str, call_id: str, name: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
        return await self.p[bot].client.request("POST", f"/communications/calls/{call_id}/{name}", body)

    async def op_done(self, bot: str, op_id: str, timeout: float = 10.0) -> dict[str, Any]:
        found = await self.p[bot].bot.wait_for(
            lambda n: n.resource_url.endswith(f"/operations/{op_id}") and n.change_type == "deleted", timeout=timeout
        )
        data: dict[str, Any] = found[0].resource_data
        return data

    async def connect(self) -> tuple[str, str]:
        """alice calls bob, bob answers: both legs established with service-hosted media."""
        status, call = await self.p["alice"].client.create_call(
            self.p["alice"].bot.url, [app_target(self.p["bob"].app_id)]
        )
        assert status == 201, call
        rung = sum(1 for n in self.p["bob"].bot.notifications if n.change_type == "created")
        incoming = await self.p["bob"].bot.incoming(index=rung)
        assert await self.p["bob"].client.answer(incoming.call_id) == 202
        await self.p["alice"].bot.wait_state(call["id"], "established")
        await self.p["bob"].bot.wait_state(incoming.call_id, "established")
        return call["id"], incoming.call_id


def _config(**media: Any) -> Any:
    base = MediaConfig(fetch_allow_private=("127.0.0.1",), fetch_timeout=2.0, fetch_max_bytes=4 << 20)
    return node_config(media=dataclasses.replace(base, **media))


@pytest.fixture(scope="module")
def sources() -> dict[str, npt.NDArray[np.int16]]:
    return {"speech": speech(), "short": tone(0.4), "long": tone(6.0, 300.0)}


@pytest.fixture
async def media(tmp_path: Any, sources: dict[str, npt.NDArray[np.int16]]) -> AsyncIterator[Media]:
    server = PromptServer()
    server.files = {
        "speech.wav": encode_wav(sources["speech"]),
        "short.wav": encode_wav(sources["short"]),
        "long.wav": encode_wav(sources["long"]),
        "short8k.wav": encode_wav(tone(0.4, rate=8000), rate=8000),
        "notwav.wav": b"<html>this is not audio</html>",
    }
    await server.start()
    try:
        async with make_platform(_config(recordings_dir=str(tmp_path / "rec"))) as p:
            yield Media(p, server, sources)
    finally:
        assert server.runner is not None
        await server.runner.cleanup()


def _result(op: dict[str, Any]) -> tuple[str, int, int]:
    info = op["resultInfo"]
    return op["status"], info["code"], info["subcode"]


def _tones(notes: list[Notification], call_id: str) -> list[tuple[int, str]]:
    return [
        (n.resource_data["toneInfo"]["sequenceId"], n.resource_data["toneInfo"]["tone"])
        for n in notes
        if n.call_id == call_id and isinstance(n.resource_data, dict) and n.resource_data.get("toneInfo")
    ]


def correlation(recorded: npt.NDArray[np.int16], source: npt.NDArray[np.int16]) -> float:
    """Peak normalised cross-correlation of `source` inside `recorded` (1.0 = an exact copy somewhere)."""
    r = recorded.astype(np.float64)
    s = source.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(r.size + s.size)))
    xc = np.fft.irfft(np.fft.rfft(r, n) * np.conj(np.fft.rfft(s, n)), n)[: r.size]
    lag = int(np.argmax(xc))
    window = r[lag : lag + s.size]
    denom = np.sqrt(np.dot(window, window) * np.dot(s[: window.size], s[: window.size]))
    return float(xc[lag] / denom) if denom else 0.0


async def test_prompt_and_dtmf_reach_the_other_bot(media: Media) -> None:
    a_id, b_id = await media.connect()
    status, sub, _ = await media.action("bob", b_id, "subscribeToTone", {"clientContext": "tones"})
    assert status == 200 and sub["@odata.type"] == "#microsoft.graph.subscribeToToneOperation"
    assert sub["status"] == "completed"

    status, op, headers = await media.action(
        "alice", a_id, "playPrompt", {"clientContext": "c1", "prompts": [media.prompt("short.wav")]}
    )
    assert status == 200, op
    assert op["@odata.type"] == "#microsoft.graph.playPromptOperation"
    assert op["status"] == "running" and op["clientContext"] == "c1"
    assert headers["Location"].endswith(f"/v1.0/communications/calls/{a_id}/operations/{op['id']}")
    done = await media.op_done("alice", op["id"])
    assert _result(done) == ("completed", 200, 0) and done["clientContext"] == "c1"
    status, got, _ = await media.p["alice"].client.request("GET", f"/communications/calls/{a_id}/operations/{op['id']}")
    assert status == 200 and got["status"] == "completed"

    keys = ["tone1", "tone2", "tone1", "star", "pound", "tone0"]
    status, op, _ = await media.action("alice", a_id, "sendDtmfTones", {"tones": keys, "delayBetweenTonesMs": 80})
    assert status == 200 and op["@odata.type"] == "#microsoft.graph.sendDtmfTonesOperation"
    assert op["status"] == "running"
    done = await media.op_done("alice", op["id"])
    assert _result(done) == ("completed", 200, 0) and done["completionReason"] == "completedSuccessfully"
    await media.p["bob"].bot.wait_for(lambda n: bool(n.resource_data.get("toneInfo")), count=len(keys))
    assert _tones(media.p["bob"].bot.notifications, b_id) == list(enumerate(keys, start=1))
    assert _tones(media.p["alice"].bot.notifications, a_id) == []  # alice did not subscribe


async def test_record_what_the_other_bot_plays(media: Media) -> None:
    a_id, b_id = await media.connect()
    status, rec, _ = await media.action(
        "bob",
        b_id,
        "recordResponse",
        {
            "playBeep": False,
            "maxRecordDurationInSeconds": 20,
            "initialSilenceTimeoutInSeconds": 5,
            "maxSilenceTimeoutInSeconds": 1,
        },
    )
    assert status == 200 and rec["@odata.type"] == "#microsoft.graph.recordOperation"
    assert rec["status"] == "running" and rec["recordingLocation"] is None
    status, _, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [media.prompt("speech.wav")]})
    assert status == 200
    done = await media.op_done("bob", rec["id"], timeout=15)
    assert done["status"] == "completed", done
    assert done["completionReason"] == "maxSilenceTimeout"
    location, token = done["recordingLocation"], done["recordingAccessToken"]
    assert location.startswith(media.p.node.public_url) and token

    async with aiohttp.ClientSession() as http:
        async with http.get(location, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200 and resp.content_type == "application/octet-stream"
            audio = decode_wav(await resp.read())
        async with http.get(location) as resp:
            assert resp.status == 401
        async with http.get(location, headers={"Authorization": "Bearer not-the-token"}) as resp:
            assert resp.status == 404  # as for an unknown id: no existence oracle
    source = media.sources["speech"]
    assert audio.size >= source.size
    assert correlation(audio, source) > 0.95

    # deleted a configurable time after the call ends
    await media.p["alice"].client.hang_up(a_id)
    await media.p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted")
    recordings = media.p.node.recordings
    recordings.clock = lambda: media.p.node.clock() + recordings.policy.retention_seconds + 1
    assert recordings.purge_due() == 1
    async with (
        aiohttp.ClientSession() as http,
        http.get(location, headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        assert resp.status == 404


async def test_record_with_prompt_beep_and_stop_tone(media: Media) -> None:
    a_id, b_id = await media.connect()
    status, rec, _ = await media.action(
        "bob",
        b_id,
        "recordResponse",
        {
            "prompts": [{"@odata.type": "#opencomms.textPrompt", "text": "Speak after the beep.", "voice": "en-us"}],
            "playBeep": True,
            "stopTones": ["#"],
            "maxRecordDurationInSeconds": 10,
            "initialSilenceTimeoutInSeconds": 10,
        },
    )
    assert status == 200
    prompts, spec = media.p.node.prompts, PromptSpec(text="Speak after the beep.", voice="en-us")
    async with asyncio.timeout(15):  # piper's first render on a cold node takes a while on a busy host
        while not prompts.cached(spec):  # noqa: ASYNC110 - observing the cache from outside
            await asyncio.sleep(0.02)
    await media.action("alice", a_id, "playPrompt", {"prompts": [media.prompt("long.wav")]})
    await asyncio.sleep(2.5)
    await media.action("alice", a_id, "sendDtmfTones", {"tones": ["pound"]})
    done = await media.op_done("bob", rec["id"], timeout=15)
    assert done["completionReason"] == "stopToneDetected", done
    assert done["status"] == "completed"


async def test_cancel_media_processing(media: Media) -> None:
    a_id, b_id = await media.connect()
    await media.action("bob", b_id, "subscribeToTone")
    ops = []
    for name in ("long.wav", "short.wav"):
        status, op, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [media.prompt(name)]})
        assert status == 200
        ops.append(op["id"])
    status, rec, _ = await media.action("alice", a_id, "recordResponse", {"clientContext": "r"})
    assert status == 200
    ops.append(rec["id"])
    await asyncio.sleep(0.5)
    status, cancel, _ = await media.action("alice", a_id, "cancelMediaProcessing", {"clientContext": "stop"})
    assert status == 200
    assert cancel["@odata.type"] == "#microsoft.graph.cancelMediaProcessingOperation"
    assert cancel["status"] == "completed" and cancel["clientContext"] == "stop"
    for op_id in ops:
        done = await media.op_done("alice", op_id)
        assert _result(done) == ("failed", 400, 8508)
    record_done = await media.op_done("alice", rec["id"])
    assert record_done["completionReason"] == "operationCanceled"
    # nothing completes later, and the tone subscription was not cancelled
    await media.action("alice", a_id, "sendDtmfTones", {"tones": ["tone5"]})
    await media.p["bob"].bot.wait_for(lambda n: bool(n.resource_data.get("toneInfo")))
    finished = [n for n in media.p["alice"].bot.notifications if "/operations/" in n.resource_url]
    assert sorted(n.resource_data["id"] for n in finished if n.resource_data["id"] in ops) == sorted(ops)
    # the queue works again after a cancel
    status, op, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [media.prompt("short.wav")]})
    assert _result(await media.op_done("alice", op["id"])) == ("completed", 200, 0)


async def test_prompts_play_in_order_and_are_cached_by_resource_id(media: Media) -> None:
    a_id, _ = await media.connect()
    first = media.prompt("short.wav", resource_id="c0ffee00-0000-4000-8000-000000000001")
    status, one, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [first, media.prompt("short8k.wav")]})
    assert status == 200
    status, two, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [first]})
    assert status == 200
    await media.op_done("alice", two["id"])
    finished = [n.resource_data["id"] for n in media.p["alice"].bot.notifications if "/operations/" in n.resource_url]
    assert finished == [one["id"], two["id"]]
    assert media.prompts.hits["short.wav"] == 1


async def test_prefetch_at_answer(media: Media) -> None:
    p = media.p
    status, _call = await p["alice"].client.create_call(p["alice"].bot.url, [app_target(p["bob"].app_id)])
    incoming = await p["bob"].bot.incoming()
    body = {
        "acceptedModalities": ["audio"],
        "mediaConfig": {**SERVICE_HOSTED, "preFetchMedia": [media.prompt("speech.wav", "id-1")["mediaInfo"]]},
    }
    status, _, _ = await p["bob"].client.request("POST", f"/communications/calls/{incoming.call_id}/answer", body)
    assert status == 202
    for _ in range(100):
        if media.prompts.hits.get("speech.wav"):
            break
        await asyncio.sleep(0.02)
    assert media.prompts.hits.get("speech.wav") == 1
    await p["bob"].bot.wait_state(incoming.call_id, "established")
    status, _op, _ = await media.action(
        "bob", incoming.call_id, "playPrompt", {"prompts": [media.prompt("speech.wav", "id-1")]}
    )
    assert status == 200
    assert media.prompts.hits["speech.wav"] == 1


async def test_bad_prompts_fail_the_operation_and_the_call_goes_on(media: Media) -> None:
    a_id, _ = await media.connect()
    cases = {
        "notwav.wav": (415, 9107),
        "missing.wav": (502, 9105),
    }
    for name, (code, subcode) in cases.items():
        status, op, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [media.prompt(name)]})
        assert status == 200, op
        done = await media.op_done("alice", op["id"])
        assert _result(done) == ("failed", code, subcode), (name, done)
    forbidden = {
        "http://169.254.169.254/latest/meta-data/x.wav": (403, 9102),
        "http://10.1.2.3/prompt.wav": (403, 9102),
        "http://127.0.0.2:1/prompt.wav": (403, 9102),  # loopback, but not the allowed 127.0.0.1
    }
    for uri, (code, subcode) in forbidden.items():
        prompt = {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": uri}}
        status, op, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [prompt]})
        assert status == 200
        assert _result(await media.op_done("alice", op["id"])) == ("failed", code, subcode), uri
    status, call, _ = await media.p["alice"].client.request("GET", f"/communications/calls/{a_id}")
    assert call["state"] == "established"
    status, op, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [media.prompt("short.wav")]})
    assert _result(await media.op_done("alice", op["id"])) == ("completed", 200, 0)


async def test_loopback_prompts_are_refused_without_the_allow_list(tmp_path: Any) -> None:
    # the bots are on the allowed 127.0.0.1; the prompt server on another loopback address
    server = PromptServer(files={"short.wav": encode_wav(tone(0.2))}, host="127.0.0.2")
    await server.start()
    try:
        config = node_config(media=MediaConfig(recordings_dir=str(tmp_path)))
        async with make_platform(config) as p:
            m = Media(p, server, {})
            a_id, _ = await m.connect()
            status, op, _ = await m.action("alice", a_id, "playPrompt", {"prompts": [m.prompt("short.wav")]})
            assert status == 200
            assert _result(await m.op_done("alice", op["id"])) == ("failed", 403, 9102)
            assert server.hits == {}
    finally:
        assert server.runner is not None
        await server.runner.cleanup()


async def test_mute_silences_the_bot(media: Media) -> None:
    a_id, b_id = await media.connect()
    await media.action("bob", b_id, "subscribeToTone")
    status, op, _ = await media.action("alice", a_id, "mute", {"clientContext": "m"})
    assert status == 200 and op["@odata.type"] == "#microsoft.graph.muteParticipantOperation"
    assert op["status"] == "completed"
    status, parts, _ = await media.p["alice"].client.request("GET", f"/communications/calls/{a_id}/participants")
    mine = [
        x for x in parts["value"] if x["info"]["identity"].get("application", {}).get("id") == media.p["alice"].app_id
    ]
    assert mine[0]["isMuted"] is True
    status, op, _ = await media.action("alice", a_id, "sendDtmfTones", {"tones": ["tone7"]})
    await media.op_done("alice", op["id"])
    status, op, _ = await media.action("alice", a_id, "unmute")
    assert op["@odata.type"] == "#microsoft.graph.unmuteParticipantOperation"
    status, op, _ = await media.action("alice", a_id, "sendDtmfTones", {"tones": ["tone9"]})
    await media.op_done("alice", op["id"])
    await media.p["bob"].bot.wait_for(lambda n: bool(n.resource_data.get("toneInfo")))
    assert _tones(media.p["bob"].bot.notifications, b_id) == [(1, "tone9")]


async def test_media_request_errors(media: Media) -> None:
    p = media.p
    status, call = await p["alice"].client.create_call(p["alice"].bot.url, [app_target(p["bob"].app_id)])
    incoming = await p["bob"].bot.incoming()
    # not established yet
    status, err, _ = await media.action("bob", incoming.call_id, "playPrompt", {"prompts": [media.prompt("short.wav")]})
    assert status == 400 and err["error"]["code"] == "invalidRequest"
    await p["bob"].client.answer(incoming.call_id)
    await p["alice"].bot.wait_state(call["id"], "established")
    a_id = call["id"]
    bad = [
        {"prompts": []},
        {"prompts": [media.prompt("short.wav")] * 21},
        {"prompts": [{"@odata.type": "#microsoft.graph.unknownPrompt"}]},
        {"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": "ftp://x/y.wav"}}]},
        {"prompts": [{"@odata.type": "#opencomms.textPrompt", "text": "   "}]},
        {"prompts": [{"@odata.type": "#opencomms.textPrompt", "text": "hi", "voice": "../../etc"}]},
        {"prompts": "x"},
        {"prompts": [media.prompt("short.wav")], "clientContext": "x" * 300},
    ]
    for body in bad:
        status, err, _ = await media.action("alice", a_id, "playPrompt", body)
        assert status == 400, body
        assert "error" in err
    for body in (
        {"maxRecordDurationInSeconds": 0},
        {"maxSilenceTimeoutInSeconds": 121},
        {"stopTones": ["tone1"]},
        {"prompts": [media.prompt("short.wav")] * 2},
    ):
        status, err, _ = await media.action("alice", a_id, "recordResponse", body)
        assert status == 400, body
    for body in ({"tones": []}, {"tones": ["eleven"]}, {"tones": ["tone1"], "delayBetweenTonesMs": -1}):
        status, err, _ = await media.action("alice", a_id, "sendDtmfTones", body)
        assert status == 400, body
    status, err, _ = await media.p["bob"].client.request(
        "POST", f"/communications/calls/{a_id}/playPrompt", {"prompts": [media.prompt("short.wav")]}
    )
    assert status == 404  # another application's call


async def test_record_needs_access_media_permission(tmp_path: Any) -> None:
    perms = {"alice": ["Calls.Initiate.All"], "bob": ["Calls.Initiate.All"]}
    async with make_platform(
        node_config(media=MediaConfig(recordings_dir=str(tmp_path))), ("alice", "bob"), perms
    ) as p:
        m = Media(p, PromptServer(), {})
        a_id, _ = await m.connect()
        status, err, _ = await m.action("alice", a_id, "recordResponse", {})
        assert status == 403 and err["error"]["code"] == "accessDenied"
        status, err, _ = await m.action("alice", a_id, "subscribeToTone", {})
        assert status == 403


async def test_hang_up_fails_pending_operations(media: Media) -> None:
    a_id, _ = await media.connect()
    _status, op, _ = await media.action("alice", a_id, "playPrompt", {"prompts": [media.prompt("long.wav")]})
    await asyncio.sleep(0.3)
    await media.p["alice"].client.hang_up(a_id)
    done = await media.op_done("alice", op["id"])
    assert _result(done) == ("failed", 410, 9120)
    end = await media.p["alice"].bot.wait_for(
        lambda n: n.call_id == a_id and n.change_type == "deleted" and "/operations/" not in n.resource_url
    )
    assert end
    stats = media.p.node.media.stats
    assert (stats["legs"], stats["operations"], stats["prompt_bytes_held"]) == (0, 0, 0)


async def test_operations_left_running_by_a_restart_fail_and_media_comes_back(tmp_path: Any) -> None:
    """A node stopped mid-prompt: the restarted node reports the operation failed, and media works again."""
    db = tmp_path / "node.db"
    long_prompt = {"@odata.type": "#opencomms.textPrompt", "text": "one two three four five six seven eight nine ten"}
    config = dataclasses.replace(_config(recordings_dir=str(tmp_path / "rec")), store_url=f"sqlite:///{db}")
    async with make_platform(config, ("alice", "bob")) as p:
        m = Media(p, PromptServer(), {})
        a_id, _ = await m.connect()
        status, op, _ = await m.action("alice", a_id, "playPrompt", {"prompts": [long_prompt]})
        assert status == 200
        bots = p.bots
        port = p.node.port
    # the same bots (their webhooks were stopped with the platform: restart them on the same URLs)
    restarted = dataclasses.replace(config, port=port)
    async with running_node(restarted) as node:
        for name, handle in bots.items():
            await handle.bot.start(f"/{name}/calls", port=handle.bot.port)
            handle.bot.notifications.clear()
        try:
            async with GraphClient(node.public_url, p.tenant_id, bots["alice"].app_id, bots["alice"].secret) as alice:
                m2 = Media(Platform(node, p.tenant_id, bots), PromptServer(), {})
                bots["alice"].client = alice
                done = await m2.op_done("alice", op["id"])
                assert _result(done) == ("failed", 500, 9121)
                status, again, _ = await alice.request(
                    "POST", f"/communications/calls/{a_id}/sendDtmfTones", {"tones": ["tone1"]}
                )
                assert status == 200
                done = await m2.op_done("alice", again["id"])
                assert _result(done) == ("completed", 200, 0)
        finally:
            for handle in bots.values():
                await handle.bot.stop()
