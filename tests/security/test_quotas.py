"""Issue 14 item 6 against a running node: one bot must not exhaust the node.

Call quotas: 403 quotaLimitReached past a concurrency quota, 429 + Retry-After past a rate, the store does not grow
past the quota, a phone calling a bot at its quota hears 486. Queued media operations per call. The prompt memory
budget: ten playPrompt requests of twenty large WAVs (served from a loopback HTTP server) hold at most the budget,
only the queue's head and next are fetched, and cancelMediaProcessing or a hang-up gives every byte back and stops
the downloads in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from opencomms.config import MediaConfig, QuotaConfig
from opencomms.media.wav import encode_wav
from opencomms.store.conversations import stored_conversations
from opencomms.testing.harness import app_target
from tests.integration.conftest import Platform, make_platform, node_config

MIB = 1 << 20


def quota_config(**quotas: Any) -> Any:
    media = MediaConfig(
        fetch_allow_private=("127.0.0.1",), fetch_timeout=5.0, fetch_max_bytes=2 * MIB, prompt_cache_mb=0
    )
    return node_config(quotas=dataclasses.replace(QuotaConfig(), **quotas), media=media)


async def stored_legs(p: Platform) -> list[dict[str, Any]]:
    """Every stored call leg (legs live inside their conversation's document)."""
    return [leg for doc in await stored_conversations(p.node.conversations) for leg in doc["legs"]]


async def call_docs(p: Platform, app_id: str) -> int:
    return sum(1 for leg in await stored_legs(p) if leg.get("app_id") == app_id)


async def create(p: Platform, bot: str, target: str) -> tuple[int, Any, dict[str, str]]:
    body = {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": p[bot].bot.url,
        "targets": [app_target(p[target].app_id)],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }
    return await p[bot].client.request("POST", "/communications/calls", body)


# -- calls ------------------------------------------------------------------------------------------------


async def test_creates_past_the_concurrency_quota_get_403_and_the_store_stops_growing() -> None:
    async with make_platform(quota_config(concurrent_calls_per_app=5)) as p:
        statuses = [(await create(p, "alice", "bob"))[0] for _ in range(5)]
        assert statuses == [201] * 5
        for _ in range(15):
            status, err, _headers = await create(p, "alice", "bob")
            assert status == 403
            assert err["error"]["code"] == "quotaLimitReached"
            assert "concurrent_calls_per_app" in err["error"]["message"] and "limit 5" in err["error"]["message"]
            assert err["error"]["innerError"]["request-id"]
        assert await call_docs(p, p["alice"].app_id) == 5
        assert await call_docs(p, p["bob"].app_id) == 5  # its ringing legs count toward bob's quota
        # bob is at its quota too: carol's call to it is refused as busy (486/9150), carol keeps no leg
        status, call, _ = await create(p, "carol", "bob")
        assert status == 201
        ended = await p["carol"].bot.wait_for(lambda n: n.call_id == call["id"] and n.change_type == "deleted")
        info = ended[0].resource_data["resultInfo"]
        assert (info["code"], info["subcode"]) == (486, 9150)
        assert await call_docs(p, p["bob"].app_id) == 5 and await call_docs(p, p["carol"].app_id) == 0
        # one call ends: one create fits again
        first = next(leg["id"] for leg in await stored_legs(p) if leg["app_id"] == p["alice"].app_id)
        await p["alice"].client.hang_up(first)
        assert (await create(p, "alice", "bob"))[0] == 201
        assert (await create(p, "alice", "bob"))[0] == 403


async def test_creates_past_the_rate_get_429_with_retry_after() -> None:
    async with make_platform(quota_config(calls_per_minute_per_app=4)) as p:
        statuses = [(await create(p, "alice", "bob"))[0] for _ in range(4)]
        assert statuses == [201] * 4
        status, err, headers = await create(p, "alice", "bob")
        assert status == 429
        assert err["error"]["code"] == "activityLimitReached"
        assert "calls_per_minute_per_app" in err["error"]["message"]
        assert 1 <= int(headers["Retry-After"]) <= 15  # one call every 15 s at 4 per minute
        assert await call_docs(p, p["alice"].app_id) == 4
        assert (await create(p, "carol", "bob"))[0] == 201  # another application is not throttled


# -- media ------------------------------------------------------------------------------------------------


@dataclass
class SlowPrompts:
    """Serves one WAV under any name, each response after `delay` s; counts requests, the most at once, and
    requests abandoned by the client (the node cancelled the download)."""

    body: bytes
    bodies: dict[str, bytes] = field(default_factory=dict)
    """Other bodies, by name prefix."""
    delay: float = 0.02
    hits: int = 0
    active: int = 0
    most: int = 0
    abandoned: int = 0
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.hold.set()

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await asyncio.sleep(self.delay)
            while not self.hold.is_set():
                if request.transport is None or request.transport.is_closing():
                    self.abandoned += 1  # the node closed the connection: the download was cancelled
                    raise web.HTTPGone()
                await asyncio.sleep(0.01)
        finally:
            self.active -= 1
        name = request.match_info["name"]
        body = next((b for prefix, b in self.bodies.items() if name.startswith(prefix)), self.body)
        return web.Response(body=body, content_type="audio/wav")


def wav(seconds: float) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    return encode_wav((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))


@dataclass
class Env:
    p: Platform
    server: SlowPrompts
    call_id: str = ""

    def prompts(self, tag: str, n: int = 20) -> dict[str, Any]:
        return {
            "prompts": [
                {
                    "@odata.type": "#microsoft.graph.mediaPrompt",
                    "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": f"{self.server.url}/{tag}-{i}"},
                }
                for i in range(n)
            ]
        }

    async def play(self, body: dict[str, Any]) -> tuple[int, Any]:
        status, data, _ = await self.p["alice"].client.request(
            "POST", f"/communications/calls/{self.call_id}/playPrompt", body
        )
        return status, data

    def stats(self) -> dict[str, int]:
        return self.p.node.media.stats

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        for _ in range(int(timeout / 0.02)):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"not reached in {timeout} s: {self.stats()}")


