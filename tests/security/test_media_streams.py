"""Hostile media streams against a running node: a stream URL pointing at a forbidden address gets no connection
(the egress policy judges it like every other outbound socket) and the call goes on; a bot that floods its stream
with audio, marks, binary frames and garbage is held to the playout bound, counted, and the call goes on."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import web

from opencomms.testing import TestPlatform
from tests.integration.media.test_media_streams import answered_call, start_stream
from tests.security.test_egress import FORBIDDEN_HOST, Listener
from tests.unit.notify.test_notify_dispatcher import eventually


async def test_a_stream_to_a_forbidden_address_never_connects_and_the_call_goes_on() -> None:
    listener = await Listener().start()
    try:
        async with TestPlatform() as platform:
            bot = await platform.recording_bot("agent")
            async with platform.caller() as caller:
                call, call_id = await answered_call(platform, bot, caller)
                status, op = await start_stream(bot, call_id, {"url": f"ws://{FORBIDDEN_HOST}:{listener.port}/x"})
                assert status == 200, op
                streams = platform.node.media_streams
                await eventually(lambda: streams.stats.failed > 0)
                failed = await bot.webhook.wait_for(lambda n: n.resource_url.endswith(op["id"]))
                assert failed[0].resource_data["status"] == "failed"
                assert failed[0].resource_data["resultInfo"]["subcode"] == 9142
                assert listener.connections == 0 and streams.active == 0
                assert platform.node.calls.leg(call_id) is not None and not call.ended  # the call goes on
                await call.hang_up()
    finally:
        await listener.stop()


async def test_a_flooding_bot_is_held_to_the_playout_bound() -> None:
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        second = base64.b64encode(b"\x55" * 8000).decode()  # 1 s of µ-law
        async for msg in ws:
            if json.loads(msg.data)["event"] == "start":
                sid = json.loads(msg.data)["streamSid"]
                for _ in range(90):  # 90 s of audio at once, past the 60 s bound
                    await ws.send_str(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": second}}))
                for i in range(3000):
                    await ws.send_str(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": str(i)}}))
                await ws.send_bytes(b"\x00" * 1000)
                await ws.send_str("{not json")
                await ws.send_str(json.dumps({"event": "media", "media": {"payload": "%%%"}}))
                done.set()
        return ws

    app = web.Application()
    app.router.add_get("/s", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: Any = runner.addresses[0][1]
    try:
        async with TestPlatform() as platform:
            bot = await platform.recording_bot("agent")
            async with platform.caller() as caller:
                call, call_id = await answered_call(platform, bot, caller)
                status, _ = await start_stream(bot, call_id, {"url": f"ws://127.0.0.1:{port}/s"})
                assert status == 200
                await asyncio.wait_for(done.wait(), 10)
                streams = platform.node.media_streams
                await eventually(lambda: streams.stats.bad_messages >= 3)
                (stream,) = streams._streams.values()
                assert len(stream.playout) <= stream.max_frames + 1024  # 60 s of audio and the marks' room
                assert streams.stats.frames_dropped >= 29 * 50  # the 30 s past the bound (minus what played)
                assert streams.stats.bad_messages > 1900  # binary, garbage, bad payload, the marks past the room
                await call.wait_for_speech(timeout=5)  # the queued audio plays; the node is not stuck
                await call.hang_up()
                await eventually(lambda: streams.active == 0)
    finally:
        await runner.cleanup()
