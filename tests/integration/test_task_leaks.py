"""A node that stops leaves no task behind: every background task belongs to an owner (a TaskGroup or a TaskSet)
that cancels and awaits it on close, even when the node stops in the middle of a phone call whose prompt is
still loading from a server that never answers."""

from __future__ import annotations

import asyncio
import dataclasses

from opencomms.testing import TestPlatform
from tests.integration.conftest import node_config


async def _slow_to_cancel() -> None:
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0.05)  # cleanup that awaits (a BYE, a store write)


def _others(before: set[asyncio.Task[object]]) -> list[str]:
    return sorted(f"{t.get_name()}: {t.get_coro()!r}" for t in asyncio.all_tasks() - before if not t.done())


async def test_a_node_stopped_mid_call_with_a_prompt_loading_leaves_no_task_running() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the request, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    before = asyncio.all_tasks()
    config = node_config()
    config = dataclasses.replace(config, media=dataclasses.replace(config.media, fetch_allow_private=("127.0.0.1",)))
    async with server, TestPlatform(config) as platform:
        bot = await platform.recording_bot("hold")
        async with platform.caller() as caller:
            call = await caller.dial(bot.number)
            incoming = await bot.webhook.incoming(timeout=10)
            assert await bot.client.answer(incoming.call_id) == 202
            await call.wait_answered()
            await bot.webhook.wait_state(incoming.call_id, "established")
            prompt = {
                "@odata.type": "#microsoft.graph.mediaPrompt",
                "mediaInfo": {"uri": f"http://127.0.0.1:{port}/a.wav"},
            }
            status, op, _ = await bot.client.request(
                "POST", f"/communications/calls/{incoming.call_id}/playPrompt", {"prompts": [prompt]}
            )
            assert status == 200, op
            assert platform.node.sip is not None
            platform.node.sip.spawn(_slow_to_cancel())  # a gateway task whose cleanup awaits
            await asyncio.sleep(0.2)
            running = _others(before)
            assert any("media-load" in name for name in running)  # the prompt is still loading
            assert any("_slow_to_cancel" in name for name in running)
        server.close()
    assert _others(before) == []