@pytest.fixture
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    seconds, quotas = request.param
    server = SlowPrompts(wav(seconds))
    await server.start()
    try:
        async with make_platform(quota_config(**quotas)) as p:
            e = Env(p, server)
            status, call = await p["alice"].client.create_call(p["alice"].bot.url, [app_target(p["bob"].app_id)])
            assert status == 201
            incoming = await p["bob"].bot.incoming()
            assert await p["bob"].client.answer(incoming.call_id) == 202
            await p["alice"].bot.wait_state(call["id"], "established")
            e.call_id = call["id"]
            yield e
    finally:
        assert server.runner is not None
        await server.runner.cleanup()


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


@pytest.mark.parametrize("env", [(20.0, {"prompt_memory_mb": 48})], indirect=True)
async def test_ten_large_play_prompts_hold_at_most_the_budget_and_cancel_gives_it_back(env: Env) -> None:
    one_prompt = 20 * 16000 * 2  # 20 s decoded
    rss_before = rss_bytes()
    for k in range(10):
        status, op = await env.play(env.prompts(f"op{k}"))
        assert status == 200 and op["status"] == "running"
    # only the head and the next operation are fetched: 40 prompts, never the 200 queued
    await env.until(lambda: env.stats()["prompt_bytes_held"] >= 40 * one_prompt)
    await asyncio.sleep(0.5)
    assert env.server.hits == 40
    assert env.server.most <= 4  # one operation loads at a time, four prompts at once
    held = env.stats()["prompt_bytes_held"]
    assert 40 * one_prompt <= held <= 48 * MIB
    assert env.stats()["prompt_bytes_peak"] <= 48 * MIB
    rss_loaded = rss_bytes()
    status, _data, _ = await env.p["alice"].client.request(
        "POST", f"/communications/calls/{env.call_id}/cancelMediaProcessing", {}
    )
    assert status == 200
    await env.until(lambda: env.stats()["prompt_bytes_held"] == 0 and env.stats()["operations"] == 0)
    assert not env.p.node.prompts._inflight
    assert env.server.hits == 40
    await asyncio.sleep(0.3)  # the engine thread drops the clip it was playing at its next tick
    rss_after = rss_bytes()
    # the audio (25 MiB) left the process, not only the counter (allow for allocator and test noise)
    assert rss_loaded - rss_after > 0.5 * held, (rss_before, rss_loaded, rss_after)


@pytest.mark.parametrize("env", [(20.0, {})], indirect=True)
async def test_cancel_stops_downloads_in_flight(env: Env) -> None:
    env.server.hold.clear()
    status, _op = await env.play(env.prompts("stuck"))
    assert status == 200
    await env.until(lambda: env.server.active == 4)
    assert env.stats()["prompt_bytes_held"] == 4 * 2 * MIB  # four fetches, each reserving the body size limit
    status, _data, _ = await env.p["alice"].client.request(
        "POST", f"/communications/calls/{env.call_id}/cancelMediaProcessing", {}
    )
    assert status == 200
    await env.until(lambda: env.stats()["prompt_bytes_held"] == 0 and not env.p.node.prompts._inflight)
    await env.until(lambda: env.server.active == 0)
    assert env.server.abandoned == 4 and env.server.hits == 4


@pytest.mark.parametrize("env", [(20.0, {"prompt_memory_mb": 2})], indirect=True)
async def test_a_load_past_the_budget_fails_its_operation_with_9110(env: Env) -> None:
    status, op = await env.play(env.prompts("two", n=2))  # two fetches at 2 MiB each: the second does not fit
    assert status == 200
    done = await env.p["alice"].bot.wait_for(lambda n: n.resource_url.endswith(op["id"]) and n.change_type == "deleted")
    info = done[0].resource_data["resultInfo"]
    assert done[0].resource_data["status"] == "failed"
    assert (info["code"], info["subcode"]) == (503, 9110) and "budget" in info["message"]
    assert env.stats()["prompt_bytes_held"] == 0 and env.stats()["prompt_budget_refused"] >= 1


@pytest.mark.parametrize("env", [(20.0, {"queued_prompt_mb_per_call": 1})], indirect=True)
async def test_prompt_audio_past_the_per_call_quota_fails_with_9111(env: Env) -> None:
    status, op = await env.play(env.prompts("x", n=2))  # 0.6 MiB each decoded: the second exceeds 1 MiB
    assert status == 200
    done = await env.p["alice"].bot.wait_for(lambda n: n.resource_url.endswith(op["id"]) and n.change_type == "deleted")
    info = done[0].resource_data["resultInfo"]
    assert (info["code"], info["subcode"]) == (413, 9111) and "queued_prompt_mb_per_call" in info["message"]
    assert env.stats()["prompt_bytes_held"] == 0


@pytest.mark.parametrize("env", [(1.0, {"queued_media_ops_per_call": 3})], indirect=True)
async def test_queued_operations_past_the_quota_get_403(env: Env) -> None:
    for k in range(3):
        assert (await env.play(env.prompts(f"q{k}", n=1)))[0] == 200
    status, err = await env.play(env.prompts("q3", n=1))
    assert status == 403 and err["error"]["code"] == "quotaLimitReached"
    assert "queued_media_ops_per_call" in err["error"]["message"] and "limit 3" in err["error"]["message"]
    status, _data, _ = await env.p["alice"].client.request(
        "POST", f"/communications/calls/{env.call_id}/cancelMediaProcessing", {}
    )
    assert status == 200
    assert (await env.play(env.prompts("q4", n=1)))[0] == 200  # room again once the queue is cleared


@pytest.mark.parametrize("env", [(20.0, {})], indirect=True)
async def test_hang_up_releases_queued_audio_and_stops_downloads(env: Env) -> None:
    assert (await env.play(env.prompts("played", n=4)))[0] == 200
    await env.until(lambda: env.stats()["prompt_bytes_held"] == 4 * 20 * 16000 * 2)  # loaded, playing
    env.server.hold.clear()
    assert (await env.play(env.prompts("stuck", n=4)))[0] == 200  # the next one: its four downloads hang
    await env.until(lambda: env.server.active == 4)
    await env.p["alice"].client.hang_up(env.call_id)
    await env.until(lambda: env.stats()["prompt_bytes_held"] == 0 and env.stats()["operations"] == 0)
    assert not env.p.node.prompts._inflight
    await env.until(lambda: env.server.active == 0)
    assert env.server.abandoned == 4


@pytest.mark.parametrize("env", [(16.0, {"queued_prompt_mb_per_call": 1})], indirect=True)
async def test_the_next_operation_waits_for_room_instead_of_failing(env: Env) -> None:
    env.server.bodies["short"] = wav(2.0)
    status, first = await env.play(env.prompts("short", n=1))  # 62.5 KiB decoded, plays 2 s
    status, second = await env.play(env.prompts("long", n=2))  # 1000 KiB: fits alone, not beside the first
    assert status == 200
    done = await env.p["alice"].bot.wait_for(
        lambda n: n.resource_url.endswith(first["id"]) and n.change_type == "deleted"
    )
    assert done[0].resource_data["status"] == "completed"
    await env.until(lambda: env.stats()["prompt_bytes_held"] == 2 * 16 * 16000 * 2)  # the second one, now playing
    assert env.server.hits == 1 + 2 + 2  # the second operation's prompts: refused beside the first, loaded after it
    assert not [n for n in env.p["alice"].bot.notifications if n.resource_url.endswith(second["id"])]


def invite_status(port: int, number: str) -> int:
    """Send one INVITE from a plain UDP socket; the status of the final response (ACKed, as a phone would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        local = sock.getsockname()[1]
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        head = (
            f"INVITE sip:{number}@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKquota1\r\n"
            f"From: <sip:phone@127.0.0.1:{local}>;tag=q1\r\nTo: <sip:{number}@127.0.0.1>\r\n"
            f"Call-ID: quota-{local}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:phone@127.0.0.1:{local}>\r\n"
            f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
        )
        sock.sendto((head + sdp).encode(), ("127.0.0.1", port))
        while True:
            status = int(sock.recv(65535).split(b" ", 2)[1])
            if status >= 200:
                return status


async def test_a_phone_calling_a_bot_at_its_quota_hears_busy() -> None:
    async with make_platform(quota_config(concurrent_calls_per_app=1), ("alice", "bob")) as p:
        assert p.node.sip is not None
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number="+14255550100")
        assert (await create(p, "alice", "bob"))[0] == 201  # bob's one call: ringing
        assert await asyncio.to_thread(invite_status, p.node.sip.port, "14255550100") == 486
        assert await call_docs(p, p["bob"].app_id) == 1
        assert len(await stored_legs(p)) == 2  # alice's and bob's leg: the phone left nothing
